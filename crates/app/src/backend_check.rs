//! The backend check (`#backend-check`): the same seeded model and prompt through burn's CPU
//! (flex) backend and its wgpu backend on WebGPU, with the results side by side. The engine
//! worker computes the [`Report`]; the page shows it.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use switchyard_model::{BpeTokenizer, Device, Model, ModelConfig, RunOptions, Tokenizer, devices};

use crate::engine::now_ms;

/// The prompt every backend runs (byte-level tokens).
const PROMPT: &str = "fn main() { println!(\"Bonjour, monde!\"); } // 12 + 30 = 42";
/// Seed of the model initialisation.
const SEED: u64 = 0;

/// What one backend produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendResult {
    /// `cpu` or `webgpu`.
    pub backend: String,
    /// Adapter or device description.
    pub adapter: String,
    /// Wall time of the forward pass (ms), readback included.
    pub forward_ms: f64,
    /// All logits of the last position.
    pub last_logits: Vec<f32>,
    /// Sum of all logits (a checksum a person can compare).
    pub logits_sum: f64,
    /// Top expert of every token at every layer.
    pub top_experts: Vec<Vec<u32>>,
}

/// Text the shipped tokenizer encodes in the page (the browser test encodes it natively too).
pub const TOKENIZER_SAMPLE: &str = "fn main() { println!(\"Bonjour, été ✓\"); } // 12 + 30 = 42\nThe cat sat.";

/// The shipped tokenizer, loaded and run in the page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenizerCheck {
    /// `bpe:` + SHA-256 of the file.
    pub id: String,
    /// Ids of [`TOKENIZER_SAMPLE`].
    pub ids: Vec<u32>,
    /// Their printable pieces.
    pub pieces: Vec<String>,
    /// Whether decoding the ids gives the sample back.
    pub round_trip: bool,
}

/// The page's report, also rendered as JSON for the browser test.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// CPU result or the error.
    pub cpu: Option<Result<BackendResult, String>>,
    /// WebGPU result or the reason it did not run.
    pub webgpu: Option<Result<BackendResult, String>>,
    /// Largest absolute logit difference between the two, when both ran.
    pub max_abs_diff: Option<f32>,
    /// Whether both backends chose the same top expert for every token and layer.
    pub same_routing: Option<bool>,
    /// The shipped tokenizer in the page, or why it could not load.
    pub tokenizer: Option<Result<TokenizerCheck, String>>,
    /// True once every backend has finished or failed.
    pub done: bool,
}

/// Fetches `assets/tokenizer.json` (relative to the page) and encodes the sample with it.
async fn check_tokenizer() -> Result<TokenizerCheck, String> {
    let response = crate::engine::fetch(&crate::engine::url("assets/tokenizer.json")).await?;
    let bytes = crate::engine::body_bytes(&response).await?;
    let tok = Tokenizer::Bpe(BpeTokenizer::from_json(&bytes).map_err(|e| e.to_string())?);
    let ids = tok.encode(TOKENIZER_SAMPLE);
    Ok(TokenizerCheck {
        id: tok.id(),
        pieces: ids.iter().map(|&i| tok.display(i)).collect(),
        round_trip: tok.decode(&ids) == TOKENIZER_SAMPLE,
        ids,
    })
}

async fn run_on(device: Device, backend: &str, adapter: String) -> Result<BackendResult, String> {
    let cfg = ModelConfig::tiny();
    let tokens: Vec<u32> = PROMPT.bytes().map(u32::from).collect();
    let model = Model::from_seed(&cfg, SEED, &device).map_err(|e| e.to_string())?;
    let t0 = now_ms();
    let out = model.forward(&[tokens], None, None, &RunOptions::for_config(&cfg)).await.map_err(|e| e.to_string())?;
    let all = out
        .logits
        .into_data_async()
        .await
        .map_err(|e| format!("{e:?}"))?
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    let forward_ms = now_ms() - t0;
    let v = cfg.vocab_size;
    let top_experts = out
        .routing
        .layers
        .iter()
        .map(|rec| (0..rec.num_tokens()).map(|t| rec.top_expert(t).map_or(u32::MAX, |e| e as u32)).collect())
        .collect();
    Ok(BackendResult {
        backend: backend.into(),
        adapter,
        forward_ms,
        logits_sum: all.iter().map(|&x| f64::from(x)).sum(),
        last_logits: all[all.len() - v..].to_vec(),
        top_experts,
    })
}

async fn run_webgpu() -> Result<BackendResult, String> {
    if let Some(reason) = crate::engine::webgpu_missing() {
        return Err(reason);
    }
    let gpu = devices::wgpu().await.map_err(|e| format!("the browser offered no usable WebGPU adapter ({e})"))?;
    run_on(gpu.device, "webgpu", gpu.adapter).await
}

fn compare(report: &mut Report) {
    if let (Some(Ok(a)), Some(Ok(b))) = (&report.cpu, &report.webgpu) {
        report.max_abs_diff =
            Some(a.last_logits.iter().zip(&b.last_logits).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max));
        report.same_routing = Some(a.top_experts == b.top_experts);
    }
}

/// One backend's card.
#[component]
fn BackendCard(
    /// Card title.
    title: &'static str,
    /// `cpu` or `webgpu`, used for the test id.
    id: &'static str,
    /// The result, `None` while running.
    result: Signal<Option<Result<BackendResult, String>>>,
) -> impl IntoView {
    view! {
        <section class="card" data-testid=format!("{id}-card")>
            <h2>{title}</h2>
            {move || match result.get() {
                None => view! { <p class="pending" data-testid=format!("{id}-status")>"running…"</p> }.into_any(),
                Some(Err(e)) => view! {
                    <p class="error" data-testid=format!("{id}-status")>"not available: " {e}</p>
                    <p class="note">"The CPU backend is used instead."</p>
                }.into_any(),
                Some(Ok(r)) => view! {
                    <div data-testid=format!("{id}-status") class="ok">
                        <p>"ran on " <strong>{r.backend.clone()}</strong> " — " {r.adapter.clone()}</p>
                        <p>{format!("forward pass of {} tokens: {:.1} ms", PROMPT.len(), r.forward_ms)}</p>
                        <p>{format!("logits checksum: {:.6}", r.logits_sum)}</p>
                        <p>"layer 0 top experts: " <code>{r.top_experts.first().map(|l| l.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")).unwrap_or_default()}</code></p>
                    </div>
                }.into_any(),
            }}
        </section>
    }
}

/// Runs the whole check (in the engine worker).
pub async fn report() -> Report {
    let mut report = Report {
        cpu: Some(run_on(devices::cpu(), "cpu", crate::engine::CPU_ADAPTER.into()).await),
        ..Report::default()
    };
    report.tokenizer = Some(check_tokenizer().await);
    report.webgpu = Some(run_webgpu().await);
    compare(&mut report);
    report.done = true;
    report
}

/// The backend check page.
#[component]
pub fn BackendCheck(
    /// The engine's report, `None` while it runs.
    report: Signal<Option<Report>>,
) -> impl IntoView {
    let get = move || report.get().unwrap_or_default();
    let cpu = Signal::derive(move || get().cpu);
    let gpu = Signal::derive(move || get().webgpu);
    let json = move || serde_json::to_string(&get()).unwrap_or_default();
    view! {
        <main class="check">
            <h1>"Switchyard — backend check"</h1>
            <p class="lede">"One seeded MoE model (d=128, 4 layers, 8 experts, top-2), one prompt, two backends, run in the engine worker. "
                <a href="./">"Back to the playground"</a></p>
            <p><code>{PROMPT}</code></p>
            <div class="cards">
                <BackendCard title="CPU (burn flex)" id="cpu" result=cpu />
                <BackendCard title="WebGPU (burn wgpu)" id="webgpu" result=gpu />
            </div>
            <p data-testid="agreement">{move || {
                let r = get();
                match (r.max_abs_diff, r.same_routing) {
                    (Some(d), Some(same)) => format!("CPU vs WebGPU: max |Δ logit| = {d:.2e}; routing {}", if same { "identical" } else { "differs" }),
                    _ if r.done => "Only the CPU backend ran, so there is nothing to compare.".to_string(),
                    _ => "comparing…".to_string(),
                }
            }}</p>
            <section class="card" data-testid="tokenizer">
                <h2>"Tokenizer (assets/tokenizer.json)"</h2>
                {move || match get().tokenizer {
                    None => view! { <p class="pending">"loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error">"could not load the tokenizer: " {e}</p> }.into_any(),
                    Some(Ok(t)) => view! {
                        <p>{format!("{} tokens, round trip {}", t.ids.len(), if t.round_trip { "exact" } else { "FAILED" })}</p>
                        <p class="pieces">{t.pieces.into_iter().map(|p| view! { <code class="piece">{p}</code> " " }).collect_view()}</p>
                    }.into_any(),
                }}
            </section>
            <pre data-testid="report" data-done=move || get().done.to_string() hidden>{json}</pre>
        </main>
    }
}
