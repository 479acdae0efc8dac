//! The engine: the Web Worker that owns the models. It loads checkpoints (with progress, a size
//! cap, a stall timeout and the Cache API), runs on burn's CPU backend or (in the WebGPU build)
//! on WebGPU, and runs playground states into routing traces without ever blocking the page.
//! It is built twice, into two wasm modules (`crates/engine-cpu`, `crates/engine-webgpu`); the
//! page starts the one it runs on. The page sends [`Request`]s and gets [`Reply`]s
//! (`switchyard-protocol`); nothing else crosses.
//!
//! Loads and runs are independent: a load is its own task (a newer one supersedes it and its
//! download stops), so a slow or stalled download never holds up runs on a model that is already
//! loaded. Runs go through a pump: a newer run replaces a queued one and stops a running
//! generation at its next token, as does a load of another checkpoint. The last two loaded
//! models are kept, so switching back is instant.

mod assets;
mod backend_check;
mod hf;
mod recorded;
mod scope;
#[cfg(feature = "train")]
pub mod trainer;

use std::cell::RefCell;
use std::rc::Rc;

use assets::{Asset, FetchError};
use switchyard_model::{
    BpeTokenizer, ByteTokenizer, Checkpoint, Device, Dispatch, Model, ModelConfig, ModelError, RunOptions, Tokenizer,
    devices, generate_greedy, init_from_seed, read_backs,
};
use switchyard_protocol::trace::DomainShares;
use switchyard_protocol::{
    CPU_ADAPTER, EXAMPLES, Extras, HF_FILES, HF_URL, HfModel, Loaded, Reply, Request, SEED_INIT, Source,
    TRAINED_IN_PAGE, Timing,
};
use switchyard_state::PlaygroundState;
use switchyard_trace::TraceError;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::MessageEvent;

#[cfg(feature = "webgpu")]
use scope::webgpu_missing;
use scope::{now_ms, post, yield_now};

/// Largest checkpoint file accepted (the shipped ones are under 10 MB).
const MAX_CHECKPOINT_BYTES: u64 = 64 << 20;
/// Largest tokenizer file accepted (the shipped one is under 1 MB).
const MAX_TOKENIZER_BYTES: u64 = 16 << 20;
/// Loaded models kept (the current one and the one before, for switching back).
const MODELS_KEPT: usize = 2;

/// A model ready to run.
struct Ready {
    info: Loaded,
    model: Model,
    tok: Tokenizer,
    /// The parameters, kept to rebuild the model on the CPU if the GPU fails.
    ckpt: Rc<Checkpoint>,
}

#[derive(Default)]
pub(crate) struct Engine {
    /// Loaded models, most recently wanted last.
    models: Vec<Rc<Ready>>,
    /// The WebGPU device, acquired once per worker (or why there is none).
    gpu: Option<Result<(Device, String), String>>,
    /// The latest load asked for (id and checkpoint): older loads stop.
    latest_load: (u64, String),
    /// A load task is running for `latest_load` (a run of its checkpoint waits for it).
    loading: bool,
    pending_run: Option<(u64, String, Extras)>,
    pending_check: bool,
    pending_calibration: Option<(u64, String)>,
    latest_run: u64,
    busy: bool,
    /// The last domain shares, by what they depend on (checkpoint hash and the state without
    /// prompt and generation): typing a prompt with the domain view open does not redo them.
    domains: Option<(String, DomainShares)>,
    /// The checkpoint the Train view handed over (`trained-in-page`), as safetensors bytes.
    adopted: Option<Rc<Vec<u8>>>,
    /// The files of a Hugging Face folder the page handed over (`hf-files`).
    hf_files: Vec<web_sys::File>,
    /// The trace file the page handed over last (read-only mode).
    trace_file: Option<web_sys::File>,
    /// The recorded trace open in read-only mode.
    recorded: Option<Rc<switchyard_protocol::recorded::Opened>>,
}

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::default());
}

pub(crate) fn with<R>(f: impl FnOnce(&mut Engine) -> R) -> R {
    ENGINE.with(|e| f(&mut e.borrow_mut()))
}

/// Runs the module's static constructors (cubecl registers its kernels with `inventory`).
/// Calling them from an export tells the linker the module is a "reactor"; otherwise it treats
/// it as a "command" and re-runs every constructor at the top of every call from JS into wasm,
/// which the profiler showed costing more than the model itself. The constructors are
/// idempotent, so running them again is harmless.
#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
fn run_constructors() {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }
    // SAFETY: the linker-synthesised constructor list; called once, before anything else runs.
    unsafe { __wasm_call_ctors() }
}

/// Starts the training worker instead (the `engine-train` module).
#[cfg(feature = "train")]
pub fn start_trainer() {
    #[cfg(target_family = "wasm")]
    run_constructors();
    trainer::start();
}

/// Starts listening for requests (the worker's `main`; the engine modules call it at start).
pub fn start() {
    #[cfg(target_family = "wasm")]
    run_constructors();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        // Bytes are the Train view's model ("Use this model"): kept for the next load of
        // `trained-in-page`, replacing an earlier one.
        if let Some(bytes) = event.data().dyn_ref::<js_sys::Uint8Array>() {
            let bytes = Rc::new(bytes.to_vec());
            with(|e| {
                e.adopted = Some(bytes);
                e.models.retain(|m| m.info.checkpoint != TRAINED_IN_PAGE);
            });
            return;
        }
        // An array of `File`s is a Hugging Face folder opened in the page: kept for the next
        // load of `hf-files`, replacing an earlier one.
        if let Some(list) = event.data().dyn_ref::<js_sys::Array>() {
            let files: Vec<web_sys::File> = list.iter().filter_map(|f| f.dyn_into().ok()).collect();
            with(|e| {
                e.hf_files = files;
                e.models.retain(|m| m.info.checkpoint != HF_FILES);
            });
            return;
        }
        // One `File` is a recorded trace, opened by the `OpenTrace` that follows.
        if let Ok(file) = event.data().dyn_into::<web_sys::File>() {
            with(|e| e.trace_file = Some(file));
            return;
        }
        let Some(text) = event.data().as_string() else { return };
        match serde_json::from_str::<Request>(&text) {
            Ok(Request::Load { id, checkpoint, webgpu, hash, url }) => request_load(id, checkpoint, webgpu, hash, url),
            Ok(Request::OpenTrace { id, url }) => {
                with(|e| e.latest_run = e.latest_run.max(id));
                wasm_bindgen_futures::spawn_local(recorded::open(id, url));
            }
            Ok(Request::Reroute { id, query }) => {
                with(|e| e.latest_run = e.latest_run.max(id));
                recorded::reroute(id, &query);
            }
            Ok(Request::Cancel { id }) => with(|e| {
                if e.latest_load.0 == id {
                    // No load is the latest now: the download stops at its next chunk, unanswered.
                    e.latest_load = (0, String::new());
                    e.loading = false;
                }
            }),
            Ok(Request::Run { id, query, extras }) => {
                with(|e| {
                    e.latest_run = e.latest_run.max(id);
                    e.pending_run = Some((id, query, extras));
                });
                pump_if_idle();
            }
            Ok(Request::Check) => {
                with(|e| e.pending_check = true);
                pump_if_idle();
            }
            Ok(Request::Calibrate { id, query }) => {
                with(|e| e.pending_calibration = Some((id, query)));
                pump_if_idle();
            }
            // Only the page's own code can reach the worker; the page sends this only from its
            // test hook (`switchyard-app`'s `ui::test_hooks`).
            Ok(Request::Crash) => panic!("test hook: the engine was asked to fail as a lost GPU would"),
            Err(err) => {
                post(&Reply::RunFailed { id: 0, message: format!("the engine could not read a request: {err}") })
            }
        }
    });
    scope::global().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    scope::mark("engine: started");
    post(&Reply::Started);
}

fn pump_if_idle() {
    if !with(|e| std::mem::replace(&mut e.busy, true)) {
        wasm_bindgen_futures::spawn_local(pump());
    }
}

/// Works through the queued work: the backend check, a calibration, then the latest run.
async fn pump() {
    loop {
        // Let a burst of messages arrive before choosing what to do.
        yield_now().await;
        let (check, calibration, run) =
            with(|e| (std::mem::take(&mut e.pending_check), e.pending_calibration.take(), e.pending_run.take()));
        if check {
            post(&Reply::Checked(Box::new(backend_check::report().await)));
        }
        let calibration = match calibration {
            // Like a run, a calibration waits for the checkpoint it times.
            Some(c) if waits_for_load(&c.1) => {
                with(|e| e.pending_calibration = e.pending_calibration.take().or(Some(c)));
                None
            }
            Some((id, query)) => {
                post(&Reply::Calibrated { id, timing: calibrate(&query).await });
                Some(())
            }
            None => None,
        };
        match run {
            // A run of the checkpoint being loaded waits for it (the load restarts the pump).
            Some(run) if waits_for_load(&run.1) => {
                with(|e| e.pending_run = e.pending_run.take().or(Some(run)));
                break;
            }
            Some((id, query, extras)) => run_and_report(id, &query, extras).await,
            None if !check && calibration.is_none() => break,
            None => {}
        }
    }
    with(|e| e.busy = false);
}

/// Whether a run of `query` must wait: its checkpoint is the one being loaded.
fn waits_for_load(query: &str) -> bool {
    let (state, _) = PlaygroundState::from_query(query);
    with(|e| e.loading && e.latest_load.1 == state.checkpoint)
}

/// Decoded tokens a calibration times.
const CALIBRATION_STEPS: usize = 8;

/// Times the loaded model on a state's work: one warm-up, then the median of three forward
/// passes of its prompt, and KV-cached decoding steps.
async fn calibrate(query: &str) -> Result<Timing, String> {
    let (state, _) = PlaygroundState::from_query(query);
    let (_, ready) =
        model_for(&state.checkpoint).ok_or_else(|| format!("checkpoint `{}` is not loaded", state.checkpoint))?;
    let cfg = ready.model.config();
    let mut prompt = ready.tok.encode(&state.prompt);
    prompt.truncate(cfg.max_seq_len.saturating_sub(CALIBRATION_STEPS + 1));
    if prompt.is_empty() {
        prompt.push(0);
    }
    let opts = RunOptions { dispatch: ready.model.preferred_dispatch(), ..RunOptions::for_config(cfg) };
    let forward = async || -> Result<f64, String> {
        let t0 = now_ms();
        ready.model.forward(std::slice::from_ref(&prompt), None, None, &opts).await.map_err(|e| e.to_string())?;
        Ok(now_ms() - t0)
    };
    forward().await?; // warm-up: shader compilation on WebGPU
    let mut times = [forward().await?, forward().await?, forward().await?];
    times.sort_by(f64::total_cmp);
    let (t0, before) = (now_ms(), read_backs());
    generate_greedy(&ready.model, &prompt, CALIBRATION_STEPS, &opts).await.map_err(|e| e.to_string())?;
    let decode_total = now_ms() - t0;
    // That call ran the prompt and then one step per token but the last: take the prompt out.
    let decode_ms = ((decode_total - times[1]) / (CALIBRATION_STEPS - 1) as f64).max(0.0);
    Ok(Timing {
        backend: ready.info.backend.clone(),
        adapter: ready.info.adapter.clone(),
        tokens: prompt.len(),
        forward_ms: times[1],
        decode_ms,
        read_backs_per_token: (read_backs() - before) as f64 / CALIBRATION_STEPS as f64,
    })
}

/// A load: answered at once from a kept model that fits, else loaded in its own task.
fn request_load(id: u64, name: String, webgpu: bool, pin: Option<String>, url: Option<String>) {
    with(|e| e.latest_load = (id, name.clone()));
    let kept = with(|e| {
        let at = e.models.iter().rposition(|m| {
            m.info.checkpoint == name
                && (name != HF_URL || m.info.hf.as_ref().and_then(|h| h.url.as_ref()) == url.as_ref())
                && pin.as_ref().is_none_or(|p| m.info.hash.starts_with(p.as_str()))
                && (webgpu || m.info.backend == "cpu")
        })?;
        let model = e.models.remove(at);
        e.models.push(model.clone());
        Some(model)
    });
    match kept {
        Some(model) => {
            with(|e| e.loading = false);
            post(&Reply::Ready { id, loaded: model.info.clone() });
        }
        None => {
            with(|e| e.loading = true);
            wasm_bindgen_futures::spawn_local(load_and_report(id, name, webgpu, pin, url));
        }
    }
}

/// The device to run on: WebGPU when wanted and available (in the WebGPU build), else the CPU
/// with the reason.
async fn device(webgpu: bool) -> (Device, String, String, Option<String>) {
    let cpu = |notice| (devices::cpu(), "cpu".to_string(), CPU_ADAPTER.to_string(), notice);
    if !webgpu {
        return cpu(None);
    }
    if with(|e| e.gpu.is_none()) {
        let gpu = gpu_device().await;
        with(|e| e.gpu = Some(gpu));
    }
    match with(|e| e.gpu.clone()) {
        Some(Ok((device, adapter))) => (device, "webgpu".into(), adapter, None),
        Some(Err(reason)) => cpu(Some(reason)),
        None => cpu(None),
    }
}

/// The WebGPU device and its adapter's description, or why there is none.
#[cfg(feature = "webgpu")]
async fn gpu_device() -> Result<(Device, String), String> {
    if let Some(reason) = webgpu_missing() {
        return Err(reason);
    }
    devices::wgpu().await.map(|g| (g.device, g.adapter)).map_err(|e| {
        if e.contains("No suitable graphics adapter") {
            "the browser supports WebGPU but offered no adapter (no usable GPU, or WebGPU is blocked)".to_string()
        } else {
            format!("WebGPU could not start ({e})")
        }
    })
}

/// The CPU build has no WebGPU backend.
#[cfg(not(feature = "webgpu"))]
async fn gpu_device() -> Result<(Device, String), String> {
    Err("this is the CPU engine (the page starts the WebGPU engine to use WebGPU)".into())
}

fn is_latest_load(id: u64) -> bool {
    with(|e| e.latest_load.0 == id)
}

async fn load_and_report(id: u64, name: String, webgpu: bool, pin: Option<String>, url: Option<String>) {
    let t0 = now_ms();
    scope::mark("engine: load requested");
    let result = load(id, &name, webgpu, pin.as_deref(), url.as_deref(), t0).await;
    scope::mark("engine: model ready");
    if is_latest_load(id) {
        with(|e| e.loading = false);
    }
    match result {
        Ok(ready) if is_latest_load(id) => {
            post(&Reply::Ready { id, loaded: ready.info.clone() });
            with(|e| {
                e.models.retain(|m| m.info.checkpoint != name);
                e.models.push(Rc::new(ready));
                let extra = e.models.len().saturating_sub(MODELS_KEPT);
                e.models.drain(..extra);
            });
        }
        // A newer load replaced this one while it was being built: nobody waits for it.
        Ok(_) | Err(FetchError::Superseded) => {}
        Err(FetchError::Failed(message) | FetchError::Missing(message)) => {
            if is_latest_load(id) {
                post(&Reply::LoadFailed { id, checkpoint: name, message });
            }
        }
    }
    if with(|e| e.pending_run.is_some() || e.pending_calibration.is_some()) {
        pump_if_idle();
    }
}

/// The checkpoint's file, checked (and against the pinned hash, when the link has one); a
/// cached copy that fails is forgotten and downloaded again.
async fn checkpoint_file(id: u64, name: &str, pin: Option<&str>) -> Result<((Checkpoint, String), Source), FetchError> {
    let file = format!("{name}.safetensors");
    let current = move || is_latest_load(id);
    let asset = Asset { file: &file, url: None, max_bytes: MAX_CHECKPOINT_BYTES, load: id, current: &current };
    assets::get_checked(&asset, |bytes| {
        let (ckpt, hash) = Checkpoint::from_bytes_hashed(bytes)
            .map_err(|e| format!("assets/{file} is not a usable checkpoint: {e}"))?;
        match pin {
            Some(p) if !hash.starts_with(p) => {
                Err(format!("the link pins checkpoint hash {p}…, but assets/{file} hashes to {}…", &hash[..12]))
            }
            _ => Ok((ckpt, hash)),
        }
    })
    .await
}

async fn tokenizer_for(id: u64, ckpt: &Checkpoint) -> Result<Tokenizer, FetchError> {
    if ckpt.tokenizer == "byte" {
        return Ok(Tokenizer::Byte(ByteTokenizer));
    }
    let check = |bytes: &[u8]| {
        let t = BpeTokenizer::from_json(bytes)
            .map(Tokenizer::Bpe)
            .map_err(|e| format!("assets/tokenizer.json is not a usable tokenizer: {e}"))?;
        if t.id() == ckpt.tokenizer {
            Ok(t)
        } else {
            Err(format!(
                "assets/tokenizer.json ({}) is not the tokenizer checkpoint `{}` was trained with ({})",
                t.id(),
                ckpt.name,
                ckpt.tokenizer
            ))
        }
    };
    let current = move || is_latest_load(id);
    let asset =
        Asset { file: "tokenizer.json", url: None, max_bytes: MAX_TOKENIZER_BYTES, load: id, current: &current };
    Ok(assets::get_checked(&asset, check).await?.0)
}

/// A checkpoint from where its name says, with its tokenizer when the source brings one and
/// what the page shows about a Hugging Face model.
type Sourced = ((Checkpoint, String), Source, Option<Tokenizer>, Option<HfModel>);

async fn checkpoint_for(
    id: u64,
    name: &str,
    webgpu: bool,
    pin: Option<&str>,
    url: Option<&str>,
) -> Result<Sourced, FetchError> {
    let backend = if webgpu { "WebGPU" } else { "CPU" };
    let hugging_face = |o: hf::Opened| {
        let hash = o.ckpt.content_hash();
        ((o.ckpt, hash), Source::HuggingFace, Some(o.tok), Some(o.about))
    };
    Ok(if name == SEED_INIT {
        let config = ModelConfig::tiny();
        let params = init_from_seed(&config, 0);
        let ckpt = Checkpoint { name: SEED_INIT.into(), config, params, tokenizer: "byte".into() };
        let hash = ckpt.content_hash();
        ((ckpt, hash), Source::Seed, None, None)
    } else if name == TRAINED_IN_PAGE {
        let Some(bytes) = with(|e| e.adopted.clone()) else {
            return Err(FetchError::Failed(
                "trained-in-page is a model trained in a Train view of this page, and this page has none: open Train, train it (the link keeps its settings), then Use this model".into(),
            ));
        };
        let parsed =
            Checkpoint::from_bytes_hashed(&bytes).map_err(|e| FetchError::Failed(format!("the trained model: {e}")))?;
        (parsed, Source::Trained, None, None)
    } else if name == HF_FILES {
        let files = with(|e| e.hf_files.clone());
        if files.is_empty() {
            return Err(FetchError::Failed(
                "hf-files is a Hugging Face model opened from files in a page, and this page has none: open its folder or files again (Open a Hugging Face model)".into(),
            ));
        }
        hugging_face(hf::from_files(name, &files, backend).await?)
    } else if name == HF_URL {
        let Some(url) = url else {
            return Err(FetchError::Failed("hf-url needs the folder's address: the link's hf= is missing".into()));
        };
        let current = move || is_latest_load(id);
        hugging_face(hf::from_url(id, name, url, backend, &current).await?)
    } else {
        let (ckpt, source) = checkpoint_file(id, name, pin).await?;
        (ckpt, source, None, None)
    })
}

async fn load(
    id: u64,
    name: &str,
    webgpu: bool,
    pin: Option<&str>,
    url: Option<&str>,
    t0: f64,
) -> Result<Ready, FetchError> {
    let ((ckpt, hash), source, tok, hf) = checkpoint_for(id, name, webgpu, pin, url).await?;
    if let Some(p) = pin.filter(|p| !hash.starts_with(*p) && matches!(source, Source::HuggingFace)) {
        return Err(FetchError::Failed(format!(
            "the link pins checkpoint hash {p}…, but this model hashes to {}…",
            &hash[..12]
        )));
    }
    scope::mark("engine: checkpoint read and verified");
    let tok = match tok {
        Some(t) => t,
        None => tokenizer_for(id, &ckpt).await?,
    };
    if !is_latest_load(id) {
        return Err(FetchError::Superseded);
    }
    let (device, backend, adapter, notice) = device(webgpu).await;
    let model = Model::from_params(&ckpt.config, &ckpt.params, &device).map_err(|e| e.to_string())?;
    // On WebGPU each read-back costs milliseconds: route on the device where the router allows.
    let model = if backend == "webgpu" { model.with_dispatch(Dispatch::Device) } else { model };
    let c = &ckpt.config;
    let info = Loaded {
        checkpoint: name.into(),
        hash,
        backend,
        adapter,
        notice,
        n_layers: c.n_layers,
        n_experts: c.n_experts,
        free_experts: c.free_experts.len(),
        context: c.max_seq_len,
        tokenizer: tok.id(),
        source,
        load_ms: now_ms() - t0,
        selection_bias: model.selection_bias().to_vec(),
        design: c.design_line(),
        hf,
    };
    Ok(Ready { info, model, tok, ckpt: Rc::new(ckpt) })
}

/// The kept model of `checkpoint`, with the load id that made it current.
fn model_for(checkpoint: &str) -> Option<(u64, Rc<Ready>)> {
    with(|e| {
        let m = e.models.iter().rev().find(|m| m.info.checkpoint == checkpoint)?.clone();
        Some((e.latest_load.0, m))
    })
}

/// Runs a state; on a WebGPU failure, moves to the CPU and runs it again.
async fn run_and_report(id: u64, query: &str, extras: Extras) {
    let (state, _) = PlaygroundState::from_query(query);
    let Some((load_id, ready)) = model_for(&state.checkpoint) else {
        let message = format!("checkpoint `{}` is not loaded (see the loading message above)", state.checkpoint);
        return post(&Reply::RunFailed { id, message });
    };
    match run(id, &state, extras, &ready).await {
        Err(TraceError::Model(ModelError::Backend(err))) if ready.info.backend == "webgpu" => {
            let model = match Model::from_params(&ready.ckpt.config, &ready.ckpt.params, &devices::cpu()) {
                Ok(m) => m,
                Err(e) => return post(&Reply::RunFailed { id, message: e.to_string() }),
            };
            let mut info = ready.info.clone();
            info.backend = "cpu".into();
            info.adapter = CPU_ADAPTER.into();
            info.notice = Some(format!("WebGPU failed during a run ({err}); switched to the CPU backend"));
            let cpu = Rc::new(Ready { info: info.clone(), model, tok: ready.tok.clone(), ckpt: ready.ckpt.clone() });
            with(|e| {
                e.models.retain(|m| !Rc::ptr_eq(m, &ready));
                e.models.push(cpu.clone());
                e.gpu = Some(Err("WebGPU failed during a run".into()));
            });
            post(&Reply::Ready { id: load_id, loaded: info });
            if let Err(e) = run(id, &state, extras, &cpu).await {
                post(&Reply::RunFailed { id, message: e.to_string() });
            }
        }
        Err(e) => post(&Reply::RunFailed { id, message: e.to_string() }),
        Ok(()) => {}
    }
}

/// The result of a view's extra computation: its error goes to that view as text, except a
/// backend error, which is returned (the engine then moves to the CPU as for any run).
fn view_result<T>(r: Result<T, TraceError>, what: &str) -> Result<Result<T, String>, TraceError> {
    match r {
        Err(TraceError::Model(ModelError::Backend(e))) => Err(TraceError::Model(ModelError::Backend(e))),
        Err(e) => Ok(Err(format!("{what}{e}"))),
        Ok(v) => Ok(Ok(v)),
    }
}

/// Whether run `id` on `checkpoint` is still wanted: no newer run, no load of another checkpoint.
fn still_wanted(id: u64, checkpoint: &str) -> bool {
    with(|e| e.latest_run == id && e.latest_load.1 == checkpoint)
}

async fn run(id: u64, state: &PlaygroundState, extras: Extras, ready: &Ready) -> Result<(), TraceError> {
    if let Some(prefix) = &state.checkpoint_hash
        && !ready.info.hash.starts_with(prefix.as_str())
    {
        post(&Reply::RunFailed {
            id,
            message: format!(
                "the link pins checkpoint hash {prefix}…, but the loaded `{}` hashes to {}…",
                ready.info.checkpoint,
                &ready.info.hash[..12]
            ),
        });
        return Ok(());
    }
    let name = ready.info.checkpoint.as_str();
    let t0 = now_ms();
    let tok = &ready.tok;
    scope::mark("engine: run started");
    let mut stream = TokenStream::new(id, t0);
    let on_token = async |token: u32| {
        stream.push(tok.display(token)).await;
        still_wanted(id, name)
    };
    let backend = if ready.info.backend == "webgpu" { "wgpu (WebGPU, in the page)" } else { "cpu (flex, in the page)" };
    let before = read_backs();
    let trace =
        switchyard_trace::trace(&ready.model, tok, state, &ready.info.hash, backend, (None, None), on_token).await?;
    let read_backs = read_backs() - before;
    if !still_wanted(id, name) {
        return Ok(()); // superseded: nobody will draw it
    }
    stream.flush();
    let tokens_per_s = stream.tokens_per_s();
    let ids: Vec<u32> = trace.tokens.iter().map(|t| t.id).collect();
    // The extras of the open view (A's trace is drawn even when they fail).
    let comparison = if extras.compare {
        view_result(switchyard_trace::compare(&ready.model, state, &ids).await, "configuration B could not run: ")?
            .transpose()
            .map(|c| c.map(Box::new))
    } else {
        None
    };
    yield_now().await;
    if !still_wanted(id, name) {
        return Ok(());
    }
    let domains = if extras.domains { Some(domain_shares(state, ready).await?) } else { None };
    if !still_wanted(id, name) {
        return Ok(());
    }
    let run_ms = now_ms() - t0;
    let mut shown: Vec<u32> =
        trace.steps.iter().flat_map(|s| s.strong.iter().chain(&s.weak).chain(&s.contrast)).map(|&(t, _)| t).collect();
    if let Some(Ok(c)) = &comparison {
        shown.extend(c.a.next.iter().chain(&c.b.next).flatten().map(|&(t, _)| t));
    }
    shown.sort_unstable();
    shown.dedup();
    let candidate_text = shown.into_iter().map(|t| (t, tok.display(t))).collect();
    let trace = Box::new(trace);
    let reply = Reply::Traced {
        id,
        trace,
        run_ms,
        tokens_per_s,
        read_backs,
        candidate_text,
        comparison,
        domains,
        recorded: None,
    };
    scope::mark("engine: trace computed");
    post_checked(id, &reply);
    scope::mark("engine: trace posted");
    Ok(())
}

/// The generated tokens of one run on their way to the page: the first at once, then one
/// message per ~16 ms (a frame); and the event loop let in every 40 ms, so a newer request can
/// stop the run.
struct TokenStream {
    id: u64,
    t0: f64,
    pending: Vec<String>,
    count: usize,
    first: Option<f64>,
    last: f64,
    last_post: f64,
    last_yield: f64,
}

impl TokenStream {
    const POST_EVERY_MS: f64 = 16.0;
    const YIELD_EVERY_MS: f64 = 40.0;

    fn new(id: u64, t0: f64) -> Self {
        Self { id, t0, pending: Vec::new(), count: 0, first: None, last: t0, last_post: t0, last_yield: t0 }
    }

    async fn push(&mut self, text: String) {
        self.count += 1;
        let now = now_ms();
        self.first.get_or_insert(now);
        self.last = now;
        self.pending.push(text);
        if self.count == 1 || now - self.last_post >= Self::POST_EVERY_MS {
            self.flush();
        }
        if now - self.last_yield > Self::YIELD_EVERY_MS {
            yield_now().await;
            self.last_yield = now_ms();
        }
    }

    /// Posts the tokens not sent yet.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let texts = std::mem::take(&mut self.pending);
        self.last_post = now_ms();
        post(&Reply::Tokens { id: self.id, texts, count: self.count, elapsed_ms: self.last - self.t0 });
    }

    /// Steady decoding speed: from the first generated token to the last.
    fn tokens_per_s(&self) -> Option<f64> {
        let first = self.first.filter(|_| self.count >= 2)?;
        Some((self.count - 1) as f64 / ((self.last - first).max(1e-3) / 1000.0))
    }
}

/// Posts a finished run, or says plainly that it cannot be sent: JSON writes NaN and infinities
/// as `null`, which the page cannot read back, so the reply is read back here first (a few
/// milliseconds for hundreds of tokens) and a run that produced one becomes a clear error.
pub(crate) fn post_checked(id: u64, reply: &Reply) {
    let json = reply.to_json();
    match serde_json::from_str::<Reply>(&json) {
        Ok(_) => scope::post_json(&json),
        Err(e) => post(&Reply::RunFailed {
            id,
            message: format!(
                "this configuration produced a value that is not a number (NaN or infinity) in its results ({e}); try other settings"
            ),
        }),
    }
}

/// The domain × expert shares of the state's router, from the cache when only the prompt or
/// the generation changed.
async fn domain_shares(state: &PlaygroundState, ready: &Ready) -> Result<Result<DomainShares, String>, TraceError> {
    let key = {
        let mut s = PlaygroundState { prompt: String::new(), generate: 0, ..state.clone() };
        s.view = Default::default();
        format!("{}|{}", ready.info.hash, s.to_query())
    };
    if let Some(shares) = with(|e| e.domains.as_ref().filter(|(k, _)| *k == key).map(|(_, d)| d.clone())) {
        return Ok(Ok(shares));
    }
    let mut texts: Vec<(String, String)> =
        EXAMPLES.iter().map(|e| (e.domain.to_string(), e.text.to_string())).collect();
    texts.extend(state.labelled.iter().map(|l| (l.label.clone(), l.text.clone())));
    let shares = view_result(switchyard_trace::domain_shares(&ready.model, &ready.tok, state, &texts).await, "")?;
    if let Ok(d) = &shares {
        with(|e| e.domains = Some((key, d.clone())));
    }
    Ok(shares)
}
