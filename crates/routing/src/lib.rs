//! Routing as plain Rust: every router of the spec (`routers.md` §1–§7) deciding from logits on
//! the host, the model's configuration and its bounds, decoding settings and the arithmetic that
//! picks a token, interventions, and the playground's seeded generator (§0.4).
//!
//! No burn and no web: the URL state, the page and the analysis use these types without
//! compiling a tensor library; the model (burn) computes the logits these functions route.

pub mod config;
pub mod decoding;
pub mod rng;
pub mod router;

pub use config::{ConfigError, ModelConfig, QkNorm, limits};
pub use decoding::{
    Decoding, SampleConfig, ScmoeConfig, StepCandidates, WeakMode, argmax, contrast_scores, draw, sample, sample_probs,
    top_candidates,
};
pub use router::{
    Bounds, Capacity, CapacityFormula, Interventions, LogitSource, Priority, RouteContext, RouterError, RouterSpec,
    SecondPolicy, SmoeDense, ThorMode, bounds, check_ranks, dense_weights, expert_assignments, rank_experts,
    smoe_router_weights, softmax_masked, softmax_row,
};
pub use switchyard_record as record;
