//! The model: building it from parameters, the forward pass with its routing record, and the
//! KV cache.

use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;
use switchyard_record::RoutingRecord;

use crate::layers::{Attention, DecoderLayer, Dispatch, Expert, LayerKv, MoeTransformer, Rope, SparseMoeBlock, param};
use crate::params::{self, HostTensor, ParamStore, layer_prefix};
use switchyard_routing::config::{ConfigError, ModelConfig};
use switchyard_routing::router::{
    Interventions, LogitSource, RouteContext, RouterError, RouterSpec, smoe_router_weights,
};

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
    /// Next-token logits, `[B, S, V]`.
    pub logits: Tensor<3>,
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
    router_cache: RouterCache,
    pub(crate) net: MoeTransformer,
    pub(crate) rope: Rope,
    device: Device,
}

fn host_to_device(t: &HostTensor, transposed: bool, device: &Device) -> Tensor<2> {
    let (r, c) = (t.shape[0], t.shape.get(1).copied().unwrap_or(1));
    if !transposed {
        return Tensor::from_data(TensorData::new(t.data.clone(), [r, c]), device);
    }
    Tensor::from_data(TensorData::new(transpose(&t.data, r, c), [c, r]), device)
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

/// `values` unchanged when every one is finite, else [`ModelError::NonFinite`] at `place`.
pub(crate) fn finite(values: Vec<f32>, place: impl FnOnce() -> String) -> Result<Vec<f32>, ModelError> {
    if values.iter().all(|v| v.is_finite()) { Ok(values) } else { Err(ModelError::NonFinite { place: place() }) }
}

struct Loader<'a> {
    store: &'a ParamStore,
    device: &'a Device,
}

impl Loader<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<&HostTensor, ModelError> {
        let t =
            self.store.get(name).ok_or_else(|| ModelError::Param { name: name.into(), problem: "missing".into() })?;
        if t.shape != shape || t.data.len() != shape.iter().product::<usize>() {
            return Err(ModelError::Param {
                name: name.into(),
                problem: format!("expected shape {shape:?}, found {:?}", t.shape),
            });
        }
        Ok(t)
    }

    /// An HF `[out, in]` projection as a burn `[in, out]` linear layer without bias.
    fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear, ModelError> {
        let key = format!("{name}.weight");
        let t = self.get(&key, &[out, inp])?;
        Ok(Linear { weight: param(&key, host_to_device(t, true, self.device)), bias: None })
    }

    fn norm(&self, name: &str, d: usize, eps: f64) -> Result<RmsNorm, ModelError> {
        let key = format!("{name}.weight");
        let t = self.get(&key, &[d])?;
        let gamma = host_to_device(t, false, self.device).reshape([d]);
        Ok(RmsNorm { gamma: param(&key, gamma), epsilon: eps })
    }
}

impl Model {
    /// Builds the model from host parameters (a checkpoint or a seed initialisation).
    pub fn from_params(config: &ModelConfig, store: &ParamStore, device: &Device) -> Result<Self, ModelError> {
        config.validate()?;
        let c = config;
        let (d, kv) = (c.d_model, c.n_kv_heads * c.head_dim());
        let ld = Loader { store, device };
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let p = layer_prefix(i);
            let a = format!("{p}.self_attn");
            let m = format!("{p}.block_sparse_moe");
            let experts = (0..c.n_experts)
                .map(|j| {
                    let e = format!("{m}.experts.{j}");
                    Ok(Expert {
                        w1: ld.linear(&format!("{e}.w1"), c.d_ff, d)?,
                        w2: ld.linear(&format!("{e}.w2"), d, c.d_ff)?,
                        w3: ld.linear(&format!("{e}.w3"), c.d_ff, d)?,
                    })
                })
                .collect::<Result<Vec<_>, ModelError>>()?;
            layers.push(DecoderLayer {
                input_layernorm: ld.norm(&format!("{p}.input_layernorm"), d, c.rms_eps)?,
                self_attn: Attention {
                    q_proj: ld.linear(&format!("{a}.q_proj"), d, d)?,
                    k_proj: ld.linear(&format!("{a}.k_proj"), kv, d)?,
                    v_proj: ld.linear(&format!("{a}.v_proj"), kv, d)?,
                    o_proj: ld.linear(&format!("{a}.o_proj"), d, d)?,
                    n_heads: c.n_heads,
                    n_kv_heads: c.n_kv_heads,
                },
                post_attention_layernorm: ld.norm(&format!("{p}.post_attention_layernorm"), d, c.rms_eps)?,
                block_sparse_moe: SparseMoeBlock { gate: ld.linear(&format!("{m}.gate"), c.n_experts, d)?, experts },
            });
        }
        let embed = ld.get("model.embed_tokens.weight", &[c.vocab_size, d])?;
        let net = MoeTransformer {
            embed_tokens: Embedding {
                weight: param("model.embed_tokens.weight", host_to_device(embed, false, device)),
            },
            layers,
            norm: ld.norm("model.norm", d, c.rms_eps)?,
            lm_head: if c.tie_embeddings { None } else { Some(ld.linear("lm_head", c.vocab_size, d)?) },
        };
        Ok(Self {
            config: config.clone(),
            router_cache: RouterCache::default(),
            net,
            rope: Rope::new(c.max_seq_len, c.head_dim(), c.rope_theta, device),
            device: device.clone(),
        })
    }

    /// A model initialised from `seed` with the playground's generator (identical on every
    /// platform and backend).
    pub fn from_seed(config: &ModelConfig, seed: u64, device: &Device) -> Result<Self, ModelError> {
        config.validate()?;
        Self::from_params(config, &params::init_from_seed(config, seed), device)
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
        opts.router.validate(c.n_experts)?;
        opts.interventions.validate(c.n_layers, c.n_experts)?;
        let b = tokens.len();
        let s = tokens.first().map_or(0, Vec::len);
        if b == 0 || s == 0 {
            return Err(ModelError::Input("no tokens to run".into()));
        }
        if tokens.iter().any(|row| row.len() != s) {
            return Err(ModelError::Input("all sequences of a batch must have the same length".into()));
        }
        if let Some(&id) = tokens.iter().flatten().find(|&&id| id as usize >= c.vocab_size) {
            return Err(ModelError::Token { id, vocab_size: c.vocab_size });
        }
        let mut scratch = KvCache::default();
        let cache = cache.unwrap_or(&mut scratch);
        let start = cache.len;
        if start + s > c.max_seq_len {
            return Err(ModelError::Context { len: start + s, max: c.max_seq_len });
        }
        if cache.layers.len() != c.n_layers {
            cache.layers = vec![None; c.n_layers];
        }
        let seq_id: Vec<u32> = (0..b)
            .flat_map(|row| std::iter::repeat_n(seq_ids.and_then(|ids| ids.get(row).copied()).unwrap_or(row as u32), s))
            .collect();
        let pos: Vec<u32> = (0..b).flat_map(|_| (start..start + s).map(|p| p as u32)).collect();

        let token_id: Vec<u32> = tokens.iter().flatten().copied().collect();
        let step = cache.calls;
        let ids: Vec<i32> = token_id.iter().map(|&id| id as i32).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), &self.device);
        let mut h = self.net.embed_tokens.forward(ids); // [B, S, d]
        let d = c.d_model;
        let mut routing = RoutingRecord::default();
        for (i, layer) in self.net.layers.iter().enumerate() {
            let a = layer.self_attn.forward(
                layer.input_layernorm.forward(h.clone()),
                &self.rope,
                start,
                &mut cache.layers[i],
            );
            h = h + a;
            let x = layer.post_attention_layernorm.forward(h.clone()).reshape([b * s, d]); // [T, d]
            let moe = &layer.block_sparse_moe;
            let (x, x_router) = match (opts.jitter, opts.train_step) {
                (Some(j), Some(step)) => {
                    let noise = jitter_noise(j.epsilon, opts.seed, i, &seq_id, &pos, d, step);
                    let jittered = x.clone() * Tensor::from_data(TensorData::new(noise, [b * s, d]), &self.device);
                    match j.scope {
                        JitterScope::RouterOnly => (x, jittered),
                        JitterScope::RouterAndExperts => (jittered.clone(), jittered),
                    }
                }
                _ => (x.clone(), x),
            };
            let logits = self.router_logits(moe, x_router, i, opts).await?;
            let allowed = opts.interventions.allowed(i, c.n_experts);
            let ctx = RouteContext {
                layer: i,
                seq_id: &seq_id,
                pos: &pos,
                token_id: &token_id,
                seed: opts.seed,
                step,
                allowed: &allowed,
                forced: opts.interventions.forced(i),
            };
            let rec = opts.router.route(logits, c.n_experts, &ctx);
            h = h + moe.combine(x, &rec, opts.dispatch).reshape([b, s, d]);
            routing.layers.push(rec);
        }
        cache.len = start + s;
        cache.calls += 1;
        let h = self.net.norm.forward(h);
        let logits = match &self.net.lm_head {
            Some(head) => head.forward(h),
            None => h.matmul(self.net.embed_tokens.weight.val().transpose().unsqueeze()),
        };
        Ok(ForwardOutput { logits, routing })
    }

    /// The router logits of layer `layer` as host data `[T, E]`, from the source the router
    /// names: the learned gate, a frozen random router, or none (zeros, nothing computed).
    async fn router_logits(
        &self,
        moe: &SparseMoeBlock,
        x: Tensor<2>,
        layer: usize,
        opts: &RunOptions,
    ) -> Result<Vec<f32>, ModelError> {
        let [t, d] = x.dims();
        let e = self.config.n_experts;
        let logits = match opts.router.logit_source() {
            LogitSource::None => return Ok(vec![0.0; t * e]),
            LogitSource::Gate => moe.router_logits(x),
            // An SMoE-Dropout checkpoint's gate is the frozen router it was trained with.
            LogitSource::FrozenRandom { .. } if self.config.frozen_gate => moe.router_logits(x),
            LogitSource::FrozenRandom { init_std } => {
                let key = (opts.seed, layer, init_std.to_bits());
                let w = {
                    let mut cache =
                        self.router_cache.lock().map_err(|_| ModelError::Backend("router cache poisoned".into()))?;
                    cache
                        .entry(key)
                        .or_insert_with(|| {
                            let w = smoe_router_weights(opts.seed, layer, d, e, init_std);
                            Tensor::from_data(TensorData::new(w, [d, e]), &self.device)
                        })
                        .clone()
                };
                x.matmul(w)
            }
        };
        let logits = logits
            .into_data_async()
            .await
            .map_err(|e| ModelError::Backend(format!("{e:?}")))?
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
        finite(logits, || format!("at layer {layer} (router logits)"))
    }

    /// Reads every parameter back to the host, in the HF layout (for checkpoints).
    pub async fn to_params(&self) -> Result<ParamStore, ModelError> {
        let mut out = ParamStore::new();
        let spec_shapes: std::collections::BTreeMap<String, Vec<usize>> =
            params::param_specs(&self.config).into_iter().map(|s| (s.name, s.shape)).collect();
        for (name, tensor, transposed) in self.named_tensors() {
            let data = tensor
                .into_data_async()
                .await
                .map_err(|e| ModelError::Backend(format!("{e:?}")))?
                .try_into_vec::<f32>()
                .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
            let shape = spec_shapes.get(&name).cloned().ok_or_else(|| ModelError::Param {
                name: name.clone(),
                problem: "not in the configuration's parameter list".into(),
            })?;
            // burn stores projections as [in, out]; the HF layout is [out, in].
            // The burn tensor is [in, out] = [shape[1], shape[0]].
            let data = if transposed { transpose(&data, shape[1], shape[0]) } else { data };
            out.insert(name, HostTensor { shape, data });
        }
        Ok(out)
    }

    /// Every parameter with its checkpoint key; `true` marks burn `[in, out]` projections.
    fn named_tensors(&self) -> Vec<(String, Tensor<2>, bool)> {
        let mut v = Vec::new();
        let lin = |v: &mut Vec<(String, Tensor<2>, bool)>, name: String, l: &Linear| {
            v.push((format!("{name}.weight"), l.weight.val(), true))
        };
        let norm = |v: &mut Vec<(String, Tensor<2>, bool)>, name: String, n: &RmsNorm| {
            v.push((format!("{name}.weight"), n.gamma.val().unsqueeze(), false))
        };
        v.push(("model.embed_tokens.weight".into(), self.net.embed_tokens.weight.val(), false));
        for (i, layer) in self.net.layers.iter().enumerate() {
            let p = layer_prefix(i);
            norm(&mut v, format!("{p}.input_layernorm"), &layer.input_layernorm);
            let a = &layer.self_attn;
            lin(&mut v, format!("{p}.self_attn.q_proj"), &a.q_proj);
            lin(&mut v, format!("{p}.self_attn.k_proj"), &a.k_proj);
            lin(&mut v, format!("{p}.self_attn.v_proj"), &a.v_proj);
            lin(&mut v, format!("{p}.self_attn.o_proj"), &a.o_proj);
            norm(&mut v, format!("{p}.post_attention_layernorm"), &layer.post_attention_layernorm);
            let m = &layer.block_sparse_moe;
            lin(&mut v, format!("{p}.block_sparse_moe.gate"), &m.gate);
            for (j, e) in m.experts.iter().enumerate() {
                let pe = format!("{p}.block_sparse_moe.experts.{j}");
                lin(&mut v, format!("{pe}.w1"), &e.w1);
                lin(&mut v, format!("{pe}.w2"), &e.w2);
                lin(&mut v, format!("{pe}.w3"), &e.w3);
            }
        }
        norm(&mut v, "model.norm".into(), &self.net.norm);
        if let Some(head) = &self.net.lm_head {
            lin(&mut v, "lm_head".into(), head);
        }
        v
    }
}
