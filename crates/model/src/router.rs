//! Routers: from a layer's router logits to its routing record (spec §1).
//!
//! Routing decisions are made on the host from the logits read back once per layer. The record
//! has to reach the host anyway (it is what the playground shows), the selection algorithms of
//! the spec (capacity priority, GShard's second-expert policy, THOR draws) are sequential and
//! clearest as plain Rust, and one implementation then serves every backend. New routers join
//! [`RouterSpec`] as variants with their own `route` function; the MoE block does not change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_record::LayerRouting;

/// Which router a forward pass uses, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RouterSpec {
    /// Token-choice top-k softmax routing (spec §1.1): `P = softmax(Z)`, the k highest
    /// experts (ties to the lower index), combine weights `P` renormalised over the chosen set
    /// (`norm_topk_prob = true`: Mixtral / HF) or raw (`false`: Qwen1.5, OLMoE; with k = 1 this
    /// is Switch's top-1). Dropless.
    TopK {
        /// Experts per token.
        k: usize,
        /// Renormalise the chosen probabilities to sum to 1.
        norm_topk_prob: bool,
    },
}

/// Why a router specification cannot run on a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouterError {
    /// `k` is outside `1..=E`.
    #[error("top-k router: k must be between 1 and the number of experts ({n_experts}), got {k}")]
    K {
        /// Requested k.
        k: usize,
        /// Experts in the model.
        n_experts: usize,
    },
}

impl RouterSpec {
    /// Switch Transformer routing (spec §1.2) at inference: top-1 with the raw probability as
    /// the weight.
    pub fn switch() -> Self {
        Self::TopK { k: 1, norm_topk_prob: false }
    }

    /// Checks the parameters against a model with `n_experts` experts.
    pub fn validate(&self, n_experts: usize) -> Result<(), RouterError> {
        match *self {
            Self::TopK { k, .. } if k == 0 || k > n_experts => Err(RouterError::K { k, n_experts }),
            Self::TopK { .. } => Ok(()),
        }
    }

    /// Routes one layer. `logits` is `[T, E]` row-major; `ctx` gives each token's identity.
    pub fn route(&self, logits: Vec<f32>, n_experts: usize, ctx: &RouteContext<'_>) -> LayerRouting {
        match *self {
            Self::TopK { k, norm_topk_prob } => top_k(logits, n_experts, k, norm_topk_prob, ctx),
        }
    }
}

/// Who the routed tokens are: layer, stable sequence ids and absolute positions (spec §0.2).
#[derive(Debug, Clone, Copy)]
pub struct RouteContext<'a> {
    /// MoE layer index.
    pub layer: usize,
    /// Sequence id per token, `[T]`.
    pub seq_id: &'a [u32],
    /// Absolute position per token, `[T]`.
    pub pos: &'a [u32],
}

/// Softmax of one row, computed in f64 so that the record does not depend on summation order.
pub fn softmax_row(z: &[f32]) -> Vec<f32> {
    let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let ex: Vec<f64> = z.iter().map(|&v| (f64::from(v) - m).exp()).collect();
    let s: f64 = ex.iter().sum();
    ex.iter().map(|&v| (v / s) as f32).collect()
}

/// Expert indices of one row sorted by score descending, ties broken by the lower index
/// (spec §0.3).
pub fn rank_experts(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

fn top_k(logits: Vec<f32>, e: usize, k: usize, renormalise: bool, ctx: &RouteContext<'_>) -> LayerRouting {
    let t = ctx.seq_id.len();
    let mut probs = Vec::with_capacity(t * e);
    let (mut idx, mut weight, mut rank) =
        (Vec::with_capacity(t * k), Vec::with_capacity(t * k), Vec::with_capacity(t * k));
    for row in logits.chunks(e) {
        let p = softmax_row(row);
        let chosen = &rank_experts(row)[..k];
        let mass: f32 = chosen.iter().map(|&j| p[j]).sum();
        for (r, &j) in chosen.iter().enumerate() {
            idx.push(j as u32);
            weight.push(if renormalise { p[j] / mass } else { p[j] });
            rank.push(r as u32);
        }
        probs.extend(p);
    }
    LayerRouting {
        layer: ctx.layer,
        num_experts: e,
        k_max: k,
        logits,
        probs,
        probs_are_uniform: false,
        idx,
        weight,
        valid: vec![true; t * k],
        rank,
        dropped: vec![false; t * k],
        aux: BTreeMap::new(),
        seq_id: ctx.seq_id.to_vec(),
        pos: ctx.pos.to_vec(),
    }
}

/// For each expert, the tokens it computes and their combine weights: what dispatch needs.
/// Dropped and invalid slots are left out.
pub fn expert_assignments(rec: &LayerRouting) -> Vec<(Vec<u32>, Vec<f32>)> {
    let mut out = vec![(Vec::new(), Vec::new()); rec.num_experts];
    for t in 0..rec.num_tokens() {
        for slot in rec.slots(t).filter(|s| !s.dropped) {
            out[slot.expert].0.push(t as u32);
            out[slot.expert].1.push(slot.weight);
        }
    }
    out
}

/// The combine weights as a dense `[T, E]` matrix (0 where an expert is not used).
pub fn dense_weights(rec: &LayerRouting) -> Vec<f32> {
    let e = rec.num_experts;
    let mut w = vec![0.0; rec.num_tokens() * e];
    for t in 0..rec.num_tokens() {
        for slot in rec.slots(t).filter(|s| !s.dropped) {
            w[t * e + slot.expert] += slot.weight;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    fn random_logits(t: usize, e: usize, seed: u64) -> Vec<f32> {
        (0..(t * e) as u64).map(|i| rng::normal(seed, 99, &[i]) as f32 * 2.0).collect()
    }

    fn route(spec: &RouterSpec, logits: Vec<f32>, e: usize) -> LayerRouting {
        let t = logits.len() / e;
        let seq = vec![0; t];
        let pos: Vec<u32> = (0..t as u32).collect();
        spec.route(logits, e, &RouteContext { layer: 0, seq_id: &seq, pos: &pos })
    }

    /// §1.1: "top-k then softmax" (Mixtral paper) equals "softmax, top-k, renormalise" (HF).
    #[test]
    fn paper_and_hf_forms_agree_and_weights_sum_to_one() {
        let (t, e) = (64, 8);
        let logits = random_logits(t, e, 1);
        let rec = route(&RouterSpec::TopK { k: 2, norm_topk_prob: true }, logits.clone(), e);
        rec.check_shapes().unwrap();
        for ti in 0..t {
            let row = &logits[ti * e..(ti + 1) * e];
            let slots: Vec<_> = rec.slots(ti).collect();
            let sel: Vec<f32> = slots.iter().map(|s| row[s.expert]).collect();
            let paper = softmax_row(&sel);
            for (s, p) in slots.iter().zip(&paper) {
                assert!((s.weight - p).abs() < 1e-6, "token {ti}: {} vs {p}", s.weight);
            }
            let sum: f32 = slots.iter().map(|s| s.weight).sum();
            assert!((sum - 1.0).abs() < 1e-6);
            assert!(slots[0].weight >= slots[1].weight);
        }
    }

    /// §1.2 invariant 2: Switch's weight is the max probability and lies in [1/E, 1].
    #[test]
    fn switch_weight_is_the_max_probability() {
        let (t, e) = (64, 8);
        let rec = route(&RouterSpec::switch(), random_logits(t, e, 2), e);
        for ti in 0..t {
            let p = rec.probs_row(ti);
            let max = p.iter().copied().fold(0.0, f32::max);
            let slot = rec.slots(ti).next().unwrap();
            assert_eq!(slot.weight, max);
            assert_eq!(p[slot.expert], max);
            assert!(slot.weight >= 1.0 / e as f32 - 1e-7 && slot.weight <= 1.0);
        }
    }

    /// §1.1: with `norm_topk_prob = false` the weights are raw probabilities, summing below 1.
    #[test]
    fn unnormalised_weights_are_raw_probabilities() {
        let (t, e) = (32, 8);
        let rec = route(&RouterSpec::TopK { k: 2, norm_topk_prob: false }, random_logits(t, e, 3), e);
        for ti in 0..t {
            let sum: f32 = rec.slots(ti).map(|s| s.weight).sum();
            assert!(sum < 1.0);
            for s in rec.slots(ti) {
                assert_eq!(s.weight, rec.probs_row(ti)[s.expert]);
            }
        }
    }

    /// §0.3: ties go to the lower expert index; ranks are 0..k in slot order.
    #[test]
    fn ties_break_towards_the_lower_index() {
        let rec = route(&RouterSpec::TopK { k: 2, norm_topk_prob: true }, vec![1.0, 3.0, 3.0, 3.0], 4);
        let slots: Vec<_> = rec.slots(0).collect();
        assert_eq!((slots[0].expert, slots[1].expert), (1, 2));
        assert_eq!((slots[0].rank, slots[1].rank), (0, 1));
        assert!((slots[0].weight - 0.5).abs() < 1e-7);
    }

    #[test]
    fn k_is_validated() {
        assert!(RouterSpec::TopK { k: 0, norm_topk_prob: true }.validate(8).is_err());
        assert!(RouterSpec::TopK { k: 9, norm_topk_prob: true }.validate(8).is_err());
        assert!(RouterSpec::TopK { k: 8, norm_topk_prob: true }.validate(8).is_ok());
    }

    #[test]
    fn assignments_and_dense_weights_agree() {
        let (t, e) = (16, 4);
        let rec = route(&RouterSpec::TopK { k: 2, norm_topk_prob: true }, random_logits(t, e, 4), e);
        let dense = dense_weights(&rec);
        let lists = expert_assignments(&rec);
        let mut rebuilt = vec![0.0; t * e];
        for (ex, (rows, ws)) in lists.iter().enumerate() {
            for (&r, &w) in rows.iter().zip(ws) {
                rebuilt[r as usize * e + ex] = w;
            }
        }
        assert_eq!(dense, rebuilt);
        assert_eq!(lists.iter().map(|l| l.0.len()).sum::<usize>(), t * 2);
    }
}
