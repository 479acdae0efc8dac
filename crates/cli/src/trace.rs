//! `switchyard trace`: a routing trace as JSON (schema in `docs/trace.md`) or CSV.

use anyhow::{Context, Result, bail};
use futures_lite::future::block_on;
use serde::Serialize;
use switchyard_analysis::{
    ConsecutiveRate, LayerMetrics, Specialisation, co_activation, consecutive_rate, drop_rate_by_position,
    expert_affinity, layer_metrics, token_specialisation,
};
use switchyard_model::record::{LayerRouting, RoutingRecord};
use switchyard_model::{Generation, Jitter, Model, RunOptions, Tokenizer, generate};
use switchyard_state::PlaygroundState;

/// Version of the trace schema.
pub const TRACE_FORMAT: &str = "switchyard-trace/1";

/// One token of the traced sequence.
#[derive(Debug, Serialize)]
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
    pub kind: &'static str,
}

/// The routing of one token at one layer.
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity_to_next: Option<(Vec<Vec<f64>>, f64, f64)>,
    /// Token-ID specialisation with its baseline and the top 5 token ids per expert.
    pub specialisation: Specialisation,
    /// One entry per routed token.
    pub routing: Vec<TokenRouting>,
}

/// SCMoE candidates of one generated token.
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
pub struct Trace {
    /// Always [`TRACE_FORMAT`].
    pub format: &'static str,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weak_layers: Option<Vec<TraceLayer>>,
    /// SCMoE only: candidates per generated token.
    #[serde(skip_serializing_if = "Vec::is_empty")]
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
        drop_rate_by_position: drop_rate_by_position(rec, 16),
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

/// Runs the state's prompt (and generation) and builds its trace.
/// `train` carries the training-only router options (jitter and the step it is keyed by); they
/// are not part of a playground state.
pub fn trace(
    model: &Model,
    tok: &Tokenizer,
    state: &PlaygroundState,
    checkpoint_hash: &str,
    backend: &str,
    train: (Option<Jitter>, Option<u64>),
) -> Result<Trace> {
    let cfg = model.config();
    let prompt = tok.encode(&state.prompt);
    if prompt.is_empty() {
        bail!("the prompt is empty: give --prompt or a link with prompt=...");
    }
    state.router.validate(cfg.n_experts).context("the router does not fit this model")?;
    let opts = RunOptions {
        router: state.router.clone(),
        dispatch: switchyard_model::Dispatch::Sparse,
        seed: state.seed,
        interventions: state.interventions.clone(),
        jitter: train.0,
        train_step: train.1,
    };
    let g: Generation = block_on(generate(model, &prompt, state.generate, &opts, &state.decoding))?;
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
                kind: if i < g.prompt_len { "prompt" } else { "generated" },
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
        format: TRACE_FORMAT,
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

/// The flat per-(token, layer, slot) table.
pub fn write_csv(t: &Trace, out: impl std::io::Write) -> Result<()> {
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
                    tok.text.clone(),
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
