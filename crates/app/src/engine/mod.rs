//! The engine: the Web Worker that owns the model. It loads checkpoints (with progress and the
//! Cache API), picks WebGPU or the CPU backend, and runs playground states into routing traces
//! without ever blocking the page. Requests are handled one at a time by a pump; a newer run
//! replaces a queued one and stops a running generation at its next token.

mod assets;
mod scope;

use std::cell::RefCell;
use std::rc::Rc;

use switchyard_model::{
    BpeTokenizer, ByteTokenizer, Checkpoint, Device, Model, ModelConfig, ModelError, Tokenizer, devices, init_from_seed,
};
use switchyard_state::{Panel, PlaygroundState};
use switchyard_trace::{DomainShares, TraceError};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::MessageEvent;

pub use scope::{body_bytes, fetch, js_text, now_ms, url, webgpu_missing};
use scope::{post, yield_now};

use crate::protocol::{Loaded, Reply, Request, Source};

/// How the CPU backend is described in the page.
pub(crate) const CPU_ADAPTER: &str = "burn flex (CPU, wasm)";

/// The checkpoint initialised from a seed instead of loaded.
pub const SEED_INIT: &str = "seed-init";

/// A model ready to run.
struct Ready {
    info: Loaded,
    model: Model,
    tok: Tokenizer,
    /// The parameters, kept to rebuild the model on the CPU if the GPU fails.
    ckpt: Rc<Checkpoint>,
}

#[derive(Default)]
struct Engine {
    ready: Option<Rc<Ready>>,
    /// The WebGPU device, acquired once per worker (or why there is none).
    gpu: Option<Result<devices::GpuDevice, String>>,
    pending_load: Option<(String, bool)>,
    pending_run: Option<(u64, String)>,
    pending_check: bool,
    latest_run: u64,
    busy: bool,
    /// The last domain shares, by what they depend on (checkpoint hash and the state without
    /// prompt and generation): typing a prompt with the domain view open does not redo them.
    domains: Option<(String, DomainShares)>,
}

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::default());
}

fn with<R>(f: impl FnOnce(&mut Engine) -> R) -> R {
    ENGINE.with(|e| f(&mut e.borrow_mut()))
}

/// Starts listening for requests (the worker's `main`).
pub fn start() {
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let Some(text) = event.data().as_string() else { return };
        match serde_json::from_str::<Request>(&text) {
            Ok(Request::Load { checkpoint, webgpu }) => with(|e| e.pending_load = Some((checkpoint, webgpu))),
            Ok(Request::Run { id, query }) => with(|e| {
                e.latest_run = e.latest_run.max(id);
                e.pending_run = Some((id, query));
            }),
            Ok(Request::Check) => with(|e| e.pending_check = true),
            Ok(Request::Crash) => panic!("test hook: the engine was asked to fail as a lost GPU would"),
            Err(err) => {
                post(&Reply::RunFailed { id: 0, message: format!("the engine could not read a request: {err}") });
                return;
            }
        }
        if !with(|e| std::mem::replace(&mut e.busy, true)) {
            wasm_bindgen_futures::spawn_local(pump());
        }
    });
    scope::global().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&Reply::Started);
}

/// Works through the queued requests: loads first, then the latest run.
async fn pump() {
    loop {
        // Let a burst of messages arrive before choosing what to do.
        yield_now().await;
        let (load, check, run) =
            with(|e| (e.pending_load.take(), std::mem::take(&mut e.pending_check), e.pending_run.take()));
        if let Some((name, webgpu)) = load {
            with(|e| e.pending_run = e.pending_run.take().or(run));
            load_and_report(&name, webgpu).await;
            continue;
        }
        if check {
            post(&Reply::Checked(Box::new(crate::backend_check::report().await)));
        }
        match run {
            Some((id, query)) => run_and_report(id, &query).await,
            None if !check => break,
            None => {}
        }
    }
    with(|e| e.busy = false);
}

/// The device to run on: WebGPU when wanted and available, else the CPU with the reason.
async fn device(webgpu: bool) -> (Device, String, String, Option<String>) {
    let cpu = |notice| (devices::cpu(), "cpu".to_string(), CPU_ADAPTER.to_string(), notice);
    if !webgpu {
        return cpu(Some("WebGPU is not used in this session after it failed; running on the CPU".into()));
    }
    if with(|e| e.gpu.is_none()) {
        let gpu = match webgpu_missing() {
            Some(reason) => Err(reason),
            None => devices::wgpu().await.map_err(|e| {
                if e.contains("No suitable graphics adapter") {
                    "the browser supports WebGPU but offered no adapter (no usable GPU, or WebGPU is blocked)"
                        .to_string()
                } else {
                    format!("WebGPU could not start ({e})")
                }
            }),
        };
        with(|e| e.gpu = Some(gpu));
    }
    match with(|e| e.gpu.clone()) {
        Some(Ok(g)) => (g.device, "webgpu".into(), g.adapter, None),
        Some(Err(reason)) => cpu(Some(reason)),
        None => cpu(None),
    }
}

async fn load_and_report(name: &str, webgpu: bool) {
    let t0 = now_ms();
    match load(name, webgpu, t0).await {
        Ok(ready) => {
            post(&Reply::Ready(ready.info.clone()));
            with(|e| e.ready = Some(Rc::new(ready)));
        }
        Err(message) => {
            with(|e| e.ready = None);
            post(&Reply::LoadFailed { checkpoint: name.into(), message });
        }
    }
}

/// The checkpoint's file, checked; a corrupt cached copy is forgotten and downloaded again.
async fn checkpoint_file(name: &str) -> Result<(Checkpoint, Source), String> {
    let file = format!("{name}.safetensors");
    assets::get_checked(&file, |bytes| {
        Checkpoint::from_bytes(bytes).map_err(|e| format!("assets/{file} is not a usable checkpoint: {e}"))
    })
    .await
}

async fn tokenizer_for(ckpt: &Checkpoint) -> Result<Tokenizer, String> {
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
    Ok(assets::get_checked("tokenizer.json", check).await?.0)
}

async fn load(name: &str, webgpu: bool, t0: f64) -> Result<Ready, String> {
    let (ckpt, source) = if name == SEED_INIT {
        let config = ModelConfig::tiny();
        let params = init_from_seed(&config, 0);
        (Checkpoint { name: SEED_INIT.into(), config, params, tokenizer: "byte".into() }, Source::Seed)
    } else {
        checkpoint_file(name).await?
    };
    let tok = tokenizer_for(&ckpt).await?;
    let (device, backend, adapter, notice) = device(webgpu).await;
    let model = Model::from_params(&ckpt.config, &ckpt.params, &device).map_err(|e| e.to_string())?;
    let c = &ckpt.config;
    let info = Loaded {
        checkpoint: name.into(),
        hash: ckpt.content_hash(),
        backend,
        adapter,
        notice,
        n_layers: c.n_layers,
        n_experts: c.n_experts,
        context: c.max_seq_len,
        tokenizer: tok.id(),
        source,
        load_ms: now_ms() - t0,
    };
    Ok(Ready { info, model, tok, ckpt: Rc::new(ckpt) })
}

/// Runs a state; on a WebGPU failure, moves to the CPU and runs it again.
async fn run_and_report(id: u64, query: &str) {
    let Some(ready) = with(|e| e.ready.clone()) else {
        post(&Reply::RunFailed { id, message: "no checkpoint is loaded (see the loading message above)".into() });
        return;
    };
    match run(id, query, &ready).await {
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
                e.ready = Some(cpu.clone());
                e.gpu = Some(Err("WebGPU failed during a run".into()));
            });
            post(&Reply::Ready(info));
            if let Err(e) = run(id, query, &cpu).await {
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

async fn run(id: u64, query: &str, ready: &Ready) -> Result<(), TraceError> {
    let (state, _) = PlaygroundState::from_query(query);
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
    let t0 = now_ms();
    let (mut count, mut first, mut last, mut last_yield) = (0usize, None::<f64>, t0, t0);
    let tok = &ready.tok;
    let on_token = async |token: u32| {
        count += 1;
        let now = now_ms();
        first.get_or_insert(now);
        last = now;
        post(&Reply::Token { id, text: tok.display(token), count, elapsed_ms: now - t0 });
        // Let newer requests in now and then (a timer turn costs up to 4 ms in a worker).
        if now - last_yield > 40.0 {
            yield_now().await;
            last_yield = now_ms();
        }
        with(|e| e.latest_run == id)
    };
    let backend = if ready.info.backend == "webgpu" { "wgpu (WebGPU, in the page)" } else { "cpu (flex, in the page)" };
    let trace =
        switchyard_trace::trace(&ready.model, tok, &state, &ready.info.hash, backend, (None, None), on_token).await?;
    if with(|e| e.latest_run != id) {
        return Ok(()); // superseded: nobody will draw it
    }
    // Steady decoding speed: from the first generated token to the last.
    let tokens_per_s = first.filter(|_| count >= 2).map(|f| (count - 1) as f64 / ((last - f).max(1e-3) / 1000.0));
    let ids: Vec<u32> = trace.tokens.iter().map(|t| t.id).collect();
    // The extras of the open view (A's trace is drawn even when they fail).
    let comparison =
        view_result(switchyard_trace::compare(&ready.model, &state, &ids).await, "configuration B could not run: ")?
            .transpose()
            .map(|c| c.map(Box::new));
    yield_now().await;
    if with(|e| e.latest_run != id) {
        return Ok(());
    }
    let domains = if state.view.panel == Panel::Domains {
        let key = {
            let mut s = PlaygroundState { prompt: String::new(), generate: 0, ..state.clone() };
            s.view = Default::default();
            format!("{}|{}", ready.info.hash, s.to_query())
        };
        match with(|e| e.domains.as_ref().filter(|(k, _)| *k == key).map(|(_, d)| d.clone())) {
            Some(shares) => Some(Ok(shares)),
            None => {
                let mut texts: Vec<(String, String)> =
                    crate::ui::EXAMPLES.iter().map(|e| (e.domain.to_string(), e.text.to_string())).collect();
                texts.extend(state.labelled.iter().map(|l| (l.label.clone(), l.text.clone())));
                let shares = view_result(switchyard_trace::domain_shares(&ready.model, tok, &state, &texts).await, "")?;
                if let Ok(d) = &shares {
                    with(|e| e.domains = Some((key, d.clone())));
                }
                Some(shares)
            }
        }
    } else {
        None
    };
    if with(|e| e.latest_run != id) {
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
    post(&Reply::Traced { id, trace: Box::new(trace), run_ms, tokens_per_s, candidate_text, comparison, domains });
    Ok(())
}
