//! Routers without a learned gate or with non-token-choice semantics: THOR, hash routing,
//! expert choice, SMoE-Dropout's frozen random router (spec §2, §3, §7).

use switchyard_record::LayerRouting;

use super::{Choice, RecordBuilder, RouteContext, ThorMode, rank_experts, softmax_masked};
use crate::rng::{self, stream};

/// The allowed experts of a layer, in index order.
fn allowed_list(ctx: &RouteContext<'_>) -> Vec<usize> {
    (0..ctx.allowed.len()).filter(|&e| ctx.allowed[e]).collect()
}

/// Uniform probabilities over the allowed experts (reported by routers that have no logits).
fn uniform_probs(ctx: &RouteContext<'_>) -> Vec<f32> {
    let n = ctx.allowed.iter().filter(|a| **a).count().max(1) as f32;
    ctx.allowed.iter().map(|&a| if a { 1.0 / n } else { 0.0 }).collect()
}

/// THOR (spec §2.3–2.4): one uniformly drawn expert, weight 1; or the mean of all experts.
pub(super) fn thor(e: usize, mode: ThorMode, ctx: &RouteContext<'_>) -> LayerRouting {
    let t = ctx.seq_id.len();
    let probs = uniform_probs(ctx);
    let allowed = allowed_list(ctx);
    let k_max = if mode == ThorMode::Mean { allowed.len() } else { 1 };
    let mut b = RecordBuilder::new(e, k_max, vec![0.0; t * e], true, ctx);
    let layer = ctx.layer as u64;
    for i in 0..t {
        let (seq, pos) = (u64::from(ctx.seq_id[i]), u64::from(ctx.pos[i]));
        let key: Vec<u64> = match mode {
            ThorMode::Token => vec![layer, seq, pos],
            ThorMode::Sequence => vec![layer, seq],
            ThorMode::SequenceRef if ctx.step == 0 => vec![layer, seq],
            ThorMode::SequenceRef => vec![layer, seq, ctx.step],
            ThorMode::Mean => {
                let w = 1.0 / allowed.len() as f32;
                let all: Vec<Choice> = allowed.iter().map(|&x| Choice { expert: x, weight: w, rank: 0 }).collect();
                b.push(&probs, &all);
                continue;
            }
        };
        let u = rng::u01(ctx.seed, stream::THOR_INFER, &key);
        let x = allowed[((u * allowed.len() as f64) as usize).min(allowed.len() - 1)];
        b.push(&probs, &[Choice { expert: x, weight: 1.0, rank: 0 }]);
    }
    b.finish()
}

/// The random hash table entry of a token id over the allowed experts (spec §7.2).
pub fn hash_expert(seed: u64, token_id: u32, allowed: &[usize]) -> usize {
    let u = rng::u01(seed, stream::HASH_TABLE, &[u64::from(token_id)]);
    allowed[((u * allowed.len() as f64) as usize).min(allowed.len() - 1)]
}

/// Hash routing (spec §7.2): the table decides, weight 1.
pub(super) fn hash(e: usize, ctx: &RouteContext<'_>) -> LayerRouting {
    let t = ctx.seq_id.len();
    let probs = uniform_probs(ctx);
    let allowed = allowed_list(ctx);
    let mut b = RecordBuilder::new(e, 1, vec![0.0; t * e], true, ctx);
    for &id in ctx.token_id {
        b.push(&probs, &[Choice { expert: hash_expert(ctx.seed, id, &allowed), weight: 1.0, rank: 0 }]);
    }
    b.finish()
}

/// Every allowed expert with weight 1/E (SMoE-Dropout's unused uniform dense flag).
pub(super) fn uniform_all(logits: Vec<f32>, e: usize, ctx: &RouteContext<'_>) -> LayerRouting {
    let rows: Vec<Vec<f32>> = logits.chunks(e).map(<[f32]>::to_vec).collect();
    let allowed = allowed_list(ctx);
    let w = 1.0 / allowed.len() as f32;
    let mut b = RecordBuilder::new(e, e, logits, false, ctx);
    for row in rows {
        let order = rank_experts(&row);
        let choices: Vec<Choice> = allowed
            .iter()
            .map(|&x| Choice { expert: x, weight: w, rank: order.iter().position(|&o| o == x).unwrap_or(0) })
            .collect();
        b.push(&softmax_masked(&row, ctx.allowed), &choices);
    }
    b.finish()
}

/// Expert choice (spec §7.1): per sequence, each expert takes its C highest-probability tokens
/// (ties to the earlier position). Non-causal.
pub(super) fn expert_choice(
    logits: Vec<f32>,
    e: usize,
    cf: f32,
    min_capacity: usize,
    ctx: &RouteContext<'_>,
) -> LayerRouting {
    let t = ctx.seq_id.len();
    let probs: Vec<Vec<f32>> = logits.chunks(e).map(|row| softmax_masked(row, ctx.allowed)).collect();
    let mut picked: Vec<Vec<usize>> = vec![Vec::new(); t];
    let mut seqs: Vec<u32> = ctx.seq_id.to_vec();
    seqs.sort_unstable();
    seqs.dedup();
    for s in seqs {
        let toks: Vec<usize> = (0..t).filter(|&i| ctx.seq_id[i] == s).collect();
        let c = ((f64::from(cf) * toks.len() as f64 / e as f64).round() as usize).max(min_capacity).min(toks.len());
        for x in (0..e).filter(|&x| ctx.allowed[x]) {
            let mut order = toks.clone();
            order.sort_by(|&a, &b| probs[b][x].total_cmp(&probs[a][x]).then(ctx.pos[a].cmp(&ctx.pos[b])));
            for &i in &order[..c] {
                picked[i].push(x);
            }
        }
    }
    let mut b = RecordBuilder::new(e, e, logits, false, ctx);
    for (i, experts) in picked.into_iter().enumerate() {
        let order = rank_experts(&probs[i]);
        let mut choices: Vec<Choice> = experts
            .into_iter()
            .map(|x| Choice { expert: x, weight: probs[i][x], rank: order.iter().position(|&o| o == x).unwrap_or(0) })
            .collect();
        choices.sort_by_key(|c| c.rank);
        b.push(&probs[i], &choices);
    }
    b.finish()
}

/// SMoE-Dropout's frozen random router for one layer: `W_r ~ N(0, init_std²)` drawn from
/// stream `ROUTER_INIT` keyed by (layer, row, col), as burn's `[d, E]` layout; bias 0.
pub fn smoe_router_weights(seed: u64, layer: usize, d: usize, e: usize, init_std: f32) -> Vec<f32> {
    let mut w = Vec::with_capacity(d * e);
    for row in 0..d {
        for col in 0..e {
            let z = rng::normal(seed, stream::ROUTER_INIT, &[layer as u64, row as u64, col as u64]);
            w.push(z as f32 * init_std);
        }
    }
    w
}

/// One uniformly random allowed expert per token, weight 1 (SCMoE's random weak activation).
pub(super) fn random_one(logits: Vec<f32>, e: usize, ctx: &RouteContext<'_>) -> LayerRouting {
    let rows: Vec<Vec<f32>> = logits.chunks(e).map(<[f32]>::to_vec).collect();
    let allowed = allowed_list(ctx);
    let mut b = RecordBuilder::new(e, 1, logits, false, ctx);
    for (i, row) in rows.iter().enumerate() {
        let key = [ctx.layer as u64, u64::from(ctx.seq_id[i]), u64::from(ctx.pos[i])];
        let u = rng::u01(ctx.seed, stream::SCMOE_RANDOM_WEAK, &key);
        let x = allowed[((u * allowed.len() as f64) as usize).min(allowed.len() - 1)];
        let rank = rank_experts(row).iter().position(|&o| o == x).unwrap_or(0);
        b.push(&softmax_masked(row, ctx.allowed), &[Choice { expert: x, weight: 1.0, rank }]);
    }
    b.finish()
}
