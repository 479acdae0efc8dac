//! Metrics computed from routing records (spec `routers.md` §9.2). Pure functions over plain
//! data: no burn, no web.

mod compare;
mod corpus;

pub use compare::{LayerChange, TokenChange, compare_layer, js_divergence};
pub use corpus::{
    ConsecutiveRate, Specialisation, co_activation, consecutive_rate, domain_distribution, expert_affinity,
    token_specialisation,
};
use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_record::{ExpertKind, LayerRouting};

/// Load and balance of one layer over the tokens of a record (spec §9.2).
///
/// With free experts (spec §6) `counts` and `fraction` cover the whole expert list, and the
/// balance figures (CV, max/mean, dead experts, load entropy) the FFN experts only: the free
/// experts are not meant to be balanced with them, and `free_share` says how much they took.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LoadStats {
    /// Assigned slots per expert `c_e` (dropped slots included: assignment happens first).
    pub counts: Vec<u64>,
    /// Load fraction `ℓ_e = c_e / Σ c`.
    pub fraction: Vec<f64>,
    /// Share of all assigned slots per kind of free expert (null, zero, copy, constant);
    /// empty without free experts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub free_share: BTreeMap<ExpertKind, f64>,
    /// Coefficient of variation `std_pop(c) / mean(c)` (FFN experts).
    pub cv: f64,
    /// `max_e c_e / mean_e c_e`.
    pub max_over_mean: f64,
    /// Experts with no assigned slot.
    pub dead_experts: usize,
    /// Load entropy `H(ℓ) / log E` (1 = perfectly balanced).
    pub load_entropy: f64,
    /// Mean token routing entropy `H̄ / log E`.
    pub token_entropy: f64,
}

fn entropy(p: impl Iterator<Item = f64>) -> f64 {
    -p.filter(|&x| x > 0.0).map(|x| x * x.ln()).sum::<f64>()
}

/// Routing quality of one layer beyond its load (spec §9.1–§9.2).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LayerMetrics {
    /// Load and balance.
    pub load: LoadStats,
    /// Switch/GShard LBL `E·Σ f1_e·P̄_e` (first choice only; 1 under perfect balance).
    pub lbl_switch: f64,
    /// Top-k LBL `E·Σ f_e·P̄_e` with `f_e` the fraction of tokens that chose e (k under balance).
    pub lbl_topk: f64,
    /// DeepSeekMoE's sequence-wise balance loss before α ([`seq_aux_lbl`]; 1 under balance).
    #[serde(default)]
    pub lbl_seq_aux: f64,
    /// Slot-level drop rate `Σ dropped / Σ assigned`.
    pub drop_rate_slots: f64,
    /// Fraction of tokens whose every slot was dropped.
    pub drop_rate_tokens: f64,
    /// Mean number of kept FFN experts per token (free experts are not counted).
    pub active_experts_mean: f64,
    /// Histogram of kept FFN experts per token (index = count).
    pub active_experts_hist: Vec<u64>,
    /// Mean top-1 probability.
    pub confidence: f64,
    /// Mean top-1 minus top-2 probability.
    pub margin: f64,
    /// `mean logsumexp(Z)²`; `None` for routers without logits.
    pub z_stat: Option<f64>,
}

/// Drop rate by position bucket (OpenMoE's drop-towards-the-end): `(first position, rate)` per
/// bucket of `width` positions.
pub fn drop_rate_by_position(rec: &LayerRouting, width: usize) -> Vec<(u32, f64)> {
    let width = width.max(1) as u32;
    let mut buckets: std::collections::BTreeMap<u32, (u64, u64)> = std::collections::BTreeMap::new();
    for t in 0..rec.num_tokens() {
        let b = buckets.entry(rec.pos[t] / width * width).or_default();
        for s in rec.slots(t) {
            b.0 += u64::from(s.dropped);
            b.1 += 1;
        }
    }
    buckets.into_iter().map(|(p, (d, n))| (p, if n == 0 { 0.0 } else { d as f64 / n as f64 })).collect()
}

/// Every §9.2 metric of one layer.
pub fn layer_metrics(rec: &LayerRouting) -> LayerMetrics {
    let (t, e) = (rec.num_tokens(), rec.num_experts);
    let tn = t.max(1) as f64;
    let mut pbar = vec![0.0f64; e];
    let (mut f1, mut f) = (vec![0.0f64; e], vec![0.0f64; e]);
    let (mut dropped, mut assigned, mut all_dropped) = (0u64, 0u64, 0u64);
    let mut hist = vec![0u64; rec.k_max + 1];
    let (mut conf, mut margin, mut z) = (0.0, 0.0, 0.0);
    for i in 0..t {
        let p = rec.probs_row(i);
        for (acc, &v) in pbar.iter_mut().zip(p) {
            *acc += f64::from(v) / tn;
        }
        let slots: Vec<_> = rec.slots(i).collect();
        if let Some(first) = slots.first() {
            f1[first.expert] += 1.0 / tn;
        }
        for s in &slots {
            f[s.expert] += 1.0 / tn;
            assigned += 1;
            dropped += u64::from(s.dropped);
        }
        if !slots.is_empty() && slots.iter().all(|s| s.dropped) {
            all_dropped += 1;
        }
        hist[slots.iter().filter(|s| !s.dropped && rec.kind(s.expert) == ExpertKind::Ffn).count()] += 1;
        let mut sorted: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        conf += sorted[0] / tn;
        margin += (sorted[0] - sorted.get(1).copied().unwrap_or(0.0)) / tn;
        let zr = rec.logits_row(i);
        let m = zr.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let lse = m + zr.iter().map(|&v| (f64::from(v) - m).exp()).sum::<f64>().ln();
        z += lse * lse / tn;
    }
    let ef = e as f64;
    let active: u64 = hist.iter().enumerate().map(|(n, &c)| n as u64 * c).sum();
    LayerMetrics {
        load: load_stats(rec),
        lbl_switch: ef * f1.iter().zip(&pbar).map(|(a, b)| a * b).sum::<f64>(),
        lbl_topk: ef * f.iter().zip(&pbar).map(|(a, b)| a * b).sum::<f64>(),
        lbl_seq_aux: seq_aux_lbl(rec),
        drop_rate_slots: if assigned == 0 { 0.0 } else { dropped as f64 / assigned as f64 },
        drop_rate_tokens: all_dropped as f64 / tn,
        active_experts_mean: active as f64 / tn,
        active_experts_hist: hist,
        confidence: conf,
        margin,
        z_stat: (!rec.probs_are_uniform).then_some(z),
    }
}

/// HF's pooled load-balancing loss over several layers (spec §1.4): all layers' tokens in one
/// `[L·T, E]` matrix; `E·Σ_{slot,e} f[slot,e]·P̄_e` (k under perfect balance).
pub fn lbl_pooled(layers: &[LayerRouting]) -> f64 {
    let Some(first) = layers.first() else { return 0.0 };
    let e = first.num_experts;
    let rows: usize = layers.iter().map(LayerRouting::num_tokens).sum();
    let n = rows.max(1) as f64;
    let (mut f, mut pbar) = (vec![0.0f64; e], vec![0.0f64; e]);
    for rec in layers {
        for t in 0..rec.num_tokens() {
            for (acc, &v) in pbar.iter_mut().zip(rec.probs_row(t)) {
                *acc += f64::from(v) / n;
            }
            for s in rec.slots(t) {
                f[s.expert] += 1.0 / n;
            }
        }
    }
    e as f64 * f.iter().zip(&pbar).map(|(a, b)| a * b).sum::<f64>()
}

/// DeepSeekMoE's sequence-wise balance loss without its α (spec §8.1, `seq_aux = true`): per
/// sequence b, `f'_{b,e} = E/(K·S_b)·count_{b,e}` and `P̄_{b,e}` its tokens' mean probability;
/// the mean over the sequences of `Σ_e f'_{b,e}·P̄_{b,e}` (1 under perfect balance). K is the
/// record's slots per token.
pub fn seq_aux_lbl(rec: &LayerRouting) -> f64 {
    let (e, k) = (rec.num_experts, rec.k_max.max(1));
    let mut seqs: BTreeMap<u32, (Vec<f64>, Vec<f64>, usize)> = BTreeMap::new();
    for t in 0..rec.num_tokens() {
        let (count, pbar, len) = seqs.entry(rec.seq_id[t]).or_insert_with(|| (vec![0.0; e], vec![0.0; e], 0));
        *len += 1;
        for (acc, &p) in pbar.iter_mut().zip(rec.probs_row(t)) {
            *acc += f64::from(p);
        }
        for s in rec.slots(t) {
            count[s.expert] += 1.0;
        }
    }
    let per_seq = seqs.values().map(|(count, pbar, len)| {
        let n = *len as f64;
        let f = count.iter().map(|c| e as f64 / (k as f64 * n) * c);
        f.zip(pbar).map(|(f, p)| f * p / n).sum::<f64>()
    });
    let n = seqs.len().max(1) as f64;
    per_seq.sum::<f64>() / n
}

/// Load statistics of one layer.
pub fn load_stats(rec: &LayerRouting) -> LoadStats {
    let mut counts = vec![0u64; rec.num_experts];
    for t in 0..rec.num_tokens() {
        for s in rec.slots(t) {
            counts[s.expert] += 1;
        }
    }
    let all: u64 = counts.iter().sum();
    let fraction: Vec<f64> = counts.iter().map(|&c| if all == 0 { 0.0 } else { c as f64 / all as f64 }).collect();
    let mut free_share = BTreeMap::new();
    for (j, &f) in fraction.iter().enumerate().filter(|(j, _)| rec.kind(*j) != ExpertKind::Ffn) {
        *free_share.entry(rec.kind(j)).or_insert(0.0) += f;
    }
    // Balance among the FFN experts, the first entries of the list.
    let e = rec.ffn_experts().max(1);
    let ffn = &counts[..e.min(counts.len())];
    let total: u64 = ffn.iter().sum();
    let mean = total as f64 / e as f64;
    let var = ffn.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / e as f64;
    let max = ffn.iter().copied().max().unwrap_or(0) as f64;
    let ffn_fraction = ffn.iter().map(|&c| if total == 0 { 0.0 } else { c as f64 / total as f64 });
    let log_e = (e as f64).ln();
    let norm = |h: f64| if e > 1 { h / log_e } else { 0.0 };
    let norm_all = |h: f64| if rec.num_experts > 1 { h / (rec.num_experts as f64).ln() } else { 0.0 };
    let t = rec.num_tokens().max(1) as f64;
    let token_h =
        (0..rec.num_tokens()).map(|i| entropy(rec.probs_row(i).iter().map(|&p| f64::from(p)))).sum::<f64>() / t;
    LoadStats {
        cv: if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
        max_over_mean: if mean > 0.0 { max / mean } else { 0.0 },
        dead_experts: ffn.iter().filter(|&&c| c == 0).count(),
        load_entropy: norm(entropy(ffn_fraction)),
        token_entropy: norm_all(token_h),
        counts,
        fraction,
        free_share,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A top-1 record where token t goes to `experts[t]`.
    fn record(experts: &[u32], e: usize) -> LayerRouting {
        let t = experts.len();
        let mut probs = vec![0.0; t * e];
        for (i, &x) in experts.iter().enumerate() {
            probs[i * e + x as usize] = 1.0;
        }
        LayerRouting {
            layer: 0,
            num_experts: e,
            k_max: 1,
            logits: vec![0.0; t * e],
            probs,
            probs_are_uniform: false,
            idx: experts.to_vec(),
            weight: vec![1.0; t],
            valid: vec![true; t],
            rank: vec![0; t],
            dropped: vec![false; t],
            aux: BTreeMap::new(),
            seq_id: vec![0; t],
            pos: (0..t as u32).collect(),
            shared_share: Vec::new(),
            expert_kinds: Vec::new(),
        }
    }

    /// Free experts (spec §6): the balance figures cover the FFN experts, the free experts'
    /// slots are reported as their share by kind, and they do not count as active experts.
    #[test]
    fn free_experts_are_shares_not_balance() {
        use switchyard_record::ExpertKind::{Ffn, Null, Zero};
        // Tokens to FFN 0, FFN 1, null 2, null 3, zero 4, FFN 0.
        let mut r = record(&[0, 1, 2, 3, 4, 0], 5);
        r.expert_kinds = vec![Ffn, Ffn, Null, Null, Zero];
        let m = layer_metrics(&r);
        // FFN counts [2, 1]: mean 1.5, std 0.5.
        assert!((m.load.cv - 0.5 / 1.5).abs() < 1e-12, "{}", m.load.cv);
        assert_eq!(m.load.dead_experts, 0, "an unused null expert is not a dead expert");
        assert!(
            (m.load.free_share[&Null] - 2.0 / 6.0).abs() < 1e-12
                && (m.load.free_share[&Zero] - 1.0 / 6.0).abs() < 1e-12
        );
        assert!((m.active_experts_mean - 0.5).abs() < 1e-12 && m.active_experts_hist == vec![3, 3]);
        assert!(layer_metrics(&record(&[0, 1], 2)).load.free_share.is_empty());
    }

    /// §8.1 invariant 3: the sequence-wise balance loss is exactly 1 (α after its coefficient)
    /// when each sequence's counts and mean probabilities are uniform, and more when they are not.
    #[test]
    fn seq_aux_is_one_exactly_when_each_sequence_is_balanced() {
        // Two sequences of 4 tokens, top-1 over 4 experts (probability 1 on the chosen one):
        // each uses every expert once.
        let mut r = record(&[0, 1, 2, 3, 3, 2, 1, 0], 4);
        r.seq_id = vec![0, 0, 0, 0, 1, 1, 1, 1];
        assert!((seq_aux_lbl(&r) - 1.0).abs() < 1e-12, "{}", seq_aux_lbl(&r));
        // Pooled the batch is still balanced, but each sequence on two experts is not.
        let mut skew = record(&[0, 1, 0, 1, 2, 3, 2, 3], 4);
        skew.seq_id = r.seq_id.clone();
        assert!((load_stats(&skew).cv).abs() < 1e-12, "balanced over the batch");
        // f' = 2 and P̄ = 1/2 on two experts per sequence: 2.
        assert!((seq_aux_lbl(&skew) - 2.0).abs() < 1e-12, "{}", seq_aux_lbl(&skew));
    }

    /// §9.1: perfectly balanced top-1 with uniform probabilities gives LBL 1; a collapsed router
    /// gives E.
    #[test]
    fn lbl_is_one_when_balanced_and_e_when_collapsed() {
        let mut r = record(&[0, 1, 2, 3], 4);
        r.probs = vec![0.25; 16];
        let m = layer_metrics(&r);
        assert!((m.lbl_switch - 1.0).abs() < 1e-12 && (m.lbl_topk - 1.0).abs() < 1e-12);
        let collapsed = layer_metrics(&record(&[2; 6], 4));
        assert!((collapsed.lbl_switch - 4.0).abs() < 1e-12);
        assert!((lbl_pooled(&[r.clone(), r]) - 1.0).abs() < 1e-12);
        assert_eq!(m.active_experts_mean, 1.0);
        assert_eq!(m.active_experts_hist, vec![0, 4]);
        assert!((m.confidence - 0.25).abs() < 1e-12 && m.margin.abs() < 1e-12);
    }

    #[test]
    fn drop_rates_count_slots_tokens_and_positions() {
        let mut r = record(&[0, 1, 2, 3, 0, 1, 2, 3], 4);
        r.dropped[6] = true;
        r.dropped[7] = true;
        let m = layer_metrics(&r);
        assert_eq!(m.drop_rate_slots, 0.25);
        assert_eq!(m.drop_rate_tokens, 0.25);
        assert_eq!(m.active_experts_hist, vec![2, 6]);
        assert_eq!(drop_rate_by_position(&r, 4), vec![(0, 0.0), (4, 0.5)]);
    }

    /// §9.2 invariant 1: uniform routing gives CV 0, max/mean 1, load entropy 1.
    #[test]
    fn uniform_routing_is_perfectly_balanced() {
        let s = load_stats(&record(&[0, 1, 2, 3, 0, 1, 2, 3], 4));
        assert_eq!(s.cv, 0.0);
        assert_eq!(s.max_over_mean, 1.0);
        assert!((s.load_entropy - 1.0).abs() < 1e-12);
        assert_eq!(s.dead_experts, 0);
        assert_eq!(s.fraction, vec![0.25; 4]);
    }

    /// §9.2 invariant 2: one-hot routing gives CV √(E−1), max/mean E, load entropy 0.
    #[test]
    fn one_hot_routing_is_maximally_unbalanced() {
        let e = 8;
        let s = load_stats(&record(&[3; 10], e));
        assert!((s.cv - ((e - 1) as f64).sqrt()).abs() < 1e-12, "{}", s.cv);
        assert!((s.max_over_mean - e as f64).abs() < 1e-12);
        assert_eq!(s.load_entropy, 0.0);
        assert_eq!(s.dead_experts, 7);
        assert_eq!(s.token_entropy, 0.0);
    }
}
