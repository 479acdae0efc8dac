//! A Hugging Face `config.json` read as a [`ModelConfig`]: which architectures map, which of
//! their fields are honoured, and which are refused by name.

use serde_json::Value;
use switchyard_routing::{ModelConfig, QkNorm, limits};

use super::HfError;

/// The Hugging Face architectures Switchyard opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `MixtralForCausalLM`: softmax router, top-k renormalised.
    Mixtral,
    /// `Qwen2MoeForCausalLM`: q/k/v biases, a shared expert with a sigmoid gate.
    Qwen2Moe,
    /// `Qwen3MoeForCausalLM`: an RMSNorm on each query and key head, an explicit head size.
    Qwen3Moe,
    /// `OlmoeForCausalLM`: an RMSNorm over the whole query and key projections.
    Olmoe,
}

impl Architecture {
    /// Every supported architecture, as transformers names it.
    pub const ALL: [Self; 4] = [Self::Mixtral, Self::Qwen2Moe, Self::Qwen3Moe, Self::Olmoe];

    /// transformers' class name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mixtral => "MixtralForCausalLM",
            Self::Qwen2Moe => "Qwen2MoeForCausalLM",
            Self::Qwen3Moe => "Qwen3MoeForCausalLM",
            Self::Olmoe => "OlmoeForCausalLM",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The supported names, for messages.
    pub fn supported() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

/// What `config.json` says, mapped: the architecture, our configuration, and the bytes per
/// parameter of its stored dtype (for size checks before any weight is read).
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    /// The architecture.
    pub architecture: Architecture,
    /// The same model as a Switchyard configuration.
    pub config: ModelConfig,
    /// `float32`, `float16` or `bfloat16` (the config's `dtype` / `torch_dtype`).
    pub dtype: String,
    /// The context was capped (to the sliding window or to the playground's limit): why.
    pub context_note: Option<String>,
}

impl HfConfig {
    /// Bytes the weights take in their stored dtype.
    pub fn stored_bytes(&self) -> u64 {
        let per = if self.dtype == "float32" { 4 } else { 2 };
        self.config.param_count().saturating_mul(per)
    }
}

/// Typed access to the JSON object, with errors that name the field.
struct Fields<'a>(&'a serde_json::Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn size(&self, key: &'static str) -> Result<usize, HfError> {
        self.opt_size(key)?.ok_or(HfError::MissingField(key))
    }

    fn opt_size(&self, key: &'static str) -> Result<Option<usize>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| HfError::Field { field: key.into(), problem: format!("expected a count, found {v}") }),
        }
    }

    fn float(&self, key: &'static str, default: f64) -> Result<f64, HfError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| HfError::Field { field: key.into(), problem: format!("expected a number, found {v}") }),
        }
    }

    fn flag(&self, key: &'static str, default: bool) -> Result<bool, HfError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| HfError::Field {
                field: key.into(),
                problem: format!("expected true or false, found {v}"),
            }),
        }
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// Reads `config.json`. Refuses, naming the field, what the model cannot honour: another
/// architecture, an activation other than SiLU, RoPE scaling other than linear, dense layers
/// between the MoE ones, OLMoE's q/k/v clipping, a dtype other than f32, f16 and bf16. Sizes
/// beyond the playground's limits are not refused here (the caller says how large the model is
/// and what would fit); [`super::load`] refuses them.
pub fn read_config(json: &[u8]) -> Result<HfConfig, HfError> {
    let value: Value = serde_json::from_slice(json).map_err(|e| HfError::Json(format!("config.json: {e}")))?;
    let obj = value.as_object().ok_or_else(|| HfError::Json("config.json is not a JSON object".into()))?;
    let f = Fields(obj);
    let arch_name = f
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .ok_or(HfError::MissingField("architectures"))?;
    let architecture = Architecture::from_name(arch_name)
        .ok_or_else(|| HfError::Unsupported { architecture: arch_name.chars().take(80).collect() })?;
    refuse_unsupported_fields(&f, architecture)?;
    let (d, n_heads) = (f.size("hidden_size")?, f.size("num_attention_heads")?);
    let head_size = f.opt_size("head_dim")?.filter(|&h| n_heads == 0 || h != d / n_heads).unwrap_or(0);
    // Mixtral says `num_local_experts`, the others `num_experts` (Qwen3-MoE's config in
    // transformers 5 writes `num_local_experts` too): either is read.
    let n_experts = match f.opt_size("num_experts")? {
        Some(n) => n,
        None => f.size("num_local_experts")?,
    };
    let d_ff = match architecture {
        Architecture::Mixtral | Architecture::Olmoe => f.size("intermediate_size")?,
        Architecture::Qwen2Moe | Architecture::Qwen3Moe => f.size("moe_intermediate_size")?,
    };
    let (rope_theta, rope_linear_factor) = rope(&f, architecture)?;
    let (max_seq_len, context_note) = context(&f)?;
    let config = ModelConfig {
        vocab_size: f.size("vocab_size")?,
        d_model: d,
        n_layers: f.size("num_hidden_layers")?,
        n_heads,
        n_kv_heads: f.opt_size("num_key_value_heads")?.unwrap_or(n_heads),
        d_ff,
        n_experts,
        top_k: f.size("num_experts_per_tok")?,
        // Mixtral always renormalises its top-k; the others say so in `norm_topk_prob`.
        norm_topk_prob: architecture == Architecture::Mixtral || f.flag("norm_topk_prob", false)?,
        max_seq_len,
        rope_theta,
        rms_eps: f.float("rms_norm_eps", 1e-6)?,
        tie_embeddings: f.flag("tie_word_embeddings", false)?,
        shared_d_ff: match architecture {
            Architecture::Qwen2Moe => f.opt_size("shared_expert_intermediate_size")?.unwrap_or(0),
            _ => 0,
        },
        shared_expert_gate: architecture == Architecture::Qwen2Moe
            && f.opt_size("shared_expert_intermediate_size")?.unwrap_or(0) > 0,
        head_size,
        attention_bias: match architecture {
            Architecture::Mixtral => false,
            // transformers' Qwen2-MoE attention always has q/k/v biases (`qkv_bias` in 5.x).
            Architecture::Qwen2Moe => f.flag("qkv_bias", true)?,
            Architecture::Qwen3Moe | Architecture::Olmoe => f.flag("attention_bias", false)?,
        },
        qk_norm: match architecture {
            Architecture::Mixtral | Architecture::Qwen2Moe => QkNorm::None,
            Architecture::Qwen3Moe => QkNorm::PerHead,
            Architecture::Olmoe => QkNorm::Full,
        },
        rope_linear_factor,
        ..ModelConfig::tiny()
    };
    // Sizes beyond the playground's limits are the caller's to word (the page says how large the
    // model is and what would fit); `load` refuses them. Anything else is wrong here.
    match config.validate() {
        Ok(()) | Err(switchyard_routing::ConfigError::TooLarge { .. }) => {}
        Err(e) => return Err(HfError::Config(e.to_string())),
    }
    let dtype = f.text("dtype").or_else(|| f.text("torch_dtype")).unwrap_or("float32").to_string();
    if !["float32", "float16", "bfloat16"].contains(&dtype.as_str()) {
        return Err(HfError::Field {
            field: "dtype".into(),
            problem: format!("`{dtype}` is not supported (supported: float32, float16, bfloat16)"),
        });
    }
    Ok(HfConfig { architecture, config, dtype, context_note })
}

/// The fields whose meaning this model does not implement, refused by name.
fn refuse_unsupported_fields(f: &Fields, arch: Architecture) -> Result<(), HfError> {
    let refuse = |field: &str, problem: String| Err(HfError::Field { field: field.into(), problem });
    if let Some(act) = f.text("hidden_act").filter(|a| *a != "silu") {
        return refuse("hidden_act", format!("`{act}` is not supported (the experts are SwiGLU: silu)"));
    }
    if matches!(arch, Architecture::Qwen2Moe | Architecture::Qwen3Moe) {
        if f.opt_size("decoder_sparse_step")?.unwrap_or(1) != 1 {
            return refuse("decoder_sparse_step", "dense MLP layers between the MoE layers are not supported".into());
        }
        if f.get("mlp_only_layers").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
            return refuse("mlp_only_layers", "dense MLP layers are not supported (every layer must be MoE)".into());
        }
    }
    if arch == Architecture::Olmoe && f.get("clip_qkv").is_some() {
        return refuse("clip_qkv", "clipping q, k and v is not supported".into());
    }
    if arch == Architecture::Qwen3Moe && f.flag("use_sliding_window", false)? {
        return refuse("use_sliding_window", "sliding-window attention is not supported for Qwen3-MoE".into());
    }
    Ok(())
}

/// RoPE's base and linear factor from `rope_parameters` (transformers 5) and the older
/// `rope_theta` and `rope_scaling`. Only the default and linear types are implemented.
fn rope(f: &Fields, arch: Architecture) -> Result<(f64, f64), HfError> {
    let default_theta = if arch == Architecture::Mixtral { 1e6 } else { 10_000.0 };
    let mut theta = f.float("rope_theta", default_theta)?;
    let mut factor = 1.0;
    for field in ["rope_parameters", "rope_scaling"] {
        let Some(p) = f.get(field).and_then(Value::as_object) else { continue };
        if let Some(t) = p.get("rope_theta").and_then(Value::as_f64) {
            theta = t;
        }
        match p.get("rope_type").or_else(|| p.get("type")).and_then(Value::as_str) {
            None | Some("default") => {}
            Some("linear") => factor = p.get("factor").and_then(Value::as_f64).unwrap_or(1.0),
            Some(other) => {
                return Err(HfError::Field {
                    field: format!("{field}.rope_type"),
                    problem: format!(
                        "`{}` is not supported (supported: default, linear)",
                        other.chars().take(40).collect::<String>()
                    ),
                });
            }
        }
    }
    Ok((theta, factor))
}

/// The context: `max_position_embeddings`, capped to an active sliding window (attention
/// within the window is then exact) and to the playground's limit.
fn context(f: &Fields) -> Result<(usize, Option<String>), HfError> {
    let max_pos = f.size("max_position_embeddings")?;
    let window = match (f.opt_size("sliding_window")?, f.get("use_sliding_window").and_then(Value::as_bool)) {
        (Some(w), None | Some(true)) if w > 0 => Some(w),
        _ => None,
    };
    let mut len = max_pos;
    let mut note = None;
    if let Some(w) = window.filter(|&w| w < len) {
        len = w;
        note = Some(format!("context capped to the sliding window of {w} tokens, where attention is exact"));
    }
    if len > limits::MAX_CONTEXT {
        len = limits::MAX_CONTEXT;
        note = Some(format!("context capped to {} tokens (the model allows {max_pos})", limits::MAX_CONTEXT));
    }
    Ok((len, note))
}
