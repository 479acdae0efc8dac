//! Recorded traces: a `switchyard-trace/1` file opened without its model (written by
//! `tools/hf/trace.py` for a model of any size, converted from llama.cpp's moe-trace CSV, or
//! exported by the playground itself). Only the per-token routing is read (tokens, and per
//! layer each token's experts, weights, ranks and probability row); every metric, and the
//! domain shares of labelled tokens, are computed again here with the analysis crate, exactly
//! as for a live run. The file is untrusted: sizes and values are checked before anything is
//! built from them.

use serde::{Deserialize, Serialize};
use switchyard_analysis::domain_distribution;
use switchyard_record::{ExpertKind, LayerRouting, RoutingRecord};
use switchyard_routing::{Interventions, RouteContext, RouterSpec};

use crate::trace::{DomainShares, DomainText, TRACE_FORMAT, Trace, TraceLayer, TraceToken, layers};

/// Most tokens a recorded trace may have.
pub const MAX_TOKENS: usize = 65_536;
/// Most layers.
pub const MAX_LAYERS: usize = 256;
/// Most experts per layer.
pub const MAX_EXPERTS: usize = 1024;
/// Most probability cells (tokens × layers × experts): 1 GB of f32.
pub const MAX_CELLS: usize = 1 << 28;

/// What a recorded trace says about where it came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The model (a Hugging Face id or folder).
    #[serde(default)]
    pub model: String,
    /// Its architecture (`MixtralForCausalLM`).
    #[serde(default)]
    pub architecture: String,
    /// Its config, as the tool wrote it.
    #[serde(default)]
    pub config: serde_json::Value,
    /// The tool that wrote the file.
    #[serde(default)]
    pub tool: String,
    /// How the chosen experts were obtained.
    #[serde(default)]
    pub routing: String,
    /// What the probabilities are.
    #[serde(default)]
    pub probs: String,
    /// What the source does not carry (llama.cpp's CSV: probabilities, weights, token texts).
    #[serde(default)]
    pub lacks: Vec<String>,
    /// The router the recording matches, as a router query (`topk&k=8&norm=true`: k is the
    /// most experts a token has, renormalised when every token's weights sum to 1); the page
    /// selects it, so a what-if starts from the recorded routing.
    #[serde(default)]
    pub router: String,
}

/// A trace token as a file gives it (label and sequence are optional).
#[derive(Debug, Deserialize)]
struct FileToken {
    id: u32,
    #[serde(default)]
    text: String,
    #[serde(default)]
    bytes: Option<[usize; 2]>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    sequence: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct FileRouting {
    token: usize,
    experts: Vec<usize>,
    weights: Vec<f32>,
    #[serde(default)]
    ranks: Option<Vec<usize>>,
    #[serde(default)]
    dropped: Option<Vec<bool>>,
    probs: Vec<f32>,
    #[serde(default)]
    shared_share: Option<f32>,
}

#[derive(Debug, Deserialize)]
struct FileLayer {
    #[serde(default)]
    probs_are_uniform: bool,
    #[serde(default)]
    expert_kinds: Vec<ExpertKind>,
    routing: Vec<FileRouting>,
}

#[derive(Debug, Deserialize)]
struct FileTrace {
    format: String,
    #[serde(default)]
    checkpoint: String,
    #[serde(default)]
    backend: String,
    #[serde(default)]
    recorded: Option<Recorded>,
    tokens: Vec<FileToken>,
    layers: Vec<FileLayer>,
}

/// An opened recorded trace: the trace the views draw, the domain shares of its labels (when
/// it has two or more), and where it came from.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The trace, every metric computed.
    pub trace: Trace,
    /// Domain × expert shares over the tokens' labels.
    pub domains: Option<DomainShares>,
    /// The file's account of itself (for our own exports: that it is one).
    pub recorded: Recorded,
    /// The recorded routing, with logits `ln p` (what a what-if re-routes).
    pub record: RoutingRecord,
    /// Each token's label, if it has one.
    labels: Vec<Option<String>>,
}

fn bad(what: impl std::fmt::Display) -> String {
    format!("not a usable trace: {what}")
}

/// Reads a trace file.
pub fn open(bytes: &[u8]) -> Result<Opened, String> {
    let file: FileTrace = serde_json::from_slice(bytes).map_err(|e| bad(format!("{e}")))?;
    if file.format != TRACE_FORMAT {
        return Err(bad(format!("its format is `{}`; this page reads `{TRACE_FORMAT}`", clip(&file.format))));
    }
    let (t, l) = (file.tokens.len(), file.layers.len());
    if t == 0 || l == 0 {
        return Err(bad("it has no tokens or no layers"));
    }
    if t > MAX_TOKENS || l > MAX_LAYERS {
        return Err(bad(format!(
            "{t} tokens × {l} layers is more than the page opens ({MAX_TOKENS} tokens, {MAX_LAYERS} layers)"
        )));
    }
    let tokens = tokens(&file.tokens)?;
    let seq_pos = sequence_positions(&file.tokens);
    let mut record = RoutingRecord::default();
    for (i, layer) in file.layers.iter().enumerate() {
        record.layers.push(layer_routing(i, layer, t, &seq_pos).map_err(|e| bad(format!("layer {i}: {e}")))?);
    }
    let cells: usize = record.layers.iter().map(|r| r.probs.len()).sum();
    if cells > MAX_CELLS {
        return Err(bad(format!("{cells} probabilities is more than the {MAX_CELLS} the page holds")));
    }
    let ids: Vec<u32> = file.tokens.iter().map(|t| t.id).collect();
    let mut trace_layers = layers(&record, &ids);
    for layer in &mut trace_layers {
        // The file has probabilities, not logits: the z statistic cannot be had from them.
        layer.metrics.z_stat = None;
    }
    let labels: Vec<Option<String>> = file.tokens.iter().map(|t| t.label.as_deref().map(clip)).collect();
    let domains = domain_shares(&labels, &record);
    let mut recorded = file.recorded.unwrap_or_else(|| Recorded {
        routing: "a Switchyard trace (exported by the playground or the CLI)".into(),
        ..Recorded::default()
    });
    recorded.router = matching_router(&record);
    let trace = Trace {
        format: TRACE_FORMAT.into(),
        checkpoint: clip(&file.checkpoint),
        checkpoint_hash: String::new(),
        query: String::new(),
        state: Default::default(),
        backend: clip(&file.backend),
        tokens,
        layers: trace_layers,
        weak_layers: None,
        steps: Vec::new(),
    };
    Ok(Opened { trace, domains, recorded, record, labels })
}

/// A what-if on the recorded probabilities: every layer's recorded row re-routed by `router`
/// (top-k, with or without a capacity) under `interventions`. Each layer is re-routed on its
/// own recorded probabilities: without the model, what a change would do to the layers after
/// it cannot be computed, so they keep their recorded inputs.
pub fn reroute(
    opened: &Opened,
    router: &RouterSpec,
    interventions: &Interventions,
    seed: u64,
) -> Result<(Vec<TraceLayer>, Option<DomainShares>), String> {
    if !matches!(router, RouterSpec::TopK { .. }) {
        return Err("a recorded trace has no model: only top-k (with or without a capacity) can be applied again to its probabilities; the other routers need the model".into());
    }
    let n_layers = opened.record.layers.len();
    let e = opened.record.layers.first().map_or(0, |l| l.num_experts);
    router.validate(e).map_err(|err| err.to_string())?;
    interventions.validate(n_layers, e).map_err(|err| err.to_string())?;
    let ids: Vec<u32> = opened.trace.tokens.iter().map(|t| t.id).collect();
    let record = RoutingRecord {
        layers: opened
            .record
            .layers
            .iter()
            .map(|rec| {
                let allowed = interventions.allowed(rec.layer, rec.num_experts);
                let ctx = RouteContext {
                    layer: rec.layer,
                    seq_id: &rec.seq_id,
                    pos: &rec.pos,
                    token_id: &ids[..rec.num_tokens()],
                    seed,
                    step: 0,
                    allowed: &allowed,
                    forced: interventions.forced(rec.layer),
                    selection_bias: None,
                };
                let mut out = router.route(rec.logits.clone(), rec.num_experts, &ctx);
                out.expert_kinds = rec.expert_kinds.clone();
                out.shared_share = rec.shared_share.clone();
                out
            })
            .collect(),
    };
    let mut trace_layers = layers(&record, &ids);
    for layer in &mut trace_layers {
        layer.metrics.z_stat = None;
    }
    Ok((trace_layers, domain_shares(&opened.labels, &record)))
}

/// The top-k router a record looks like: its largest k, renormalised when every token's kept
/// weights sum to 1.
fn matching_router(record: &RoutingRecord) -> String {
    let k = record.layers.iter().map(|l| l.k_max).max().unwrap_or(1).min(record.layers[0].num_experts);
    let norm = record
        .layers
        .iter()
        .all(|l| (0..l.num_tokens()).all(|t| (l.slots(t).map(|s| s.weight).sum::<f32>() - 1.0).abs() < 1e-3));
    format!("topk&k={k}&norm={norm}")
}

/// At most 200 characters of a name from the file.
fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

fn tokens(given: &[FileToken]) -> Result<Vec<TraceToken>, String> {
    let mut at = 0;
    given
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let text = switchyard_record::text::visible(&clip(&t.text));
            let n = t.text.len();
            let bytes = t.bytes.unwrap_or([at, at + n]);
            at = bytes[1];
            let kind = match t.kind.as_deref() {
                None | Some("prompt") => "prompt",
                Some("generated") => "generated",
                Some(other) => return Err(bad(format!("token {i} has kind `{}`", clip(other)))),
            };
            Ok(TraceToken { index: i, id: t.id, text, bytes, kind: kind.into() })
        })
        .collect()
}

/// Each token's sequence id and position in it (tokens of one sequence are consecutive).
fn sequence_positions(given: &[FileToken]) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(given.len());
    let mut pos = 0;
    for (i, t) in given.iter().enumerate() {
        let seq = t.sequence.unwrap_or(0);
        if i > 0 && given[i - 1].sequence.unwrap_or(0) != seq {
            pos = 0;
        }
        out.push((seq, pos));
        pos += 1;
    }
    out
}

/// One layer's routing record from the file's rows, every value checked.
fn layer_routing(i: usize, layer: &FileLayer, t: usize, seq_pos: &[(u32, u32)]) -> Result<LayerRouting, String> {
    let rows = &layer.routing;
    let e = rows.first().map_or(0, |r| r.probs.len());
    if e == 0 || e > MAX_EXPERTS {
        return Err(format!("{e} experts (1 to {MAX_EXPERTS})"));
    }
    if rows.len() > t || rows.iter().enumerate().any(|(j, r)| r.token != j) {
        return Err("its routing rows are not the tokens 0, 1, 2, … in order".into());
    }
    let k = rows.iter().map(|r| r.experts.len()).max().unwrap_or(0).max(1);
    let n = rows.len();
    let mut rec = LayerRouting {
        layer: i,
        num_experts: e,
        k_max: k,
        probs_are_uniform: layer.probs_are_uniform,
        seq_id: seq_pos[..n].iter().map(|p| p.0).collect(),
        pos: seq_pos[..n].iter().map(|p| p.1).collect(),
        expert_kinds: layer.expert_kinds.clone(),
        ..LayerRouting::default()
    };
    if !rec.expert_kinds.is_empty() && rec.expert_kinds.len() != e {
        return Err(format!("{} expert kinds for {e} experts", rec.expert_kinds.len()));
    }
    for (j, r) in rows.iter().enumerate() {
        check_row(r, e).map_err(|why| format!("token {j}: {why}"))?;
        rec.probs.extend_from_slice(&r.probs);
        // Logits that give the same probabilities (the metrics read them; z_stat is dropped).
        rec.logits.extend(r.probs.iter().map(|p| p.max(1e-30).ln()));
        let ranks = r.ranks.clone().unwrap_or_else(|| ranks_of(&r.probs, &r.experts));
        for s in 0..k {
            let has = s < r.experts.len();
            rec.idx.push(if has { r.experts[s] as u32 } else { 0 });
            rec.weight.push(if has { r.weights[s] } else { 0.0 });
            rec.valid.push(has);
            rec.rank.push(if has { ranks[s] as u32 } else { 0 });
            rec.dropped.push(has && r.dropped.as_ref().is_some_and(|d| d[s]));
        }
    }
    if rows.iter().all(|r| r.shared_share.is_some()) {
        rec.shared_share = rows.iter().filter_map(|r| r.shared_share).collect();
    }
    Ok(rec)
}

fn check_row(r: &FileRouting, e: usize) -> Result<(), String> {
    let k = r.experts.len();
    if r.probs.len() != e {
        return Err(format!("{} probabilities, not {e}", r.probs.len()));
    }
    if k > e
        || r.weights.len() != k
        || r.ranks.as_ref().is_some_and(|x| x.len() != k)
        || r.dropped.as_ref().is_some_and(|x| x.len() != k)
    {
        return Err("its experts, weights, ranks and dropped flags differ in length".into());
    }
    if let Some(&x) = r.experts.iter().find(|&&x| x >= e) {
        return Err(format!("expert {x} of {e}"));
    }
    if r.ranks.as_ref().is_some_and(|rs| rs.iter().any(|&x| x >= e)) {
        return Err("a rank beyond the experts".into());
    }
    let finite = |v: &f32| v.is_finite();
    if !r.probs.iter().all(|p| finite(p) && (0.0..=1.0 + 1e-4).contains(p)) || !r.weights.iter().all(finite) {
        return Err("a probability outside [0, 1] or a weight that is not a number".into());
    }
    if r.shared_share.is_some_and(|s| !s.is_finite()) {
        return Err("a shared share that is not a number".into());
    }
    Ok(())
}

/// Each chosen expert's rank in the probability order (for files without ranks).
fn ranks_of(probs: &[f32], experts: &[usize]) -> Vec<usize> {
    experts.iter().map(|&x| probs.iter().filter(|&&p| p > probs[x]).count()).collect()
}

/// Domain shares over the tokens' labels, when there are at least two labels.
fn domain_shares(labels: &[Option<String>], record: &RoutingRecord) -> Option<DomainShares> {
    let mut domains: Vec<DomainText> = Vec::new();
    for label in labels {
        let label = label.clone()?;
        match domains.iter_mut().find(|d| d.label == label) {
            Some(d) => d.tokens += 1,
            None => domains.push(DomainText { label, tokens: 1 }),
        }
    }
    if domains.len() < 2 {
        return None;
    }
    let shares = record
        .layers
        .iter()
        .map(|rec| {
            let parts: Vec<(String, LayerRouting)> = domains
                .iter()
                .map(|d| {
                    let rows: Vec<usize> =
                        (0..rec.num_tokens()).filter(|&j| labels[j].as_deref() == Some(d.label.as_str())).collect();
                    (d.label.clone(), select(rec, &rows))
                })
                .collect();
            let by = domain_distribution(parts.iter().map(|(d, r)| (d.as_str(), r)));
            domains.iter().map(|d| by.get(&d.label).cloned().unwrap_or_default()).collect()
        })
        .collect();
    Some(DomainShares { domains, shares })
}

/// The rows `rows` of a layer's record.
fn select(rec: &LayerRouting, rows: &[usize]) -> LayerRouting {
    let (e, k) = (rec.num_experts, rec.k_max);
    let per = |v: &[f32], w: usize| rows.iter().flat_map(|&j| v[j * w..(j + 1) * w].to_vec()).collect::<Vec<_>>();
    let slots = |j: usize| j * k..(j + 1) * k;
    LayerRouting {
        layer: rec.layer,
        num_experts: e,
        k_max: k,
        logits: per(&rec.logits, e),
        probs: per(&rec.probs, e),
        probs_are_uniform: rec.probs_are_uniform,
        idx: rows.iter().flat_map(|&j| rec.idx[slots(j)].to_vec()).collect(),
        weight: per(&rec.weight, k),
        valid: rows.iter().flat_map(|&j| rec.valid[slots(j)].to_vec()).collect(),
        rank: rows.iter().flat_map(|&j| rec.rank[slots(j)].to_vec()).collect(),
        dropped: rows.iter().flat_map(|&j| rec.dropped[slots(j)].to_vec()).collect(),
        aux: Default::default(),
        seq_id: rows.iter().map(|&j| rec.seq_id[j]).collect(),
        pos: rows.iter().map(|&j| rec.pos[j]).collect(),
        shared_share: if rec.shared_share.is_empty() {
            Vec::new()
        } else {
            rows.iter().map(|&j| rec.shared_share[j]).collect()
        },
        expert_kinds: rec.expert_kinds.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_routing::rng;

    const E: usize = 6;

    /// A two-sequence, three-layer routing record of top-2 on seeded logits, as a live run
    /// would make it, with its trace (what the playground exports).
    fn live_trace() -> (Trace, Vec<Option<String>>) {
        let (t, labels) = (10, ["code", "code", "code", "code", "code", "prose", "prose", "prose", "prose", "prose"]);
        let seq: Vec<u32> = (0..t).map(|i| u32::from(i >= 5)).collect();
        let pos: Vec<u32> = (0..t as u32).map(|i| i % 5).collect();
        let ids: Vec<u32> = (0..t as u32).map(|i| (i * 7) % 13).collect();
        let allowed = vec![true; E];
        let record = RoutingRecord {
            layers: (0..3)
                .map(|layer| {
                    let logits: Vec<f32> =
                        (0..t * E).map(|i| rng::normal(9, 1, &[layer as u64, i as u64]) as f32).collect();
                    let ctx = RouteContext {
                        layer,
                        seq_id: &seq,
                        pos: &pos,
                        token_id: &ids,
                        seed: 0,
                        step: 0,
                        allowed: &allowed,
                        forced: None,
                        selection_bias: None,
                    };
                    RouterSpec::top_k(2, true).route(logits, E, &ctx)
                })
                .collect(),
        };
        let tokens = (0..t)
            .map(|i| TraceToken {
                index: i,
                id: ids[i],
                text: format!("t{i}"),
                bytes: [i, i + 1],
                kind: "prompt".into(),
            })
            .collect();
        let trace = Trace {
            format: TRACE_FORMAT.into(),
            checkpoint: "live".into(),
            checkpoint_hash: "ab".into(),
            query: String::new(),
            state: Default::default(),
            backend: "cpu".into(),
            tokens,
            layers: layers(&record, &ids),
            weak_layers: None,
            steps: Vec::new(),
        };
        (trace, labels.iter().map(|l| Some(l.to_string())).collect())
    }

    /// The live trace as a file, with each token's label and sequence (what trace.py writes).
    fn file(trace: &Trace, labels: &[Option<String>]) -> serde_json::Value {
        let mut v = serde_json::to_value(trace).unwrap();
        for (i, tok) in v["tokens"].as_array_mut().unwrap().iter_mut().enumerate() {
            tok["label"] = serde_json::json!(labels[i]);
            tok["sequence"] = serde_json::json!(u32::from(i >= 5));
        }
        v
    }

    fn refused(v: &serde_json::Value) -> String {
        open(&serde_json::to_vec(v).unwrap()).expect_err("refused")
    }

    #[test]
    fn a_trace_opened_without_its_model_has_the_live_metrics() {
        let (live, labels) = live_trace();
        let opened = open(&serde_json::to_vec(&file(&live, &labels)).unwrap()).unwrap();
        for (mine, theirs) in opened.trace.layers.iter().zip(&live.layers) {
            let mut theirs = theirs.clone();
            theirs.metrics.z_stat = None; // no logits in a file
            assert_eq!(*mine, theirs, "layer {}", theirs.layer);
        }
        assert_eq!(opened.recorded.router, "topk&k=2&norm=true");
        let domains = opened.domains.expect("two labels");
        assert_eq!(
            domains.domains.iter().map(|d| (d.label.as_str(), d.tokens)).collect::<Vec<_>>(),
            [("code", 5), ("prose", 5)]
        );
        for row in &domains.shares[0] {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn a_what_if_with_the_recorded_router_changes_nothing_and_capacity_drops() {
        let (live, labels) = live_trace();
        let opened = open(&serde_json::to_vec(&file(&live, &labels)).unwrap()).unwrap();
        let none = Interventions::default();
        let (same, _) = reroute(&opened, &RouterSpec::top_k(2, true), &none, 0).unwrap();
        for (a, b) in same.iter().zip(&opened.trace.layers) {
            assert_eq!(
                a.routing.iter().map(|r| &r.experts).collect::<Vec<_>>(),
                b.routing.iter().map(|r| &r.experts).collect::<Vec<_>>()
            );
        }
        let tight = capacity(0.5);
        let (dropped, _) = reroute(&opened, &tight, &none, 0).unwrap();
        assert!(dropped[0].metrics.drop_rate_slots > 0.0);
        let off = Interventions { ablate: vec![(1, 0), (1, 1)], force: Vec::new() };
        let (ablated, _) = reroute(&opened, &RouterSpec::top_k(2, true), &off, 0).unwrap();
        assert!(ablated[1].routing.iter().all(|r| !r.experts.contains(&0) && !r.experts.contains(&1)));
        let msg = reroute(&opened, &RouterSpec::Hash, &none, 0).unwrap_err();
        assert!(msg.contains("only top-k"), "{msg}");
    }

    fn capacity(cf: f64) -> RouterSpec {
        router(&format!("topk&k=2&norm=true&cf={cf}&priority=position"))
    }

    fn router(q: &str) -> RouterSpec {
        switchyard_state::PlaygroundState::from_query(&format!("v=1&router={q}")).0.router
    }

    #[test]
    fn hostile_files_are_refused_with_a_reason() {
        let (live, labels) = live_trace();
        let good = file(&live, &labels);
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            refused(&v)
        };
        assert!(edit(&|v| v["format"] = "other/2".into()).contains("format is `other/2`"));
        assert!(edit(&|v| v["layers"][0]["routing"][3]["experts"][0] = 99.into()).contains("expert 99 of 6"));
        assert!(edit(&|v| v["layers"][1]["routing"][2]["probs"][0] = 2.5.into()).contains("outside [0, 1]"));
        assert!(
            edit(&|v| v["layers"][1]["routing"][2]["weights"] = serde_json::json!([0.5])).contains("differ in length")
        );
        assert!(edit(&|v| v["layers"][2]["routing"][4]["token"] = 7.into()).contains("in order"));
        assert!(
            edit(&|v| v["layers"][0]["routing"][1]["probs"] = serde_json::json!([0.5, 0.5]))
                .contains("probabilities, not 6")
        );
        assert!(edit(&|v| v["tokens"] = serde_json::json!([])).contains("no tokens"));
        assert!(edit(&|v| v["tokens"][0]["kind"] = "<script>".into()).contains("kind"));
        assert!(open(b"{\"format\": 1").unwrap_err().starts_with("not a usable trace"));
        let many = serde_json::json!({"format": TRACE_FORMAT, "tokens": vec![serde_json::json!({"id": 0}); MAX_TOKENS + 1], "layers": [{"routing": []}]});
        assert!(refused(&many).contains("more than the page opens"));
    }
}
