//! Metrics computed from routing records (spec `routers.md` §9.2). Pure functions over plain
//! data: no burn, no web.

use serde::Serialize;
use switchyard_record::LayerRouting;

/// Load and balance of one layer over the tokens of a record (spec §9.2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadStats {
    /// Assigned slots per expert `c_e` (dropped slots included: assignment happens first).
    pub counts: Vec<u64>,
    /// Load fraction `ℓ_e = c_e / Σ c`.
    pub fraction: Vec<f64>,
    /// Coefficient of variation `std_pop(c) / mean(c)`.
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

/// Load statistics of one layer.
pub fn load_stats(rec: &LayerRouting) -> LoadStats {
    let e = rec.num_experts;
    let mut counts = vec![0u64; e];
    for t in 0..rec.num_tokens() {
        for s in rec.slots(t) {
            counts[s.expert] += 1;
        }
    }
    let total: u64 = counts.iter().sum();
    let fraction: Vec<f64> = counts.iter().map(|&c| if total == 0 { 0.0 } else { c as f64 / total as f64 }).collect();
    let mean = total as f64 / e as f64;
    let var = counts.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / e as f64;
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let log_e = (e as f64).ln();
    let norm = |h: f64| if e > 1 { h / log_e } else { 0.0 };
    let t = rec.num_tokens().max(1) as f64;
    let token_h =
        (0..rec.num_tokens()).map(|i| entropy(rec.probs_row(i).iter().map(|&p| f64::from(p)))).sum::<f64>() / t;
    LoadStats {
        cv: if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
        max_over_mean: if mean > 0.0 { max / mean } else { 0.0 },
        dead_experts: counts.iter().filter(|&&c| c == 0).count(),
        load_entropy: norm(entropy(fraction.iter().copied())),
        token_entropy: norm(token_h),
        counts,
        fraction,
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
        }
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
