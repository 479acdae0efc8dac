//! The training worker (feature `train`; the `engine-train` module, which the page starts only
//! when the Train view opens): trains a small MoE on the shipped samples with the native
//! trainer's recipes and losses (`switchyard_model::train`), one step per macrotask, so the
//! page never blocks and a Pause is seen after the step in flight.
//!
//! The message handler only records what was asked; one driver task does the work in order:
//! a new run, an export, then steps while playing.

use std::cell::RefCell;

use switchyard_analysis::domain_distribution;
use switchyard_model::corpus::{Domain, split_text};
use switchyard_model::train::{Recipe, TokenizedCorpus, TrainConfig, Trainer};
use switchyard_model::{ByteTokenizer, Checkpoint, Device, ModelConfig, RunOptions, Tokenizer, eval_tokens};
use switchyard_protocol::training::{HeldOut, TRAIN_SAMPLES, TrainPoint, TrainReply, TrainRequest};
use switchyard_state::{TrainRecipe, TrainSettings};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::MessageEvent;

use crate::scope::{self, now_ms, yield_now};

/// Tokens per training sequence, and sequences per step.
const SEQ_LEN: usize = 64;
const BATCH: usize = 8;
/// Held-out bytes scored per domain at each measurement, and how often (steps).
const HELD_OUT_BYTES: usize = 512;
const HELD_OUT_EVERY: u64 = 25;
/// How often progress is posted (the page redraws its charts per report).
const REPORT_MS: f64 = 150.0;

/// A run being trained.
struct Run {
    id: u64,
    trainer: Trainer,
    data: TokenizedCorpus,
    steps: u64,
    /// Points not yet reported, and when the last report went out.
    points: Vec<TrainPoint>,
    last_report: f64,
    /// Tokens and milliseconds since the last report (throughput).
    window: (usize, f64),
    /// The held-out measurement taken at a measuring step, not reported yet.
    held: Option<HeldOut>,
}

#[derive(Default)]
struct State {
    run: Option<Run>,
    /// A run to build, replacing the current one.
    start: Option<(u64, TrainSettings, String, bool)>,
    playing: bool,
    step_once: bool,
    export: bool,
    driving: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

fn post(reply: &TrainReply) {
    scope::post_json(&serde_json::to_string(reply).unwrap_or_default());
}

/// Starts listening for the page's training requests.
pub fn start() {
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let Some(text) = event.data().as_string() else { return };
        match serde_json::from_str::<TrainRequest>(&text) {
            Ok(TrainRequest::Start { id, settings, own_text, play }) => {
                with(|s| s.start = Some((id, settings, own_text, play)))
            }
            Ok(TrainRequest::Play) => with(|s| s.playing = true),
            Ok(TrainRequest::Pause) => with(|s| {
                s.playing = false;
                s.step_once = false;
            }),
            Ok(TrainRequest::Step) => with(|s| {
                s.playing = false;
                s.step_once = true;
            }),
            Ok(TrainRequest::Export) => with(|s| s.export = true),
            Err(e) => {
                post(&TrainReply::Failed { id: 0, message: format!("the trainer could not read a request: {e}") })
            }
        }
        if !with(|s| std::mem::replace(&mut s.driving, true)) {
            wasm_bindgen_futures::spawn_local(drive());
        }
    });
    scope::global().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    scope::post_json("\"started\"");
}

/// Does what was asked, in order, until nothing is left.
async fn drive() {
    loop {
        yield_now().await;
        if let Some((id, settings, own, play)) = with(|s| s.start.take()) {
            with(|s| s.run = None);
            match build(id, &settings, &own).await {
                Ok(run) => {
                    post(&TrainReply::Ready {
                        id,
                        parameters: switchyard_model::param_count(run.trainer.model_config()),
                        train_tokens: run.data.train_tokens(),
                    });
                    with(|s| {
                        s.run = Some(run);
                        s.playing = play;
                    });
                }
                Err(message) => post(&TrainReply::Failed { id, message }),
            }
            continue;
        }
        let Some(mut run) = with(|s| s.run.take()) else {
            with(|s| s.driving = false);
            return;
        };
        if with(|s| std::mem::take(&mut s.export)) {
            export(&run).await;
        }
        let (playing, once) = with(|s| (s.playing, std::mem::take(&mut s.step_once)));
        let more = run.trainer.step_index() < run.steps;
        if (playing || once)
            && more
            && let Err(message) = step(&mut run).await
        {
            post(&TrainReply::Failed { id: run.id, message });
            with(|s| s.playing = false);
        }
        let finished = run.trainer.step_index() >= run.steps;
        let stopped = !with(|s| s.playing) || finished;
        if stopped || now_ms() - run.last_report >= REPORT_MS {
            report(&mut run);
        }
        if stopped {
            post(&TrainReply::Stopped { id: run.id, step: run.trainer.step_index(), finished });
        }
        let idle = stopped && with(|s| s.start.is_none() && !s.export && !s.step_once);
        with(|s| s.run = Some(run));
        if idle {
            with(|s| s.driving = false);
            return;
        }
    }
}

/// The in-page model for `t`: byte tokens, 4 heads (2 KV heads), experts of twice the width.
pub fn model_config(t: &TrainSettings) -> ModelConfig {
    ModelConfig {
        vocab_size: 256,
        d_model: t.width,
        n_layers: t.layers,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 2 * t.width,
        n_experts: t.experts,
        top_k: t.k.min(t.experts),
        max_seq_len: SEQ_LEN,
        ..ModelConfig::tiny()
    }
}

/// The native trainer's settings for `t` (one implementation, native and in the page).
pub fn train_config(t: &TrainSettings) -> TrainConfig {
    let k = t.k.clamp(1, t.experts);
    let recipe = match t.recipe {
        TrainRecipe::Topk => Recipe::Topk { k, lbl_coef: t.lbl, z_coef: t.z, lbl_window: 1 },
        TrainRecipe::Switch => Recipe::Topk { k: 1, lbl_coef: t.lbl, z_coef: t.z, lbl_window: 1 },
        TrainRecipe::Thor => Recipe::Thor { alpha: 1.0 },
        TrainRecipe::SmoeDropout => Recipe::SmoeDropout { k_min: 2.min(t.experts), k_max: t.experts, init_std: 0.02 },
        // Ten times the native γ: in-page runs are about ten times shorter, and the bias must
        // have time to balance within them.
        TrainRecipe::Lossfree => Recipe::Lossfree { k, gamma: 1e-2 },
    };
    TrainConfig {
        recipe,
        steps: t.steps,
        batch_size: BATCH,
        seq_len: SEQ_LEN,
        lr: t.lr,
        min_lr: t.lr / 10.0,
        warmup: (t.steps / 10).clamp(1, 20),
        weight_decay: 0.01,
        beta_2: 0.95,
        grad_clip: 1.0,
        seed: t.seed,
    }
}

/// Fetches the samples the mix weighs above 0, adds the person's text, builds the trainer.
async fn build(id: u64, t: &TrainSettings, own: &str) -> Result<Run, String> {
    let mut domains = Vec::new();
    let mut weights = Vec::new();
    for name in TRAIN_SAMPLES.iter().filter(|n| t.weight(n) > 0.0) {
        let response = scope::fetch(&scope::url(&format!("assets/train/{name}.txt"))).await?;
        let bytes = scope::body_bytes(&response).await?;
        domains.push(split_text(name, &String::from_utf8_lossy(&bytes)));
        weights.push(f64::from(t.weight(name)));
    }
    if !own.trim().is_empty() {
        // The corpus rule cuts at a line break after 95 %; a pasted text may have none, so its
        // held-out slice is its last 5 % at a character boundary.
        let mut cut = own.len() * 95 / 100;
        while !own.is_char_boundary(cut) {
            cut += 1;
        }
        domains.push(Domain { name: "yours".into(), train: own[..cut].into(), validation: own[cut..].into() });
        weights.push(f64::from(t.weight("yours")));
    }
    if domains.is_empty() {
        return Err("the data mix gives every sample weight 0: raise one, or paste a text of your own".into());
    }
    let data = TokenizedCorpus::new(&domains, &Tokenizer::Byte(ByteTokenizer)).with_weights(weights);
    if data.train.iter().all(|d| d.len() <= SEQ_LEN + 1) {
        return Err(format!("the data mix has no text of more than {} bytes to train on", SEQ_LEN + 1));
    }
    let trainer =
        Trainer::new(&model_config(t), train_config(t), "byte", &Device::flex()).map_err(|e| e.to_string())?;
    Ok(Run {
        id,
        trainer,
        data,
        steps: t.steps,
        points: Vec::new(),
        last_report: now_ms(),
        window: (0, 0.0),
        held: None,
    })
}

async fn step(run: &mut Run) -> Result<(), String> {
    let cfg = run.trainer.config().clone();
    let batch = run.data.batch(cfg.seed, run.trainer.step_index(), cfg.batch_size, cfg.seq_len + 1);
    let t0 = now_ms();
    let stats = run.trainer.step(&batch).await.map_err(|e| e.to_string())?;
    run.window.0 += cfg.batch_size * cfg.seq_len;
    run.window.1 += now_ms() - t0;
    // Measured at exactly these steps, so a link's maps are the same in every run.
    let done = stats.step + 1;
    let measure = done % HELD_OUT_EVERY == 0 || done == run.steps;
    run.points.push(TrainPoint {
        step: stats.step + 1,
        ce: stats.ce,
        lbl: stats.lbl,
        entropy: stats.entropy,
        confidence: stats.confidence,
        k: stats.k,
        load: stats.load,
    });
    if measure {
        run.held = held_out(run).await.ok();
    }
    Ok(())
}

/// Posts the points since the last report, with the held-out loss and domain × expert map
/// measured since (every [`HELD_OUT_EVERY`] steps and at the last).
fn report(run: &mut Run) {
    if run.points.is_empty() && run.held.is_none() && run.trainer.step_index() > 0 {
        return;
    }
    let held_out = run.held.take();
    let (tokens, ms) = std::mem::take(&mut run.window);
    let bias = run.trainer.selection_bias().to_vec();
    post(&TrainReply::Progress {
        id: run.id,
        points: std::mem::take(&mut run.points),
        tokens_per_s: if ms > 0.0 { tokens as f64 / ms * 1000.0 } else { 0.0 },
        bias,
        held_out,
    });
    run.last_report = now_ms();
}

async fn held_out(run: &Run) -> Result<HeldOut, String> {
    let model = run.trainer.inference_model(&Device::flex()).await.map_err(|e| e.to_string())?;
    let opts = RunOptions {
        router: run.trainer.config().recipe.inference_router(model.config()),
        ..RunOptions::for_config(model.config())
    };
    let tok = Tokenizer::Byte(ByteTokenizer);
    let (mut nats, mut bytes) = (0.0, 0usize);
    let mut share: Vec<Vec<Vec<f64>>> = vec![Vec::new(); model.config().n_layers];
    for ids in &run.data.validation {
        let ids = &ids[..ids.len().min(HELD_OUT_BYTES)];
        let out = eval_tokens(&model, ids, &tok, SEQ_LEN, 8, &opts, true).await.map_err(|e| e.to_string())?;
        nats += out.eval.nats;
        bytes += out.eval.bytes;
        for (layer, rec) in out.routing.layers.iter().enumerate() {
            share[layer].push(domain_distribution([("d", rec)]).remove("d").unwrap_or_default());
        }
        yield_now().await;
    }
    Ok(HeldOut {
        step: run.trainer.step_index(),
        ce: if bytes > 0 { nats / bytes as f64 } else { f64::NAN },
        domains: run.data.names.clone(),
        share,
    })
}

/// Posts the current weights as safetensors bytes (a `Uint8Array` message).
async fn export(run: &Run) {
    let result = async {
        let params = run.trainer.params().await.map_err(|e| e.to_string())?;
        let ckpt = Checkpoint {
            name: "trained-in-page".into(),
            config: run.trainer.model_config().clone(),
            params,
            tokenizer: "byte".into(),
        };
        ckpt.to_bytes().map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(bytes) => {
            let _ = scope::global().post_message(&js_sys::Uint8Array::from(bytes.as_slice()));
        }
        Err(message) => post(&TrainReply::Failed { id: run.id, message }),
    }
}
