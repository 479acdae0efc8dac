//! The backend check's report (`#backend-check`): the same seeded model and prompt through burn's
//! CPU backend and its WebGPU backend in the engine, and the shipped tokenizer in the page.

use serde::{Deserialize, Serialize};

/// The prompt every backend runs (byte-level tokens).
pub const CHECK_PROMPT: &str = "fn main() { println!(\"Bonjour, monde!\"); } // 12 + 30 = 42";
/// Seed of the model initialisation.
pub const CHECK_SEED: u64 = 0;

/// What one backend produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendResult {
    /// `cpu` or `webgpu`.
    pub backend: String,
    /// Adapter or device description.
    pub adapter: String,
    /// Wall time of the forward pass (ms), readback included.
    pub forward_ms: f64,
    /// All logits of the last position.
    pub last_logits: Vec<f32>,
    /// Sum of all logits (a checksum a person can compare).
    pub logits_sum: f64,
    /// Top expert of every token at every layer.
    pub top_experts: Vec<Vec<u32>>,
}

/// Text the shipped tokenizer encodes in the page (the browser test encodes it natively too).
pub const TOKENIZER_SAMPLE: &str = "fn main() { println!(\"Bonjour, été ✓\"); } // 12 + 30 = 42\nThe cat sat.";

/// The shipped tokenizer, loaded and run in the page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenizerCheck {
    /// `bpe:` + SHA-256 of the file.
    pub id: String,
    /// Ids of [`TOKENIZER_SAMPLE`].
    pub ids: Vec<u32>,
    /// Their printable pieces.
    pub pieces: Vec<String>,
    /// Whether decoding the ids gives the sample back.
    pub round_trip: bool,
}

/// The page's report, also rendered as JSON for the browser test.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// CPU result or the error.
    pub cpu: Option<Result<BackendResult, String>>,
    /// WebGPU result or the reason it did not run.
    pub webgpu: Option<Result<BackendResult, String>>,
    /// Largest absolute logit difference between the two, when both ran.
    pub max_abs_diff: Option<f32>,
    /// Whether both backends chose the same top expert for every token and layer.
    pub same_routing: Option<bool>,
    /// The shipped tokenizer in the page, or why it could not load.
    pub tokenizer: Option<Result<TokenizerCheck, String>>,
    /// True once every backend has finished or failed.
    pub done: bool,
}
