//! Free experts in a routing (spec §6): AdaMoE's null experts and MoE++'s zero, copy and
//! constant experts sit in the expert list beside the FFN experts, and every router chooses
//! among them alike. What they change is the combine weights, applied after any router.

use switchyard_record::{ExpertKind, LayerRouting};

/// Marks the record's expert kinds and applies the free experts' weight rule to every token:
/// a slot on an expert that outputs nothing (null, zero) takes weight 0, and the token's other
/// kept slots are scaled up so that the token's total weight is what the router gave it.
///
/// Under a router that renormalises its weights (top-k with `norm_topk_prob`, the designs'
/// own) this is the references' rule exactly: AdaMoE's `w_e = P_e / Σ_{j∈A} P_j` over the
/// chosen true experts `A` (§6.1), and MoE++'s "zero gate to 0, then divide by the sum"
/// (§6.2, the code's rule: {FFN_a, Zero} gives FFN_a weight 1). Under a raw-weight router the
/// token keeps its raw total. A token whose every kept slot outputs nothing gets output 0 (the
/// references' guarded denominator).
pub fn apply_free_experts(rec: &mut LayerRouting, kinds: &[ExpertKind]) {
    if kinds.is_empty() {
        return;
    }
    rec.expert_kinds = kinds.to_vec();
    let k = rec.k_max;
    for t in 0..rec.num_tokens() {
        let kept: Vec<usize> = (t * k..(t + 1) * k).filter(|&i| rec.valid[i] && !rec.dropped[i]).collect();
        let nothing = |i: &usize| kinds.get(rec.idx[*i] as usize).is_some_and(|kind| kind.outputs_nothing());
        let total: f32 = kept.iter().map(|&i| rec.weight[i]).sum();
        let lost: f32 = kept.iter().filter(|i| nothing(i)).map(|&i| rec.weight[i]).sum();
        if lost == 0.0 {
            continue;
        }
        let rest = total - lost;
        let scale = if rest > 0.0 { total / rest } else { 0.0 };
        for &i in &kept {
            rec.weight[i] = if nothing(&i) { 0.0 } else { rec.weight[i] * scale };
        }
    }
    if rec.aux.contains_key("mean_active_experts") {
        let mean = rec.mean_active_experts();
        rec.aux.insert("mean_active_experts".into(), mean);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Two tokens, top-2 over 4 experts (2 FFN, then a null and a copy expert).
    fn record(idx: [u32; 4], weight: [f32; 4]) -> LayerRouting {
        LayerRouting {
            num_experts: 4,
            k_max: 2,
            logits: vec![0.0; 8],
            probs: vec![0.25; 8],
            idx: idx.to_vec(),
            weight: weight.to_vec(),
            valid: vec![true; 4],
            rank: vec![0, 1, 0, 1],
            dropped: vec![false; 4],
            aux: BTreeMap::new(),
            seq_id: vec![0, 0],
            pos: vec![0, 1],
            ..LayerRouting::default()
        }
    }

    const KINDS: [ExpertKind; 4] = [ExpertKind::Ffn, ExpertKind::Ffn, ExpertKind::Null, ExpertKind::Copy];

    /// §6.1 invariant 2 and §6.2 invariant 1: the weights of the experts that output something
    /// sum to 1 (or the token is skipped), and a null/zero slot never has weight.
    #[test]
    fn nothing_slots_give_their_weight_to_the_others() {
        // Token 0: FFN 1 (0.6) and null (0.4) -> FFN 1 weight 1. Token 1: null and null -> 0.
        let mut rec = record([1, 2, 2, 2], [0.6, 0.4, 0.5, 0.5]);
        apply_free_experts(&mut rec, &KINDS);
        assert_eq!(rec.weight, vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(rec.expert_kinds, KINDS.to_vec());
        // A copy expert is an expert that outputs something: its weight stays.
        let mut rec = record([3, 0, 0, 1], [0.7, 0.3, 0.5, 0.5]);
        apply_free_experts(&mut rec, &KINDS);
        assert_eq!(rec.weight, vec![0.7, 0.3, 0.5, 0.5]);
    }

    /// A raw-weight router keeps the token's total.
    #[test]
    fn a_raw_total_is_kept() {
        let mut rec = record([0, 2, 1, 0], [0.3, 0.2, 0.4, 0.1]);
        apply_free_experts(&mut rec, &KINDS);
        assert!((rec.weight[0] - 0.5).abs() < 1e-6 && rec.weight[1] == 0.0);
        assert_eq!(&rec.weight[2..], &[0.4, 0.1]);
    }

    /// With no kinds (a plain model) nothing changes.
    #[test]
    fn a_plain_model_is_untouched() {
        let mut rec = record([1, 2, 2, 3], [0.6, 0.4, 0.5, 0.5]);
        let before = rec.clone();
        apply_free_experts(&mut rec, &[]);
        assert_eq!(rec, before);
    }
}
