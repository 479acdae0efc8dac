//! Parameters as host data, named in the Hugging Face Mixtral layout.
//!
//! [`param_specs`] is the single list of every parameter a configuration has: its checkpoint key,
//! its shape in the HF layout (`[out, in]` for projections) and how a seed initialises it. The
//! seed initialiser, the checkpoint reader and writer, and the model builder all go through it,
//! so importing or exporting a real Mixtral-format file is a mapping, not a rewrite.

use std::collections::BTreeMap;

use switchyard_routing::record::ExpertKind;
use switchyard_routing::rng;
use switchyard_routing::{ModelConfig, QkNorm};

/// A parameter tensor on the host: f32 values, row-major, in the HF layout.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape in the HF layout.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// All parameters of a model by checkpoint key.
pub type ParamStore = BTreeMap<String, HostTensor>;

/// How a parameter starts when a model is built from a seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// All ones (norm gains).
    Ones,
    /// All zeros (selection biases).
    Zeros,
    /// Normal(0, std²).
    Normal(f32),
}

/// One parameter of a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Checkpoint key, e.g. `model.layers.0.block_sparse_moe.experts.3.w1.weight`.
    pub name: String,
    /// Shape in the HF layout.
    pub shape: Vec<usize>,
    /// Seed initialisation.
    pub init: Init,
}

/// Standard deviation of every projection at initialisation (GPT-2 / Mixtral convention).
const INIT_STD: f32 = 0.02;

/// Every checkpoint key, spelled once (Hugging Face Mixtral names). The parameter list, the
/// model builder and the exporter all name tensors through these, as candle's
/// `vb.pp("experts").pp(j)` does.
pub mod keys {
    /// The token embedding.
    pub const EMBED: &str = "model.embed_tokens.weight";
    /// The final norm.
    pub const FINAL_NORM: &str = "model.norm.weight";
    /// The LM head (absent when tied to the embedding).
    pub const LM_HEAD: &str = "lm_head.weight";

    /// Keys of one decoder block.
    #[derive(Debug, Clone)]
    pub struct Layer(String);

    /// The three projections of a SwiGLU expert: `w2 · (silu(w1 · x) ⊙ w3 · x)`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ExpertProj {
        /// Gate projection (`w1`).
        W1,
        /// Down projection (`w2`).
        W2,
        /// Up projection (`w3`).
        W3,
    }

    /// Decoder block `i`.
    pub fn layer(i: usize) -> Layer {
        Layer(format!("model.layers.{i}"))
    }

    impl Layer {
        fn key(&self, rest: &str) -> String {
            format!("{}.{rest}.weight", self.0)
        }
        /// Pre-attention RMSNorm gain.
        pub fn input_norm(&self) -> String {
            self.key("input_layernorm")
        }
        /// Attention projection `q`, `k`, `v` or `o`.
        pub fn attn(&self, proj: char) -> String {
            self.key(&format!("self_attn.{proj}_proj"))
        }
        /// Bias of attention projection `q`, `k` or `v` (Qwen2-MoE).
        pub fn attn_bias(&self, proj: char) -> String {
            format!("{}.self_attn.{proj}_proj.bias", self.0)
        }
        /// RMSNorm gain on the queries (`'q'`) or keys (`'k'`) before RoPE (Qwen3-MoE, OLMoE).
        pub fn qk_norm(&self, proj: char) -> String {
            self.key(&format!("self_attn.{proj}_norm"))
        }
        /// Pre-MoE RMSNorm gain.
        pub fn post_norm(&self) -> String {
            self.key("post_attention_layernorm")
        }
        /// The router (one linear layer), or the second layer of MoE++'s two-layer gate.
        pub fn gate(&self, two_layer: bool) -> String {
            self.key(if two_layer { "block_sparse_moe.gate.wg.2" } else { "block_sparse_moe.gate" })
        }
        /// The first layer of MoE++'s two-layer gate (`tanh` follows it).
        pub fn gate_in(&self) -> String {
            self.key("block_sparse_moe.gate.wg.0")
        }
        /// MoE++'s gating residual `W_g`, from the previous layer's logits.
        pub fn gate_map(&self) -> String {
            self.key("block_sparse_moe.gate.gate_map")
        }
        /// MoE++ constant expert `j`'s mixing projection `W_c` (`[2, d]`).
        pub fn constant_mix(&self, j: usize) -> String {
            self.key(&format!("block_sparse_moe.experts.{j}.wg"))
        }
        /// MoE++ constant expert `j`'s vector `v`.
        pub fn constant_vector(&self, j: usize) -> String {
            format!("{}.block_sparse_moe.experts.{j}.constant", self.0)
        }
        /// The router's selection bias (DeepSeek-V3's name for it).
        pub fn selection_bias(&self) -> String {
            format!("{}.block_sparse_moe.gate.e_score_correction_bias", self.0)
        }
        /// Expert `j`'s projection.
        pub fn expert(&self, j: usize, proj: ExpertProj) -> String {
            self.key(&format!("block_sparse_moe.experts.{j}.{}", proj.name()))
        }
        /// Qwen2-MoE's sigmoid gate on the shared expert (`[1, d]`).
        pub fn shared_expert_gate(&self) -> String {
            self.key("block_sparse_moe.shared_expert_gate")
        }
        /// The shared expert's projection (Qwen2-MoE's `shared_expert`, in our w1/w2/w3).
        pub fn shared_expert(&self, proj: ExpertProj) -> String {
            self.key(&format!("block_sparse_moe.shared_expert.{}", proj.name()))
        }
    }

    impl ExpertProj {
        fn name(self) -> &'static str {
            match self {
                Self::W1 => "w1",
                Self::W2 => "w2",
                Self::W3 => "w3",
            }
        }
    }
}

/// Every parameter of `cfg`, in a fixed order: the one list of names, shapes and initialisations.
pub fn param_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    use keys::ExpertProj::{W1, W2, W3};
    let (d, q, kv, hd) = (cfg.d_model, cfg.q_dim(), cfg.kv_dim(), cfg.head_dim());
    let proj_std = INIT_STD / (2.0 * cfg.n_layers as f32).sqrt();
    let mut specs = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, init: Init| specs.push(ParamSpec { name, shape, init });
    push(keys::EMBED.into(), vec![cfg.vocab_size, d], Init::Normal(INIT_STD));
    for i in 0..cfg.n_layers {
        let l = keys::layer(i);
        push(l.input_norm(), vec![d], Init::Ones);
        push(l.attn('q'), vec![q, d], Init::Normal(INIT_STD));
        push(l.attn('k'), vec![kv, d], Init::Normal(INIT_STD));
        push(l.attn('v'), vec![kv, d], Init::Normal(INIT_STD));
        push(l.attn('o'), vec![d, q], Init::Normal(proj_std));
        if cfg.attention_bias {
            for (proj, n) in [('q', q), ('k', kv), ('v', kv)] {
                push(l.attn_bias(proj), vec![n], Init::Zeros);
            }
        }
        let qk_norm = match cfg.qk_norm {
            QkNorm::None => None,
            QkNorm::PerHead => Some((hd, hd)),
            QkNorm::Full => Some((q, kv)),
        };
        if let Some((nq, nk)) = qk_norm {
            push(l.qk_norm('q'), vec![nq], Init::Ones);
            push(l.qk_norm('k'), vec![nk], Init::Ones);
        }
        push(l.post_norm(), vec![d], Init::Ones);
        let e = cfg.n_experts;
        match cfg.gate_hidden {
            0 => push(l.gate(false), vec![e, d], Init::Normal(INIT_STD)),
            h => {
                push(l.gate_in(), vec![h, d], Init::Normal(INIT_STD));
                push(l.gate(true), vec![e, h], Init::Normal(INIT_STD));
            }
        }
        // The reference has no residual into the first layer.
        if cfg.gating_residual && i > 0 {
            push(l.gate_map(), vec![e, e], Init::Normal(INIT_STD));
        }
        if cfg.selection_bias {
            push(l.selection_bias(), vec![e], Init::Zeros);
        }
        for j in 0..cfg.ffn_experts() {
            push(l.expert(j, W1), vec![cfg.d_ff, d], Init::Normal(INIT_STD));
            push(l.expert(j, W2), vec![d, cfg.d_ff], Init::Normal(proj_std));
            push(l.expert(j, W3), vec![cfg.d_ff, d], Init::Normal(INIT_STD));
        }
        for (j, kind) in cfg.expert_kinds().into_iter().enumerate() {
            if kind == ExpertKind::Constant {
                push(l.constant_mix(j), vec![2, d], Init::Normal(INIT_STD));
                // The reference draws v from N(0, 1).
                push(l.constant_vector(j), vec![d], Init::Normal(1.0));
            }
        }
        if cfg.shared_d_ff > 0 {
            let f = cfg.shared_d_ff;
            push(l.shared_expert(W1), vec![f, d], Init::Normal(INIT_STD));
            push(l.shared_expert(W2), vec![d, f], Init::Normal(proj_std));
            push(l.shared_expert(W3), vec![f, d], Init::Normal(INIT_STD));
            if cfg.shared_expert_gate {
                push(l.shared_expert_gate(), vec![1, d], Init::Normal(INIT_STD));
            }
        }
    }
    push(keys::FINAL_NORM.into(), vec![d], Init::Ones);
    if !cfg.tie_embeddings {
        push(keys::LM_HEAD.into(), vec![cfg.vocab_size, d], Init::Normal(INIT_STD));
    }
    specs
}

/// Total number of scalar parameters of `cfg`.
pub fn param_count(cfg: &ModelConfig) -> usize {
    param_specs(cfg).iter().map(|s| s.shape.iter().product::<usize>()).sum()
}

/// Parameters drawn from `seed` with the playground's generator: the same on every platform
/// and backend, so a model "initialised from a config and a seed" is one fixed model.
pub fn init_from_seed(cfg: &ModelConfig, seed: u64) -> ParamStore {
    param_specs(cfg)
        .into_iter()
        .map(|spec| {
            let n: usize = spec.shape.iter().product();
            let id = rng::name_id(&spec.name);
            let data = match spec.init {
                Init::Ones => vec![1.0; n],
                Init::Zeros => vec![0.0; n],
                Init::Normal(std) => {
                    (0..n as u64).map(|i| rng::normal(seed, rng::stream::PARAM_INIT, &[id, i]) as f32 * std).collect()
                }
            };
            (spec.name, HostTensor { shape: spec.shape, data })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_mixtral_layout() {
        let cfg = ModelConfig::tiny();
        let names: Vec<String> = param_specs(&cfg).into_iter().map(|s| s.name).collect();
        for want in [
            "model.embed_tokens.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.3.block_sparse_moe.gate.weight",
            "model.layers.1.block_sparse_moe.experts.7.w2.weight",
            "model.norm.weight",
            "lm_head.weight",
        ] {
            assert!(names.iter().any(|n| n == want), "missing {want}");
        }
        let tied = ModelConfig { tie_embeddings: true, ..cfg };
        assert!(!param_specs(&tied).iter().any(|s| s.name == "lm_head.weight"));
    }

    #[test]
    fn parameter_count_matches_the_formula() {
        let c = ModelConfig::tiny();
        let (d, v, f, e, l) = (c.d_model, c.vocab_size, c.d_ff, c.n_experts, c.n_layers);
        let kv = c.n_kv_heads * c.head_dim();
        let per_layer = 2 * d + 2 * d * d + 2 * kv * d + e * d + e * 3 * d * f;
        assert_eq!(param_count(&c), 2 * v * d + l * per_layer + d);
    }

    /// `ModelConfig::param_count` (arithmetic, checked against a file before it is read) agrees
    /// with the parameter list.
    #[test]
    fn the_parameter_count_needs_no_parameter_list() {
        for c in [
            ModelConfig::tiny(),
            ModelConfig { tie_embeddings: true, n_kv_heads: 4, ..ModelConfig::tiny() },
            ModelConfig { selection_bias: true, ..ModelConfig::tiny() },
            ModelConfig { shared_d_ff: 96, ..ModelConfig::tiny() },
            ModelConfig { shared_d_ff: 96, shared_expert_gate: true, ..ModelConfig::tiny() },
            crate::tests::adamoe_config(),
            crate::tests::moepp_config(),
        ] {
            assert_eq!(c.param_count(), param_count(&c) as u64);
        }
    }

    #[test]
    fn seed_init_is_deterministic_and_seed_dependent() {
        let c = ModelConfig { n_layers: 1, ..ModelConfig::tiny() };
        let a = init_from_seed(&c, 3);
        assert_eq!(a, init_from_seed(&c, 3));
        assert_ne!(a["model.embed_tokens.weight"], init_from_seed(&c, 4)["model.embed_tokens.weight"]);
        let w = &a["model.layers.0.self_attn.q_proj.weight"].data;
        let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.002, "std {std}");
    }
}
