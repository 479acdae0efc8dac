//! Checkpoints: safetensors files with f16 tensors in the HF Mixtral layout, the model
//! configuration and a content hash in the header metadata.
//!
//! Metadata keys: `format` = `switchyard-checkpoint/1`, `name`, `config` (JSON),
//! `content_hash` (SHA-256 over every tensor's key, shape and f16 bytes in key order) and
//! `tokenizer` (`byte`, or `bpe:` + the SHA-256 of the `tokenizer.json` it was trained with;
//! absent means `byte`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use half::f16;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

use crate::params::{HostTensor, ParamStore, param_specs};
use switchyard_routing::config::ModelConfig;

/// The value of the `format` metadata key this version writes and reads.
pub const FORMAT: &str = "switchyard-checkpoint/1";

/// A model's configuration and parameters, as stored on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Human-readable name (e.g. `topk-e8`).
    pub name: String,
    /// Architecture.
    pub config: ModelConfig,
    /// Parameters in the HF layout (f16-representable after a load).
    pub params: ParamStore,
    /// The tokenizer's identity ([`crate::Tokenizer::id`]).
    pub tokenizer: String,
}

/// What is wrong with a checkpoint file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a safetensors file, or truncated.
    #[error("not a valid checkpoint (truncated or not safetensors): {0}")]
    Format(String),
    /// A required metadata key is absent.
    #[error("checkpoint metadata has no `{0}` entry")]
    MissingMetadata(&'static str),
    /// The file is from another format or version.
    #[error("unsupported checkpoint format `{found}` (this build reads `{FORMAT}`)")]
    Version {
        /// The format found.
        found: String,
    },
    /// The embedded configuration is invalid.
    #[error("checkpoint configuration is invalid: {0}")]
    Config(String),
    /// A tensor the configuration needs is absent.
    #[error("tensor `{0}` is missing from the checkpoint")]
    MissingTensor(String),
    /// A tensor the configuration does not have is present.
    #[error("tensor `{0}` is not part of this configuration")]
    UnexpectedTensor(String),
    /// A tensor has the wrong shape or dtype.
    #[error("tensor `{name}`: expected f16 {expected:?}, found {found}")]
    Mismatch {
        /// The tensor.
        name: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// What was found.
        found: String,
    },
    /// The configuration declares more (or fewer) parameters than the file holds bytes for.
    #[error(
        "the configuration declares {declared} parameters ({expected} bytes of f16), but the file holds {found} bytes of tensor data"
    )]
    Size {
        /// Parameters the configuration declares.
        declared: u64,
        /// Bytes they need.
        expected: u64,
        /// Bytes of tensor data in the file.
        found: u64,
    },
    /// A tensor holds NaN or infinite values.
    #[error("tensor `{0}` holds NaN or infinite values")]
    NonFinite(String),
    /// The tensors do not hash to the recorded value: the file was altered or damaged.
    #[error("content hash mismatch: the header says {recorded}, the tensors hash to {computed}")]
    Hash {
        /// Hash in the metadata.
        recorded: String,
        /// Hash of the data.
        computed: String,
    },
}

fn to_f16_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect()
}

fn hash_entry(h: &mut Sha256, name: &str, shape: &[usize], bytes: &[u8]) {
    h.update(name.as_bytes());
    h.update([0u8]);
    for &s in shape {
        h.update((s as u64).to_le_bytes());
    }
    h.update(bytes);
}

/// Every tensor the configuration needs, by key (so in hash order), with its shape: each present,
/// f16, of the right shape, and nothing else in the file.
fn checked_views<'a>(
    st: &'a SafeTensors<'a>,
    config: &ModelConfig,
) -> Result<BTreeMap<String, (Vec<usize>, TensorView<'a>)>, CheckpointError> {
    let specs = param_specs(config);
    let wanted: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    if let Some(extra) = st.names().into_iter().find(|n| !wanted.contains(*n)) {
        return Err(CheckpointError::UnexpectedTensor(extra.to_string()));
    }
    let mut views = BTreeMap::new();
    for spec in specs {
        let view = st.tensor(&spec.name).map_err(|_| CheckpointError::MissingTensor(spec.name.clone()))?;
        if view.dtype() != Dtype::F16 || view.shape() != spec.shape.as_slice() {
            return Err(CheckpointError::Mismatch {
                name: spec.name,
                expected: spec.shape,
                found: format!("{:?} {:?}", view.dtype(), view.shape()),
            });
        }
        views.insert(spec.name, (spec.shape, view));
    }
    Ok(views)
}

impl Checkpoint {
    /// SHA-256 of the parameters as stored (f16), hex-encoded.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for (name, t) in &self.params {
            hash_entry(&mut h, name, &t.shape, &to_f16_bytes(&t.data));
        }
        hex::encode(h.finalize())
    }

    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        let buffers: Vec<(String, Vec<usize>, Vec<u8>)> =
            self.params.iter().map(|(n, t)| (n.clone(), t.shape.clone(), to_f16_bytes(&t.data))).collect();
        let views = buffers
            .iter()
            .map(|(n, shape, bytes)| {
                TensorView::new(Dtype::F16, shape.clone(), bytes)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| CheckpointError::Format(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = serde_json::to_string(&self.config).map_err(|e| CheckpointError::Config(e.to_string()))?;
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("name".to_string(), self.name.clone()),
            ("config".to_string(), config),
            ("content_hash".to_string(), self.content_hash()),
            ("tokenizer".to_string(), self.tokenizer.clone()),
        ]);
        safetensors::serialize(views, Some(metadata)).map_err(|e| CheckpointError::Format(e.to_string()))
    }

    /// Parses and verifies safetensors bytes: format, configuration, every tensor's presence,
    /// shape and dtype, and the content hash.
    ///
    /// The file is untrusted: the configuration is validated (with its upper bounds) and its
    /// parameter count checked against the file's length before anything is sized from it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        Self::from_bytes_hashed(bytes).map(|(ckpt, _)| ckpt)
    }

    /// [`Self::from_bytes`], also returning the content hash it verified: the same string as
    /// [`Self::content_hash`] without converting and hashing every tensor again (about 80 ms
    /// of a page load for the shipped checkpoints).
    pub fn from_bytes_hashed(bytes: &[u8]) -> Result<(Self, String), CheckpointError> {
        let (header_len, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| CheckpointError::Format(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &'static str| meta.get(k).cloned().ok_or(CheckpointError::MissingMetadata(k));
        let format = get("format")?;
        if format != FORMAT {
            return Err(CheckpointError::Version { found: format });
        }
        let config = ModelConfig::from_json(&get("config")?).map_err(|e| CheckpointError::Config(e.to_string()))?;
        let declared = config.param_count();
        let found = (bytes.len() - header_len - 8) as u64;
        if declared.saturating_mul(2) != found {
            return Err(CheckpointError::Size { declared, expected: declared.saturating_mul(2), found });
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format(e.to_string()))?;
        let recorded = get("content_hash")?;
        let name = get("name")?;
        let views = checked_views(&st, &config)?;
        // The hash is taken over the stored f16 bytes, in key order, before anything is
        // converted: a damaged file is refused without allocating its f32 copy.
        let mut h = Sha256::new();
        for (key, (shape, view)) in &views {
            hash_entry(&mut h, key, shape, view.data());
        }
        let computed = hex::encode(h.finalize());
        if computed != recorded {
            return Err(CheckpointError::Hash { recorded, computed });
        }
        let mut params = ParamStore::new();
        for (key, (shape, view)) in views {
            let data: Vec<f32> =
                view.data().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
            if !data.iter().all(|v| v.is_finite()) {
                return Err(CheckpointError::NonFinite(key));
            }
            params.insert(key, HostTensor { shape, data });
        }
        let tokenizer = meta.get("tokenizer").cloned().unwrap_or_else(|| "byte".into());
        Ok((Self { name, config, params, tokenizer }, computed))
    }

    /// Writes the checkpoint to `path`.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|source| CheckpointError::Io { path: path.display().to_string(), source })
    }

    /// Reads and verifies the checkpoint at `path`.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes =
            std::fs::read(path).map_err(|source| CheckpointError::Io { path: path.display().to_string(), source })?;
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::init_from_seed;

    fn small() -> Checkpoint {
        let config = ModelConfig {
            n_layers: 1,
            n_experts: 2,
            top_k: 1,
            d_model: 16,
            n_heads: 2,
            n_kv_heads: 1,
            d_ff: 8,
            vocab_size: 32,
            ..ModelConfig::tiny()
        };
        Checkpoint { name: "t".into(), params: init_from_seed(&config, 1), config, tokenizer: "byte".into() }
    }

    #[test]
    fn round_trip_keeps_f16_values_and_hash() {
        let c = small();
        let bytes = c.to_bytes().unwrap();
        let back = Checkpoint::from_bytes(&bytes).unwrap();
        assert_eq!(back.config, c.config);
        assert_eq!(back.content_hash(), c.content_hash());
        let (_, verified) = Checkpoint::from_bytes_hashed(&c.to_bytes().unwrap()).unwrap();
        assert_eq!(verified, c.content_hash(), "the verified hash is the content hash");
        for (name, t) in &c.params {
            for (a, b) in t.data.iter().zip(&back.params[name].data) {
                assert!((a - b).abs() <= a.abs() * 1e-3 + 1e-7, "{name}: {a} vs {b}");
            }
        }
        // A second round trip is exact (values are already f16).
        assert_eq!(Checkpoint::from_bytes(&back.to_bytes().unwrap()).unwrap(), back);
    }

    #[test]
    fn a_selection_bias_travels_with_its_checkpoint() {
        let mut c = small();
        c.config.selection_bias = true;
        c.params = init_from_seed(&c.config, 1);
        let key = crate::params::keys::layer(0).selection_bias();
        c.params.get_mut(&key).expect("the bias is a parameter").data = vec![0.25, -0.5];
        let back = Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap();
        assert!(back.config.selection_bias);
        assert_eq!(back.params[&key].data, vec![0.25, -0.5]);
        let model = crate::Model::from_params(&back.config, &back.params, &crate::Device::flex()).unwrap();
        assert_eq!(model.selection_bias()[0], vec![0.25, -0.5]);
        // Without the flag, the file holds more than the configuration declares: refused.
        let mut plain = back.clone();
        plain.config.selection_bias = false;
        let err = Checkpoint::from_bytes(&plain.to_bytes().unwrap()).unwrap_err();
        assert!(err.to_string().contains("parameters"), "{err}");
    }

    #[test]
    fn truncated_file_is_a_clear_error() {
        let bytes = small().to_bytes().unwrap();
        let err = Checkpoint::from_bytes(&bytes[..bytes.len() - 10]).unwrap_err();
        assert!(matches!(err, CheckpointError::Format(_)), "{err}");
        assert!(err.to_string().contains("truncated"));
        assert!(Checkpoint::from_bytes(b"hello").is_err());
    }

    #[test]
    fn flipped_byte_fails_the_hash() {
        let mut bytes = small().to_bytes().unwrap();
        let n = bytes.len();
        bytes[n - 4] ^= 0x01; // a mantissa bit: the value stays finite
        let err = Checkpoint::from_bytes(&bytes).unwrap_err();
        assert!(matches!(err, CheckpointError::Hash { .. }), "{err}");
    }

    #[test]
    fn mismatched_config_names_the_tensor() {
        // A missing tensor leaves fewer bytes than the configuration declares: caught before
        // anything is read.
        let mut c = small();
        c.params.remove("model.norm.weight");
        let err = Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap_err();
        assert!(matches!(err, CheckpointError::Size { .. }), "{err}");
        // The same bytes under another name are named.
        let mut c = small();
        let norm = c.params.remove("model.norm.weight").unwrap();
        c.params.insert("model.nrom.weight".into(), norm);
        let err = Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "tensor `model.nrom.weight` is not part of this configuration");
        let mut c = small();
        c.params.get_mut("model.norm.weight").unwrap().shape = vec![8, 2];
        let err = Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap_err();
        assert!(err.to_string().contains("model.norm.weight"), "{err}");
        let mut c = small();
        c.params.get_mut("model.norm.weight").unwrap().data[0] = f32::INFINITY;
        let err = Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap_err();
        assert!(matches!(err, CheckpointError::NonFinite(ref n) if n == "model.norm.weight"), "{err}");
    }
}
