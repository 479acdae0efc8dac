//! Hugging Face model folders in the engine: from `File`s the page handed over (`hf-files`) or
//! from a URL on any static host (`hf-url`). `config.json` comes first and is checked, size
//! included, before a byte of weights is read or downloaded; then the index (when the weights
//! are sharded), the shards it names, and `tokenizer.json`. The model crate's loader does the
//! mapping; this file only fetches.

use gloo_file::futures::read_as_bytes;
use switchyard_model::hf::{self, HfConfig, HfFiles};
use switchyard_model::{BpeTokenizer, Checkpoint, Tokenizer};
use switchyard_protocol::{HfModel, PAGE_MAX_PARAMS};
use wasm_bindgen::JsCast;

use crate::assets::{self, Asset, FetchError};

/// Largest `config.json` or index accepted.
const MAX_JSON_BYTES: u64 = 4 << 20;
/// Largest `tokenizer.json` accepted (real ones are a few MB).
const MAX_TOKENIZER_BYTES: u64 = 32 << 20;

/// An opened folder: the checkpoint, its tokenizer and what the page shows about it.
pub struct Opened {
    pub ckpt: Checkpoint,
    pub tok: Tokenizer,
    pub about: HfModel,
}

/// Refuses a model the page cannot hold, with its size and what would fit: before any weight.
fn check_size(hf: &HfConfig, backend: &str) -> Result<(), FetchError> {
    let params = hf.config.param_count();
    if params <= PAGE_MAX_PARAMS {
        return Ok(());
    }
    Err(FetchError::Failed(format!(
        "{}: {:.2} B parameters ({:.1} GB in {}) is more than the page's {backend} engine holds: up to {} M parameters (about {:.1} GB as f32, twice over). Nothing was downloaded. A model of that size fits (for example a Mixtral of hidden size 1024, 8 layers, 8 experts). For this one, write a routing trace on your own machine with tools/hf/trace.py and open it here (Open a trace).",
        hf.architecture.name(),
        params as f64 / 1e9,
        hf.stored_bytes() as f64 / 1e9,
        hf.dtype,
        PAGE_MAX_PARAMS / 1_000_000,
        PAGE_MAX_PARAMS as f64 * 8.0 / 1e9,
    )))
}

fn failed(what: &str) -> impl Fn(String) -> FetchError + '_ {
    move |e| FetchError::Failed(format!("{what}: {e}"))
}

/// The tokenizer of a folder, checked against the model's vocabulary.
fn tokenizer(bytes: &[u8], vocab: usize) -> Result<Tokenizer, FetchError> {
    let tok =
        BpeTokenizer::from_json(bytes).map(Tokenizer::Bpe).map_err(|e| failed("tokenizer.json")(e.to_string()))?;
    if tok.vocab_size() > vocab {
        return Err(FetchError::Failed(format!(
            "tokenizer.json has {} ids but the model's vocabulary only {vocab}: they are not from the same model",
            tok.vocab_size()
        )));
    }
    Ok(tok)
}

/// A folder read through `get` (a file's bytes, at most the cap, or `FetchError::Missing`):
/// `config.json` first, and its size checked, before any weight is read; then the index when
/// there is one (else the `unsharded` weight files), the shards it names, `tokenizer.json`.
async fn open_folder(
    name: &str,
    backend: &str,
    get: impl AsyncFn(&str, u64) -> Result<Vec<u8>, FetchError>,
    unsharded: Vec<String>,
    from: String,
    url: Option<String>,
) -> Result<Opened, FetchError> {
    let config = get("config.json", MAX_JSON_BYTES).await?;
    let hf = hf::read_config(&config).map_err(|e| FetchError::Failed(e.to_string()))?;
    check_size(&hf, backend)?;
    let (index, shard_names) = match get("model.safetensors.index.json", MAX_JSON_BYTES).await {
        Ok(ix) => {
            let names = hf::index_shards(&ix).map_err(|e| FetchError::Failed(e.to_string()))?.0;
            (Some(ix), names)
        }
        Err(FetchError::Missing(_)) => (None, unsharded),
        Err(e) => return Err(e),
    };
    // Each shard at most what the whole model can take in f32 (plus its header).
    let cap = hf.config.param_count().saturating_mul(4).saturating_add(MAX_JSON_BYTES);
    let mut weights = Vec::new();
    for n in &shard_names {
        weights.push((n.clone(), get(n, cap).await?));
    }
    let tok = tokenizer(&get("tokenizer.json", MAX_TOKENIZER_BYTES).await?, hf.config.vocab_size)?;
    let from = if url.is_some() { from } else { format!("{from}: {}", shard_names.join(", ")) };
    let (_, ckpt) = hf::load(name, &HfFiles { config, index, weights }, &tok.id())
        .map_err(|e| FetchError::Failed(e.to_string()))?;
    let about = HfModel {
        architecture: hf.architecture.name().into(),
        dtype: hf.dtype.clone(),
        params: ckpt.config.param_count(),
        from,
        url,
        note: hf.context_note.clone(),
        router: format!("topk&k={}&norm={}", ckpt.config.top_k, ckpt.config.norm_topk_prob),
    };
    Ok(Opened { ckpt, tok, about })
}

/// A folder from the `File`s the page handed over (a picked folder, picked files or a drop).
pub async fn from_files(name: &str, files: &[web_sys::File], backend: &str) -> Result<Opened, FetchError> {
    let get = async |n: &str, max: u64| {
        let Some(f) = files.iter().find(|f| f.name() == n) else {
            let given: Vec<String> = files.iter().map(|f| f.name()).take(12).collect();
            return Err(FetchError::Missing(format!(
                "no {n} among the files ({}): a Hugging Face folder has config.json, model.safetensors (or shards with model.safetensors.index.json) and tokenizer.json",
                given.join(", ")
            )));
        };
        if f.size() > max as f64 {
            return Err(FetchError::Failed(format!("{n} is larger than the {} MB accepted for it", max >> 20)));
        }
        read_as_bytes(&gloo_file::Blob::from(f.clone().unchecked_into::<web_sys::Blob>()))
            .await
            .map_err(|e| FetchError::Failed(format!("{n}: the browser could not read the file ({e})")))
    };
    let unsharded = files.iter().map(|f| f.name()).filter(|n| n.ends_with(".safetensors")).collect();
    open_folder(name, backend, get, unsharded, "files".into(), None).await
}

/// A folder at `given` on a static host (it must allow this page's origin: CORS).
pub async fn from_url(
    id: u64,
    name: &str,
    given: &str,
    backend: &str,
    current: &dyn Fn() -> bool,
) -> Result<Opened, FetchError> {
    let base = given.trim_end_matches('/');
    let get = async |file: &str, max: u64| {
        let url = format!("{base}/{file}");
        assets::download_url(&Asset { file, url: Some(&url), max_bytes: max, load: id, current }).await
    };
    let unsharded = vec!["model.safetensors".to_string()];
    open_folder(name, backend, get, unsharded, base.to_string(), Some(given.to_string())).await
}
