//! What the page and the engine say to each other, and what a routing trace is: the request and
//! reply messages, the trace schema (`switchyard-trace/1`, also the CLI's output), the backend
//! check's report, the example prompts and the names both sides share. Plain data, no burn: the
//! page (which never sees the model) and the engine (which never touches the DOM) meet here.

pub mod backend;
pub mod examples;
pub mod messages;
pub mod trace;
pub mod training;

pub use examples::{EXAMPLES, Example};
pub use messages::{Extras, Loaded, Reply, Request, Source, Timing};

/// The checkpoint initialised from a seed instead of loaded.
pub const SEED_INIT: &str = "seed-init";

/// The checkpoint name of the model the Train view hands to the engine ("Use this model"): its
/// bytes come in a `Uint8Array` message, not from `assets/`.
pub const TRAINED_IN_PAGE: &str = "trained-in-page";

/// How the CPU backend is described in the page.
pub const CPU_ADAPTER: &str = "burn flex (CPU, wasm)";
