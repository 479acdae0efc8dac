//! The router invariants of spec §1–§7, on host-side routing (backend-independent: every
//! router decides on the host from read-back logits).

use super::*;
use crate::rng;

pub(crate) fn random_logits(t: usize, e: usize, seed: u64) -> Vec<f32> {
    (0..(t * e) as u64).map(|i| rng::normal(seed, 99, &[i]) as f32 * 2.0).collect()
}

/// Routes `logits` as one sequence (or `seqs` sequences of equal length).
fn route_with(
    spec: &RouterSpec,
    logits: Vec<f32>,
    e: usize,
    seqs: usize,
    iv: &Interventions,
    seed: u64,
    step: u64,
) -> LayerRouting {
    let t = logits.len() / e;
    let per = t / seqs;
    let seq: Vec<u32> = (0..t).map(|i| (i / per) as u32).collect();
    let pos: Vec<u32> = (0..t).map(|i| (i % per) as u32).collect();
    let ids: Vec<u32> = (0..t).map(|i| (i * 7 % 13) as u32).collect();
    let allowed = iv.allowed(0, e);
    let ctx = RouteContext {
        layer: 0,
        seq_id: &seq,
        pos: &pos,
        token_id: &ids,
        seed,
        step,
        allowed: &allowed,
        forced: iv.forced(0),
        selection_bias: None,
    };
    let rec = spec.route(logits, e, &ctx);
    rec.check_shapes().unwrap();
    rec
}

fn route(spec: &RouterSpec, logits: Vec<f32>, e: usize) -> LayerRouting {
    route_with(spec, logits, e, 1, &Interventions::default(), 7, 0)
}

fn experts_of(rec: &LayerRouting, t: usize) -> Vec<usize> {
    rec.slots(t).filter(|s| !s.dropped).map(|s| s.expert).collect()
}

// ---- §1.1 / §1.4 top-k ----

/// §1.1 and §1.4 invariants 1–2: "top-k then softmax" (paper) equals "softmax, top-k,
/// renormalise" (HF), and the weights sum to 1.
#[test]
fn paper_and_hf_forms_agree_and_weights_sum_to_one() {
    let (t, e) = (64, 8);
    let logits = random_logits(t, e, 1);
    let rec = route(&RouterSpec::top_k(2, true), logits.clone(), e);
    for ti in 0..t {
        let row = &logits[ti * e..(ti + 1) * e];
        let slots: Vec<_> = rec.slots(ti).collect();
        let sel: Vec<f32> = slots.iter().map(|s| row[s.expert]).collect();
        for (s, p) in slots.iter().zip(&softmax_row(&sel)) {
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

/// §1.2 invariant 3: top-k at inference is seed-independent.
#[test]
fn top_k_is_seed_independent() {
    let logits = random_logits(16, 8, 3);
    let iv = Interventions::default();
    let a = route_with(&RouterSpec::top_k(2, true), logits.clone(), 8, 1, &iv, 1, 0);
    let b = route_with(&RouterSpec::top_k(2, true), logits, 8, 1, &iv, 2, 5);
    assert_eq!(a, b);
}

#[test]
fn unnormalised_weights_are_raw_probabilities() {
    let (t, e) = (32, 8);
    let rec = route(&RouterSpec::top_k(2, false), random_logits(t, e, 3), e);
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
    let rec = route(&RouterSpec::top_k(2, true), vec![1.0, 3.0, 3.0, 3.0], 4);
    let slots: Vec<_> = rec.slots(0).collect();
    assert_eq!((slots[0].expert, slots[1].expert), (1, 2));
    assert_eq!((slots[0].rank, slots[1].rank), (0, 1));
    assert!((slots[0].weight - 0.5).abs() < 1e-7);
}

#[test]
fn parameters_are_validated() {
    assert!(RouterSpec::top_k(0, true).validate(8).is_err());
    assert!(RouterSpec::top_k(9, true).validate(8).is_err());
    assert!(RouterSpec::top_k(8, true).validate(8).is_ok());
    assert!(RouterSpec::TopP { p: f32::NAN }.validate(8).is_err());
    assert!(
        RouterSpec::GShard { policy: SecondPolicy::Random, threshold: 0.0, capacity_factor: 2.0 }.validate(8).is_err()
    );
    assert!(RouterSpec::SmoeDropout { k: 2, init_std: -1.0, dense: SmoeDense::Softmax }.validate(8).is_err());
    let err = RouterSpec::top_k(9, true).validate(8).unwrap_err().to_string();
    assert_eq!(err, "k must be between 1 and the number of experts (8), got 9");
}

#[test]
fn assignments_and_dense_weights_agree() {
    let (t, e) = (16, 4);
    let rec = route(&RouterSpec::top_k(2, true), random_logits(t, e, 4), e);
    let dense = dense_weights(&rec);
    let mut rebuilt = vec![0.0; t * e];
    for (ex, (rows, ws)) in expert_assignments(&rec).iter().enumerate() {
        for (&r, &w) in rows.iter().zip(ws) {
            rebuilt[r as usize * e + ex] = w;
        }
    }
    assert_eq!(dense, rebuilt);
}

// ---- §1.6 capacity ----

fn capped(factor: f32, priority: Priority) -> RouterSpec {
    RouterSpec::TopK {
        k: 2,
        norm_topk_prob: true,
        capacity: Some(Capacity { factor, formula: CapacityFormula::Mtf, min_capacity: 0, priority }),
    }
}

/// §1.6 invariant 1: kept slots per (group, expert) ≤ C; drops have weight 0, survivors keep
/// their weights (no renormalisation).
#[test]
fn capacity_bounds_kept_slots_per_expert() {
    let (t, e) = (64, 8);
    let logits = random_logits(t, e, 5);
    let free = route(&RouterSpec::top_k(2, true), logits.clone(), e);
    let rec = route_with(&capped(1.0, Priority::Position), logits, e, 2, &Interventions::default(), 0, 0);
    let c = (32.0f64 * 1.0 / 8.0).floor() as usize;
    for s in 0..2u32 {
        let mut kept = vec![0; e];
        for ti in (0..t).filter(|&i| rec.seq_id[i] == s) {
            for slot in rec.slots(ti).filter(|x| !x.dropped) {
                kept[slot.expert] += 1;
            }
        }
        assert!(kept.iter().all(|&n| n <= c), "{kept:?} > {c}");
    }
    assert!(rec.dropped.iter().any(|&d| d), "CF 1 should drop something here");
    for i in 0..t * 2 {
        if rec.dropped[i] {
            assert_eq!(rec.weight[i], 0.0);
        } else {
            assert_eq!(rec.weight[i], free.weight[i]);
        }
    }
}

/// §1.6 invariant 2: with CF ≥ E nothing is dropped and the result is the dropless router.
#[test]
fn large_capacity_equals_dropless() {
    let logits = random_logits(40, 8, 6);
    let free = route(&RouterSpec::top_k(2, true), logits.clone(), 8);
    let rec = route(&capped(8.0, Priority::Position), logits, 8);
    assert!(rec.dropped.iter().all(|d| !d));
    assert_eq!(rec.weight, free.weight);
    assert_eq!(rec.idx, free.idx);
}

/// §1.6 invariant 3: with position priority, if token t is kept at expert e for rank r, every
/// earlier token that chose e at rank r is kept too.
#[test]
fn position_priority_keeps_earlier_tokens_first() {
    let (t, e) = (64, 4);
    let rec = route(&capped(0.5, Priority::Position), random_logits(t, e, 7), e);
    for ti in 0..t {
        for j in 0..2 {
            let i = ti * 2 + j;
            if rec.dropped[i] {
                continue;
            }
            for earlier in 0..ti {
                let i2 = earlier * 2 + j;
                if rec.idx[i2] == rec.idx[i] {
                    assert!(!rec.dropped[i2], "token {earlier} dropped but later {ti} kept");
                }
            }
        }
    }
    // Reverse priority drops from the start instead.
    let rev = route(&capped(0.5, Priority::ReversePosition), random_logits(t, e, 7), e);
    let first_half: usize = (0..t).filter(|&i| i < t / 2).map(|i| rev.dropped[i * 2] as usize).sum();
    let second_half: usize = (0..t).filter(|&i| i >= t / 2).map(|i| rev.dropped[i * 2] as usize).sum();
    assert!(first_half >= second_half);
}

// ---- §1.3 GShard ----

/// §1.3 invariant 1: before any drop w1 + w2 = 1 and w1 ≥ w2.
#[test]
fn gshard_weights_sum_to_one_before_drops() {
    let rec = route(
        &RouterSpec::GShard { policy: SecondPolicy::All, threshold: 0.2, capacity_factor: 16.0 },
        random_logits(32, 8, 8),
        8,
    );
    for t in 0..32 {
        let (w1, w2) = (rec.weight[t * 2], rec.weight[t * 2 + 1]);
        assert!((w1 + w2 - 1.0).abs() < 1e-6 && w1 >= w2);
    }
}

/// §1.3 invariant 2: policy `none` with CF ≥ E is Switch top-1 with w1 = g1/(g1+g2), not 1.
#[test]
fn gshard_none_is_top1_with_top2_renormalised_weight() {
    let logits = random_logits(32, 8, 9);
    let rec = route(
        &RouterSpec::GShard { policy: SecondPolicy::None, threshold: 0.2, capacity_factor: 8.0 },
        logits.clone(),
        8,
    );
    let top2 = route(&RouterSpec::top_k(2, true), logits, 8);
    for t in 0..32 {
        let slots: Vec<_> = rec.slots(t).collect();
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].expert, top2.idx[t * 2] as usize);
        assert!((slots[0].weight - top2.weight[t * 2]).abs() < 1e-6);
        assert!(slots[0].weight < 1.0);
    }
}

/// §1.3 invariant 3: kept slots per expert ≤ C, and a dropped first choice at an expert means
/// no kept second choices there.
#[test]
fn gshard_capacity_is_shared_and_first_choices_come_first() {
    let (t, e) = (64, 4);
    let rec = route(
        &RouterSpec::GShard { policy: SecondPolicy::All, threshold: 0.2, capacity_factor: 1.0 },
        random_logits(t, e, 10),
        e,
    );
    let c = (t as f64 * 1.0 / e as f64).floor() as usize;
    for x in 0..e as u32 {
        let kept = (0..t * 2).filter(|&i| rec.valid[i] && !rec.dropped[i] && rec.idx[i] == x).count();
        assert!(kept <= c);
        let first_dropped = (0..t).any(|ti| rec.dropped[ti * 2] && rec.idx[ti * 2] == x);
        let second_kept =
            (0..t).any(|ti| rec.valid[ti * 2 + 1] && !rec.dropped[ti * 2 + 1] && rec.idx[ti * 2 + 1] == x);
        assert!(!(first_dropped && second_kept), "expert {x}");
    }
}

/// The random policy is reproducible from the seed and depends on it.
#[test]
fn gshard_random_policy_is_seeded() {
    let spec = RouterSpec::GShard { policy: SecondPolicy::Random, threshold: 0.6, capacity_factor: 8.0 };
    let logits = random_logits(64, 8, 11);
    let iv = Interventions::default();
    let a = route_with(&spec, logits.clone(), 8, 1, &iv, 1, 0);
    assert_eq!(a, route_with(&spec, logits.clone(), 8, 1, &iv, 1, 0));
    assert_ne!(a.valid, route_with(&spec, logits, 8, 1, &iv, 2, 0).valid);
}

// ---- §5 top-p ----

/// §5.3 invariants 1–3.
#[test]
fn top_p_keeps_the_smallest_prefix_exceeding_p() {
    let (t, e) = (64, 8);
    let logits = random_logits(t, e, 12);
    let rec = route(&RouterSpec::TopP { p: 0.4 }, logits.clone(), e);
    for ti in 0..t {
        let slots: Vec<_> = rec.slots(ti).collect();
        assert!(!slots.is_empty() && slots.len() <= e);
        let sum: f32 = slots.iter().map(|s| s.weight).sum();
        let without_last: f32 = slots[..slots.len() - 1].iter().map(|s| s.weight).sum();
        assert!(sum > 0.4 && without_last <= 0.4, "{sum} {without_last}");
        for s in &slots {
            assert_eq!(s.weight, rec.probs_row(ti)[s.expert], "raw weights");
        }
    }
    let tiny = route(&RouterSpec::TopP { p: 0.0 }, logits.clone(), e);
    let full = route(&RouterSpec::TopP { p: 1.0 }, logits.clone(), e);
    for ti in 0..t {
        let s: Vec<_> = tiny.slots(ti).collect();
        let pmax = tiny.probs_row(ti).iter().copied().fold(0.0, f32::max);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].weight, pmax);
        assert_eq!(full.slots(ti).count(), e);
    }
    let mut last = vec![0; t];
    for p in [0.1, 0.3, 0.5, 0.7, 0.9] {
        let r = route(&RouterSpec::TopP { p }, logits.clone(), e);
        for (ti, l) in last.iter_mut().enumerate() {
            let n = r.slots(ti).count();
            assert!(n >= *l);
            *l = n;
        }
    }
    assert!(rec.aux["mean_active_experts"] >= 1.0);
}

// ---- §2 THOR ----

/// §2.6 invariant 3: token mode is uniform (χ² test), seeded, and position-keyed.
#[test]
fn thor_token_mode_is_uniform_and_seeded() {
    let (t, e) = (8000, 8);
    let spec = RouterSpec::Thor { mode: ThorMode::Token };
    let rec = route(&spec, vec![0.0; t * e], e);
    let mut counts = vec![0f64; e];
    for ti in 0..t {
        let s: Vec<_> = rec.slots(ti).collect();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].weight, 1.0);
        counts[s[0].expert] += 1.0;
        assert!(rec.probs_row(ti).iter().all(|&p| p == 1.0 / e as f32));
    }
    let expect = t as f64 / e as f64;
    let chi2: f64 = counts.iter().map(|c| (c - expect).powi(2) / expect).sum();
    assert!(chi2 < 24.3, "chi2 {chi2} (7 dof, p = 0.001 critical value 24.3)");
    assert!(rec.probs_are_uniform);
    let iv = Interventions::default();
    assert_eq!(rec, route_with(&spec, vec![0.0; t * e], e, 1, &iv, 7, 0));
    assert_ne!(rec.idx, route_with(&spec, vec![0.0; t * e], e, 1, &iv, 8, 0).idx);
}

#[test]
fn thor_sequence_modes_share_or_redraw_as_specified() {
    let e = 8;
    let iv = Interventions::default();
    let seq = route_with(&RouterSpec::Thor { mode: ThorMode::Sequence }, vec![0.0; 40 * e], e, 4, &iv, 3, 0);
    for ti in 0..40 {
        assert_eq!(seq.idx[ti], seq.idx[(ti / 10) * 10], "one expert per sequence");
    }
    // Different sequences draw independently: over 20 sequences more than one expert appears.
    let many = route_with(&RouterSpec::Thor { mode: ThorMode::Sequence }, vec![0.0; 40 * e], e, 20, &iv, 3, 0);
    let distinct: std::collections::BTreeSet<u32> = (0..20).map(|s| many.idx[s * 2]).collect();
    assert!(distinct.len() > 1);
    // sequence_ref: the prompt call (step 0) equals sequence mode; later steps re-draw.
    let spec = RouterSpec::Thor { mode: ThorMode::SequenceRef };
    let prompt = route_with(&spec, vec![0.0; 40 * e], e, 4, &iv, 3, 0);
    assert_eq!(prompt.idx, seq.idx);
    let steps: std::collections::BTreeSet<u32> =
        (1..30).map(|step| route_with(&spec, vec![0.0; e], e, 1, &iv, 3, step).idx[0]).collect();
    assert!(steps.len() > 1, "sequence_ref must re-draw per decoding call");
}

/// §2.6 invariant 2: with E = 1 THOR is the dense layer (expert 0, weight 1, every mode).
#[test]
fn thor_with_one_expert_is_dense() {
    for mode in [ThorMode::Token, ThorMode::Sequence, ThorMode::SequenceRef, ThorMode::Mean] {
        let rec = route(&RouterSpec::Thor { mode }, vec![0.0; 10], 1);
        for t in 0..10 {
            let s: Vec<_> = rec.slots(t).collect();
            assert_eq!((s.len(), s[0].expert, s[0].weight), (1, 0, 1.0), "{mode:?}");
        }
    }
}

#[test]
fn thor_mean_weights_every_expert_equally() {
    let rec = route(&RouterSpec::Thor { mode: ThorMode::Mean }, vec![0.0; 3 * 4], 4);
    for t in 0..3 {
        let s: Vec<_> = rec.slots(t).collect();
        assert_eq!(s.len(), 4);
        assert!(s.iter().all(|x| x.weight == 0.25));
    }
}

// ---- §7.2 hash ----

/// §7.2 invariants 1–2: the expert depends only on the token id; one expert, weight 1.
#[test]
fn hash_routing_depends_only_on_the_token_id() {
    let e = 8;
    let rec = route(&RouterSpec::Hash, vec![0.0; 26 * e], e);
    let ids: Vec<u32> = (0..26).map(|i| (i * 7 % 13) as u32).collect();
    for a in 0..26 {
        assert_eq!(rec.slots(a).count(), 1);
        assert_eq!(rec.weight[a], 1.0);
        for b in 0..26 {
            if ids[a] == ids[b] {
                assert_eq!(rec.idx[a], rec.idx[b]);
            }
        }
    }
    let table: Vec<usize> = (0..5000).map(|v| special::hash_expert(1, v, &(0..e).collect::<Vec<_>>())).collect();
    for x in 0..e {
        let n = table.iter().filter(|&&y| y == x).count();
        assert!((500..750).contains(&n), "expert {x}: {n}");
    }
}

// ---- §7.1 expert choice ----

/// §7.1 invariants 1–3.
#[test]
fn expert_choice_gives_every_expert_exactly_c_tokens() {
    let (t, e) = (30, 6);
    let rec = route(&RouterSpec::ExpertChoice { capacity_factor: 2.0, min_capacity: 1 }, random_logits(t, e, 13), e);
    let c = ((2.0 * t as f64 / e as f64).round() as usize).min(t);
    let mut per_expert = vec![0; e];
    let mut total = 0;
    for ti in 0..t {
        for s in rec.slots(ti) {
            per_expert[s.expert] += 1;
            total += 1;
        }
    }
    assert!(per_expert.iter().all(|&n| n == c), "{per_expert:?}");
    assert_eq!(total, e * c);
    assert_eq!(rec.aux["non_causal"], 1.0);
}

// ---- §3 SMoE-Dropout ----

/// §3.5 invariant 2: S(k) ⊂ S(k+1) for a fixed token; with k = E and the uniform flag the
/// weights are 1/E.
#[test]
fn smoe_selections_are_nested_in_k() {
    let (t, e) = (20, 8);
    let logits = random_logits(t, e, 14);
    let recs: Vec<_> = (1..=e)
        .map(|k| route(&RouterSpec::SmoeDropout { k, init_std: 0.02, dense: SmoeDense::Softmax }, logits.clone(), e))
        .collect();
    for ti in 0..t {
        for k in 1..e {
            let small = experts_of(&recs[k - 1], ti);
            let big = experts_of(&recs[k], ti);
            assert!(small.iter().all(|x| big.contains(x)), "token {ti}: {small:?} ⊄ {big:?}");
        }
        let dense: f32 = recs[e - 1].slots(ti).map(|s| s.weight).sum();
        assert!((dense - 1.0).abs() < 1e-6);
    }
    let uni = route(&RouterSpec::SmoeDropout { k: e, init_std: 0.02, dense: SmoeDense::Uniform }, logits, e);
    assert!(uni.weight.iter().all(|&w| w == 1.0 / e as f32));
}

/// §3.4: the frozen router is a pure function of (seed, layer) with the requested std.
#[test]
fn smoe_router_is_drawn_from_the_seed() {
    let a = smoe_router_weights(5, 1, 64, 8, 0.02);
    assert_eq!(a, smoe_router_weights(5, 1, 64, 8, 0.02));
    assert_ne!(a, smoe_router_weights(5, 2, 64, 8, 0.02));
    assert_ne!(a, smoe_router_weights(6, 1, 64, 8, 0.02));
    let std = (a.iter().map(|x| x * x).sum::<f32>() / a.len() as f32).sqrt();
    assert!((std - 0.02).abs() < 0.003, "{std}");
}

// ---- interventions ----

#[test]
fn ablated_experts_are_never_chosen_and_forced_ones_always() {
    let (t, e) = (50, 8);
    let logits = random_logits(t, e, 15);
    let iv = Interventions { ablate: vec![(0, 0), (0, 3)], force: vec![] };
    let specs = [
        RouterSpec::top_k(2, true),
        RouterSpec::TopP { p: 0.5 },
        RouterSpec::Thor { mode: ThorMode::Token },
        RouterSpec::Hash,
        RouterSpec::GShard { policy: SecondPolicy::All, threshold: 0.2, capacity_factor: 2.0 },
        RouterSpec::ExpertChoice { capacity_factor: 2.0, min_capacity: 1 },
    ];
    for spec in &specs {
        let rec = route_with(spec, logits.clone(), e, 1, &iv, 1, 0);
        for ti in 0..t {
            assert!(rec.slots(ti).all(|s| s.expert != 0 && s.expert != 3), "{spec:?}");
            assert_eq!(rec.probs_row(ti)[0], 0.0, "{spec:?}");
        }
    }
    let forced = Interventions { ablate: vec![], force: vec![(0, 5)] };
    for spec in &specs {
        let rec = route_with(spec, logits.clone(), e, 1, &forced, 1, 0);
        for ti in 0..t {
            let s: Vec<_> = rec.slots(ti).collect();
            assert_eq!((s.len(), s[0].expert, s[0].weight), (1, 5, 1.0), "{spec:?}");
        }
    }
    assert!(Interventions { ablate: (0..8).map(|x| (1, x)).collect(), force: vec![] }.validate(4, 8).is_err());
    assert!(Interventions { ablate: vec![(4, 0)], force: vec![] }.validate(4, 8).is_err());
    assert!(Interventions { ablate: vec![], force: vec![(0, 8)] }.validate(4, 8).is_err());
    assert!(iv.validate(4, 8).is_ok());
}

// ---- §4.1 SCMoE routing ----

/// Rank lists pick the experts at those ranks with renormalised weights; `[0, 1]` is top-2.
#[test]
fn rank_lists_select_by_rank() {
    let logits = random_logits(20, 8, 16);
    let top2 = route(&RouterSpec::top_k(2, true), logits.clone(), 8);
    let r01 = route(&RouterSpec::Ranks { ranks: vec![0, 1] }, logits.clone(), 8);
    assert_eq!(top2.idx, r01.idx);
    assert_eq!(top2.weight, r01.weight);
    let third = route(&RouterSpec::Ranks { ranks: vec![2] }, logits.clone(), 8);
    for t in 0..20 {
        let s: Vec<_> = third.slots(t).collect();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].expert, rank_experts(&logits[t * 8..(t + 1) * 8])[2]);
        assert_eq!((s[0].rank, s[0].weight), (2, 1.0));
    }
    assert!(RouterSpec::Ranks { ranks: vec![8] }.validate(8).is_err());
    assert!(RouterSpec::Ranks { ranks: vec![] }.validate(8).is_err());
}

/// The random weak expert is uniform over the experts, seeded, and keyed by position.
#[test]
fn random_one_is_uniform_and_seeded() {
    let (t, e) = (4000, 8);
    let rec = route(&RouterSpec::RandomOne, random_logits(t, e, 17), e);
    let mut counts = vec![0f64; e];
    for ti in 0..t {
        counts[rec.top_expert(ti).unwrap()] += 1.0;
        assert_eq!(rec.weight[ti], 1.0);
    }
    let expect = t as f64 / e as f64;
    let chi2: f64 = counts.iter().map(|c| (c - expect).powi(2) / expect).sum();
    assert!(chi2 < 24.3, "chi2 {chi2}");
    assert_eq!(rec, route(&RouterSpec::RandomOne, random_logits(t, e, 17), e));
}

// ---- fidelity: formulas checked against hand-computed values ----

/// A rank named twice would send a token to one expert twice: refused, for the router and for
/// SCMoE's strong and weak lists.
#[test]
fn repeated_ranks_are_refused() {
    let err = RouterSpec::Ranks { ranks: vec![0, 0] }.validate(8).unwrap_err();
    assert_eq!(err.to_string(), "the rank list names rank 0 twice; each rank may appear once");
    assert!(RouterSpec::Ranks { ranks: vec![1, 0, 1] }.validate(8).is_err());
    let strong = crate::ScmoeConfig { strong_ranks: vec![0, 0], ..Default::default() };
    assert!(crate::Decoding::SelfContrast(strong).validate(8).unwrap_err().to_string().contains("strong rank list"));
    let weak = crate::ScmoeConfig { weak: crate::WeakMode::Ranks { ranks: vec![2, 2] }, ..Default::default() };
    assert!(crate::Decoding::SelfContrast(weak).validate(8).is_err());
    assert!(crate::Decoding::SelfContrast(crate::ScmoeConfig::default()).validate(8).is_ok());
}

/// Real-valued parameters outside their bounds (where the arithmetic would overflow) are
/// refused by name.
#[test]
fn extreme_parameters_are_refused() {
    let hot = crate::Decoding::Sample(crate::SampleConfig { temperature: 1e-38, top_k: 0, top_p: 1.0 });
    assert_eq!(
        hot.validate(8).unwrap_err().to_string(),
        "sampling temperature must be a number from 0.01 to 100, got 1e-38"
    );
    let beta = crate::ScmoeConfig { beta: 1e38, ..Default::default() };
    assert!(crate::Decoding::SelfContrast(beta).validate(8).is_err());
    let tau = crate::ScmoeConfig { tau_weak: 0.0, ..Default::default() };
    assert!(crate::Decoding::SelfContrast(tau).validate(8).is_err());
    assert!(RouterSpec::TopP { p: 1.5 }.validate(8).is_err());
    assert!(RouterSpec::ExpertChoice { capacity_factor: f32::INFINITY, min_capacity: 1 }.validate(8).is_err());
    assert!(RouterSpec::SmoeDropout { k: 2, init_std: 1e30, dense: SmoeDense::Softmax }.validate(8).is_err());
}

/// Capacity-limited routing is non-causal: a later token changes an earlier token's routing.
/// The record says so, as expert choice's does; dropless top-k is causal and says nothing.
#[test]
fn capacity_limited_routers_are_flagged_non_causal_because_they_are() {
    let (t, e) = (24, 4);
    let logits = random_logits(t, e, 21);
    let spec = capped(1.0, Priority::Position);
    let whole = route(&spec, logits.clone(), e);
    assert_eq!(whole.aux["non_causal"], 1.0);
    assert!(spec.non_causal().is_some());
    // Route the first 12 tokens alone: some of them are routed differently.
    let prefix = route(&spec, logits[..12 * e].to_vec(), e);
    let differs = (0..12).any(|ti| experts_of(&prefix, ti) != experts_of(&whole, ti));
    assert!(differs, "later tokens should change an earlier token's kept experts here");
    let free = route(&RouterSpec::top_k(2, true), logits, e);
    assert!(!free.aux.contains_key("non_causal") && RouterSpec::top_k(2, true).non_causal().is_none());
    let gshard = RouterSpec::GShard { policy: SecondPolicy::All, threshold: 0.2, capacity_factor: 1.0 };
    assert!(gshard.non_causal().is_some());
    assert!(RouterSpec::ExpertChoice { capacity_factor: 2.0, min_capacity: 1 }.non_causal().is_some());
}

/// §5.1: the cumulative probability must *exceed* p. Logits chosen so that the probabilities
/// are exactly 1/2, 1/4, 1/8, 1/8 and a cumulative sum lands exactly on p.
#[test]
fn top_p_needs_the_sum_to_exceed_p_strictly() {
    let logits: Vec<f32> = [0.5f64, 0.25, 0.125, 0.125].iter().map(|p| p.ln() as f32).collect();
    let probs = softmax_row(&logits);
    assert_eq!(probs, vec![0.5, 0.25, 0.125, 0.125], "exact probabilities");
    let n = |p: f32| route(&RouterSpec::TopP { p }, logits.clone(), 4).slots(0).count();
    assert_eq!(n(0.5), 2, "0.5 does not exceed 0.5: a second expert is needed");
    assert_eq!(n(0.75), 3, "0.75 does not exceed 0.75");
    assert_eq!(n(0.7499), 2);
    assert_eq!(n(0.4999), 1);
}

/// §1.3: GShard's random policy keeps the second expert with probability min(1, g₂/θ): a χ²
/// test over tokens binned by that probability; the threshold policy keeps it iff g₂ > θ.
#[test]
fn gshard_second_expert_policies_follow_their_rules() {
    let (t, e, theta) = (20_000, 8, 0.3f32);
    let logits = random_logits(t, e, 22);
    let spec = |policy| RouterSpec::GShard { policy, threshold: theta, capacity_factor: 8.0 };
    let rec = route(&spec(SecondPolicy::Random), logits.clone(), e);
    // (expected keeps, variance, observed keeps) per bin of the keep probability.
    let mut bins = vec![(0.0f64, 0.0f64, 0.0f64); 10];
    for ti in 0..t {
        let g2 = f64::from(rec.weight[ti * 2 + 1].max(0.0));
        // The weight is 0 when the slot was not kept; recompute g2 from the probabilities.
        let p = rec.probs_row(ti);
        let order = rank_experts(p);
        let (p1, p2) = (f64::from(p[order[0]]), f64::from(p[order[1]]));
        let g2_true = p2 / (p1 + p2 + 1e-9);
        assert!(g2 == 0.0 || (g2 - g2_true).abs() < 1e-6);
        let q = (g2_true / f64::from(theta)).min(1.0);
        let bin = ((q * 10.0) as usize).min(9);
        bins[bin].0 += q;
        bins[bin].1 += q * (1.0 - q);
        bins[bin].2 += f64::from(u8::from(rec.valid[ti * 2 + 1]));
    }
    let chi2: f64 = bins.iter().filter(|b| b.1 > 0.0).map(|(x, v, o)| (o - x).powi(2) / v).sum();
    assert!(chi2 < 29.6, "χ² {chi2} over 10 bins (p < 0.001): {bins:?}");
    let threshold = route(&spec(SecondPolicy::Threshold), logits, e);
    for ti in 0..t {
        let p = threshold.probs_row(ti);
        let order = rank_experts(p);
        let g2 = p[order[1]] / (p[order[0]] + p[order[1]] + 1e-9);
        assert_eq!(threshold.valid[ti * 2 + 1], g2 > theta, "token {ti}: g2 {g2}");
    }
}

/// §1.6: every capacity formula by hand. Ten tokens all prefer expert 0 then expert 1, E = 4,
/// CF = 1.5, k = 2: mtf `min(10, ⌊3.75⌋) = 3`, flax `max(round(3.75), min) = 4` (6 with
/// min_capacity 6), k_aware `⌈1.5·2·10/4⌉ = 8` tokens kept at expert 0.
#[test]
fn every_capacity_formula_by_hand() {
    let logits: Vec<f32> = (0..10).flat_map(|_| [3.0, 2.0, 0.0, 0.0]).collect();
    let kept = |formula, min_capacity| {
        let spec = RouterSpec::TopK {
            k: 2,
            norm_topk_prob: true,
            capacity: Some(Capacity { factor: 1.5, formula, min_capacity, priority: Priority::Position }),
        };
        let rec = route(&spec, logits.clone(), 4);
        (0..10).filter(|&t| !rec.dropped[t * 2]).collect::<Vec<_>>()
    };
    assert_eq!(kept(CapacityFormula::Mtf, 0), vec![0, 1, 2]);
    assert_eq!(kept(CapacityFormula::Flax, 0), vec![0, 1, 2, 3]);
    assert_eq!(kept(CapacityFormula::Flax, 6), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(kept(CapacityFormula::KAware, 0), (0..8).collect::<Vec<_>>());
}

/// §1.6 BPR: slots are claimed in order of the token's top-1 probability, not its position.
/// Expert 0's probability is highest at positions 5 and 2, so BPR keeps those, position
/// priority the first two and reverse priority the last two.
#[test]
fn bpr_keeps_the_most_confident_tokens() {
    let logits: Vec<f32> = (0..8).flat_map(|t| [1.0 + ((t * 3) % 8) as f32 * 0.5, 0.0, 0.0, 0.0]).collect();
    let kept = |priority| {
        let spec = RouterSpec::TopK {
            k: 1,
            norm_topk_prob: false,
            capacity: Some(Capacity { factor: 1.0, formula: CapacityFormula::Mtf, min_capacity: 0, priority }),
        };
        let rec = route(&spec, logits.clone(), 4);
        (0..8).filter(|&t| !rec.dropped[t]).collect::<Vec<_>>()
    };
    // C = min(8, ⌊8·1/4⌋) = 2.
    assert_eq!(kept(Priority::Position), vec![0, 1]);
    assert_eq!(kept(Priority::Bpr), vec![2, 5]);
    assert_eq!(kept(Priority::ReversePosition), vec![6, 7]);
}

/// Routes one sequence with the sigmoid router and a selection bias.
fn route_sigmoid(logits: &[f32], e: usize, k: usize, bias: Option<&[f32]>, use_bias: bool) -> LayerRouting {
    let t = logits.len() / e;
    let (seq, pos): (Vec<u32>, Vec<u32>) = ((0..t).map(|_| 0).collect(), (0..t as u32).collect());
    let allowed = vec![true; e];
    let ctx = RouteContext {
        layer: 0,
        seq_id: &seq,
        pos: &pos,
        token_id: &pos,
        seed: 0,
        step: 0,
        allowed: &allowed,
        forced: None,
        selection_bias: bias,
    };
    let rec = RouterSpec::Sigmoid { k, bias: use_bias }.route(logits.to_vec(), e, &ctx);
    rec.check_shapes().unwrap();
    rec
}

fn chosen(rec: &LayerRouting) -> Vec<Vec<(usize, f32)>> {
    (0..rec.num_tokens()).map(|t| rec.slots(t).map(|s| (s.expert, s.weight)).collect()).collect()
}

#[test]
fn sigmoid_bias_chooses_but_never_weighs() {
    let (e, k) = (8, 2);
    let logits = random_logits(64, e, 21);
    let bias: Vec<f32> = (0..e).map(|j| 0.05 * j as f32 - 0.2).collect();
    let with = route_sigmoid(&logits, e, k, Some(&bias), true);
    // §8.2 invariant 1: a constant added to every b changes neither S nor w.
    let shifted: Vec<f32> = bias.iter().map(|b| b + 3.5).collect();
    assert_eq!(chosen(&route_sigmoid(&logits, e, k, Some(&shifted), true)), chosen(&with));
    // Weights are the unbiased σ(z) of the chosen experts, normalised: they sum to 1.
    for t in 0..with.num_tokens() {
        let row = &logits[t * e..(t + 1) * e];
        let s: Vec<f64> = with.slots(t).map(|sl| 1.0 / (1.0 + (-f64::from(row[sl.expert])).exp())).collect();
        let total: f64 = s.iter().sum();
        for (sl, v) in with.slots(t).zip(&s) {
            assert!((f64::from(sl.weight) - v / total).abs() < 1e-6);
        }
        let probs: f32 = with.probs_row(t).iter().sum();
        assert!((probs - 1.0).abs() < 1e-5, "normalised affinities");
    }
    // A large bias on one expert puts it in every token's set, at its own unbiased weight.
    let mut pull = vec![0.0; e];
    pull[5] = 10.0;
    let pulled = route_sigmoid(&logits, e, k, Some(&pull), true);
    for t in 0..pulled.num_tokens() {
        let row = &logits[t * e..(t + 1) * e];
        let sig = |x: usize| 1.0 / (1.0 + (-f64::from(row[x])).exp());
        let slots: Vec<_> = pulled.slots(t).collect();
        let five = slots.iter().find(|s| s.expert == 5).expect("expert 5 is in every set");
        let total: f64 = slots.iter().map(|s| sig(s.expert)).sum();
        assert!((f64::from(five.weight) - sig(5) / total).abs() < 1e-6, "its weight is its own σ(z), normalised");
    }
    // bias=false (the A/B) ignores the bias: plain sigmoid top-k.
    assert_eq!(
        chosen(&route_sigmoid(&logits, e, k, Some(&pull), false)),
        chosen(&route_sigmoid(&logits, e, k, None, true))
    );
}

#[test]
fn sigmoid_without_bias_is_top_k_of_the_logits() {
    // §8.2 invariant 2: b = 0 is plain sigmoid top-K; σ is monotone, so the experts are the
    // top-k of the logits (the weights differ from softmax top-k: σ, not exp).
    let (e, k) = (8, 3);
    let logits = random_logits(40, e, 3);
    let zero = vec![0.0; e];
    let rec = route_sigmoid(&logits, e, k, Some(&zero), true);
    let top = route_with(&RouterSpec::top_k(k, true), logits.clone(), e, 1, &Interventions::default(), 0, 0);
    for t in 0..rec.num_tokens() {
        let a: Vec<usize> = rec.slots(t).map(|s| s.expert).collect();
        let b: Vec<usize> = top.slots(t).map(|s| s.expert).collect();
        assert_eq!(a, b, "token {t}");
    }
    assert_eq!(chosen(&rec), chosen(&route_sigmoid(&logits, e, k, None, true)));
}

#[test]
fn the_bias_update_moves_each_expert_by_exactly_gamma() {
    // §8.2 invariant 3: c̄ = 5; over-loaded experts fall by γ, under-loaded rise by γ, at the mean stay.
    let mut b = vec![0.1f32, 0.0, -0.2, 0.5];
    update_selection_bias(&mut b, &[9, 5, 1, 5], 0.001);
    assert_eq!(b, vec![0.1 - 0.001, 0.0, -0.2 + 0.001, 0.5]);
    let mut frozen = b.clone();
    update_selection_bias(&mut frozen, &[9, 5, 1, 5], 0.0);
    assert_eq!(frozen, b, "γ = 0 leaves the bias");
}
