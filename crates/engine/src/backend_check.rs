//! The backend check (`#backend-check`), computed in the engine: the same seeded model and
//! prompt on burn's CPU backend and (in the WebGPU build) on WebGPU, and the shipped tokenizer.

use switchyard_model::{BpeTokenizer, Device, Model, ModelConfig, RunOptions, Tokenizer, devices};
use switchyard_protocol::CPU_ADAPTER;
use switchyard_protocol::backend::{BackendResult, CHECK_PROMPT, CHECK_SEED, Report, TOKENIZER_SAMPLE, TokenizerCheck};

use crate::scope::{self, now_ms};

/// Fetches `assets/tokenizer.json` (relative to the page) and encodes the sample with it.
async fn check_tokenizer() -> Result<TokenizerCheck, String> {
    let response = scope::fetch(&scope::url("assets/tokenizer.json")).await?;
    let bytes = scope::body_bytes(&response).await?;
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
    let tokens: Vec<u32> = CHECK_PROMPT.bytes().map(u32::from).collect();
    let model = Model::from_seed(&cfg, CHECK_SEED, &device).map_err(|e| e.to_string())?;
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

#[cfg(feature = "webgpu")]
async fn run_webgpu() -> Result<BackendResult, String> {
    if let Some(reason) = scope::webgpu_missing() {
        return Err(reason);
    }
    let gpu = devices::wgpu().await.map_err(|e| format!("the browser offered no usable WebGPU adapter ({e})"))?;
    run_on(gpu.device, "webgpu", gpu.adapter).await
}

#[cfg(not(feature = "webgpu"))]
async fn run_webgpu() -> Result<BackendResult, String> {
    Err("this is the CPU engine: the page runs the check in the WebGPU engine to compare".into())
}

fn compare(report: &mut Report) {
    if let (Some(Ok(a)), Some(Ok(b))) = (&report.cpu, &report.webgpu) {
        report.max_abs_diff =
            Some(a.last_logits.iter().zip(&b.last_logits).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max));
        report.same_routing = Some(a.top_experts == b.top_experts);
    }
}

/// Runs the whole check (in the engine worker).
pub async fn report() -> Report {
    let mut report = Report { cpu: Some(run_on(devices::cpu(), "cpu", CPU_ADAPTER.into()).await), ..Report::default() };
    report.tokenizer = Some(check_tokenizer().await);
    report.webgpu = Some(run_webgpu().await);
    compare(&mut report);
    report.done = true;
    report
}
