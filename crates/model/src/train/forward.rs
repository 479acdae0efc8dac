//! The training forward pass: the same network as [`Model::forward`], with routing decisions
//! taken on the host from the detached router logits (as at inference) but combine weights
//! computed on the device from the router's probabilities, so the gate gets gradients.

use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::softmax;

use crate::host::to_host;
use crate::layers::SparseMoeBlock;
use crate::model::{Model, ModelError};
use crate::rng;
use switchyard_routing::record::ExpertKind;
use switchyard_routing::router::{rank_experts, sigmoid_choice, softmax_row, top_p_choice};

/// How the MoE layers route during a training pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TrainRouting {
    /// Top-k of the gate's logits, weights = softmax renormalised over the k chosen (§1.1,
    /// §3.1), or the raw probabilities (DeepSeekMoE, §8.1). With a frozen gate (SMoE-Dropout)
    /// the gate's weights get no gradient.
    Softmax {
        /// Experts per token.
        k: usize,
        /// Renormalise over the k (`norm_topk_prob`).
        renormalise: bool,
        /// Which load-balancing loss the gate gets.
        lbl: Lbl,
    },
    /// Dynamic top-p (§5.1): the fewest experts whose probabilities sum past `p`, weighted by
    /// their raw (not renormalised) probabilities; the same choice as inference's router.
    TopP {
        /// Threshold p.
        p: f32,
    },
    /// DeepSeek-V3 (§8.2): the top-k of `σ(z) + b` with the model's selection bias `b`,
    /// weights `σ(z)` normalised over the chosen; the same choice as inference's router.
    Sigmoid {
        /// Experts per token.
        k: usize,
    },
    /// THOR §2.2: one uniformly drawn expert per layer for the whole batch, weight 1, drawn
    /// from `stream` keyed by (layer, step).
    Thor {
        /// `THOR_FWD1` or `THOR_FWD2`.
        stream: u64,
    },
}

/// The load-balancing loss of a softmax router (spec §9.1 and the designs of §6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Lbl {
    /// `E·Σ_e f_e·P̄_e`, `f_e` the fraction of tokens that chose e (flaxformer top-k).
    TopK,
    /// AdaMoE's exp_1 loss (§6.1): the null experts' counts replaced by their mean (they are
    /// interchangeable, only their total matters), `f_e = count_e / Σ count`, times `E + N`.
    NullMean,
    /// MoE++'s heterogeneous loss, `E·Σ_e η_e·f_e·P̄_e` with `η = τ` on the free experts and 1
    /// on the FFN experts (the paper's; not in the reference code: [PAPER?], spec §6.2).
    Heterogeneous {
        /// τ.
        tau: f32,
    },
}

/// Tokens per expert per layer from earlier steps, pooled with this step's into the LBL's
/// `f_e` (the global-batch LBL of "Demons in the Detail", §9.1, as a running buffer: the
/// counts of the last steps, no extra forward passes). Empty: this step's batch alone.
#[derive(Debug, Clone, Default)]
pub(crate) struct PriorLoad {
    /// `[layer][expert]` slots routed, summed over the buffered steps.
    pub counts: Vec<Vec<u64>>,
    /// Tokens per layer in those steps.
    pub tokens: u64,
}

/// Logits and auxiliary terms of one training pass.
pub(crate) struct TrainPass {
    /// Next-token logits `[T, V]` (T = B·S, row-major over the batch).
    pub logits: Tensor<2>,
    /// Per-layer mean of the top-k load-balancing loss `E·Σ_e f_e·P̄_e` (§9.1, flaxformer
    /// top-k `f_e`, computed over the whole batch: the global batch, as there is no
    /// micro-batching). Zero for THOR.
    pub lbl: Tensor<1>,
    /// Per-layer mean of the router z-loss (§1.5). Zero for THOR.
    pub z: Tensor<1>,
    /// Per-layer mean of the router's mean entropy `(1/T)·Σ_t H(P_t)` (nats): top-p's dynamic
    /// loss (§5.2). Zero for THOR.
    pub entropy: Tensor<1>,
    /// Per-layer mean of the router's confidence, the mean top-1 probability (detached: a
    /// measurement, not a loss). Zero for THOR.
    pub confidence: Tensor<1>,
    /// Tokens routed to each expert, per layer (slots counted).
    pub load: Vec<Vec<u64>>,
}

/// The top-k load-balancing loss `E·Σ_e f_e·P̄_e` of one layer (spec §9.1, flaxformer's
/// top-k `f_e`): `f_e` is the fraction of the T tokens that have e among their k (Σ f = k, so
/// perfect balance gives k), `P̄_e` the mean router probability. Only `P̄` carries gradient.
///
/// # Shapes
/// - probs: `[T, E]`, counts: `[E]` tokens per expert -> `[1]`
#[cfg(test)]
pub(crate) fn load_balancing_loss(probs: Tensor<2>, counts: &[u64]) -> Tensor<1> {
    load_balancing_loss_pooled(probs, counts, &[], 0)
}

/// [`load_balancing_loss`] with `f_e` pooled over earlier steps' counts (`prior`, over
/// `prior_tokens` tokens) and this step's: `P̄` stays this step's, the only part with gradient.
///
/// # Shapes
/// - probs: `[T, E]`, counts and prior: `[E]` (prior may be empty) -> `[1]`
pub(crate) fn load_balancing_loss_pooled(
    probs: Tensor<2>,
    counts: &[u64],
    prior: &[u64],
    prior_tokens: u64,
) -> Tensor<1> {
    let [t, e] = probs.dims();
    let tokens = (t as u64 + prior_tokens) as f32;
    let f: Vec<f32> =
        counts.iter().enumerate().map(|(j, &n)| (n + prior.get(j).copied().unwrap_or(0)) as f32 / tokens).collect();
    let f = Tensor::<2>::from_data(TensorData::new(f, [1, e]), &probs.device());
    (probs.mean_dim(0) * f).sum().mul_scalar(e as f32)
}

/// AdaMoE's LBL (see [`Lbl::NullMean`]); `kinds` names the null experts.
///
/// # Shapes
/// - probs: `[T, E]`, counts: `[E]` -> `[1]`
pub(crate) fn null_mean_lbl(probs: Tensor<2>, counts: &[u64], kinds: &[ExpertKind]) -> Tensor<1> {
    let e = counts.len();
    let nulls: Vec<usize> = (0..e).filter(|&j| ExpertKind::at(kinds, j) == ExpertKind::Null).collect();
    let null_mean = nulls.iter().map(|&j| counts[j] as f32).sum::<f32>() / nulls.len().max(1) as f32;
    let counts: Vec<f32> = (0..e).map(|j| if nulls.contains(&j) { null_mean } else { counts[j] as f32 }).collect();
    let total = counts.iter().sum::<f32>().max(1.0);
    let f: Vec<f32> = counts.iter().map(|c| c / total).collect();
    let f = Tensor::<2>::from_data(TensorData::new(f, [1, e]), &probs.device());
    (probs.mean_dim(0) * f).sum().mul_scalar(e as f32)
}

/// MoE++'s heterogeneous LBL (see [`Lbl::Heterogeneous`]); `kinds` names the free experts.
///
/// # Shapes
/// - probs: `[T, E]`, counts: `[E]` -> `[1]`
pub(crate) fn heterogeneous_lbl(probs: Tensor<2>, counts: &[u64], kinds: &[ExpertKind], tau: f32) -> Tensor<1> {
    let [t, e] = probs.dims();
    let eta = |j: usize| if ExpertKind::at(kinds, j) == ExpertKind::Ffn { 1.0 } else { tau };
    let f: Vec<f32> = (0..e).map(|j| eta(j) * counts[j] as f32 / t.max(1) as f32).collect();
    let f = Tensor::<2>::from_data(TensorData::new(f, [1, e]), &probs.device());
    (probs.mean_dim(0) * f).sum().mul_scalar(e as f32)
}

/// The router z-loss `(1/T)·Σ_t (log Σ_e exp Z_{t,e})²` (spec §1.5), with the max subtracted
/// inside the logsumexp for stability.
///
/// # Shapes
/// - logits: `[T, E]` -> `[1]`
pub(crate) fn z_loss(logits: Tensor<2>) -> Tensor<1> {
    let m = logits.clone().detach().max_dim(1); // [T, 1]
    let lse = (logits - m.clone()).exp().sum_dim(1).log() + m;
    lse.powi_scalar(2).mean()
}

/// The router's mean entropy `(1/T)·Σ_t H(P_t)` in nats (spec §5.2's dynamic loss).
///
/// # Shapes
/// - logits: `[T, E]` -> `[1]`
pub(crate) fn router_entropy(logits: Tensor<2>) -> Tensor<1> {
    let lp = burn::tensor::activation::log_softmax(logits, 1);
    (lp.clone().exp() * lp).sum_dim(1).mean().neg()
}

/// The losses on a trained gate's probabilities, one layer.
pub(crate) struct GateLosses {
    lbl: Tensor<1>,
    z: Tensor<1>,
    entropy: Tensor<1>,
    confidence: Tensor<1>,
}

/// What a training MoE step leaves besides its output: tokens per expert, and the layer's
/// gate losses when the gate trains.
pub(crate) struct LayerTerms {
    counts: Vec<u64>,
    losses: Option<GateLosses>,
    /// The router logits, for the next layer's gating residual (MoE++).
    logits: Option<Tensor<2>>,
}

/// Runs the experts on their rows and adds them up with differentiable weights (the copy and
/// constant experts on every row, weighted 0 where not chosen).
///
/// # Shapes
/// - x: `[T, d]` (the experts' input), w: `[T, E]` -> `[T, d]`
fn combine_weighted(moe: &SparseMoeBlock, x: Tensor<2>, rows: &[Vec<i32>], w: Tensor<2>) -> Tensor<2> {
    let device = x.device();
    let [t, d] = x.dims();
    let mut out = moe.free_output(&x, &w).unwrap_or_else(|| Tensor::<2>::zeros([t, d], &device));
    for (j, (expert, rows)) in moe.experts.iter().zip(rows).enumerate() {
        let n = rows.len();
        if n == 0 {
            continue;
        }
        let wj = w.clone().narrow(1, j, 1); // [T, 1]
        if n == t {
            out = out + expert.forward(x.clone()) * wj;
            continue;
        }
        let idx = Tensor::<1, Int>::from_data(TensorData::new(rows.clone(), [n]), &device);
        let y = expert.forward(x.clone().select(0, idx.clone())) * wj.select(0, idx.clone());
        out = out.select_assign(0, idx, y, IndexingUpdateOp::Add);
    }
    out
}

impl Model {
    /// One training pass over `tokens` (B rows of S ids) at optimizer step `step`: the same
    /// decoder blocks as inference, with [`Self::train_moe`] as the MoE step.
    pub(crate) async fn forward_train(
        &self,
        tokens: &[Vec<u32>],
        routing: TrainRouting,
        prior: &PriorLoad,
        (seed, step): (u64, u64),
    ) -> Result<TrainPass, ModelError> {
        let c = self.config();
        let (b, s) = (tokens.len(), tokens.first().map_or(0, Vec::len));
        if b == 0 || s == 0 || tokens.iter().any(|r| r.len() != s) {
            return Err(ModelError::Input("a training batch needs rows of equal, non-zero length".into()));
        }
        if s > c.max_seq_len {
            return Err(ModelError::Context { len: s, max: c.max_seq_len });
        }
        if let Some(&id) = tokens.iter().flatten().find(|&&id| id as usize >= c.vocab_size) {
            return Err(ModelError::Token { id, vocab_size: c.vocab_size });
        }
        let device = self.device().clone();
        let ids: Vec<i32> = tokens.iter().flatten().map(|&id| id as i32).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), &device);
        let mut h = self.net.embed_tokens.forward(ids);
        let zero = || Tensor::<1>::zeros([1], &device);
        let (mut lbl, mut z, mut entropy, mut confidence) = (zero(), zero(), zero(), zero());
        let mut load = Vec::with_capacity(c.n_layers);
        let mut prev = None; // the previous layer's router logits (MoE++'s gating residual)
        for (i, layer) in self.net.layers.iter().enumerate() {
            let prior = (prior.counts.get(i).map_or(&[][..], Vec::as_slice), prior.tokens);
            let key = (seed, i as u64, step);
            let moe = async |block: &SparseMoeBlock, x| self.train_moe(block, x, routing, prior, key, prev).await;
            let (next, terms, _) = layer.forward(h, &self.rope, 0, &mut None, moe).await?;
            h = next;
            prev = terms.logits.filter(|_| c.gating_residual);
            if let Some(g) = terms.losses {
                lbl = lbl + g.lbl;
                z = z + g.z;
                entropy = entropy + g.entropy;
                confidence = confidence + g.confidence;
            }
            load.push(terms.counts);
        }
        let h = self.net.norm.forward(h);
        let logits = match &self.net.lm_head {
            Some(head) => head.forward(h),
            None => h.matmul(self.net.embed_tokens.weight.val().transpose().unsqueeze()),
        };
        let n = c.n_layers as f32;
        Ok(TrainPass {
            logits: logits.reshape([b * s, c.vocab_size]),
            lbl: lbl.div_scalar(n),
            z: z.div_scalar(n),
            entropy: entropy.div_scalar(n),
            confidence: confidence.div_scalar(n),
            load,
        })
    }

    /// The training MoE step of one layer: THOR's batch-level expert, or top-k / top-p chosen
    /// on the host from the detached logits with differentiable softmax weights (and the
    /// layer's gate losses, when the gate trains). `prior` is the LBL's pooled earlier load;
    /// `key` is (seed, layer, step).
    ///
    /// # Shapes
    /// - x: `[T, d]` -> `[T, d]`
    async fn train_moe(
        &self,
        moe: &SparseMoeBlock,
        x: Tensor<2>,
        routing: TrainRouting,
        (prior, prior_tokens): (&[u64], u64),
        (seed, layer, step): (u64, u64, u64),
        prev: Option<Tensor<2>>,
    ) -> Result<(Tensor<2>, LayerTerms), ModelError> {
        let (t, e) = (x.dims()[0], self.config().n_experts);
        if let TrainRouting::Thor { stream } = routing {
            let u = rng::u01(seed, stream, &[layer, step]);
            let chosen = ((u * e as f64) as usize).min(e - 1);
            let mut counts = vec![0u64; e];
            counts[chosen] = t as u64;
            let terms = LayerTerms { counts, losses: None, logits: None };
            return Ok((moe.experts[chosen].forward(x), terms));
        }
        let frozen = self.config().frozen_gate;
        let logits =
            if frozen { x.clone().matmul(moe.gate.weight.val().detach()) } else { moe.router_logits(x.clone(), prev) };
        let host = to_host(logits.clone()).await?;
        let bias = self.selection_bias.get(layer as usize).map(Vec::as_slice);
        let mut mask = vec![0.0f32; t * e];
        let mut rows: Vec<Vec<i32>> = vec![Vec::new(); e];
        let all = vec![true; e];
        for row in 0..t {
            for j in train_choice(&host[row * e..(row + 1) * e], bias, &all, routing) {
                mask[row * e + j] = 1.0;
                rows[j].push(row as i32);
            }
        }
        let counts: Vec<u64> = rows.iter().map(|r| r.len() as u64).collect();
        let probs = softmax(logits.clone(), 1); // [T, E]
        // Null and zero experts output nothing and take no weight (§6): dropped from the mask
        // before the weights are renormalised, as `apply_free_experts` does at inference.
        let kinds = self.config().expert_kinds();
        for (j, kind) in kinds.iter().enumerate().filter(|(_, k)| k.outputs_nothing()) {
            debug_assert!(j < e, "{kind:?}");
            (0..t).for_each(|row| mask[row * e + j] = 0.0);
        }
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [t, e]), &x.device());
        // Top-k renormalises over its k (Mixtral); top-p keeps the raw probabilities (§5.1);
        // sigmoid normalises the unbiased affinities over its k (§8.2).
        let w = match routing {
            TrainRouting::Sigmoid { .. } => burn::tensor::activation::sigmoid(logits.clone()) * mask,
            _ => probs.clone() * mask,
        };
        let raw = matches!(routing, TrainRouting::TopP { .. } | TrainRouting::Softmax { renormalise: false, .. });
        // A token whose every choice outputs nothing has weights 0 / 0: its sum is guarded.
        let w = if raw { w } else { w.clone() / w.sum_dim(1).clamp_min(1e-12) };
        let probs_top1 = probs.clone().max_dim(1).mean(); // [1]
        let lbl = match routing {
            TrainRouting::Softmax { lbl: Lbl::NullMean, .. } => null_mean_lbl(probs, &counts, &kinds),
            TrainRouting::Softmax { lbl: Lbl::Heterogeneous { tau }, .. } => {
                heterogeneous_lbl(probs, &counts, &kinds, tau)
            }
            _ => load_balancing_loss_pooled(probs, &counts, prior, prior_tokens),
        };
        let confidence = probs_top1.detach();
        let losses = (!frozen).then(|| GateLosses {
            lbl,
            z: z_loss(logits.clone()),
            entropy: router_entropy(logits.clone()),
            confidence,
        });
        let logits = Some(logits);
        Ok((combine_weighted(moe, moe.expert_input(x), &rows, w), LayerTerms { counts, losses, logits }))
    }
}

/// The experts one token's logits choose in training (`Thor` has no logits: none); `bias` is
/// the layer's selection bias, which only the sigmoid router reads; `all` allows every expert.
fn train_choice(logits: &[f32], bias: Option<&[f32]>, all: &[bool], routing: TrainRouting) -> Vec<usize> {
    match routing {
        TrainRouting::Sigmoid { k } => sigmoid_choice(logits, bias, all, k).1.into_iter().map(|(x, _)| x).collect(),
        TrainRouting::Softmax { k, .. } => rank_experts(logits).into_iter().take(k).collect(),
        TrainRouting::TopP { p } => top_p_choice(&softmax_row(logits), all, p).into_iter().map(|(x, _)| x).collect(),
        TrainRouting::Thor { .. } => Vec::new(),
    }
}
