//! Router A/B on the same tokens: which experts changed and how far apart the router
//! distributions are (Jensen–Shannon divergence, spec §10.1 suggests it for comparing
//! distributions).

use serde::{Deserialize, Serialize};
use switchyard_record::LayerRouting;

use crate::corpus::kept;

/// Jensen–Shannon divergence in bits between two distributions of the same length: symmetric,
/// 0 when they are equal, 1 when their supports are disjoint. Inputs are renormalised; an
/// all-zero input counts as uniform.
pub fn js_divergence(p: &[f32], q: &[f32]) -> f64 {
    let norm = |v: &[f32]| {
        let s: f64 = v.iter().map(|&x| f64::from(x.max(0.0))).sum();
        let n = v.len().max(1) as f64;
        v.iter().map(|&x| if s > 0.0 { f64::from(x.max(0.0)) / s } else { 1.0 / n }).collect::<Vec<_>>()
    };
    let (p, q) = (norm(p), norm(q));
    let kl_to_mid = |a: &[f64], b: &[f64]| -> f64 {
        a.iter().zip(b).filter(|(x, _)| **x > 0.0).map(|(&x, &y)| x * (2.0 * x / (x + y)).log2()).sum()
    };
    (0.5 * kl_to_mid(&p, &q) + 0.5 * kl_to_mid(&q, &p)).clamp(0.0, 1.0)
}

/// One token at one layer under configurations A and B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenChange {
    /// Kept experts of A that B does not use.
    pub only_a: Vec<usize>,
    /// Kept experts of B that A does not use.
    pub only_b: Vec<usize>,
    /// Whether the first kept expert differs.
    pub first_changed: bool,
    /// JS divergence (bits) of the two router probability rows (0 when either side has none).
    pub js: f64,
}

impl TokenChange {
    /// Whether the set of kept experts differs.
    pub fn changed(&self) -> bool {
        !self.only_a.is_empty() || !self.only_b.is_empty()
    }
}

/// A layer of an A/B comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerChange {
    /// Layer index.
    pub layer: usize,
    /// Per token, in order.
    pub tokens: Vec<TokenChange>,
    /// Share of tokens whose kept expert set changed.
    pub changed_rate: f64,
    /// Share of tokens whose first kept expert changed.
    pub first_changed_rate: f64,
    /// Mean JS divergence of the router rows (0 when not comparable).
    pub mean_js: f64,
    /// Whether both sides have router probabilities: THOR, hash and random routers report
    /// uniform placeholder rows, and a divergence against those measures nothing.
    pub js_comparable: bool,
}

/// Compares two records of one layer over the same tokens (the shorter length is used).
pub fn compare_layer(a: &LayerRouting, b: &LayerRouting) -> LayerChange {
    let n = a.num_tokens().min(b.num_tokens());
    let tokens: Vec<TokenChange> = (0..n)
        .map(|t| {
            let (ka, kb) = (kept(a, t), kept(b, t));
            TokenChange {
                only_a: ka.iter().copied().filter(|e| !kb.contains(e)).collect(),
                only_b: kb.iter().copied().filter(|e| !ka.contains(e)).collect(),
                first_changed: ka.first() != kb.first(),
                js: if a.probs_are_uniform || b.probs_are_uniform {
                    0.0
                } else {
                    js_divergence(a.probs_row(t), b.probs_row(t))
                },
            }
        })
        .collect();
    let nf = n.max(1) as f64;
    let js_comparable = !a.probs_are_uniform && !b.probs_are_uniform;
    LayerChange {
        js_comparable,
        layer: a.layer,
        changed_rate: tokens.iter().filter(|c| c.changed()).count() as f64 / nf,
        first_changed_rate: tokens.iter().filter(|c| c.first_changed).count() as f64 / nf,
        mean_js: tokens.iter().map(|c| c.js).sum::<f64>() / nf,
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_is_symmetric_bounded_and_zero_only_for_equal_rows() {
        let p = [0.7, 0.2, 0.1, 0.0];
        let q = [0.1, 0.1, 0.4, 0.4];
        assert_eq!(js_divergence(&p, &p), 0.0);
        let d = js_divergence(&p, &q);
        assert!(d > 0.1 && d < 1.0, "{d}");
        assert!((d - js_divergence(&q, &p)).abs() < 1e-12);
        assert!((js_divergence(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12, "disjoint supports: 1 bit");
        // Two-point check by hand: JS([1,0],[.5,.5]) = 0.5·log2(4/3) + 0.5·(0.5·log2(2/3) + 0.5·log2(2)).
        let hand = 0.5 * (4.0f64 / 3.0).log2() + 0.25 * (2.0f64 / 3.0).log2() + 0.25;
        assert!((js_divergence(&[1.0, 0.0], &[0.5, 0.5]) - hand).abs() < 1e-12);
    }

    fn record(experts: &[[usize; 2]], probs: &[[f32; 4]]) -> LayerRouting {
        let t = experts.len();
        let mut r = LayerRouting {
            layer: 1,
            num_experts: 4,
            k_max: 2,
            logits: vec![0.0; t * 4],
            probs: vec![0.0; t * 4],
            idx: vec![0; t * 2],
            weight: vec![0.0; t * 2],
            valid: vec![false; t * 2],
            rank: vec![0; t * 2],
            dropped: vec![false; t * 2],
            seq_id: vec![0; t],
            pos: (0..t as u32).collect(),
            ..LayerRouting::default()
        };
        for (t, (e, p)) in experts.iter().zip(probs).enumerate() {
            r.probs[t * 4..t * 4 + 4].copy_from_slice(p);
            for (s, &x) in e.iter().enumerate() {
                r.idx[t * 2 + s] = x as u32;
                r.valid[t * 2 + s] = true;
                r.rank[t * 2 + s] = s as u32;
                r.weight[t * 2 + s] = 0.5;
            }
        }
        r
    }

    #[test]
    fn changed_experts_and_rates() {
        let p = [[0.4, 0.3, 0.2, 0.1]; 3];
        let a = record(&[[0, 1], [0, 1], [2, 3]], &p);
        let same = compare_layer(&a, &a);
        assert_eq!((same.changed_rate, same.first_changed_rate, same.mean_js), (0.0, 0.0, 0.0));
        let mut q = p;
        q[2] = [0.1, 0.2, 0.3, 0.4];
        let b = record(&[[1, 0], [0, 2], [2, 3]], &q);
        let c = compare_layer(&a, &b);
        assert_eq!(c.layer, 1);
        assert!(!c.tokens[0].changed() && c.tokens[0].first_changed, "same set, other order");
        assert_eq!((c.tokens[1].only_a.clone(), c.tokens[1].only_b.clone()), (vec![1], vec![2]));
        assert!((c.changed_rate - 1.0 / 3.0).abs() < 1e-12);
        assert!((c.first_changed_rate - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.tokens[0].js, 0.0);
        assert!(c.tokens[2].js > 0.0 && (c.mean_js - c.tokens[2].js / 3.0).abs() < 1e-12);
        // Against a router without probabilities there is no divergence to report.
        let mut u = b.clone();
        u.probs_are_uniform = true;
        let c = compare_layer(&a, &u);
        assert!(!c.js_comparable && c.mean_js == 0.0 && c.changed_rate > 0.0);
        assert!(compare_layer(&a, &b).js_comparable);
        // A dropped slot is not a kept expert.
        let mut d = a.clone();
        d.dropped[1] = true;
        assert_eq!(compare_layer(&a, &d).tokens[0].only_a, vec![1]);
    }
}
