//! Hugging Face MoE checkpoints, in and out.
//!
//! In: a folder's `config.json` is mapped to a [`ModelConfig`] ([`read_config`]), and the
//! safetensors files (one, or shards with their `model.safetensors.index.json`) to our
//! parameter names ([`our_name`]): the Mixtral names we already use, so Qwen2-MoE's, Qwen3-MoE's
//! and OLMoE's `mlp.experts.{j}.gate_proj` become `block_sparse_moe.experts.{j}.w1`, and
//! transformers 5's fused `mlp.experts.gate_up_proj` is split per expert. The result is an
//! ordinary [`Checkpoint`]: every router, view and export then works on it unchanged.
//!
//! Out: [`export_mixtral`] writes one of our checkpoints as a Mixtral folder that
//! `AutoModelForCausalLM.from_pretrained` loads.
//!
//! Every input is untrusted: sizes are checked from the config before a weight is converted,
//! every tensor's name, dtype and shape is checked, and no value may be NaN or infinite.

mod config;

use std::collections::{BTreeMap, BTreeSet};

use half::{bf16, f16};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use serde_json::json;
use switchyard_routing::ModelConfig;

pub use config::{Architecture, HfConfig, read_config};

use crate::checkpoint::Checkpoint;
use crate::params::{HostTensor, ParamStore, param_specs};

/// Why a Hugging Face folder cannot be opened or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HfError {
    /// Not JSON, or not the JSON expected.
    #[error("{0}")]
    Json(String),
    /// The architecture is not one Switchyard implements.
    #[error("`{architecture}`: not supported; supported: {}", Architecture::supported())]
    Unsupported {
        /// `architectures[0]` of the config.
        architecture: String,
    },
    /// A field the architecture needs is absent.
    #[error("config.json has no `{0}`")]
    MissingField(&'static str),
    /// A field has a value the model cannot honour.
    #[error("`{field}`: {problem}")]
    Field {
        /// The field (dotted for nested ones).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The mapped configuration fails our checks (sizes beyond the playground's limits).
    #[error("the model's configuration is not usable: {0}")]
    Config(String),
    /// A safetensors file is damaged, a tensor has the wrong dtype or shape, or is missing.
    #[error("{0}")]
    Weights(String),
    /// The index names a shard that was not given.
    #[error("the index names `{0}`, which is not among the files")]
    MissingShard(String),
}

/// The files of a Hugging Face model folder, as bytes.
#[derive(Debug, Clone, Default)]
pub struct HfFiles {
    /// `config.json`.
    pub config: Vec<u8>,
    /// `model.safetensors.index.json`, for sharded weights.
    pub index: Option<Vec<u8>>,
    /// Every `*.safetensors` file, with its file name.
    pub weights: Vec<(String, Vec<u8>)>,
}

/// The shard files an index names (so a caller fetches exactly those), and the size it declares.
pub fn index_shards(index: &[u8]) -> Result<(Vec<String>, Option<u64>), HfError> {
    let v: serde_json::Value =
        serde_json::from_slice(index).map_err(|e| HfError::Json(format!("model.safetensors.index.json: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| HfError::Json("model.safetensors.index.json has no `weight_map` object".into()))?;
    let files: BTreeSet<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
    if files.iter().any(|f| f.contains('/') || f.contains('\\') || f.starts_with('.') || !f.ends_with(".safetensors")) {
        return Err(HfError::Json("the index names a shard outside the folder or not a .safetensors file".into()));
    }
    let total = v.get("metadata").and_then(|m| m.get("total_size")).and_then(serde_json::Value::as_u64);
    Ok((files.into_iter().collect(), total))
}

/// Our checkpoint key for a Hugging Face tensor name (`None`: not a parameter we know). The
/// fused expert tensors keep their names; [`split_fused`] turns them into per-expert ones.
pub fn our_name(hf: &str) -> Option<String> {
    if hf.ends_with("rotary_emb.inv_freq") {
        return None;
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return Some(hf.to_string());
    };
    let (layer, rest) = rest.split_once('.')?;
    let rest = match rest.strip_prefix("mlp.") {
        Some(moe) => format!("block_sparse_moe.{moe}"),
        None => rest.to_string(),
    };
    let rest = if rest.starts_with("block_sparse_moe.experts.") || rest.starts_with("block_sparse_moe.shared_expert.") {
        rest.replace(".gate_proj.", ".w1.").replace(".up_proj.", ".w3.").replace(".down_proj.", ".w2.")
    } else {
        rest
    };
    Some(format!("model.layers.{layer}.{rest}"))
}

/// transformers 5's fused experts, `experts.gate_up_proj` `[E, 2·F, d]` (gate rows first) and
/// `experts.down_proj` `[E, d, F]`, as our per-expert `w1`, `w3` and `w2`.
fn split_fused(name: &str, t: HostTensor, cfg: &ModelConfig, out: &mut ParamStore) -> Result<(), HfError> {
    let (prefix, gate_up) = match (name.strip_suffix(".gate_up_proj"), name.strip_suffix(".down_proj")) {
        (Some(p), _) => (p, true),
        (_, Some(p)) => (p, false),
        _ => unreachable!("called for fused names only"),
    };
    let (e, f, d) = (cfg.ffn_experts(), cfg.d_ff, cfg.d_model);
    let want = if gate_up { vec![e, 2 * f, d] } else { vec![e, d, f] };
    if t.shape != want {
        return Err(HfError::Weights(format!("`{name}`: expected shape {want:?}, found {:?}", t.shape)));
    }
    let per = t.data.len() / e;
    for (j, chunk) in t.data.chunks_exact(per).enumerate() {
        let key = |w: &str| format!("{prefix}.{j}.{w}.weight");
        if gate_up {
            let (gate, up) = chunk.split_at(f * d);
            out.insert(key("w1"), HostTensor { shape: vec![f, d], data: gate.to_vec() });
            out.insert(key("w3"), HostTensor { shape: vec![f, d], data: up.to_vec() });
        } else {
            out.insert(key("w2"), HostTensor { shape: vec![d, f], data: chunk.to_vec() });
        }
    }
    Ok(())
}

/// One tensor as f32, from f32, f16 or bf16 bytes; NaN and infinities refused.
fn to_f32(name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>, HfError> {
    let bytes = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => return Err(HfError::Weights(format!("`{name}` is {other:?}; supported: F32, F16, BF16"))),
    };
    if !data.iter().all(|v| v.is_finite()) {
        return Err(HfError::Weights(format!("`{name}` holds NaN or infinite values")));
    }
    Ok(data)
}

/// Opens a Hugging Face folder as a checkpoint named `name`, with the tokenizer identity
/// `tokenizer` (what [`crate::Tokenizer::id`] gives for its `tokenizer.json`).
pub fn load(name: &str, files: &HfFiles, tokenizer: &str) -> Result<(HfConfig, Checkpoint), HfError> {
    let hf = read_config(&files.config)?;
    let cfg = &hf.config;
    cfg.validate().map_err(|e| HfError::Config(e.to_string()))?;
    if let Some(index) = &files.index {
        let (shards, _) = index_shards(index)?;
        if let Some(missing) = shards.iter().find(|s| !files.weights.iter().any(|(n, _)| n == *s)) {
            return Err(HfError::MissingShard(missing.clone()));
        }
    }
    if files.weights.is_empty() {
        return Err(HfError::Weights("no .safetensors file was given".into()));
    }
    // The files must hold at least what the config declares (2 bytes a parameter at the
    // least) before anything is converted: a config over the wrong files fails here, at once.
    let held: u64 = files.weights.iter().map(|(_, b)| b.len() as u64).sum();
    let declared = cfg.param_count();
    if held < declared.saturating_mul(2) {
        return Err(HfError::Weights(format!(
            "the config declares {declared} parameters, but the weight files hold {held} bytes"
        )));
    }
    let specs: BTreeMap<String, Vec<usize>> = param_specs(cfg).into_iter().map(|s| (s.name, s.shape)).collect();
    let mut params = ParamStore::new();
    for (file, bytes) in &files.weights {
        let st = SafeTensors::deserialize(bytes).map_err(|e| HfError::Weights(format!("{file}: {e}")))?;
        for (hf_name, view) in st.tensors() {
            let Some(key) = our_name(&hf_name) else { continue };
            if key == crate::params::keys::LM_HEAD && cfg.tie_embeddings {
                continue; // some tied checkpoints store the head anyway; the embedding is it
            }
            let t = HostTensor { shape: view.shape().to_vec(), data: to_f32(&hf_name, &view)? };
            if key.ends_with("experts.gate_up_proj") || key.ends_with("experts.down_proj") {
                split_fused(&key, t, cfg, &mut params)?;
                continue;
            }
            let Some(shape) = specs.get(&key) else {
                return Err(HfError::Weights(format!(
                    "`{hf_name}` ({file}) is not a tensor of a {} with this config",
                    hf.architecture.name()
                )));
            };
            if *shape != t.shape {
                return Err(HfError::Weights(format!("`{hf_name}`: expected shape {shape:?}, found {:?}", t.shape)));
            }
            params.insert(key, t);
        }
    }
    if let Some(missing) = specs.keys().find(|k| !params.contains_key(*k)) {
        return Err(HfError::Weights(format!("`{missing}` is missing from the weight files")));
    }
    Ok((hf.clone(), Checkpoint { name: name.into(), config: hf.config, params, tokenizer: tokenizer.into() }))
}

/// Why a checkpoint cannot be written as a Mixtral: the parts of ours a Mixtral lacks.
fn mixtral_gaps(c: &ModelConfig) -> Vec<&'static str> {
    let mut gaps = Vec::new();
    let mut gap = |on: bool, what| {
        if on {
            gaps.push(what);
        }
    };
    gap(!c.norm_topk_prob, "top-k weights not renormalised (Mixtral always renormalises)");
    gap(c.selection_bias, "a selection bias (DeepSeek-V3)");
    gap(c.shared_d_ff > 0, "a shared expert");
    gap(!c.free_experts.is_empty(), "free experts (AdaMoE, MoE++)");
    gap(c.gate_hidden > 0 || c.gating_residual, "MoE++'s gate");
    gap(c.expert_input_scale != 1.0, "a scaled expert input");
    gap(c.attention_bias, "q/k/v biases");
    gap(c.qk_norm != switchyard_routing::QkNorm::None, "q/k norms");
    gap(c.rope_linear_factor != 1.0, "linear RoPE scaling");
    gaps
}

/// One of our checkpoints as a Hugging Face Mixtral folder: `config.json` and
/// `model.safetensors` (f32, the Hub's per-expert layout, which transformers 4 reads as it is
/// and transformers 5 converts when loading). Refused, naming the parts, for designs a Mixtral
/// cannot express.
pub fn export_mixtral(ckpt: &Checkpoint) -> Result<(String, Vec<u8>), HfError> {
    let c = &ckpt.config;
    let gaps = mixtral_gaps(c);
    if !gaps.is_empty() {
        return Err(HfError::Field {
            field: "design".into(),
            problem: format!("`{}` has {}, which MixtralForCausalLM cannot express", ckpt.name, gaps.join(", ")),
        });
    }
    let config = json!({
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "intermediate_size": c.d_ff,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim(),
        "num_local_experts": c.n_experts,
        "num_experts_per_tok": c.top_k,
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "tie_word_embeddings": c.tie_embeddings,
        "sliding_window": null,
        "hidden_act": "silu",
        "router_jitter_noise": 0.0,
        "dtype": "float32",
        "bos_token_id": null,
        "eos_token_id": null,
        "switchyard_checkpoint": ckpt.name,
    });
    let bytes: BTreeMap<&String, (Vec<usize>, Vec<u8>)> = ckpt
        .params
        .iter()
        .map(|(k, t)| (k, (t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect())))
        .collect();
    let views = bytes
        .iter()
        .map(|(k, (shape, b))| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (k.to_string(), v))
                .map_err(|e| HfError::Weights(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let st = safetensors::serialize(views, Some(meta)).map_err(|e| HfError::Weights(e.to_string()))?;
    let text = serde_json::to_string_pretty(&config).map_err(|e| HfError::Json(e.to_string()))?;
    Ok((text, st))
}

/// Reads a folder from disk (the CLI's `--checkpoint DIR`): `config.json`, the index when
/// present, and the weight files it names (or every `*.safetensors`).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_dir(dir: &std::path::Path) -> Result<HfFiles, String> {
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
    let config = read("config.json")?;
    let index = dir.join("model.safetensors.index.json").exists().then(|| read("model.safetensors.index.json"));
    let index = index.transpose()?;
    let names = match &index {
        Some(ix) => index_shards(ix).map_err(|e| e.to_string())?.0,
        None => {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".safetensors"))
                .collect();
            v.sort();
            v
        }
    };
    let weights = names.iter().map(|n| read(n).map(|b| (n.clone(), b))).collect::<Result<_, _>>()?;
    Ok(HfFiles { config, index, weights })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mixtral() -> HfFiles {
        read_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/mixtral")).unwrap()
    }

    fn with_config(edit: impl FnOnce(&mut serde_json::Value)) -> HfFiles {
        let mut files = mixtral();
        let mut v: serde_json::Value = serde_json::from_slice(&files.config).unwrap();
        edit(&mut v);
        files.config = serde_json::to_vec(&v).unwrap();
        files
    }

    fn refusal(files: &HfFiles) -> String {
        load("x", files, "byte").expect_err("refused").to_string()
    }

    #[test]
    fn other_architectures_are_named_with_the_supported_ones() {
        let msg = refusal(&with_config(|v| v["architectures"] = json!(["DeepseekV3ForCausalLM"])));
        assert_eq!(
            msg,
            "`DeepseekV3ForCausalLM`: not supported; supported: MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM"
        );
    }

    #[test]
    fn rope_scaling_is_honoured_or_refused_by_name() {
        let msg = refusal(&with_config(|v| v["rope_parameters"] = json!({"rope_type": "yarn", "factor": 4.0})));
        assert!(msg.contains("`rope_parameters.rope_type`: `yarn` is not supported"), "{msg}");
        let msg = refusal(&with_config(|v| v["rope_scaling"] = json!({"type": "dynamic", "factor": 2.0})));
        assert!(msg.contains("`rope_scaling.rope_type`: `dynamic`"), "{msg}");
        let files =
            with_config(|v| v["rope_parameters"] = json!({"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}));
        let (hf, _) = load("x", &files, "byte").unwrap();
        assert_eq!((hf.config.rope_linear_factor, hf.config.rope_theta), (2.0, 1e4));
    }

    #[test]
    fn a_sliding_window_caps_the_context() {
        let (hf, _) = load("x", &with_config(|v| v["sliding_window"] = json!(16)), "byte").unwrap();
        assert_eq!(hf.config.max_seq_len, 16);
        assert!(hf.context_note.unwrap().contains("sliding window"));
    }

    #[test]
    fn hostile_configs_fail_before_any_weight_is_read() {
        let msg = refusal(&with_config(|v| v["num_hidden_layers"] = json!(4_000_000_000u64)));
        assert!(msg.contains("n_layers"), "{msg}");
        let msg = refusal(&with_config(|v| v["hidden_act"] = json!("gelu")));
        assert!(msg.contains("hidden_act"), "{msg}");
        let msg = refusal(&with_config(|v| v["num_experts_per_tok"] = json!("two")));
        assert!(msg.contains("num_experts_per_tok"), "{msg}");
        // Twice the layers over the same weights: the size check, not an allocation.
        let msg = refusal(&with_config(|v| v["num_hidden_layers"] = json!(40)));
        assert!(msg.contains("weight files hold"), "{msg}");
        assert!(refusal(&HfFiles { config: b"{".to_vec(), ..mixtral() }).contains("config.json"));
    }

    #[test]
    fn damaged_weights_are_named() {
        let mut files = mixtral();
        let len = files.weights[0].1.len();
        files.weights[0].1.truncate(len - 100);
        assert!(refusal(&files).contains("model.safetensors"));
        let mut files = mixtral();
        files.index = Some(br#"{"weight_map": {"a": "model-00002-of-00002.safetensors"}}"#.to_vec());
        assert_eq!(refusal(&files), "the index names `model-00002-of-00002.safetensors`, which is not among the files");
        let mut files = mixtral();
        files.index = Some(br#"{"weight_map": {"a": "../secret.safetensors"}}"#.to_vec());
        assert!(refusal(&files).contains("outside the folder"));
    }

    #[test]
    fn nan_weights_are_refused() {
        let mut files = mixtral();
        let st = SafeTensors::deserialize(&files.weights[0].1).unwrap();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
            st.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec())).collect();
        let norm = tensors.iter_mut().find(|t| t.0 == "model.norm.weight").unwrap();
        norm.2[..2].copy_from_slice(&f16::NAN.to_le_bytes());
        let views: Vec<_> = tensors
            .iter()
            .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(Dtype::F16, s.clone(), b).unwrap()))
            .collect();
        files.weights[0].1 = safetensors::serialize(views, None).unwrap();
        assert_eq!(refusal(&files), "`model.norm.weight` holds NaN or infinite values");
    }

    #[test]
    fn designs_a_mixtral_cannot_express_are_refused_for_export() {
        let cfg = ModelConfig { shared_d_ff: 16, ..ModelConfig::tiny() };
        let ckpt =
            Checkpoint { name: "deepseek".into(), params: ParamStore::new(), config: cfg, tokenizer: "byte".into() };
        let msg = export_mixtral(&ckpt).unwrap_err().to_string();
        assert!(msg.contains("a shared expert"), "{msg}");
    }

    #[test]
    fn an_export_opens_again_as_the_same_model() {
        let cfg = ModelConfig { n_layers: 1, ..ModelConfig::tiny() };
        let ckpt = Checkpoint {
            name: "t".into(),
            params: crate::params::init_from_seed(&cfg, 1),
            config: cfg.clone(),
            tokenizer: "byte".into(),
        };
        let (config, weights) = export_mixtral(&ckpt).unwrap();
        let files =
            HfFiles { config: config.into_bytes(), index: None, weights: vec![("model.safetensors".into(), weights)] };
        let (hf, back) = load("t", &files, "byte").unwrap();
        assert_eq!(hf.architecture, Architecture::Mixtral);
        assert_eq!(back.params, ckpt.params);
        assert_eq!(back.config, ModelConfig { rope_theta: cfg.rope_theta, ..cfg });
    }
}
