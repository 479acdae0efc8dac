//! Routers: from a layer's input to its routing record (spec §1–§7).
//!
//! Routing decisions are made on the host from the logits read back once per layer. The record
//! has to reach the host anyway (it is what the playground shows), the selection algorithms of
//! the spec (capacity priority, GShard's second-expert policy, THOR draws) are sequential and
//! clearest as plain Rust, and one implementation then serves every backend. A router is a
//! [`RouterSpec`] variant: it says where its logits come from ([`LogitSource`]) and routes them
//! with `route`; the MoE block does not change when a router joins.

mod free;
mod sigmoid;
mod special;
mod token_choice;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_record::LayerRouting;

pub use free::apply_free_experts;
pub use sigmoid::{sigmoid_choice, update_selection_bias};
pub use special::smoe_router_weights;
pub use token_choice::{Capacity, CapacityFormula, Priority, SecondPolicy, top_p_choice};

/// THOR's inference modes (spec §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThorMode {
    /// One uniform expert per (layer, sequence, position): the reference's token level.
    Token,
    /// One expert per (layer, sequence) for every position: the clean sentence-level reading
    /// (not identical to the reference's decoding).
    Sequence,
    /// Sentence level as the reference actually decodes: the prompt shares one draw and every
    /// generated step re-draws.
    SequenceRef,
    /// The mean of all experts. Not in the THOR code: a comparison only.
    Mean,
}

/// SMoE-Dropout's dense mode at k = E (spec §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmoeDense {
    /// Softmax of the frozen random router's logits (what the reference runs).
    Softmax,
    /// Weights 1/E (the reference's unused `dense_moe_flag`).
    Uniform,
}

/// Which router a forward pass uses, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RouterSpec {
    /// Token-choice top-k softmax routing (spec §1.1): `P = softmax(Z)`, the k highest
    /// experts (ties to the lower index), weights `P` renormalised over the chosen set
    /// (`norm_topk_prob = true`: Mixtral / HF) or raw (`false`: Qwen1.5, OLMoE; with k = 1 this
    /// is Switch's top-1). Optionally capacity-limited (§1.6).
    TopK {
        /// Experts per token.
        k: usize,
        /// Renormalise the chosen probabilities to sum to 1.
        norm_topk_prob: bool,
        /// Capacity factor and priority; `None` is dropless.
        #[serde(default)]
        capacity: Option<Capacity>,
    },
    /// GShard top-2 (spec §1.3, Mesh-TF `_top_2_gating`): weights renormalised over the top-2
    /// before dropping, a second-expert policy, and a capacity shared by both choices.
    GShard {
        /// Second-expert policy (reference: `random`, at inference too).
        policy: SecondPolicy,
        /// θ of the `random` and `threshold` policies (reference 0.2).
        threshold: f32,
        /// Capacity factor (reference eval 2.0); capacity `min(G, ⌊G·CF/E⌋)`, group = sequence.
        capacity_factor: f32,
    },
    /// Dynamic top-p (spec §5): experts in descending probability until the cumulative
    /// probability first exceeds p (strict `>`); raw, un-renormalised weights.
    TopP {
        /// Threshold p (reference 0.4).
        p: f32,
    },
    /// THOR (spec §2): a uniformly random expert, weight 1, no router.
    Thor {
        /// Draw granularity.
        mode: ThorMode,
    },
    /// SMoE-Dropout (spec §3): a frozen random router `N(0, init_std²)`, bias 0, drawn from the
    /// seed; top-k with softmax over the chosen logits; any k at inference.
    SmoeDropout {
        /// Experts per token.
        k: usize,
        /// Standard deviation of the random router (reference 0.02).
        init_std: f32,
        /// Combination at k = E.
        dense: SmoeDense,
    },
    /// Expert choice (spec §7.1): each expert picks its `C = max(round(CF·T/E), min_capacity)`
    /// tokens of the sequence. Non-causal: later tokens influence earlier ones.
    ExpertChoice {
        /// Average experts per token (reference 2).
        capacity_factor: f32,
        /// Lower bound of C.
        min_capacity: usize,
    },
    /// Hash routing (spec §7.2): a fixed random table from token id to expert, built from the
    /// seed; weight 1, no router.
    Hash,
    /// Rank-list routing (SCMoE §4.1): the experts at the given ranks of the learned router's
    /// ordering, weights `P` renormalised over them. `[0, 1]` is top-2; `[2]` is the
    /// third-ranked expert alone.
    Ranks {
        /// 0-based ranks, in slot order.
        ranks: Vec<usize>,
    },
    /// One uniformly random expert per (layer, sequence, position), weight 1 (SCMoE's random
    /// weak activation, stream `SCMOE_RANDOM_WEAK`). Probabilities are the learned router's.
    RandomOne,
    /// DeepSeek-V3 sigmoid routing (spec §8.2): the top-k of `σ(z) + b`, weights `σ(z)`
    /// normalised over the chosen. `b` is the checkpoint's learned selection bias (none: 0);
    /// `bias: false` chooses without it (the A/B of auxiliary-loss-free balancing).
    Sigmoid {
        /// Experts per token.
        k: usize,
        /// Choose with the checkpoint's selection bias.
        bias: bool,
    },
}

/// Where a router's logits come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogitSource {
    /// The checkpoint's learned gate.
    Gate,
    /// A frozen random router drawn from the seed (SMoE-Dropout).
    FrozenRandom {
        /// Its standard deviation.
        init_std: f32,
    },
    /// The router has no logits (THOR, hash): probabilities are reported uniform.
    None,
}

/// Why a router specification cannot run on a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouterError {
    /// `k` is outside `1..=E`.
    #[error("k must be between 1 and the number of experts ({n_experts}), got {k}")]
    K {
        /// Requested k.
        k: usize,
        /// Experts in the model.
        n_experts: usize,
    },
    /// A real-valued parameter is out of its range.
    #[error("{name} must be {range}, got {value:?}")]
    Range {
        /// Parameter.
        name: &'static str,
        /// Allowed range, in words.
        range: &'static str,
        /// Value given.
        value: f32,
    },
    /// A rank list names a rank twice (the token would go to one expert twice).
    #[error("{list} names rank {rank} twice; each rank may appear once")]
    DuplicateRank {
        /// Which list.
        list: &'static str,
        /// The repeated rank.
        rank: usize,
    },
    /// An intervention names a layer or expert the model does not have.
    #[error("intervention on layer {layer}, expert {expert}: the model has {n_layers} layers of {n_experts} experts")]
    Intervention {
        /// Layer named.
        layer: usize,
        /// Expert named.
        expert: usize,
        /// Layers in the model.
        n_layers: usize,
        /// Experts per layer.
        n_experts: usize,
    },
    /// Every expert of a layer is ablated.
    #[error("layer {0}: every expert is ablated; at least one must stay")]
    AllAblated(usize),
}

/// The values the playground accepts for a real-valued parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Lowest value.
    pub lo: f32,
    /// Highest value.
    pub hi: f32,
    /// The range in words, for messages (`a number from 0.01 to 256`).
    pub text: &'static str,
}

impl Bounds {
    /// Whether `v` is finite and inside.
    pub fn contains(&self, v: f32) -> bool {
        v.is_finite() && v >= self.lo && v <= self.hi
    }

    /// `Ok` when `v` is inside, else a [`RouterError::Range`] naming `name`.
    pub fn check(&self, name: &'static str, v: f32) -> Result<(), RouterError> {
        if self.contains(v) { Ok(()) } else { Err(RouterError::Range { name, range: self.text, value: v }) }
    }
}

/// The ranges of every real-valued router and decoding parameter: wide enough for every value
/// the references use, narrow enough that the arithmetic stays finite (a temperature of 1e-38
/// turns logits into infinities; β = 1e38 makes the contrast score ∞ − ∞). The URL codec and
/// [`RouterSpec::validate`] / [`crate::Decoding::validate`] read the same table.
pub mod bounds {
    use super::Bounds;

    const fn b(lo: f32, hi: f32, text: &'static str) -> Bounds {
        Bounds { lo, hi, text }
    }

    /// Capacity factor (top-k, GShard, expert choice). At CF ≥ E nothing is dropped.
    pub const CAPACITY_FACTOR: Bounds = b(0.01, 256.0, "a number from 0.01 to 256");
    /// GShard's θ.
    pub const GSHARD_THRESHOLD: Bounds = b(0.001, 1.0, "a number from 0.001 to 1");
    /// Dynamic top-p's threshold (p ≥ 1 keeps every expert).
    pub const TOP_P: Bounds = b(0.0, 1.0, "a number from 0 to 1");
    /// SMoE-Dropout's router standard deviation.
    pub const INIT_STD: Bounds = b(0.0001, 10.0, "a number from 0.0001 to 10");
    /// Sampling temperature and SCMoE's τ_s, τ_w.
    pub const TEMPERATURE: Bounds = b(0.01, 100.0, "a number from 0.01 to 100");
    /// Sampling's top-p.
    pub const SAMPLE_P: Bounds = b(f32::MIN_POSITIVE, 1.0, "a number above 0, at most 1");
    /// SCMoE's plausibility α (ln α must be finite).
    pub const ALPHA: Bounds = b(f32::MIN_POSITIVE, 1.0, "a number above 0, at most 1");
    /// SCMoE's contrast strength β.
    pub const BETA: Bounds = b(0.0, 100.0, "a number from 0 to 100");
}

/// Checks a rank list: not empty, every rank below `n_experts`, none twice.
pub fn check_ranks(list: &'static str, ranks: &[usize], n_experts: usize) -> Result<(), RouterError> {
    if ranks.is_empty() {
        return Err(RouterError::K { k: 0, n_experts });
    }
    for (i, &r) in ranks.iter().enumerate() {
        if r >= n_experts {
            return Err(RouterError::K { k: r + 1, n_experts });
        }
        if ranks[..i].contains(&r) {
            return Err(RouterError::DuplicateRank { list, rank: r });
        }
    }
    Ok(())
}

impl RouterSpec {
    /// Plain Mixtral top-k, dropless.
    pub fn top_k(k: usize, norm_topk_prob: bool) -> Self {
        Self::TopK { k, norm_topk_prob, capacity: None }
    }

    /// Switch Transformer routing (spec §1.2) at inference: top-1, raw probability as weight.
    pub fn switch() -> Self {
        Self::top_k(1, false)
    }

    /// Checks the parameters against a model with `n_experts` experts.
    pub fn validate(&self, n_experts: usize) -> Result<(), RouterError> {
        let check_k = |k: usize| if k == 0 || k > n_experts { Err(RouterError::K { k, n_experts }) } else { Ok(()) };
        match self {
            Self::TopK { k, capacity, .. } => {
                check_k(*k)?;
                if let Some(c) = capacity {
                    bounds::CAPACITY_FACTOR.check("capacity factor", c.factor)?;
                }
                Ok(())
            }
            Self::GShard { threshold, capacity_factor, .. } => {
                check_k(2)?;
                bounds::GSHARD_THRESHOLD.check("GShard threshold", *threshold)?;
                bounds::CAPACITY_FACTOR.check("capacity factor", *capacity_factor)
            }
            Self::TopP { p } => bounds::TOP_P.check("top-p threshold", *p),
            Self::SmoeDropout { k, init_std, .. } => {
                check_k(*k)?;
                bounds::INIT_STD.check("SMoE-Dropout init_std", *init_std)
            }
            Self::ExpertChoice { capacity_factor, .. } => {
                bounds::CAPACITY_FACTOR.check("capacity factor", *capacity_factor)
            }
            Self::Ranks { ranks } => check_ranks("the rank list", ranks, n_experts),
            Self::Sigmoid { k, .. } => check_k(*k),
            Self::Thor { .. } | Self::Hash | Self::RandomOne => Ok(()),
        }
    }

    /// Why this router is not causal, if it is not: a token's experts then depend on tokens
    /// after it, so it cannot be the router of a left-to-right language model as such (the
    /// playground shows it on a fixed text and says so). Every capacity-limited router is in
    /// this list, not only expert choice (spec §7.1): the capacity grows with the group's
    /// length, and with k ≥ 2, GShard's "every first choice before any second", or a priority
    /// other than position order, a later token can also take an earlier token's slot.
    pub fn non_causal(&self) -> Option<&'static str> {
        match self {
            Self::ExpertChoice { .. } => {
                Some("expert choice is non-causal: each expert picks its tokens from the whole sequence")
            }
            Self::TopK { k, capacity: Some(c), .. } if *k >= 2 || c.priority != token_choice::Priority::Position => {
                Some(
                    "capacity-limited top-k is non-causal here: later tokens claim slots before earlier ones (every token's first choice before any second, or a priority other than position order), and the capacity grows with the sequence length",
                )
            }
            Self::TopK { capacity: Some(_), .. } => Some(
                "capacity-limited routing is non-causal: the capacity grows with the sequence length, so later tokens can keep an earlier token from being dropped",
            ),
            Self::GShard { .. } => Some(
                "GShard is non-causal: every token's first choice claims capacity before any second choice, and the capacity grows with the sequence length",
            ),
            _ => None,
        }
    }

    /// True for routers whose decision for a token depends on the other tokens of its group
    /// (capacity limits, GShard, expert choice). Their group is the sequence of one forward
    /// call, so a KV-cached step (a group of one token) would route differently from a full
    /// pass; decoding recomputes the whole sequence for them instead.
    pub fn is_group_level(&self) -> bool {
        matches!(self, Self::TopK { capacity: Some(_), .. } | Self::GShard { .. } | Self::ExpertChoice { .. })
    }

    /// Where this router's logits come from.
    pub fn logit_source(&self) -> LogitSource {
        match self {
            Self::SmoeDropout { init_std, .. } => LogitSource::FrozenRandom { init_std: *init_std },
            Self::Thor { .. } | Self::Hash => LogitSource::None,
            _ => LogitSource::Gate,
        }
    }

    /// Routes one layer. `logits` is `[T, E]` row-major (all zeros for routers without
    /// logits); `ctx` gives each token's identity and the interventions.
    pub fn route(&self, logits: Vec<f32>, n_experts: usize, ctx: &RouteContext<'_>) -> LayerRouting {
        let e = n_experts;
        let mut rec = match self {
            Self::TopK { k, norm_topk_prob, capacity } => {
                let mut rec = token_choice::top_k(logits, e, *k, *norm_topk_prob, ctx);
                if let Some(cap) = capacity {
                    token_choice::apply_capacity(&mut rec, cap, *k);
                }
                rec
            }
            Self::GShard { policy, threshold, capacity_factor } => {
                token_choice::gshard(logits, e, *policy, *threshold, *capacity_factor, ctx)
            }
            Self::TopP { p } => token_choice::top_p(logits, e, *p, ctx),
            Self::Thor { mode } => special::thor(e, *mode, ctx),
            Self::SmoeDropout { k, dense, .. } => {
                if *k == e && *dense == SmoeDense::Uniform {
                    special::uniform_all(logits, e, ctx)
                } else {
                    token_choice::top_k(logits, e, *k, true, ctx)
                }
            }
            Self::ExpertChoice { capacity_factor, min_capacity } => {
                special::expert_choice(logits, e, *capacity_factor, *min_capacity, ctx)
            }
            Self::Hash => special::hash(e, ctx),
            Self::Ranks { ranks } => token_choice::ranks(logits, e, ranks, ctx),
            Self::Sigmoid { k, bias } => sigmoid::sigmoid_top_k(logits, e, *k, *bias, ctx),
            Self::RandomOne => special::random_one(logits, e, ctx),
        };
        if let Some(f) = ctx.forced {
            force(&mut rec, f);
        }
        if ctx.forced.is_none() && self.non_causal().is_some() {
            rec.aux.insert("non_causal".into(), 1.0);
        }
        rec
    }
}

/// Interventions applied on top of any router: ablate experts (they are never chosen) or force
/// one expert per layer (every token goes to it alone, weight 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interventions {
    /// `(layer, expert)` pairs that are switched off.
    #[serde(default)]
    pub ablate: Vec<(usize, usize)>,
    /// `(layer, expert)`: at that layer every token uses that expert only.
    #[serde(default)]
    pub force: Vec<(usize, usize)>,
}

impl Interventions {
    /// Checks every pair against the model's shape.
    pub fn validate(&self, n_layers: usize, n_experts: usize) -> Result<(), RouterError> {
        for &(layer, expert) in self.ablate.iter().chain(&self.force) {
            if layer >= n_layers || expert >= n_experts {
                return Err(RouterError::Intervention { layer, expert, n_layers, n_experts });
            }
        }
        for layer in 0..n_layers {
            if self.allowed(layer, n_experts).iter().all(|a| !a) {
                return Err(RouterError::AllAblated(layer));
            }
        }
        Ok(())
    }

    /// Which experts of `layer` may be chosen.
    pub fn allowed(&self, layer: usize, n_experts: usize) -> Vec<bool> {
        (0..n_experts).map(|e| !self.ablate.contains(&(layer, e))).collect()
    }

    /// The forced expert of `layer`, if any (the last one given wins).
    pub fn forced(&self, layer: usize) -> Option<usize> {
        self.force.iter().rev().find(|(l, _)| *l == layer).map(|&(_, e)| e)
    }
}

/// Who the routed tokens are (spec §0.2) and what the router may use.
#[derive(Debug, Clone, Copy)]
pub struct RouteContext<'a> {
    /// MoE layer index.
    pub layer: usize,
    /// Sequence id per token, `[T]`.
    pub seq_id: &'a [u32],
    /// Absolute position per token, `[T]`.
    pub pos: &'a [u32],
    /// Token id per token, `[T]` (hash routing).
    pub token_id: &'a [u32],
    /// Seed of every random draw.
    pub seed: u64,
    /// Index of this forward call on its KV cache: 0 for the prompt (or a full recompute), n
    /// for the n-th generated step. Only routers that re-draw per call use it.
    pub step: u64,
    /// Experts that may be chosen, `[E]`.
    pub allowed: &'a [bool],
    /// Expert every token is forced to, if any.
    pub forced: Option<usize>,
    /// The layer's selection bias `[E]` (DeepSeek-V3's `e_score_correction_bias`), if the
    /// model has one; only the sigmoid router reads it.
    pub selection_bias: Option<&'a [f32]>,
}

/// Softmax of one row, computed in f64 so that the record does not depend on summation order.
/// Entries with `allowed[e] = false` get probability 0.
pub fn softmax_masked(z: &[f32], allowed: &[bool]) -> Vec<f32> {
    let m = z.iter().zip(allowed).filter(|(_, a)| **a).fold(f64::NEG_INFINITY, |m, (&v, _)| m.max(f64::from(v)));
    let ex: Vec<f64> = z.iter().zip(allowed).map(|(&v, &a)| if a { (f64::from(v) - m).exp() } else { 0.0 }).collect();
    let s: f64 = ex.iter().sum();
    ex.iter().map(|&v| (v / s) as f32).collect()
}

/// Softmax of one row in f64.
pub fn softmax_row(z: &[f32]) -> Vec<f32> {
    softmax_masked(z, &vec![true; z.len()])
}

/// Expert indices of one row sorted by score descending, ties broken by the lower index
/// (spec §0.3).
pub fn rank_experts(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// One chosen slot while a record is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Choice {
    pub expert: usize,
    pub weight: f32,
    pub rank: usize,
}

/// Accumulates a record token by token.
pub(crate) struct RecordBuilder {
    rec: LayerRouting,
}

impl RecordBuilder {
    pub fn new(e: usize, k_max: usize, logits: Vec<f32>, uniform: bool, ctx: &RouteContext<'_>) -> Self {
        let t = ctx.seq_id.len();
        Self {
            rec: LayerRouting {
                layer: ctx.layer,
                num_experts: e,
                k_max,
                logits,
                probs: Vec::with_capacity(t * e),
                probs_are_uniform: uniform,
                idx: Vec::with_capacity(t * k_max),
                weight: Vec::with_capacity(t * k_max),
                valid: Vec::with_capacity(t * k_max),
                rank: Vec::with_capacity(t * k_max),
                dropped: Vec::with_capacity(t * k_max),
                aux: BTreeMap::new(),
                seq_id: ctx.seq_id.to_vec(),
                pos: ctx.pos.to_vec(),
                shared_share: Vec::new(),
                expert_kinds: Vec::new(),
            },
        }
    }

    /// Appends one token: its probability row and its choices in slot order (at most K).
    pub fn push(&mut self, probs: &[f32], choices: &[Choice]) {
        self.rec.probs.extend_from_slice(probs);
        for j in 0..self.rec.k_max {
            let c = choices.get(j);
            self.rec.idx.push(c.map_or(0, |c| c.expert as u32));
            self.rec.weight.push(c.map_or(0.0, |c| c.weight));
            self.rec.rank.push(c.map_or(0, |c| c.rank as u32));
            self.rec.valid.push(c.is_some());
            self.rec.dropped.push(false);
        }
    }

    pub fn finish(self) -> LayerRouting {
        self.rec
    }
}

/// Replaces every token's choice with `expert` alone, weight 1.
fn force(rec: &mut LayerRouting, expert: usize) {
    let k = rec.k_max;
    for t in 0..rec.num_tokens() {
        let rank = if rec.probs_are_uniform {
            0
        } else {
            rank_experts(rec.probs_row(t)).iter().position(|&e| e == expert).unwrap_or(0)
        };
        for j in 0..k {
            let i = t * k + j;
            rec.idx[i] = if j == 0 { expert as u32 } else { 0 };
            rec.weight[i] = if j == 0 { 1.0 } else { 0.0 };
            rec.rank[i] = if j == 0 { rank as u32 } else { 0 };
            rec.valid[i] = j == 0;
            rec.dropped[i] = false;
        }
    }
    rec.aux.insert("forced_expert".into(), expert as f32);
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
pub(crate) mod tests;
