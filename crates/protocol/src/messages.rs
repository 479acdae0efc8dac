//! Messages between the page (UI thread) and the engine (a Web Worker), sent as JSON strings.
//!
//! The page owns the state; the engine owns the model. The page sends a [`Request`], the engine
//! answers with [`Reply`]s. Every run carries an id: the engine drops a run that a newer one
//! superseded, and the page never draws a reply whose id is not the latest it sent.

use serde::{Deserialize, Serialize};

use crate::backend::Report;
use crate::recorded::Recorded;
use crate::trace::{Comparison, DomainShares, Trace};

/// What the page asks of the engine.
// Externally tagged (`{"run": {...}}`): an internally tagged enum is read through serde's
// buffered `Content`, which costs code in the page module and time on every message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Load a checkpoint (`seed-init` or `assets/<name>.safetensors`) and its tokenizer. A newer
    /// load supersedes this one (its download stops); a run in flight on another checkpoint
    /// stops at its next token.
    Load {
        /// Increasing id: replies about this load carry it, so a stale one is ignored.
        id: u64,
        /// Checkpoint name (`[A-Za-z0-9_-]{1,64}`).
        checkpoint: String,
        /// Try WebGPU first (false after the engine lost its GPU).
        webgpu: bool,
        /// Leading hex digits of the content hash the link pins: a cached copy with another
        /// hash is replaced by a fresh download, and a download with another hash is an error.
        #[serde(default)]
        hash: Option<String>,
        /// For `hf-url`: the Hugging Face folder's URL.
        #[serde(default)]
        url: Option<String>,
    },
    /// Open a recorded trace (read-only mode): the file the page posted last (a `File`
    /// message), or the one at `url`. Answered like a run, with `Traced` under this id.
    OpenTrace {
        /// Increasing id (a run id: a newer run or trace supersedes it).
        id: u64,
        /// The file's address (`trace=`); none for the posted file.
        #[serde(default)]
        url: Option<String>,
    },
    /// Apply a state's router (top-k, with or without a capacity) and interventions to the
    /// open recorded trace's probabilities: the what-if of the read-only mode.
    Reroute {
        /// Run id.
        id: u64,
        /// The state's canonical query.
        query: String,
    },
    /// Stop the load with this id (the page's Cancel): its download is aborted.
    Cancel {
        /// The load's id.
        id: u64,
    },
    /// Run a playground state (its query string) on the loaded checkpoint.
    Run {
        /// Increasing id; a newer run supersedes this one.
        id: u64,
        /// The canonical query of the state.
        query: String,
        /// What the open view needs beyond the trace.
        #[serde(default)]
        extras: Extras,
    },
    /// The backend diagnostic (same model on the CPU and on WebGPU).
    Check,
    /// Time this engine on a state's work (its prompt, a few decoded tokens) on the loaded
    /// checkpoint, to choose the faster backend.
    Calibrate {
        /// Answered with the same id.
        id: u64,
        /// The state's canonical query.
        query: String,
    },
    /// Test hook: make the engine fail as a lost GPU would (it panics, the worker dies).
    Crash,
}

/// What a run computes beyond the trace, for the view that is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extras {
    /// The router A/B against the state's configuration B (the compare view).
    pub compare: bool,
    /// The domain × expert shares over the example and labelled prompts (the domain view).
    pub domains: bool,
}

/// How fast an engine runs a state's work on its backend (medians).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// `webgpu` or `cpu`.
    pub backend: String,
    /// The adapter (WebGPU) or the CPU backend's name.
    pub adapter: String,
    /// Tokens of the prompt timed.
    pub tokens: usize,
    /// One forward pass of the prompt, read-backs included (ms).
    pub forward_ms: f64,
    /// One KV-cached decoding step (ms per token).
    pub decode_ms: f64,
    /// Host read-backs per decoded token.
    pub read_backs_per_token: f64,
}

impl Timing {
    /// The estimated milliseconds of a run of this prompt generating `generate` tokens.
    pub fn estimate_ms(&self, generate: usize) -> f64 {
        self.forward_ms + generate as f64 * self.decode_ms
    }
}

/// How a checkpoint's bytes arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Downloaded now.
    Network,
    /// From the browser's Cache API (an earlier visit).
    Cache,
    /// Built from the seed, nothing to download.
    Seed,
    /// Trained in this page's Train view and handed over ("Use this model").
    Trained,
    /// A Hugging Face model folder: files opened in the page, or downloaded from a URL.
    HuggingFace,
}

/// The loaded model, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loaded {
    /// Checkpoint name.
    pub checkpoint: String,
    /// Full content hash.
    pub hash: String,
    /// `webgpu` or `cpu`.
    pub backend: String,
    /// The adapter (WebGPU) or `burn flex (CPU, wasm)`.
    pub adapter: String,
    /// Why the CPU backend is used, when WebGPU was wanted.
    pub notice: Option<String>,
    /// MoE layers.
    pub n_layers: usize,
    /// Entries of each layer's expert list (what the router chooses among).
    pub n_experts: usize,
    /// Of them, the free experts (null, zero, copy, constant: spec §6) at the end of the list.
    #[serde(default)]
    pub free_experts: usize,
    /// Context length in tokens.
    pub context: usize,
    /// The tokenizer's id (`byte` or `bpe:<sha256>`).
    pub tokenizer: String,
    /// Where the bytes came from.
    pub source: Source,
    /// Milliseconds from the request to a usable model.
    pub load_ms: f64,
    /// Each layer's learned selection bias `[E]` (auxiliary-loss-free balancing, spec §8.2);
    /// empty when the checkpoint has none.
    #[serde(default)]
    pub selection_bias: Vec<Vec<f32>>,
    /// The checkpoint's design beyond a router over FFN experts, in one line with its formula
    /// (`ModelConfig::design_line`); absent for the plain design.
    #[serde(default)]
    pub design: Option<String>,
    /// A Hugging Face model: what it is (architecture, dtype, parameters, where from).
    #[serde(default)]
    pub hf: Option<HfModel>,
}

/// A Hugging Face model the engine opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HfModel {
    /// transformers' class name, e.g. `Qwen2MoeForCausalLM`.
    pub architecture: String,
    /// The stored dtype (`float32`, `float16`, `bfloat16`).
    pub dtype: String,
    /// Parameters.
    pub params: u64,
    /// The folder's URL, or the names of the files opened.
    pub from: String,
    /// The URL it was loaded from (`hf-url`); none for files.
    #[serde(default)]
    pub url: Option<String>,
    /// Why the context is shorter than the model's (a sliding window, the page's limit).
    #[serde(default)]
    pub note: Option<String>,
    /// The model's own router as a router query (`topk&k=2&norm=false`): what the page selects
    /// when it opens the model.
    pub router: String,
}

/// What the engine tells the page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The engine is listening (messages sent before this would be lost: the worker's wasm
    /// starts asynchronously).
    Started,
    /// Download progress of one file.
    Progress {
        /// The load it belongs to.
        id: u64,
        /// File name under `assets/`.
        file: String,
        /// Bytes so far.
        loaded: u64,
        /// Total bytes, when the server says.
        total: Option<u64>,
    },
    /// A checkpoint is ready (also sent again when a run had to move it to the CPU).
    Ready {
        /// The load it answers.
        id: u64,
        /// The model.
        loaded: Loaded,
    },
    /// Loading failed; the page offers a retry.
    LoadFailed {
        /// The load it answers.
        id: u64,
        /// The checkpoint asked for.
        checkpoint: String,
        /// What failed, for a person.
        message: String,
    },
    /// Generated tokens: the first as soon as it is chosen, then those of each ~16 ms (one
    /// message per frame, not per token: a `postMessage` costs about 60 µs, an eighth of the
    /// time a token takes to decode in the page).
    Tokens {
        /// Run id.
        id: u64,
        /// Printable text of each new token, in order.
        texts: Vec<String>,
        /// Tokens generated so far in this run.
        count: usize,
        /// Milliseconds since the run started.
        elapsed_ms: f64,
    },
    /// A finished run.
    Traced {
        /// Run id.
        id: u64,
        /// The routing trace (the schema of `switchyard trace`).
        trace: Box<Trace>,
        /// Milliseconds of the run in the engine (forward and decoding, analysis included).
        run_ms: f64,
        /// Generated tokens per second, when tokens were generated.
        tokens_per_s: Option<f64>,
        /// Host read-backs the run's trace made (forward passes and decoding, not the extras).
        #[serde(default)]
        read_backs: u64,
        /// Printable text of the SCMoE candidate tokens and of the A/B next tokens (the page
        /// has no tokenizer). A list, not a map: JSON map keys are strings.
        candidate_text: Vec<(u32, String)>,
        /// The router A/B, when the state has a configuration B and the compare view is open
        /// (an error message when B cannot run; A's trace is still drawn).
        comparison: Option<Result<Box<Comparison>, String>>,
        /// Domain × expert shares, when the domain view is open.
        domains: Option<Result<DomainShares, String>>,
        /// A recorded trace (read-only mode): where it came from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recorded: Option<Recorded>,
    },
    /// A run that could not be done (the message says why).
    RunFailed {
        /// Run id.
        id: u64,
        /// For a person.
        message: String,
    },
    /// The backend diagnostic's report.
    Checked(Box<Report>),
    /// A calibration's timings, or why it could not run.
    Calibrated {
        /// The request's id.
        id: u64,
        /// The timings.
        timing: Result<Timing, String>,
    },
}

impl Request {
    /// JSON for `postMessage`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Reply {
    /// JSON for `postMessage`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
