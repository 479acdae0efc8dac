//! The routing trace of a playground state: run the state's prompt (and generation) on a model
//! and collect tokens, per-layer routing and the analysis crate's metrics. `switchyard trace`
//! prints it (JSON, schema in `docs/trace.md`, or CSV) and the browser exports the same value,
//! so the two can be compared with a diff tool.

mod compare;
mod domains;

pub use compare::{Comparison, Side, compare};
pub use domains::{DomainShares, DomainText, domain_shares};
use serde::{Deserialize, Serialize};
use switchyard_analysis::{
    ConsecutiveRate, LayerMetrics, Specialisation, co_activation, consecutive_rate, drop_rate_by_position,
    expert_affinity, layer_metrics, token_specialisation,
};
use switchyard_model::record::{LayerRouting, RoutingRecord};
use switchyard_model::{Generation, Jitter, Model, ModelError, RouterError, RunOptions, Tokenizer, generate_streaming};
use switchyard_state::PlaygroundState;

/// Version of the trace schema.
pub const TRACE_FORMAT: &str = "switchyard-trace/1";

/// Positions per bucket of [`TraceLayer::drop_rate_by_position`].
pub const DROP_BUCKET: usize = 16;

/// One token of the traced sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceToken {
    /// Index in the sequence (= absolute position for one sequence).
    pub index: usize,
    /// Token id.
    pub id: u32,
    /// Printable text of the token.
    pub text: String,
    /// Byte span `[start, end)` in the UTF-8 text of prompt + generation.
    pub bytes: [usize; 2],
    /// `prompt` or `generated`.
    pub kind: String,
}

/// The routing of one token at one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRouting {
    /// Token index.
    pub token: usize,
    /// Chosen experts in slot order (dropped slots included).
    pub experts: Vec<usize>,
    /// Combine weights (0 for dropped slots).
    pub weights: Vec<f32>,
    /// Rank of each chosen expert in the router's ordering.
    pub ranks: Vec<usize>,
    /// Whether capacity dropped each slot.
    pub dropped: Vec<bool>,
    /// The full router probability row (uniform for routers without logits).
    pub probs: Vec<f32>,
}

/// One layer: per-token routing and the layer's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceLayer {
    /// Layer index.
    pub layer: usize,
    /// True when the router has no logits and `probs` are reported uniform.
    pub probs_are_uniform: bool,
    /// Router-specific aux values (drop rate, mean active experts, ...).
    pub aux: std::collections::BTreeMap<String, f32>,
    /// Load, balance, LBL, drops, active experts, confidence over the traced tokens.
    pub metrics: LayerMetrics,
    /// Slot drop rate per bucket of 16 positions: `[first position, rate]`.
    pub drop_rate_by_position: Vec<(u32, f64)>,
    /// Consecutive-token same-expert rates with their random baselines.
    pub consecutive: ConsecutiveRate,
    /// Within-layer co-activation `C[i][j]` and its uniform baseline `(k−1)/(E−1)`.
    pub co_activation: (Vec<Vec<f64>>, f64),
    /// ExFlow affinity to the next layer `A[i][j]`, its summary `mean_i max_j A` and the
    /// baseline `k/E`; absent for the last layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_to_next: Option<(Vec<Vec<f64>>, f64, f64)>,
    /// Token-ID specialisation with its baseline and the top 5 token ids per expert.
    pub specialisation: Specialisation,
    /// One entry per routed token.
    pub routing: Vec<TokenRouting>,
}

/// SCMoE candidates of one generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// Index of the generated token.
    pub token: usize,
    /// Top strong-pass tokens `[id, probability]`.
    pub strong: Vec<(u32, f32)>,
    /// Top weak-pass tokens.
    pub weak: Vec<(u32, f32)>,
    /// Top contrast tokens.
    pub contrast: Vec<(u32, f32)>,
}

/// The whole trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Always [`TRACE_FORMAT`].
    pub format: String,
    /// Checkpoint name.
    pub checkpoint: String,
    /// Full content hash of the checkpoint (of the seed-initialised model's parameters when
    /// there is no file).
    pub checkpoint_hash: String,
    /// The canonical query string of the state (paste after `?` in the playground URL).
    pub query: String,
    /// The same state as JSON.
    pub state: PlaygroundState,
    /// Backend the trace ran on.
    pub backend: String,
    /// Every token, prompt then generated.
    pub tokens: Vec<TraceToken>,
    /// Per MoE layer (the strong pass under SCMoE).
    pub layers: Vec<TraceLayer>,
    /// SCMoE only: the weak pass's layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weak_layers: Option<Vec<TraceLayer>>,
    /// SCMoE only: candidates per generated token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<TraceStep>,
}

fn layer(rec: &LayerRouting, next: Option<&LayerRouting>, ids: &[u32]) -> TraceLayer {
    let routing = (0..rec.num_tokens())
        .map(|t| {
            let k = rec.k_max;
            let slots: Vec<usize> = (t * k..(t + 1) * k).filter(|&i| rec.valid[i]).collect();
            TokenRouting {
                token: t,
                experts: slots.iter().map(|&i| rec.idx[i] as usize).collect(),
                weights: slots.iter().map(|&i| rec.weight[i]).collect(),
                ranks: slots.iter().map(|&i| rec.rank[i] as usize).collect(),
                dropped: slots.iter().map(|&i| rec.dropped[i]).collect(),
                probs: rec.probs_row(t).to_vec(),
            }
        })
        .collect();
    TraceLayer {
        layer: rec.layer,
        probs_are_uniform: rec.probs_are_uniform,
        aux: rec.aux.clone(),
        metrics: layer_metrics(rec),
        drop_rate_by_position: drop_rate_by_position(rec, DROP_BUCKET),
        consecutive: consecutive_rate(rec),
        co_activation: co_activation(rec),
        affinity_to_next: next.map(|n| expert_affinity(rec, n)),
        specialisation: token_specialisation(rec, ids, 5),
        routing,
    }
}

fn layers(r: &RoutingRecord, ids: &[u32]) -> Vec<TraceLayer> {
    r.layers.iter().enumerate().map(|(i, rec)| layer(rec, r.layers.get(i + 1), ids)).collect()
}

/// Why a state could not be traced.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The prompt has no tokens.
    #[error("the prompt is empty: type a prompt (or give a link with prompt=...)")]
    EmptyPrompt,
    /// The router, the decoding or the interventions do not fit the model.
    #[error("this configuration does not fit the model: {0}")]
    Router(#[from] RouterError),
    /// The forward pass or decoding failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// How a state runs `router`: sparse dispatch, the state's seed and interventions, no training
/// options.
fn run_options(state: &PlaygroundState, router: &switchyard_model::RouterSpec) -> RunOptions {
    RunOptions {
        router: router.clone(),
        dispatch: switchyard_model::Dispatch::Sparse,
        seed: state.seed,
        interventions: state.interventions.clone(),
        jitter: None,
        train_step: None,
    }
}

/// Training-only router options (jitter and the step it is keyed by); not part of a state.
pub type TrainOptions = (Option<Jitter>, Option<u64>);

/// Runs the state's prompt (and generation) and builds its trace. `on_token` sees each generated
/// token as it is chosen; returning `false` stops decoding early (the trace then covers the
/// tokens so far).
pub async fn trace(
    model: &Model,
    tok: &Tokenizer,
    state: &PlaygroundState,
    checkpoint_hash: &str,
    backend: &str,
    train: TrainOptions,
    on_token: impl AsyncFnMut(u32) -> bool,
) -> Result<Trace, TraceError> {
    let cfg = model.config();
    let prompt = tok.encode(&state.prompt);
    if prompt.is_empty() {
        return Err(TraceError::EmptyPrompt);
    }
    state.router.validate(cfg.n_experts)?;
    state.decoding.validate(cfg.n_experts)?;
    state.interventions.validate(cfg.n_layers, cfg.n_experts)?;
    let opts = RunOptions { jitter: train.0, train_step: train.1, ..run_options(state, &state.router) };
    let g: Generation = generate_streaming(model, &prompt, state.generate, &opts, &state.decoding, on_token).await?;
    let mut offset = 0;
    let tokens = g
        .tokens
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let n = tok.token_bytes(id).len();
            let t = TraceToken {
                index: i,
                id,
                text: tok.display(id),
                bytes: [offset, offset + n],
                kind: if i < g.prompt_len { "prompt" } else { "generated" }.to_string(),
            };
            offset += n;
            t
        })
        .collect();
    let steps = g
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| TraceStep {
            token: g.prompt_len + i,
            strong: c.strong.clone(),
            weak: c.weak.clone(),
            contrast: c.contrast.clone(),
        })
        .collect();
    Ok(Trace {
        format: TRACE_FORMAT.to_string(),
        checkpoint: state.checkpoint.clone(),
        checkpoint_hash: checkpoint_hash.to_string(),
        query: state.to_query(),
        state: state.clone(),
        backend: backend.to_string(),
        tokens,
        layers: layers(&g.routing, &g.tokens),
        weak_layers: g.weak_routing.as_ref().map(|w| layers(w, &g.tokens)),
        steps,
    })
}

/// A cell a spreadsheet will not run as a formula: text starting with `=`, `+`, `-`, `@`, a tab
/// or a carriage return gets a leading `'` (OWASP's advice for CSV injection). Token texts are
/// arbitrary (`=cmd|' /C calc'!A0` is one prompt away), so the CSV's `token_text` is written
/// this way; the JSON trace keeps the text as it is.
pub fn spreadsheet_safe(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

/// The flat per-(token, layer, slot) table (`token_text` made [`spreadsheet_safe`]).
pub fn write_csv(t: &Trace, out: impl std::io::Write) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "token",
        "position",
        "kind",
        "token_id",
        "token_text",
        "layer",
        "slot",
        "expert",
        "weight",
        "rank",
        "dropped",
        "prob",
    ])?;
    for l in &t.layers {
        for r in &l.routing {
            let tok = &t.tokens[r.token];
            for (slot, &e) in r.experts.iter().enumerate() {
                w.write_record([
                    r.token.to_string(),
                    tok.index.to_string(),
                    tok.kind.to_string(),
                    tok.id.to_string(),
                    spreadsheet_safe(&tok.text),
                    l.layer.to_string(),
                    slot.to_string(),
                    e.to_string(),
                    r.weights[slot].to_string(),
                    r.ranks[slot].to_string(),
                    r.dropped[slot].to_string(),
                    r.probs[e].to_string(),
                ])?;
            }
        }
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests;
