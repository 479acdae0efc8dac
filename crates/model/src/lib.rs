//! The Switchyard MoE transformer in burn: a decoder-only Mixtral-style model, its routers, its
//! decoding and its checkpoints. No web crate in here; the app and the CLI choose the device.
//!
//! The public surface: [`ModelConfig`], [`Model`] (built from a seed or a [`Checkpoint`]),
//! [`RouterSpec`], [`RunOptions`] and the routing record it returns
//! ([`switchyard_record::RoutingRecord`]).

mod checkpoint;
pub mod corpus;
mod decode;
mod eval;
pub mod hf;
mod host;
mod layers;
mod load;
mod model;
pub mod params;
mod tokenizer;
#[cfg(feature = "train")]
pub mod train;

pub mod devices;

pub use burn::tensor::Device;
pub use checkpoint::{Checkpoint, CheckpointError, FORMAT as CHECKPOINT_FORMAT};
pub use decode::{
    Generation, all_logits, decoding_passes, generate, generate_greedy, generate_streaming, last_logits,
    next_token_distributions,
};
pub use eval::{DomainEval, EvalOutput, eval_tokens};
pub use host::read_backs;
pub use layers::Dispatch;
pub use model::{ForwardOutput, Jitter, JitterScope, KvCache, Model, ModelError, RunOptions};
pub use params::{HostTensor, ParamStore, init_from_seed, param_count, param_specs};
pub use switchyard_record as record;
pub use switchyard_routing as routing;
// The plain-Rust routing surface, under the names the model has always used.
pub use switchyard_routing::{
    Bounds, Capacity, CapacityFormula, ConfigError, Decoding, Interventions, LogitSource, ModelConfig, Priority,
    RouteContext, RouterError, RouterSpec, SampleConfig, ScmoeConfig, SecondPolicy, SmoeDense, StepCandidates,
    ThorMode, WeakMode, argmax, bounds, check_ranks, contrast_scores, limits, rank_experts, rng, sample_probs,
    smoe_router_weights, softmax_row, top_candidates,
};
#[cfg(feature = "train")]
pub use tokenizer::train_bpe;
pub use tokenizer::{BpeTokenizer, ByteTokenizer, Tokenizer, TokenizerError};

#[cfg(test)]
mod tests;
