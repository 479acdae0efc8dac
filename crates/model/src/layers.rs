//! The burn modules of the MoE transformer, one struct per concept of the Mixtral architecture.
//! Field names mirror the checkpoint keys (`self_attn.q_proj`, `block_sparse_moe.experts.3.w1`).

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::{silu, softmax};
use switchyard_record::{ExpertKind, LayerRouting};
use switchyard_routing::RouterSpec;
use switchyard_routing::router::{dense_weights, expert_assignments};

use crate::model::ModelError;

/// How the MoE block turns a routing decision into expert outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dispatch {
    /// Routing on the host (one read-back of the router logits per layer); gather each expert's
    /// tokens, run the expert on them only, scatter-add the weighted results back (compute
    /// proportional to k). The fastest on the CPU.
    Sparse,
    /// Routing on the host; every expert on every token, masked by the dense combine weights
    /// (compute proportional to E): the reference the sparse path is tested against.
    Dense,
    /// Routing on the device for the routers that allow it (top-k without capacity, Switch,
    /// rank lists; ablations and forced experts included): every expert on every token with
    /// device weights, and one read-back for the whole forward pass (the router logits of every
    /// layer with the last logits), from which the host builds the same records. What pays on
    /// a GPU, where each read-back costs milliseconds. Other routers fall back to `Dense`.
    Device,
}

/// Rotary position embedding tables, in the HF "rotate half" convention.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor<2>, // [max_seq, head_dim / 2]
    sin: Tensor<2>, // [max_seq, head_dim / 2]
}

impl Rope {
    /// Tables for positions `0..max_seq` and heads of size `head_dim`; positions are divided by
    /// `linear_factor` (HF's linear RoPE scaling; 1 for none).
    pub fn new(max_seq: usize, head_dim: usize, theta: f64, linear_factor: f64, device: &Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_seq * half);
        let mut sin = Vec::with_capacity(max_seq * half);
        for p in 0..max_seq {
            for i in 0..half {
                let freq = theta.powf(-2.0 * i as f64 / head_dim as f64);
                let a = p as f64 / linear_factor * freq;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [max_seq, half]), device),
            sin: Tensor::from_data(TensorData::new(sin, [max_seq, half]), device),
        }
    }

    /// Rotates `x` for absolute positions `start..start + S`.
    ///
    /// # Shapes
    /// - x: `[B, H, S, head_dim]` -> `[B, H, S, head_dim]`
    pub fn apply(&self, x: Tensor<4>, start: usize) -> Tensor<4> {
        let [_, _, s, hd] = x.dims();
        let half = hd / 2;
        let cos = self.cos.clone().narrow(0, start, s).unsqueeze::<4>(); // [1, 1, S, half]
        let sin = self.sin.clone().narrow(0, start, s).unsqueeze::<4>();
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        Tensor::cat(vec![x1.clone() * cos.clone() - x2.clone() * sin.clone(), x2 * cos + x1 * sin], 3)
    }
}

/// Keys and values of one attention layer for the tokens seen so far.
#[derive(Debug, Clone)]
pub struct LayerKv {
    k: Tensor<4>, // [B, n_kv_heads, L, head_dim]
    v: Tensor<4>, // [B, n_kv_heads, L, head_dim]
}

/// Causal self-attention with rotary embeddings and grouped-query heads; optionally biases on
/// q, k, v (Qwen2-MoE) and an RMSNorm on queries and keys before RoPE (Qwen3-MoE per head,
/// OLMoE over the whole projection).
#[derive(Module, Debug)]
pub struct Attention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) o_proj: Linear,
    pub(crate) q_norm: Option<RmsNorm>,
    pub(crate) k_norm: Option<RmsNorm>,
    #[module(skip)]
    pub(crate) n_heads: usize,
    #[module(skip)]
    pub(crate) n_kv_heads: usize,
    #[module(skip)]
    pub(crate) head_dim: usize,
    /// The q/k norms act on each head (`true`) or on the whole projection.
    #[module(skip)]
    pub(crate) qk_norm_per_head: bool,
}

impl Attention {
    /// The projection `proj` of `x`, with the q/k norm when it spans the whole projection.
    fn project(&self, proj: &Linear, norm: Option<&RmsNorm>, x: Tensor<3>, heads: usize) -> Tensor<4> {
        let [b, s, _] = x.dims();
        let y = proj.forward(x);
        let y = match norm {
            Some(n) if !self.qk_norm_per_head => n.forward(y),
            _ => y,
        };
        let y = y.reshape([b, s, heads, self.head_dim]);
        let y = match norm {
            Some(n) if self.qk_norm_per_head => n.forward(y),
            _ => y,
        };
        y.swap_dims(1, 2) // [B, heads, S, hd]
    }
}

impl Attention {
    /// Attends from the new tokens to the cached ones and themselves, and appends the new keys
    /// and values to `cache`.
    ///
    /// # Shapes
    /// - x: `[B, S, d]` (positions `start..start + S`) -> `[B, S, d]`
    pub fn forward(&self, x: Tensor<3>, rope: &Rope, start: usize, cache: &mut Option<LayerKv>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let q = self.project(&self.q_proj, self.q_norm.as_ref(), x.clone(), nh); // [B, nh, S, hd]
        let k = self.project(&self.k_proj, self.k_norm.as_ref(), x.clone(), nkv); // [B, nkv, S, hd]
        let v = self.project(&self.v_proj, None, x, nkv);
        let q = rope.apply(q, start);
        let k = rope.apply(k, start);
        let (k, v) = match cache.take() {
            Some(past) => (Tensor::cat(vec![past.k, k], 2), Tensor::cat(vec![past.v, v], 2)),
            None => (k, v),
        };
        *cache = Some(LayerKv { k: k.clone(), v: v.clone() });
        let l = k.dims()[2]; // keys: cached + new
        let k = repeat_kv(k, nh / nkv); // [B, nh, L, hd]
        let v = repeat_kv(v, nh / nkv);
        let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((hd as f32).sqrt()); // [B, nh, S, L]
        if s > 1 {
            let mask = causal_mask(s, l, start, &scores.device()).expand([b, nh, s, l]);
            scores = scores.mask_fill(mask, -1.0e9);
        }
        let out = softmax(scores, 3).matmul(v); // [B, nh, S, hd]
        self.o_proj.forward(out.swap_dims(1, 2).reshape([b, s, nh * hd]))
    }
}

/// `[B, n_kv, L, hd]` -> `[B, n_kv * rep, L, hd]`, each KV head serving `rep` query heads.
fn repeat_kv(x: Tensor<4>, rep: usize) -> Tensor<4> {
    if rep == 1 {
        return x;
    }
    let [b, nkv, l, hd] = x.dims();
    x.unsqueeze_dim::<5>(2).repeat_dim(2, rep).reshape([b, nkv * rep, l, hd])
}

/// True where query `i` (absolute position `start + i`) must not see key `j`. `[1, 1, S, L]`.
fn causal_mask(s: usize, l: usize, start: usize, device: &Device) -> Tensor<4, Bool> {
    let data: Vec<bool> = (0..s).flat_map(|i| (0..l).map(move |j| j > start + i)).collect();
    Tensor::from_data(TensorData::new(data, [1, 1, s, l]), device)
}

/// One SwiGLU expert: `w2 · (silu(w1 · x) ⊙ w3 · x)`.
#[derive(Module, Debug)]
pub struct Expert {
    pub(crate) w1: Linear,
    pub(crate) w2: Linear,
    pub(crate) w3: Linear,
}

impl Expert {
    /// # Shapes
    /// - x: `[N, d]` -> `[N, d]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.w2.forward(silu(self.w1.forward(x.clone())) * self.w3.forward(x))
    }
}

/// MoE++'s constant expert (spec §6.2): `a₁·x + a₂·v` with `(a₁, a₂) = softmax(W_c·x)`, a
/// learned vector `v` mixed into the input token by token.
#[derive(Module, Debug)]
pub struct ConstantExpert {
    /// `W_c`, `d -> 2`, no bias.
    pub(crate) wg: Linear,
    /// `v`, `[d]`.
    pub(crate) constant: Param<Tensor<1>>,
}

impl ConstantExpert {
    /// # Shapes
    /// - x: `[N, d]` -> `[N, d]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let a = softmax(self.wg.forward(x.clone()), 1); // [N, 2]
        let v = self.constant.val().unsqueeze::<2>(); // [1, d]
        x * a.clone().narrow(1, 0, 1) + v * a.narrow(1, 1, 1)
    }
}

/// The sparse MoE block: a router (`gate`, no bias) to E logits, the FFN (SwiGLU) experts, and
/// optionally the free experts of spec §6 after them (null, zero, copy, constant).
///
/// Contract: the router in use decides (see [`crate::RouterSpec`]); with the default top-k
/// router the block is dropless and the weights are renormalised (`norm_topk_prob`). Slots
/// marked dropped contribute nothing (output 0, residual only); so do null and zero experts.
#[derive(Module, Debug)]
pub struct SparseMoeBlock {
    /// The router: one linear layer `d -> E`, or the second layer of MoE++'s gate.
    pub(crate) gate: Linear,
    /// MoE++'s two-layer gate: `gate(tanh(gate_in(x)))`.
    pub(crate) gate_in: Option<Linear>,
    /// MoE++'s gating residual `W_g`: the previous layer's logits, mapped, add to this one's.
    pub(crate) gate_map: Option<Linear>,
    pub(crate) experts: Vec<Expert>,
    /// The constant experts, in the order of their entries in the expert list.
    pub(crate) constants: Vec<ConstantExpert>,
    /// The kinds of the expert list's entries after the FFN experts.
    #[module(skip)]
    pub(crate) free_kinds: Vec<ExpertKind>,
    /// Factor on the experts' input (MoE++'s reference: 2 = k).
    #[module(skip)]
    pub(crate) input_scale: f32,
    /// DeepSeekMoE's shared expert (spec §8.1): every token, weight 1, outside the router.
    pub(crate) shared_expert: Option<Expert>,
    /// Qwen2-MoE's gate on it: the shared output times `σ(shared_expert_gate(x))`.
    pub(crate) shared_expert_gate: Option<Linear>,
}

impl SparseMoeBlock {
    /// Router logits, kept in f32: `gate(x)`, or MoE++'s `gate(tanh(gate_in(x)))`, plus
    /// `gate_map(prev)` with a gating residual and the previous layer's logits.
    ///
    /// # Shapes
    /// - x: `[T, d]`, prev: `[T, E]` -> `[T, E]`
    pub fn router_logits(&self, x: Tensor<2>, prev: Option<Tensor<2>>) -> Tensor<2> {
        let h = match &self.gate_in {
            Some(first) => first.forward(x).tanh(),
            None => x,
        };
        let z = self.gate.forward(h);
        match (&self.gate_map, prev) {
            (Some(map), Some(prev)) => z + map.forward(prev),
            _ => z,
        }
    }

    /// What the experts see: the block's input, times MoE++'s input scale.
    pub(crate) fn expert_input(&self, x: Tensor<2>) -> Tensor<2> {
        if self.input_scale == 1.0 { x } else { x.mul_scalar(self.input_scale) }
    }

    /// The copy and constant experts' weighted outputs, summed (`None` without them). Null and
    /// zero experts output nothing.
    ///
    /// # Shapes
    /// - x: `[T, d]` (the experts' input), w: `[T, E]` -> `[T, d]`
    pub(crate) fn free_output(&self, x: &Tensor<2>, w: &Tensor<2>) -> Option<Tensor<2>> {
        let first = self.experts.len();
        let mut constants = self.constants.iter();
        let mut out: Option<Tensor<2>> = None;
        for (i, kind) in self.free_kinds.iter().enumerate() {
            let y = match kind {
                ExpertKind::Copy => x.clone(),
                ExpertKind::Constant => constants.next()?.forward(x.clone()),
                ExpertKind::Ffn | ExpertKind::Null | ExpertKind::Zero => continue,
            };
            let y = y * w.clone().narrow(1, first + i, 1);
            out = Some(match out {
                Some(o) => o + y,
                None => y,
            });
        }
        out
    }

    /// True when some free expert outputs something (copy, constant).
    fn has_free_outputs(&self) -> bool {
        self.free_kinds.iter().any(|k| matches!(k, ExpertKind::Copy | ExpertKind::Constant))
    }

    /// Combines the experts' outputs for a routing decision made on the host.
    ///
    /// # Shapes
    /// - x: `[T, d]` -> `[T, d]`
    pub fn combine(&self, x: Tensor<2>, rec: &LayerRouting, dispatch: Dispatch) -> Tensor<2> {
        let x = self.expert_input(x);
        match dispatch {
            Dispatch::Sparse => self.combine_sparse(x, rec),
            Dispatch::Dense | Dispatch::Device => {
                let [t, e] = [x.dims()[0], rec.num_experts];
                let w = Tensor::<2>::from_data(TensorData::new(dense_weights(rec), [t, e]), &x.device());
                self.combine_weighted(x, w)
            }
        }
    }

    fn combine_sparse(&self, x: Tensor<2>, rec: &LayerRouting) -> Tensor<2> {
        let device = x.device();
        let [t, d] = x.dims();
        let mut out = Tensor::<2>::zeros([t, d], &device);
        if self.has_free_outputs() {
            // Copy and constant experts cost a few d per token: they run on every token, with
            // the dense weights (0 where a token did not choose them).
            let w = Tensor::<2>::from_data(TensorData::new(dense_weights(rec), [t, rec.num_experts]), &device);
            if let Some(y) = self.free_output(&x, &w) {
                out = y;
            }
        }
        for (expert, (rows, weights)) in self.experts.iter().zip(expert_assignments(rec)) {
            let n = rows.len();
            if n == 0 {
                continue;
            }
            let w = Tensor::<2>::from_data(TensorData::new(weights, [n, 1]), &device);
            if rows.iter().enumerate().all(|(i, &r)| r as usize == i) && n == t {
                // Every token uses this expert once, in order (always the case when decoding one
                // token): no gather or scatter is needed. A count of t alone is not enough: a
                // rank list that names one rank twice sends some tokens here twice.
                out = out + expert.forward(x.clone()) * w;
                continue;
            }
            let rows: Vec<i32> = rows.into_iter().map(|r| r as i32).collect();
            let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device);
            let y = expert.forward(x.clone().select(0, rows.clone())) * w; // [n, d]
            out = out.select_assign(0, rows, y, IndexingUpdateOp::Add);
        }
        out
    }

    /// Every expert on every token, weighted by the dense combine weights.
    ///
    /// # Shapes
    /// - x: `[T, d]`, w: `[T, E]` -> `[T, d]`
    pub(crate) fn combine_weighted(&self, x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
        let [t, d] = x.dims();
        let mut out = self.free_output(&x, &w).unwrap_or_else(|| Tensor::<2>::zeros([t, d], &x.device()));
        for (j, expert) in self.experts.iter().enumerate() {
            out = out + expert.forward(x.clone()) * w.clone().narrow(1, j, 1);
        }
        out
    }

    /// The combine weights a [`DeviceRouting`] gives, computed on the device: a softmax over the
    /// allowed experts, the experts at the plan's ranks of each token's ordering, their
    /// probabilities (renormalised or raw); with a forced expert, that expert alone, weight 1.
    /// The host builds the same choice from the read-back logits (`RouterSpec::route`).
    ///
    /// # Shapes
    /// - logits: `[T, E]` -> `[T, E]`
    pub(crate) fn device_weights(
        &self,
        logits: Tensor<2>,
        plan: &DeviceRouting,
        allowed: &[bool],
        forced: Option<usize>,
    ) -> Tensor<2> {
        let [t, e] = logits.dims();
        let device = logits.device();
        if let Some(x) = forced {
            let row: Vec<f32> = (0..e).map(|j| if j == x { 1.0 } else { 0.0 }).collect();
            return Tensor::<2>::from_data(TensorData::new(row, [1, e]), &device).repeat_dim(0, t);
        }
        let off: Vec<bool> = allowed.iter().map(|a| !a).collect();
        let off = Tensor::<2, Bool>::from_data(TensorData::new(off, [1, e]), &device).expand([t, e]);
        let masked = logits.mask_fill(off, f32::NEG_INFINITY);
        let probs = softmax(masked.clone(), 1); // [T, E]
        let (_, order) = masked.topk_with_indices(plan.depth(), 1); // [T, depth]
        let ranks: Vec<i32> = plan.ranks.iter().map(|&r| r as i32).collect();
        let ranks = Tensor::<1, Int>::from_data(TensorData::new(ranks, [plan.ranks.len()]), &device);
        let chosen = order.select(1, ranks); // [T, K]
        let p = probs.gather(1, chosen.clone()); // [T, K]
        let p = if plan.renormalise { p.clone() / p.sum_dim(1) } else { p };
        Tensor::<2>::zeros([t, e], &device).scatter(1, chosen, p, IndexingUpdateOp::Add)
    }
}

/// A routing the device can decide by itself (see [`Dispatch::Device`]): the experts at these
/// ranks of each token's ordering, weights renormalised or raw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeviceRouting {
    /// Ranks kept, in slot order (top-k: `0..k`).
    ranks: Vec<usize>,
    /// Renormalise the kept probabilities (`norm_topk_prob`; rank lists always do).
    renormalise: bool,
}

impl DeviceRouting {
    /// The device routing of `router` on a model whose layers allow these experts, if it has
    /// one: top-k without capacity (Switch included) and rank lists, when every layer allows
    /// more experts than the deepest rank.
    pub(crate) fn of(router: &RouterSpec, allowed_per_layer: impl IntoIterator<Item = usize>) -> Option<Self> {
        // Only a GPU build uses it (the CPU engine module would carry the kernels for nothing).
        if !cfg!(feature = "wgpu") {
            return None;
        }
        let plan = match router {
            RouterSpec::TopK { k, norm_topk_prob, capacity: None } => {
                Self { ranks: (0..*k).collect(), renormalise: *norm_topk_prob }
            }
            RouterSpec::Ranks { ranks } => Self { ranks: ranks.clone(), renormalise: true },
            _ => return None,
        };
        allowed_per_layer.into_iter().all(|n| plan.depth() <= n).then_some(plan)
    }

    /// How many of each token's best experts the plan looks at.
    fn depth(&self) -> usize {
        self.ranks.iter().max().map_or(0, |r| r + 1)
    }
}

/// One decoder block: pre-norm attention and pre-norm sparse MoE, each with a residual.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub(crate) input_layernorm: RmsNorm,
    pub(crate) self_attn: Attention,
    pub(crate) post_attention_layernorm: RmsNorm,
    pub(crate) block_sparse_moe: SparseMoeBlock,
}

impl DecoderLayer {
    /// `h + attn(norm(h))`, then `h + moe(norm(h))`. The MoE step is given: inference routes and
    /// combines (returning the layer's routing), training computes differentiable weights and
    /// its losses, over the same skeleton.
    ///
    /// With a shared expert, also its share of each token's MoE output norm,
    /// `‖shared‖ / (‖shared‖ + ‖routed‖)` (`[T]`, on the device: the caller reads it back with
    /// whatever else it reads).
    ///
    /// # Shapes
    /// - h: `[B, S, d]` (positions `start..start + S`) -> `[B, S, d]`; the step sees `[B·S, d]`
    pub(crate) async fn forward<R>(
        &self,
        h: Tensor<3>,
        rope: &Rope,
        start: usize,
        cache: &mut Option<LayerKv>,
        moe: impl AsyncFnOnce(&SparseMoeBlock, Tensor<2>) -> Result<(Tensor<2>, R), ModelError>,
    ) -> Result<(Tensor<3>, R, Option<Tensor<1>>), ModelError> {
        let [b, s, d] = h.dims();
        let h = h.clone() + self.self_attn.forward(self.input_layernorm.forward(h), rope, start, cache);
        let x = self.post_attention_layernorm.forward(h.clone()).reshape([b * s, d]); // [T, d]
        // The shared expert bypasses the router (§8.1): the same for inference and training.
        let block = &self.block_sparse_moe;
        let shared = block.shared_expert.as_ref().map(|e| {
            let y = e.forward(x.clone());
            match &block.shared_expert_gate {
                Some(g) => y * burn::tensor::activation::sigmoid(g.forward(x.clone())), // [T, d] · [T, 1]
                None => y,
            }
        });
        let (y, out) = moe(&self.block_sparse_moe, x).await?;
        let (y, share) = match shared {
            Some(sh) => {
                let norm = |t: Tensor<2>| t.powi_scalar(2).sum_dim(1).sqrt(); // [T, 1]
                let (ns, nr) = (norm(sh.clone()), norm(y.clone()));
                let share = (ns.clone() / (ns + nr).add_scalar(1e-12)).reshape([b * s]);
                (y + sh, Some(share.detach()))
            }
            None => (y, None),
        };
        Ok((h + y.reshape([b, s, d]), out, share))
    }
}

/// The network's parameters: embedding, decoder blocks, final norm, LM head (absent if tied).
#[derive(Module, Debug)]
pub struct MoeTransformer {
    pub(crate) embed_tokens: Embedding,
    pub(crate) layers: Vec<DecoderLayer>,
    pub(crate) norm: RmsNorm,
    pub(crate) lm_head: Option<Linear>,
}

/// Wraps a tensor as the trainable parameter `name`. Its id is a hash of the checkpoint key, so
/// an optimizer state saved by one process finds its parameters in another (resumed training).
pub(crate) fn param<const D: usize>(name: &str, t: Tensor<D>) -> Param<Tensor<D>> {
    let id = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let (_, value, mapper) = Param::from_tensor(t).consume();
    Param::from_mapped_value(burn::module::ParamId::from(id), value, mapper)
}
