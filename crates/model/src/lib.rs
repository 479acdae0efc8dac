//! The Switchyard MoE transformer in burn: a decoder-only Mixtral-style model, its routers, its
//! decoding and its checkpoints. No web crate in here; the app and the CLI choose the device.
//!
//! The public surface: [`ModelConfig`], [`Model`] (built from a seed or a [`Checkpoint`]),
//! [`RouterSpec`], [`RunOptions`] and the routing record it returns
//! ([`switchyard_record::RoutingRecord`]).

mod checkpoint;
mod config;
pub mod corpus;
mod decode;
mod eval;
mod layers;
mod model;
mod params;
mod router;
mod tokenizer;
#[cfg(feature = "train")]
pub mod train;

pub mod devices;

pub use burn::tensor::Device;
pub use checkpoint::{Checkpoint, CheckpointError, FORMAT as CHECKPOINT_FORMAT};
pub use config::{ConfigError, ModelConfig, limits};
pub use decode::{
    Decoding, Generation, SampleConfig, ScmoeConfig, StepCandidates, WeakMode, all_logits, argmax, contrast_scores,
    decoding_passes, generate, generate_greedy, generate_streaming, last_logits, next_token_distributions,
    sample_probs, top_candidates,
};
pub use eval::{DomainEval, EvalOutput, eval_tokens};
pub use layers::Dispatch;
pub use model::{ForwardOutput, Jitter, JitterScope, KvCache, Model, ModelError, RunOptions};
pub use params::{HostTensor, ParamStore, init_from_seed, param_count, param_specs};
pub use router::{
    Bounds, Capacity, CapacityFormula, Interventions, LogitSource, Priority, RouteContext, RouterError, RouterSpec,
    SecondPolicy, SmoeDense, ThorMode, bounds, check_ranks, rank_experts, smoe_router_weights, softmax_row,
};
pub use switchyard_record as record;
pub use switchyard_record::rng;
#[cfg(feature = "train")]
pub use tokenizer::train_bpe;
pub use tokenizer::{BpeTokenizer, ByteTokenizer, Tokenizer, TokenizerError};

#[cfg(test)]
mod tests;
