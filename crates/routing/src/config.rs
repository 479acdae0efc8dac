//! The model's hyper-parameters, validated before any tensor is built.

use serde::{Deserialize, Serialize};
use switchyard_record::ExpertKind;

/// Architecture of a Switchyard MoE transformer (Mixtral layout, scaled down).
///
/// Build it with [`ModelConfig::tiny`] or deserialize it, then call [`ModelConfig::validate`]:
/// every constructor of the model does, so an invalid configuration is a [`ConfigError`], never
/// a panic deep in a tensor op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Hidden size `d`.
    pub d_model: usize,
    /// Number of decoder blocks, each with one MoE layer.
    pub n_layers: usize,
    /// Attention (query) heads; must divide `d_model`.
    pub n_heads: usize,
    /// Key/value heads for grouped-query attention; must divide `n_heads`.
    pub n_kv_heads: usize,
    /// Hidden size of each SwiGLU expert.
    pub d_ff: usize,
    /// Routed experts per layer `E`.
    pub n_experts: usize,
    /// Experts per token `k` of the default (top-k) router.
    pub top_k: usize,
    /// Renormalise the top-k probabilities to sum to 1 (HF `norm_topk_prob`).
    pub norm_topk_prob: bool,
    /// Longest sequence (prompt plus generated tokens) the model accepts.
    pub max_seq_len: usize,
    /// Base of the rotary position embedding.
    pub rope_theta: f64,
    /// Epsilon of every RMSNorm.
    pub rms_eps: f64,
    /// Share the token embedding with the LM head.
    pub tie_embeddings: bool,
    /// The gate is a frozen random router (an SMoE-Dropout checkpoint, spec §3.1): the
    /// SMoE-Dropout router then uses this gate instead of drawing one from the run's seed.
    #[serde(default)]
    pub frozen_gate: bool,
    /// Each layer has a selection bias `[E]` (DeepSeek-V3's `e_score_correction_bias`, spec
    /// §8.2): learned by auxiliary-loss-free balancing, read by the sigmoid router.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub selection_bias: bool,
    /// Hidden size of the shared expert every token goes through beside the routed ones
    /// (DeepSeekMoE, spec §8.1: one SwiGLU MLP of `n_shared · d_ff`, weight 1, outside the
    /// router); 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shared_d_ff: usize,
    /// Qwen2-MoE's per-token gate on the shared expert: its output is scaled by `σ(w_sᵀx)`
    /// (spec §8.1); without it the weight is 1 (DeepSeekMoE).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_expert_gate: bool,
    /// The free experts at the end of the expert list (spec §6): AdaMoE's null experts, MoE++'s
    /// constant, copy and zero experts. `n_experts` counts them (it is the router's width, what
    /// every router, ablation and record indexes); the FFN experts are the first
    /// `n_experts − free_experts.len()`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub free_experts: Vec<ExpertKind>,
    /// MoE++'s two-layer gate `tanh(x·W_a)·W_b` with this hidden size (the reference: 8·E);
    /// 0: the one linear gate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gate_hidden: usize,
    /// MoE++'s gating residual (spec §6.2): from the second layer on, the router logits add the
    /// previous layer's logits through `W_g` `[E, E]`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gating_residual: bool,
    /// Factor on the experts' input after the router has run. MoE++'s reference multiplies it
    /// by k = 2 (its default mode); 1: none.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub expert_input_scale: f32,
    /// Size of one attention head when it is not `d_model / n_heads` (Qwen3-MoE's `head_dim`);
    /// 0: `d_model / n_heads`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub head_size: usize,
    /// Biases on the q, k and v projections (Qwen2-MoE's attention).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attention_bias: bool,
    /// An RMSNorm on the queries and keys before the rotary embedding (Qwen3-MoE, OLMoE).
    #[serde(default, skip_serializing_if = "QkNorm::is_none")]
    pub qk_norm: QkNorm,
    /// Linear RoPE scaling (HF `rope_scaling` of type `linear`): positions are divided by this
    /// factor; 1: none.
    #[serde(default = "one_f64", skip_serializing_if = "is_one_f64")]
    pub rope_linear_factor: f64,
}

/// Where the queries and keys are normalised before the rotary embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QkNorm {
    /// No normalisation (Mixtral, Qwen2-MoE).
    #[default]
    None,
    /// One RMSNorm of `head_dim` shared by every head (Qwen3-MoE's `q_norm`, `k_norm`).
    PerHead,
    /// One RMSNorm over the whole projection, `n_heads · head_dim` for the queries and
    /// `n_kv_heads · head_dim` for the keys (OLMoE's `q_norm`, `k_norm`).
    Full,
}

impl QkNorm {
    fn is_none(&self) -> bool {
        *self == Self::None
    }
}

fn one_f64() -> f64 {
    1.0
}

fn is_one_f64(x: &f64) -> bool {
    *x == 1.0
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn one() -> f32 {
    1.0
}

fn is_one(x: &f32) -> bool {
    *x == 1.0
}

/// Why a [`ModelConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A size that must be at least 1 is 0.
    #[error("`{field}` must be at least 1, got 0")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
    /// `k` is outside `1..=E`.
    #[error("`top_k` must be between 1 and n_experts ({n_experts}), got {top_k}")]
    TopK {
        /// Requested k.
        top_k: usize,
        /// Number of experts.
        n_experts: usize,
    },
    /// A divisibility rule does not hold.
    #[error("{what}")]
    Divisibility {
        /// Which rule, with the numbers.
        what: String,
    },
    /// A floating-point parameter is out of range.
    #[error("`{field}` must be a positive finite number, got {value}")]
    Positive {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// A size is beyond what the playground builds (a corrupt or hostile header).
    #[error("`{field}` is {value}, more than the {max} this playground supports")]
    TooLarge {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The upper bound.
        max: usize,
    },
    /// The JSON could not be read as a configuration.
    #[error("invalid model configuration JSON: {0}")]
    Json(String),
}

/// Upper bounds of a configuration. A checkpoint header is untrusted input: these are checked
/// before anything is sized from it, so a header that declares 4·10⁹ layers is an error in
/// microseconds, not an allocation. They are far above the shipped models (4 layers, 8 experts,
/// context 512) and cover the small Hugging Face MoE models the playground is meant to open.
pub mod limits {
    /// Decoder blocks.
    pub const MAX_LAYERS: usize = 64;
    /// Routed experts per layer.
    pub const MAX_EXPERTS: usize = 256;
    /// Hidden size.
    pub const MAX_D_MODEL: usize = 8192;
    /// Expert hidden size.
    pub const MAX_D_FF: usize = 32_768;
    /// Attention heads.
    pub const MAX_HEADS: usize = 256;
    /// Vocabulary.
    pub const MAX_VOCAB: usize = 262_144;
    /// Context in tokens.
    pub const MAX_CONTEXT: usize = 32_768;
    /// Scalar parameters in all (2·10⁹: 4 GB of f16).
    pub const MAX_PARAMS: u64 = 2_000_000_000;
}

impl ModelConfig {
    /// Forward FLOPs per token in the weight matmuls (2 per multiply-add), when each MoE layer
    /// runs `experts_per_token` SwiGLU experts on average: attention projections, router, the
    /// experts used and the LM head. Attention scores are left out (the same for every router,
    /// and they grow with the position); so are norms, activations and the free experts (a
    /// constant expert's `2·d` is noise beside an FFN expert's `3·d·d_ff`).
    pub fn weight_flops_per_token(&self, experts_per_token: f64) -> f64 {
        let (d, q, kv) = (self.d_model as f64, self.q_dim() as f64, self.kv_dim() as f64);
        let attention = d * q * 2.0 + d * kv * 2.0; // q and o, k and v
        let e = self.n_experts as f64;
        let router = match self.gate_hidden {
            0 => d * e,
            h => (d + e) * h as f64,
        } + if self.gating_residual { e * e } else { 0.0 };
        let expert = 3.0 * d * self.d_ff as f64; // w1, w3, w2
        let shared = 3.0 * d * self.shared_d_ff as f64;
        let layer = attention + router + experts_per_token * expert + shared;
        2.0 * (self.n_layers as f64 * layer + d * self.vocab_size as f64)
    }

    /// The default playground model: d=128, 4 layers, 4 heads (2 KV heads), 8 SwiGLU experts of
    /// 256, top-2, byte-level vocabulary (256).
    pub fn tiny() -> Self {
        Self {
            vocab_size: 256,
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: 2,
            d_ff: 256,
            n_experts: 8,
            top_k: 2,
            norm_topk_prob: true,
            max_seq_len: 512,
            rope_theta: 10_000.0,
            rms_eps: 1e-5,
            tie_embeddings: false,
            frozen_gate: false,
            selection_bias: false,
            shared_d_ff: 0,
            shared_expert_gate: false,
            free_experts: Vec::new(),
            gate_hidden: 0,
            gating_residual: false,
            expert_input_scale: 1.0,
            head_size: 0,
            attention_bias: false,
            qk_norm: QkNorm::None,
            rope_linear_factor: 1.0,
        }
    }

    /// Number of FFN (SwiGLU) experts: the first entries of the expert list.
    pub fn ffn_experts(&self) -> usize {
        self.n_experts.saturating_sub(self.free_experts.len())
    }

    /// The kind of every entry of the expert list (empty when all are FFN experts, as the
    /// routing record writes it).
    pub fn expert_kinds(&self) -> Vec<ExpertKind> {
        if self.free_experts.is_empty() {
            return Vec::new();
        }
        let mut kinds = vec![ExpertKind::Ffn; self.ffn_experts()];
        kinds.extend_from_slice(&self.free_experts);
        kinds
    }

    /// One line, with its formula, on what this model's MoE layer does beyond "a router over
    /// FFN experts" (the router panel shows it under the router's own line); `None` for the
    /// plain design.
    pub fn design_line(&self) -> Option<String> {
        let count = |k: ExpertKind| self.free_experts.iter().filter(|x| **x == k).count();
        let (nulls, ffn) = (count(ExpertKind::Null), self.ffn_experts());
        if self.gate_hidden > 0 || count(ExpertKind::Zero) + count(ExpertKind::Copy) + count(ExpertKind::Constant) > 0 {
            return Some(format!(
                "MoE++ design (spec §6.2): {ffn} FFN experts, then {} constant, {} copy and {} zero experts in the list; gate h = tanh(x·W_a)·W_b{}; a zero expert's weight is set to 0 and the rest renormalised (the reference code's rule: {{FFN a, zero}} gives FFN a weight 1); experts see {}·x.",
                count(ExpertKind::Constant),
                count(ExpertKind::Copy),
                count(ExpertKind::Zero),
                if self.gating_residual { " + Z_prev·W_g (gating residual from the previous layer)" } else { "" },
                self.expert_input_scale
            ));
        }
        if nulls > 0 {
            return Some(format!(
                "AdaMoE design (spec §6.1): {ffn} FFN experts and {nulls} null experts share one softmax; a null expert outputs 0 and costs nothing, and w_e = P_e / Σ P over the token's chosen FFN experts, so a token may use 0 to k FFN experts without its output shrinking."
            ));
        }
        if self.shared_d_ff > 0 && self.shared_expert_gate {
            return Some(format!(
                "Qwen2-MoE design (spec §8.1): y = σ(w_sᵀx)·FFN_shared(x) + Σ w_e·FFN_e(x); the shared expert ({} hidden units) runs on every token outside the router, scaled by its own per-token sigmoid gate.",
                self.shared_d_ff
            ));
        }
        if self.shared_d_ff > 0 {
            return Some(format!(
                "DeepSeekMoE design (spec §8.1): y = FFN_shared(x) + Σ w_e·FFN_e(x); the shared expert ({} hidden units) runs on every token with weight 1, outside the router.",
                self.shared_d_ff
            ));
        }
        self.selection_bias.then(|| {
            "DeepSeek-V3 design (spec §8.2): a learned selection bias b per expert chooses the top-k of σ(z) + b; the weights are σ(z) alone, normalised.".to_string()
        })
    }

    /// True when the expert list has free experts or the router is MoE++'s (two-layer gate,
    /// gating residual, scaled input): parts only the host routing path (`Dispatch::Sparse` and
    /// `Dense`) implements, so a GPU run falls back to it.
    pub fn needs_host_routing(&self) -> bool {
        !self.free_experts.is_empty() || self.gate_hidden > 0 || self.gating_residual || self.expert_input_scale != 1.0
    }

    /// Reads and validates a configuration from JSON.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let cfg: Self = serde_json::from_str(json).map_err(|e| ConfigError::Json(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        match self.head_size {
            0 => self.d_model / self.n_heads.max(1),
            h => h,
        }
    }

    /// Width of the query projection, `n_heads · head_dim` (`d_model` unless `head_size` says
    /// otherwise).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim()
    }

    /// Width of the key and value projections, `n_kv_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }

    /// Checks every constraint the model relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("d_ff", self.d_ff),
            ("n_experts", self.n_experts),
            ("max_seq_len", self.max_seq_len),
        ];
        for (field, value) in sizes {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        use limits::*;
        let bounds = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("d_model", self.d_model, MAX_D_MODEL),
            ("n_layers", self.n_layers, MAX_LAYERS),
            ("n_heads", self.n_heads, MAX_HEADS),
            ("n_kv_heads", self.n_kv_heads, MAX_HEADS),
            ("d_ff", self.d_ff, MAX_D_FF),
            ("shared_d_ff", self.shared_d_ff, MAX_D_FF),
            ("gate_hidden", self.gate_hidden, MAX_D_FF),
            ("n_experts", self.n_experts, MAX_EXPERTS),
            ("max_seq_len", self.max_seq_len, MAX_CONTEXT),
        ];
        for (field, value, max) in bounds {
            if value > max {
                return Err(ConfigError::TooLarge { field, value, max });
            }
        }
        if self.top_k == 0 || self.top_k > self.n_experts {
            return Err(ConfigError::TopK { top_k: self.top_k, n_experts: self.n_experts });
        }
        if self.shared_expert_gate && self.shared_d_ff == 0 {
            return Err(ConfigError::Divisibility {
                what: "`shared_expert_gate` needs a shared expert (shared_d_ff > 0)".into(),
            });
        }
        if self.free_experts.len() >= self.n_experts {
            return Err(ConfigError::Divisibility {
                what: format!(
                    "the {} free experts leave no FFN expert among the {} experts",
                    self.free_experts.len(),
                    self.n_experts
                ),
            });
        }
        if self.free_experts.contains(&ExpertKind::Ffn) {
            return Err(ConfigError::Divisibility { what: "`free_experts` lists an FFN expert".into() });
        }
        if !(self.expert_input_scale.is_finite() && self.expert_input_scale > 0.0) {
            return Err(ConfigError::Positive {
                field: "expert_input_scale",
                value: f64::from(self.expert_input_scale),
            });
        }
        if self.head_size > MAX_D_MODEL {
            return Err(ConfigError::TooLarge { field: "head_size", value: self.head_size, max: MAX_D_MODEL });
        }
        if self.head_size == 0 && !self.d_model.is_multiple_of(self.n_heads) {
            return Err(ConfigError::Divisibility {
                what: format!("n_heads ({}) must divide d_model ({})", self.n_heads, self.d_model),
            });
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(ConfigError::Divisibility {
                what: format!("n_kv_heads ({}) must divide n_heads ({})", self.n_kv_heads, self.n_heads),
            });
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(ConfigError::Divisibility {
                what: format!("the head size ({}) must be even for rotary embeddings", self.head_dim()),
            });
        }
        for (field, value) in [
            ("rope_theta", self.rope_theta),
            ("rms_eps", self.rms_eps),
            ("rope_linear_factor", self.rope_linear_factor),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(ConfigError::Positive { field, value });
            }
        }
        let params = self.param_count();
        if params > MAX_PARAMS {
            return Err(ConfigError::TooLarge {
                field: "parameters",
                value: params as usize,
                max: MAX_PARAMS as usize,
            });
        }
        Ok(())
    }

    /// Number of scalar parameters, computed from the sizes alone (nothing is allocated, so it
    /// can be checked against a file's length before the file is read). Saturates at
    /// `u64::MAX` for absurd sizes instead of overflowing.
    pub fn param_count(&self) -> u64 {
        let m = |xs: &[usize]| xs.iter().fold(1u128, |acc, &x| acc.saturating_mul(x as u128));
        let (v, d, ff, e) = (self.vocab_size, self.d_model, self.d_ff, self.n_experts);
        let (q, kv) = (self.n_heads.saturating_mul(self.head_dim()), self.n_kv_heads.saturating_mul(self.head_dim()));
        let attention_bias = if self.attention_bias { q.saturating_add(kv.saturating_mul(2)) as u128 } else { 0 };
        let qk_norm = match self.qk_norm {
            QkNorm::None => 0,
            QkNorm::PerHead => 2 * self.head_dim() as u128,
            QkNorm::Full => q.saturating_add(kv) as u128,
        };
        let attention =
            m(&[2, q, d]).saturating_add(m(&[2, kv, d])).saturating_add(attention_bias).saturating_add(qk_norm);
        let bias = if self.selection_bias { e as u128 } else { 0 };
        let shared = m(&[3, d, self.shared_d_ff]).saturating_add(if self.shared_expert_gate { d as u128 } else { 0 });
        let gate = match self.gate_hidden {
            0 => m(&[e, d]),
            h => m(&[d, h]).saturating_add(m(&[h, e])),
        };
        let constants = self.free_experts.iter().filter(|k| **k == ExpertKind::Constant).count();
        let moe = gate
            .saturating_add(m(&[self.ffn_experts(), 3, d, ff]))
            .saturating_add(m(&[constants, 3, d]))
            .saturating_add(bias)
            .saturating_add(shared);
        let per_layer = m(&[2, d]).saturating_add(attention).saturating_add(moe);
        let residual = if self.gating_residual { m(&[self.n_layers.saturating_sub(1), e, e]) } else { 0 };
        let head = if self.tie_embeddings { 0 } else { m(&[v, d]) };
        let total = m(&[v, d])
            .saturating_add(per_layer.saturating_mul(self.n_layers as u128))
            .saturating_add(residual)
            .saturating_add(d as u128)
            .saturating_add(head);
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flops_per_token_count_the_weights_a_token_touches() {
        // d 4, 2 heads of 2 with 1 KV head: q, o 16 each, k, v 8 each; router 4·3; an expert
        // 3·4·8 = 96; two layers with 1.5 experts and an LM head of 4·10.
        let c = super::ModelConfig {
            d_model: 4,
            n_heads: 2,
            n_kv_heads: 1,
            d_ff: 8,
            n_experts: 3,
            n_layers: 2,
            vocab_size: 10,
            ..super::ModelConfig::tiny()
        };
        let layer = 16.0 + 16.0 + 8.0 + 8.0 + 12.0 + 1.5 * 96.0;
        assert_eq!(c.weight_flops_per_token(1.5), 2.0 * (2.0 * layer + 40.0));
        assert!(c.weight_flops_per_token(2.0) > c.weight_flops_per_token(1.0));
    }

    use super::*;

    #[test]
    fn tiny_is_valid_and_round_trips() {
        let cfg = ModelConfig::tiny();
        cfg.validate().unwrap();
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(ModelConfig::from_json(&json).unwrap(), cfg);
    }

    #[test]
    fn each_rule_rejects_with_a_clear_message() {
        let bad = |f: fn(&mut ModelConfig)| {
            let mut c = ModelConfig::tiny();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(|c| c.n_experts = 0).contains("n_experts"));
        assert!(
            bad(|c| c.top_k = 9).contains("top_k must be between 1 and n_experts (8), got 9")
                || bad(|c| c.top_k = 9).contains("`top_k` must be between 1 and n_experts (8), got 9")
        );
        assert!(bad(|c| c.top_k = 0).contains("top_k"));
        assert!(bad(|c| c.n_heads = 3).contains("n_heads (3) must divide d_model (128)"));
        assert!(bad(|c| c.n_kv_heads = 3).contains("n_kv_heads (3) must divide n_heads (4)"));
        assert!(bad(|c| c.rms_eps = -1.0).contains("rms_eps"));
        assert!(bad(|c| c.free_experts = vec![ExpertKind::Null; 8]).contains("no FFN expert"));
        assert!(bad(|c| c.free_experts = vec![ExpertKind::Ffn]).contains("lists an FFN expert"));
        assert!(bad(|c| c.expert_input_scale = f32::NAN).contains("expert_input_scale"));
        assert!(bad(|c| c.shared_expert_gate = true).contains("needs a shared expert"));
        assert!(bad(|c| c.gate_hidden = 1 << 30).contains("gate_hidden"));
        assert!(bad(|c| c.d_model = 132).contains("must be even") || bad(|c| c.d_model = 132).contains("divide"));
    }

    #[test]
    fn hostile_sizes_are_refused_before_anything_is_sized() {
        let big = |f: fn(&mut ModelConfig)| {
            let mut c = ModelConfig::tiny();
            f(&mut c);
            c.validate().unwrap_err()
        };
        let e = big(|c| c.n_layers = 4_000_000_000);
        assert_eq!(e.to_string(), "`n_layers` is 4000000000, more than the 64 this playground supports");
        assert!(matches!(big(|c| c.max_seq_len = 100_000_000), ConfigError::TooLarge { field: "max_seq_len", .. }));
        assert!(matches!(big(|c| c.n_experts = 1 << 40), ConfigError::TooLarge { field: "n_experts", .. }));
        // Every size at its bound together is still too many parameters.
        let e = big(|c| {
            (c.n_layers, c.n_experts, c.d_model, c.d_ff) = (64, 256, 8192, 32_768);
            c.n_heads = 64;
            c.n_kv_heads = 64;
        });
        assert!(matches!(e, ConfigError::TooLarge { field: "parameters", .. }), "{e}");
    }

    #[test]
    fn unknown_fields_and_bad_json_are_errors() {
        let mut v = serde_json::to_value(ModelConfig::tiny()).unwrap();
        v["n_expertz"] = 3.into();
        assert!(matches!(ModelConfig::from_json(&v.to_string()), Err(ConfigError::Json(_))));
        assert!(matches!(ModelConfig::from_json("{"), Err(ConfigError::Json(_))));
    }
}
