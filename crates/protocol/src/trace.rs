//! The routing trace schema (`switchyard-trace/1`, documented in `docs/trace.md`): what the
//! CLI prints, what the engine sends the page, what the page exports. Built from routing
//! records with the analysis crate's metrics; running a model to get them is the trace
//! runner's job (`switchyard-trace`).

use serde::{Deserialize, Serialize};
use switchyard_analysis::{
    ConsecutiveRate, LayerChange, LayerMetrics, Specialisation, co_activation, consecutive_rate, drop_rate_by_position,
    expert_affinity, layer_metrics, token_specialisation,
};
use switchyard_record::{LayerRouting, RoutingRecord};
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
    /// With a shared expert: its share of the token's MoE output norm (see `LayerRouting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_share: Option<f32>,
}

/// One layer: per-token routing and the layer's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceLayer {
    /// Layer index.
    pub layer: usize,
    /// True when the router has no logits and `probs` are reported uniform.
    pub probs_are_uniform: bool,
    /// The kind of every entry of the expert list (`ffn`, `null`, `zero`, `copy`,
    /// `constant`); absent when all are FFN experts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expert_kinds: Vec<switchyard_record::ExpertKind>,
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

/// One layer of a trace: per-token routing and every metric of the layer (`next`, the following
/// layer's record of the same tokens, gives the affinity).
pub fn layer(rec: &LayerRouting, next: Option<&LayerRouting>, ids: &[u32]) -> TraceLayer {
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
                shared_share: rec.shared_share.get(t).copied(),
            }
        })
        .collect();
    TraceLayer {
        layer: rec.layer,
        probs_are_uniform: rec.probs_are_uniform,
        expert_kinds: rec.expert_kinds.clone(),
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

/// Every layer of a record, each with its affinity to the next.
pub fn layers(r: &RoutingRecord, ids: &[u32]) -> Vec<TraceLayer> {
    r.layers.iter().enumerate().map(|(i, rec)| layer(rec, r.layers.get(i + 1), ids)).collect()
}

/// One configuration of an A/B comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Its router and decoding as query keys.
    pub query: String,
    /// Its routing of the tokens, per layer (the strong pass under SCMoE).
    pub layers: Vec<TraceLayer>,
    /// The most likely next tokens after every position `[id, probability]`, under its decoding.
    pub next: Vec<Vec<(u32, f32)>>,
}

/// Two configurations on one token sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The canonical query of the state compared (configuration B included).
    pub query: String,
    /// The token ids both sides read.
    pub tokens: Vec<u32>,
    /// The state's own configuration.
    pub a: Side,
    /// The configuration compared with.
    pub b: Side,
    /// Per layer: changed experts and router JS divergence of every token.
    pub layers: Vec<LayerChange>,
    /// Per position: JS divergence (bits) of the two next-token distributions.
    pub next_js: Vec<f64>,
}

/// One labelled text of the domain view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainText {
    /// Domain label.
    pub label: String,
    /// Tokens it has.
    pub tokens: usize,
}

/// Shares per layer, domain and expert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainShares {
    /// The domains, in the order given (texts with the same label are pooled).
    pub domains: Vec<DomainText>,
    /// `shares[layer][domain][expert]` = `#{t ∈ D : e ∈ S_t} / (k·|D|)`; 1/E is uniform.
    pub shares: Vec<Vec<Vec<f64>>>,
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
        "expert_kind",
        "shared_share",
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
                    switchyard_record::ExpertKind::at(&l.expert_kinds, e).name().to_string(),
                    r.shared_share.map_or(String::new(), |v| v.to_string()),
                ])?;
            }
        }
    }
    w.flush()?;
    Ok(())
}
