//! What the page and the engine say to each other, and what a routing trace is: the request and
//! reply messages, the trace schema (`switchyard-trace/1`, also the CLI's output), the backend
//! check's report, the example prompts and the names both sides share. Plain data, no burn: the
//! page (which never sees the model) and the engine (which never touches the DOM) meet here.

pub mod backend;
pub mod examples;
pub mod messages;
pub mod recorded;
pub mod trace;
pub mod training;

pub use examples::{EXAMPLES, Example};
pub use messages::{Extras, HfModel, Loaded, Reply, Request, Source, Timing};

/// The checkpoint initialised from a seed instead of loaded.
pub const SEED_INIT: &str = "seed-init";

/// The checkpoint name of the model the Train view hands to the engine ("Use this model"): its
/// bytes come in a `Uint8Array` message, not from `assets/`.
pub const TRAINED_IN_PAGE: &str = "trained-in-page";

/// The checkpoint name of a Hugging Face model opened from files in this page: the files come
/// in a message of `File`s, not from `assets/` (a link cannot carry them).
pub const HF_FILES: &str = "hf-files";

/// The checkpoint name of a Hugging Face model folder at a URL (the link's `hf=`).
pub const HF_URL: &str = "hf-url";

/// Most parameters a Hugging Face model may have to be opened in the page. The engine holds
/// the weights twice in f32 (the host copy that rebuilds the model on the CPU if the GPU goes,
/// and the backend's), in wasm's 4 GB of memory: 150 M parameters is 1.2 GB of that.
pub const PAGE_MAX_PARAMS: u64 = 150_000_000;

/// How the CPU backend is described in the page.
pub const CPU_ADAPTER: &str = "burn flex (CPU, wasm)";
