//! Token-choice routers: top-k (Switch, Mixtral, `norm_topk_prob`), capacity and dropping,
//! GShard top-2, dynamic top-p (spec §1, §5).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_record::LayerRouting;

use super::{Choice, RecordBuilder, RouteContext, rank_experts, softmax_masked};
use crate::rng::{self, stream};

/// How the expert capacity is computed from the group size G (spec §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacityFormula {
    /// Mesh-TF v1: `min(G, ⌊G·CF/E⌋)`, shared by all k choices.
    Mtf,
    /// flaxformer: `max(round(CF·G/E), min_capacity)`.
    Flax,
    /// `⌈CF·k·G/E⌉` (many modern codes).
    KAware,
}

/// The order in which slots claim capacity (spec §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Reference: rank 0 of every token in position order, then rank 1, ...
    Position,
    /// The same, latest positions first (a playground toggle against drop-towards-the-end).
    ReversePosition,
    /// Batch-prioritised routing (V-MoE): tokens by top-1 probability, descending.
    Bpr,
}

/// Capacity limit of a token-choice router; the group is one sequence of one forward call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// Capacity factor CF (Switch/GShard eval default 2.0).
    pub factor: f32,
    /// Formula.
    pub formula: CapacityFormula,
    /// Lower bound used by the `flax` formula.
    pub min_capacity: usize,
    /// Priority policy.
    pub priority: Priority,
}

/// GShard's second-expert policy (spec §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondPolicy {
    /// Keep the second expert when `u < g2/θ`, u uniform (reference, train and eval).
    Random,
    /// Always keep it.
    All,
    /// Keep it when `g2 > θ`.
    Threshold,
    /// Never keep it.
    None,
}

/// Top-k over the allowed experts, weights renormalised or raw (spec §1.1).
pub(super) fn top_k(logits: Vec<f32>, e: usize, k: usize, renormalise: bool, ctx: &RouteContext<'_>) -> LayerRouting {
    let rows: Vec<Vec<f32>> = logits.chunks(e).map(<[f32]>::to_vec).collect();
    let mut b = RecordBuilder::new(e, k, logits, false, ctx);
    for row in rows {
        let p = softmax_masked(&row, ctx.allowed);
        let order = rank_experts(&row);
        let chosen: Vec<(usize, usize)> =
            order.iter().enumerate().filter(|(_, x)| ctx.allowed[**x]).map(|(r, &x)| (x, r)).take(k).collect();
        let mass: f32 = chosen.iter().map(|&(x, _)| p[x]).sum();
        let choices: Vec<Choice> = chosen
            .iter()
            .map(|&(x, r)| Choice { expert: x, weight: if renormalise { p[x] / mass } else { p[x] }, rank: r })
            .collect();
        b.push(&p, &choices);
    }
    b.finish()
}

/// The capacity of one group of `g` tokens.
pub(super) fn capacity_of(cap: &Capacity, g: usize, e: usize, k: usize) -> usize {
    let (gf, ef) = (g as f64, e as f64);
    let cf = f64::from(cap.factor);
    match cap.formula {
        CapacityFormula::Mtf => g.min((gf * cf / ef).floor() as usize),
        CapacityFormula::Flax => ((cf * gf / ef).round() as usize).max(cap.min_capacity),
        CapacityFormula::KAware => (cf * k as f64 * gf / ef).ceil() as usize,
    }
}

/// Token indices of each sequence, in position order.
fn groups(rec: &LayerRouting) -> BTreeMap<u32, Vec<usize>> {
    let mut g: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (t, &s) in rec.seq_id.iter().enumerate() {
        g.entry(s).or_default().push(t);
    }
    for toks in g.values_mut() {
        toks.sort_by_key(|&t| rec.pos[t]);
    }
    g
}

/// Drops slots beyond each expert's capacity (spec §1.6): weight 0, not renormalised.
pub(super) fn apply_capacity(rec: &mut LayerRouting, cap: &Capacity, k: usize) {
    let (e, kk) = (rec.num_experts, rec.k_max);
    let mut n_dropped = 0usize;
    let mut n_assigned = 0usize;
    for (_, mut toks) in groups(rec) {
        let c = capacity_of(cap, toks.len(), e, k);
        match cap.priority {
            Priority::Position => {}
            Priority::ReversePosition => toks.reverse(),
            Priority::Bpr => {
                let top1 = |t: usize| rec.probs[t * e..(t + 1) * e].iter().copied().fold(0.0f32, f32::max);
                // Stable: equal top-1 probabilities keep position order.
                toks.sort_by(|&a, &b| top1(b).total_cmp(&top1(a)));
            }
        }
        let mut used = vec![0usize; e];
        for j in 0..kk {
            for &t in &toks {
                let i = t * kk + j;
                if !rec.valid[i] {
                    continue;
                }
                n_assigned += 1;
                let x = rec.idx[i] as usize;
                if used[x] < c {
                    used[x] += 1;
                } else {
                    rec.dropped[i] = true;
                    rec.weight[i] = 0.0;
                    n_dropped += 1;
                }
            }
        }
    }
    rec.aux.insert("drop_rate".into(), if n_assigned == 0 { 0.0 } else { n_dropped as f32 / n_assigned as f32 });
}

/// GShard top-2 with its second-expert policy and capacity (spec §1.3).
pub(super) fn gshard(
    logits: Vec<f32>,
    e: usize,
    policy: SecondPolicy,
    theta: f32,
    cf: f32,
    ctx: &RouteContext<'_>,
) -> LayerRouting {
    let mut rec = top_k(logits, e, 2.min(e), false, ctx);
    let kk = rec.k_max;
    // Renormalise over the top-2 before any drop; never recomputed after.
    for t in 0..rec.num_tokens() {
        let s: f32 = rec.weight[t * kk..(t + 1) * kk].iter().sum();
        for w in &mut rec.weight[t * kk..(t + 1) * kk] {
            *w /= s + 1e-9;
        }
    }
    // Second-expert policy.
    if kk == 2 {
        for t in 0..rec.num_tokens() {
            let g2 = rec.weight[t * 2 + 1];
            let u = rng::u01(
                ctx.seed,
                stream::GSHARD_2ND,
                &[ctx.layer as u64, u64::from(rec.seq_id[t]), u64::from(rec.pos[t])],
            ) as f32;
            let use2 = match policy {
                SecondPolicy::Random => u < g2 / theta,
                SecondPolicy::All => true,
                SecondPolicy::Threshold => g2 > theta,
                SecondPolicy::None => false,
            };
            if !use2 {
                rec.valid[t * 2 + 1] = false;
                rec.weight[t * 2 + 1] = 0.0;
            }
        }
    }
    // Capacity shared by both choices: every first choice in the group before any second.
    let cap = Capacity { factor: cf, formula: CapacityFormula::Mtf, min_capacity: 0, priority: Priority::Position };
    apply_capacity(&mut rec, &cap, 2);
    rec
}

/// Dynamic top-p's choice for one row of probabilities (spec §5.1), shared by inference and
/// training: the allowed experts in descending probability until their sum first exceeds `p`
/// (strict `>`; all of them if it never does), as (expert, rank among all experts).
pub fn top_p_choice(probs: &[f32], allowed: &[bool], p: f32) -> Vec<(usize, usize)> {
    let mut cum = 0.0f32;
    let mut chosen = Vec::new();
    for (rank, &x) in rank_experts(probs).iter().enumerate() {
        if !allowed[x] {
            continue;
        }
        chosen.push((x, rank));
        cum += probs[x];
        if cum > p {
            break;
        }
    }
    chosen
}

/// Dynamic top-p (spec §5): strict `>`, raw weights, all experts if never exceeded.
pub(super) fn top_p(logits: Vec<f32>, e: usize, p: f32, ctx: &RouteContext<'_>) -> LayerRouting {
    let rows: Vec<Vec<f32>> = logits.chunks(e).map(<[f32]>::to_vec).collect();
    let mut b = RecordBuilder::new(e, e, logits, false, ctx);
    let mut active = 0usize;
    for row in &rows {
        let probs = softmax_masked(row, ctx.allowed);
        let choices: Vec<Choice> = top_p_choice(&probs, ctx.allowed, p)
            .into_iter()
            .map(|(x, rank)| Choice { expert: x, weight: probs[x], rank })
            .collect();
        active += choices.len();
        b.push(&probs, &choices);
    }
    let mut rec = b.finish();
    rec.aux.insert("mean_active_experts".into(), active as f32 / rows.len().max(1) as f32);
    rec
}

/// Rank-list routing (SCMoE §4.1): experts at the given ranks among the allowed ones, weights
/// renormalised over them.
pub(super) fn ranks(logits: Vec<f32>, e: usize, ranks: &[usize], ctx: &RouteContext<'_>) -> LayerRouting {
    let rows: Vec<Vec<f32>> = logits.chunks(e).map(<[f32]>::to_vec).collect();
    let mut b = RecordBuilder::new(e, ranks.len(), logits, false, ctx);
    for row in rows {
        let p = softmax_masked(&row, ctx.allowed);
        // (expert, its rank among all experts), allowed ones only, best first.
        let order: Vec<(usize, usize)> =
            rank_experts(&row).into_iter().enumerate().filter(|(_, x)| ctx.allowed[*x]).map(|(r, x)| (x, r)).collect();
        let chosen: Vec<(usize, usize)> = ranks.iter().filter_map(|&r| order.get(r).copied()).collect();
        let mass: f32 = chosen.iter().map(|&(x, _)| p[x]).sum();
        let choices: Vec<Choice> =
            chosen.iter().map(|&(x, rank)| Choice { expert: x, weight: p[x] / mass, rank }).collect();
        b.push(&p, &choices);
    }
    b.finish()
}
