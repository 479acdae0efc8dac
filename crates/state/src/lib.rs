//! The playground's state: one typed, versioned value that says everything a view shows
//! (checkpoint, router and parameters, interventions, decoding, seed, prompt, view settings),
//! and its URL query form.
//!
//! The query form is meant to be read by people: `?v=1&ckpt=seed-init&router=topk&k=2&norm=true&
//! seed=7&decode=greedy&gen=0&layer=0&panel=tokens&prompt=Le+chat`. Encoding writes every
//! parameter of the active router and decoding mode with its default spelled out (spec §0.4),
//! so a link keeps meaning the same thing when defaults change. Decoding never fails: it
//! returns a valid state and a list of [`Problem`]s (unknown keys, malformed or out-of-range
//! values, parameters the chosen router does not use), each replaced by its default.

mod names;
mod query;

use serde::{Deserialize, Serialize};
use switchyard_model::{Decoding, Interventions, RouterSpec};

pub use names::Named;

/// Every panel, in tab order.
pub const PANELS: [Panel; 5] = [Panel::Tokens, Panel::Grid, Panel::Heatmap, Panel::Load, Panel::Experts];
pub use query::Problem;

/// Version of the query format written by this build.
pub const VERSION: u32 = 1;

/// Which panel of the playground is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Panel {
    /// The token strip coloured by expert.
    #[default]
    Tokens,
    /// The token × layer grid.
    Grid,
    /// The token × expert probability heatmap.
    Heatmap,
    /// Load balance and metrics.
    Load,
    /// What the experts learned: dictionary, consecutive-token rates, co-activation, affinity.
    Experts,
}

/// View settings that are part of a shared link.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct View {
    /// Selected MoE layer.
    pub layer: usize,
    /// Open panel.
    pub panel: Panel,
    /// Selected token (its position), if any.
    pub token: Option<usize>,
    /// Embed mode (`embed=<panel>`): only this view, with minimal chrome, for an iframe.
    #[serde(default)]
    pub embed: Option<Panel>,
    /// In embed mode, the controls the author shows (`show=prompt,router,layers`); none by default.
    #[serde(default)]
    pub show: Vec<Control>,
}

/// A group of controls an embedded view may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// The prompt editor and its examples.
    Prompt,
    /// The router panel.
    Router,
    /// The layer selector.
    Layers,
}

/// Everything that defines what the playground shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaygroundState {
    /// Checkpoint name (`seed-init` for a model initialised from the seed).
    pub checkpoint: String,
    /// Leading hex digits of the checkpoint's content hash, when the link pins one.
    pub checkpoint_hash: Option<String>,
    /// Router and parameters.
    pub router: RouterSpec,
    /// Ablated and forced experts.
    pub interventions: Interventions,
    /// How tokens are generated.
    pub decoding: Decoding,
    /// Tokens to generate after the prompt.
    pub generate: usize,
    /// Seed of every random draw.
    pub seed: u64,
    /// The prompt.
    pub prompt: String,
    /// View settings.
    pub view: View,
}

impl Default for PlaygroundState {
    fn default() -> Self {
        Self {
            checkpoint: "seed-init".into(),
            checkpoint_hash: None,
            router: RouterSpec::top_k(2, true),
            interventions: Interventions::default(),
            decoding: Decoding::Greedy,
            generate: 0,
            seed: 0,
            prompt: String::new(),
            view: View::default(),
        }
    }
}

impl PlaygroundState {
    /// The canonical query string (without the leading `?`).
    pub fn to_query(&self) -> String {
        query::encode(self)
    }

    /// Reads a query string, a `?query`, or a whole URL (the part after `?`, before `#`).
    /// Never fails: unusable parts are listed as problems and replaced by defaults.
    pub fn from_query(input: &str) -> (Self, Vec<Problem>) {
        Self::from_query_bytes(input.as_bytes())
    }

    /// [`Self::from_query`] on raw bytes (invalid UTF-8 is decoded lossily).
    pub fn from_query_bytes(input: &[u8]) -> (Self, Vec<Problem>) {
        query::decode(input)
    }
}

#[cfg(test)]
mod tests;
