//! The model: a Switchyard MoE transformer on one device. Its forward pass is a short loop over
//! the decoder blocks, each returning its output and its layer's routing; where the routing is
//! decided (on the host, one read-back per layer, or on the device, one read-back in all) is the
//! run's [`Dispatch`].

use burn::prelude::*;
use switchyard_record::{LayerRouting, RoutingRecord};
use switchyard_routing::config::{ConfigError, ModelConfig};
use switchyard_routing::router::{
    Interventions, LogitSource, RouteContext, RouterError, RouterSpec, apply_free_experts, smoe_router_weights,
};

use crate::host::{finite, to_host};
use crate::layers::{DeviceRouting, Dispatch, LayerKv, MoeTransformer, Rope, SparseMoeBlock};
use crate::params::{self, ParamStore};

/// Everything that can go wrong running the model, each with a message a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The router does not fit the model.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// A parameter is missing or has the wrong shape.
    #[error("parameter `{name}`: {problem}")]
    Param {
        /// Checkpoint key.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The input is empty or ragged.
    #[error("invalid input: {0}")]
    Input(String),
    /// A token id is not in the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab_size})")]
    Token {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab_size: usize,
    },
    /// The sequence would exceed the context window.
    #[error("the sequence is {len} tokens long but the model's context is {max} tokens")]
    Context {
        /// Length the call would reach.
        len: usize,
        /// The model's `max_seq_len`.
        max: usize,
    },
    /// The computation produced NaN or an infinity (extreme weights or settings): reported
    /// where it was seen instead of drawing nonsense.
    #[error("this configuration produced NaN or infinity {place}; nothing was drawn from it")]
    NonFinite {
        /// Where: `at layer 2 (router logits)`, `in the next-token logits`.
        place: String,
    },
    /// The backend failed (for example a GPU device was lost while reading back).
    #[error("the compute backend failed: {0}")]
    Backend(String),
}

/// Run-time choices of a forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// The router and its parameters.
    pub router: RouterSpec,
    /// Sparse or dense expert dispatch.
    pub dispatch: Dispatch,
    /// Seed of every random draw of the router (spec §0.4).
    pub seed: u64,
    /// Ablated and forced experts.
    pub interventions: Interventions,
    /// Router input jitter (spec §1.2). Training only: applied when `train_step` is set.
    pub jitter: Option<Jitter>,
    /// The optimizer step when the pass is a training pass; `None` at inference.
    pub train_step: Option<u64>,
}

/// Multiplicative router-input noise `x̃ = x ⊙ U`, `U ~ Uniform(1−ε, 1+ε)` per element (spec
/// §1.2), drawn from stream `JITTER` keyed by (layer, sequence, position, feature, step).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Jitter {
    /// ε (Switch: 1e-2).
    pub epsilon: f32,
    /// Who sees the jittered input.
    pub scope: JitterScope,
}

/// Whether the experts also see the jittered input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterScope {
    /// Only the router (flaxformer, the reference).
    RouterOnly,
    /// Router and experts (HF Mixtral jitters the shared hidden state in place).
    RouterAndExperts,
}

impl RunOptions {
    /// The configuration's own top-k router, sparse dispatch, seed 0, no interventions.
    pub fn for_config(cfg: &ModelConfig) -> Self {
        Self {
            router: RouterSpec::top_k(cfg.top_k, cfg.norm_topk_prob),
            dispatch: Dispatch::Sparse,
            seed: 0,
            interventions: Interventions::default(),
            jitter: None,
            train_step: None,
        }
    }
}

/// The result of a forward pass.
#[derive(Debug)]
pub struct ForwardOutput {
    /// Next-token logits, `[B, S, V]`, on the device.
    pub logits: Tensor<3>,
    /// The last position's logits of every sequence, `B × V` on the host (read back with the
    /// routing: what decoding needs).
    pub last_logits: Vec<f32>,
    /// The routing of every MoE layer for the `B * S` tokens of this call.
    pub routing: RoutingRecord,
}

/// Keys and values of every layer for the tokens processed so far.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    len: usize,
    /// Forward calls made on this cache: the decoding step routers that re-draw per call use.
    calls: u64,
}

impl KvCache {
    /// Number of positions already processed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first call.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Frozen random router matrices already uploaded, by (seed, layer, init_std bits).
type RouterCache = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<(u64, usize, u32), Tensor<2>>>>;

/// A Switchyard MoE transformer on one device.
#[derive(Debug, Clone)]
pub struct Model {
    config: ModelConfig,
    /// The dispatch callers that do not choose one run with ([`Model::preferred_dispatch`]).
    dispatch: Dispatch,
    router_cache: RouterCache,
    pub(crate) net: MoeTransformer,
    pub(crate) rope: Rope,
    device: Device,
    /// Each layer's selection bias `[E]` when the configuration has one (spec §8.2). It only
    /// chooses experts, on the host, so it stays on the host (no read-back to route with it).
    pub(crate) selection_bias: Vec<Vec<f32>>,
}

/// `U ~ Uniform(1−ε, 1+ε)` for every (token, feature) of one layer, `[T, d]` row-major.
fn jitter_noise(eps: f32, seed: u64, layer: usize, seq_id: &[u32], pos: &[u32], d: usize, step: u64) -> Vec<f32> {
    let mut u = Vec::with_capacity(seq_id.len() * d);
    for (&sq, &p) in seq_id.iter().zip(pos) {
        for f in 0..d {
            let r = crate::rng::u01(
                seed,
                crate::rng::stream::JITTER,
                &[layer as u64, u64::from(sq), u64::from(p), f as u64, step],
            );
            u.push(1.0 - eps + 2.0 * eps * r as f32);
        }
    }
    u
}

/// The transpose of a row-major `[rows, cols]` matrix.
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = data[i * cols + j];
        }
    }
    out
}

/// Who the tokens of one forward call are: what every layer's routing context is made of.
struct Call<'a> {
    opts: &'a RunOptions,
    /// The kind of every entry of the expert list (empty: all FFN experts).
    kinds: Vec<switchyard_record::ExpertKind>,
    /// The model's selection bias per layer (empty when it has none).
    bias: &'a [Vec<f32>],
    batch: usize,
    len: usize,
    /// Position of the first new token (the cache's length).
    start: usize,
    /// Forward calls made on the cache before this one.
    step: u64,
    seq_id: Vec<u32>,
    pos: Vec<u32>,
    token_id: Vec<u32>,
}

impl<'a> Call<'a> {
    /// Checks `tokens` against the model and the cache.
    fn new(
        c: &ModelConfig,
        tokens: &[Vec<u32>],
        seq_ids: Option<&[u32]>,
        cache: &KvCache,
        opts: &'a RunOptions,
        bias: &'a [Vec<f32>],
    ) -> Result<Self, ModelError> {
        opts.router.validate(c.n_experts)?;
        opts.interventions.validate(c.n_layers, c.n_experts)?;
        let (batch, len) = (tokens.len(), tokens.first().map_or(0, Vec::len));
        if batch == 0 || len == 0 {
            return Err(ModelError::Input("no tokens to run".into()));
        }
        if tokens.iter().any(|row| row.len() != len) {
            return Err(ModelError::Input("all sequences of a batch must have the same length".into()));
        }
        if let Some(&id) = tokens.iter().flatten().find(|&&id| id as usize >= c.vocab_size) {
            return Err(ModelError::Token { id, vocab_size: c.vocab_size });
        }
        let start = cache.len;
        if start + len > c.max_seq_len {
            return Err(ModelError::Context { len: start + len, max: c.max_seq_len });
        }
        let seq = |row: usize| seq_ids.and_then(|ids| ids.get(row).copied()).unwrap_or(row as u32);
        Ok(Self {
            opts,
            kinds: c.expert_kinds(),
            bias,
            batch,
            len,
            start,
            step: cache.calls,
            seq_id: (0..batch).flat_map(|row| std::iter::repeat_n(seq(row), len)).collect(),
            pos: (0..batch).flat_map(|_| (start..start + len).map(|p| p as u32)).collect(),
            token_id: tokens.iter().flatten().copied().collect(),
        })
    }

    /// Routes `logits` of `layer` with the run's router, on the host.
    fn route(&self, logits: Vec<f32>, layer: usize, n_experts: usize) -> LayerRouting {
        let allowed = self.opts.interventions.allowed(layer, n_experts);
        let ctx = RouteContext {
            layer,
            seq_id: &self.seq_id,
            pos: &self.pos,
            token_id: &self.token_id,
            seed: self.opts.seed,
            step: self.step,
            allowed: &allowed,
            forced: self.opts.interventions.forced(layer),
            selection_bias: self.bias.get(layer).map(Vec::as_slice),
        };
        let mut rec = self.opts.router.route(logits, n_experts, &ctx);
        apply_free_experts(&mut rec, &self.kinds);
        rec
    }
}

/// A layer's routing as the loop leaves it: decided on the host, or still its router logits on
/// the device (decided there; the host builds the record after the one read-back).
#[allow(clippy::large_enum_variant)] // one per layer of one call: size does not matter
enum Routed {
    Host(LayerRouting),
    Device(Tensor<2>),
}

impl Model {
    /// Builds the model from host parameters (a checkpoint or a seed initialisation).
    pub fn from_params(config: &ModelConfig, store: &ParamStore, device: &Device) -> Result<Self, ModelError> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
            dispatch: Dispatch::Sparse,
            router_cache: RouterCache::default(),
            net: crate::load::network(config, store, device)?,
            rope: Rope::new(
                config.max_seq_len,
                config.head_dim(),
                config.rope_theta,
                config.rope_linear_factor,
                device,
            ),
            device: device.clone(),
            selection_bias: crate::load::selection_bias(config, store)?,
        })
    }

    /// Each layer's selection bias (empty when the model has none).
    pub fn selection_bias(&self) -> &[Vec<f32>] {
        &self.selection_bias
    }

    /// A model initialised from `seed` with the playground's generator (identical on every
    /// platform and backend).
    pub fn from_seed(config: &ModelConfig, seed: u64, device: &Device) -> Result<Self, ModelError> {
        config.validate()?;
        Self::from_params(config, &params::init_from_seed(config, seed), device)
    }

    /// This model with another preferred dispatch: [`Dispatch::Device`] on a GPU, where each
    /// read-back costs milliseconds; the default [`Dispatch::Sparse`] is the CPU's fastest.
    pub fn with_dispatch(mut self, dispatch: Dispatch) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// The dispatch runs that do not choose one should use (the trace runner's).
    pub fn preferred_dispatch(&self) -> Dispatch {
        self.dispatch
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs `tokens` (B sequences of equal length S, continuing `cache` if given) and returns
    /// the logits and the routing record of every MoE layer.
    ///
    /// Sequence ids in the record are the batch rows unless `seq_ids` gives them.
    ///
    /// # Shapes
    /// - tokens: `B × S` ids -> logits `[B, S, V]`
    pub async fn forward(
        &self,
        tokens: &[Vec<u32>],
        seq_ids: Option<&[u32]>,
        cache: Option<&mut KvCache>,
        opts: &RunOptions,
    ) -> Result<ForwardOutput, ModelError> {
        let c = &self.config;
        let mut scratch = KvCache::default();
        let cache = cache.unwrap_or(&mut scratch);
        let call = Call::new(c, tokens, seq_ids, cache, opts, &self.selection_bias)?;
        if cache.layers.len() != c.n_layers {
            cache.layers = vec![None; c.n_layers];
        }
        let plan = self.device_plan(opts);
        let ids: Vec<i32> = call.token_id.iter().map(|&id| id as i32).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [call.batch, call.len]), &self.device);
        let mut h = self.net.embed_tokens.forward(ids); // [B, S, d]
        let (mut routed, mut shares) = (Vec::with_capacity(c.n_layers), Vec::with_capacity(c.n_layers));
        let mut prev = None; // the previous layer's router logits (MoE++'s gating residual)
        for (i, layer) in self.net.layers.iter().enumerate() {
            let step = async |moe: &SparseMoeBlock, x| self.moe_step(moe, x, i, &call, plan.as_ref(), prev).await;
            let (next, (r, logits), share) =
                layer.forward(h, &self.rope, call.start, &mut cache.layers[i], step).await?;
            h = next;
            prev = logits.filter(|_| c.gating_residual);
            routed.push(r);
            shares.push(share);
        }
        cache.len = call.start + call.len;
        cache.calls += 1;
        let h = self.net.norm.forward(h);
        let logits = match &self.net.lm_head {
            Some(head) => head.forward(h),
            None => h.matmul(self.net.embed_tokens.weight.val().transpose().unsqueeze()),
        };
        let (routing, last_logits) = self.read_back(routed, shares, logits.clone(), &call).await?;
        Ok(ForwardOutput { logits, last_logits, routing })
    }

    /// The device routing this run can use, if it asked for one and its router has one.
    fn device_plan(&self, opts: &RunOptions) -> Option<DeviceRouting> {
        let (c, iv) = (&self.config, &opts.interventions);
        let training = opts.jitter.is_some() && opts.train_step.is_some();
        let allowed = (0..c.n_layers).map(|l| iv.allowed(l, c.n_experts).iter().filter(|a| **a).count());
        // Free experts and MoE++'s router are host-path only: such a run routes as `Dense`.
        let host_only = training || c.needs_host_routing();
        (opts.dispatch == Dispatch::Device && !host_only).then(|| DeviceRouting::of(&opts.router, allowed)).flatten()
    }

    /// One MoE layer of the inference pass: router logits (with the previous layer's, `prev`,
    /// under a gating residual), routing (on the host, or on the device under `plan`), and the
    /// combined expert output. Returns the layer's logits too, for the next layer's residual.
    async fn moe_step(
        &self,
        moe: &SparseMoeBlock,
        x: Tensor<2>,
        layer: usize,
        call: &Call<'_>,
        plan: Option<&DeviceRouting>,
        prev: Option<Tensor<2>>,
    ) -> Result<(Tensor<2>, (Routed, Option<Tensor<2>>)), ModelError> {
        let (opts, e) = (call.opts, self.config.n_experts);
        let (x, x_router) = match (opts.jitter, opts.train_step) {
            (Some(j), Some(step)) => {
                let noise = jitter_noise(j.epsilon, opts.seed, layer, &call.seq_id, &call.pos, x.dims()[1], step);
                let jittered = x.clone() * Tensor::from_data(TensorData::new(noise, x.dims()), &self.device);
                match j.scope {
                    JitterScope::RouterOnly => (x, jittered),
                    JitterScope::RouterAndExperts => (jittered.clone(), jittered),
                }
            }
            _ => (x.clone(), x),
        };
        let logits = self.router_logits(moe, x_router, layer, opts, prev);
        if let (Some(plan), Some(logits)) = (plan, &logits) {
            let allowed = opts.interventions.allowed(layer, e);
            let w = moe.device_weights(logits.clone(), plan, &allowed, opts.interventions.forced(layer));
            return Ok((moe.combine_weighted(x, w), (Routed::Device(logits.clone()), Some(logits.clone()))));
        }
        let host = match &logits {
            Some(l) => finite(to_host(l.clone()).await?, || format!("at layer {layer} (router logits)"))?,
            None => vec![0.0; x.dims()[0] * e],
        };
        let rec = call.route(host, layer, e);
        Ok((moe.combine(x, &rec, opts.dispatch), (Routed::Host(rec), logits)))
    }

    /// The router logits of `layer` `[T, E]` on the device, from the source the router names:
    /// the learned gate, a frozen random router, or none (THOR, hash: nothing is computed).
    fn router_logits(
        &self,
        moe: &SparseMoeBlock,
        x: Tensor<2>,
        layer: usize,
        opts: &RunOptions,
        prev: Option<Tensor<2>>,
    ) -> Option<Tensor<2>> {
        let [_, d] = x.dims();
        let e = self.config.n_experts;
        match opts.router.logit_source() {
            LogitSource::None => None,
            LogitSource::Gate => Some(moe.router_logits(x, prev)),
            // An SMoE-Dropout checkpoint's gate is the frozen router it was trained with.
            LogitSource::FrozenRandom { .. } if self.config.frozen_gate => Some(moe.router_logits(x, None)),
            LogitSource::FrozenRandom { init_std } => {
                let key = (opts.seed, layer, init_std.to_bits());
                let mut cache = self.router_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let w = cache.entry(key).or_insert_with(|| {
                    let w = smoe_router_weights(opts.seed, layer, d, e, init_std);
                    Tensor::from_data(TensorData::new(w, [d, e]), &self.device)
                });
                Some(x.matmul(w.clone()))
            }
        }
    }

    /// Reads back what the host needs in one transfer: the last position's logits of every
    /// sequence, the router logits of every layer routed on the device and the shared expert's
    /// shares; builds those layers' records with the router (the same function the host path
    /// runs).
    async fn read_back(
        &self,
        routed: Vec<Routed>,
        shares: Vec<Option<Tensor<1>>>,
        logits: Tensor<3>,
        call: &Call<'_>,
    ) -> Result<(RoutingRecord, Vec<f32>), ModelError> {
        let [b, s, v] = logits.dims();
        let (t, e) = (call.batch * call.len, self.config.n_experts);
        let mut parts = vec![logits.narrow(1, s - 1, 1).reshape([b * v])];
        parts.extend(routed.iter().filter_map(|r| match r {
            Routed::Device(l) => Some(l.clone().reshape([t * e])),
            Routed::Host(_) => None,
        }));
        parts.extend(shares.iter().flatten().cloned());
        let host = to_host(Tensor::cat(parts, 0)).await?;
        let (last, mut rest) = host.split_at(b * v);
        let last = finite(last.to_vec(), || "in the next-token logits".into())?;
        let mut layers = Vec::with_capacity(routed.len());
        for (i, r) in routed.into_iter().enumerate() {
            layers.push(match r {
                Routed::Host(rec) => rec,
                Routed::Device(_) => {
                    let (mine, tail) = rest.split_at(t * e);
                    rest = tail;
                    let logits = finite(mine.to_vec(), || format!("at layer {i} (router logits)"))?;
                    call.route(logits, i, e)
                }
            });
        }
        for (rec, share) in layers.iter_mut().zip(&shares) {
            if share.is_some() {
                let (mine, tail) = rest.split_at(t);
                rest = tail;
                rec.shared_share = mine.to_vec();
            }
        }
        Ok((RoutingRecord { layers }, last))
    }

    /// Reads every parameter back to the host, in the HF layout (for checkpoints).
    pub async fn to_params(&self) -> Result<ParamStore, ModelError> {
        let mut params = crate::load::host_params(&self.config, &self.net).await?;
        for (i, b) in self.selection_bias.iter().enumerate() {
            let key = crate::params::keys::layer(i).selection_bias();
            params.insert(key, crate::params::HostTensor { shape: vec![b.len()], data: b.clone() });
        }
        Ok(params)
    }
}
