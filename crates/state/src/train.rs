//! The in-page training run's settings (the Train view): model size, recipe, data mix,
//! optimisation, seed and length. In the link as the `train.*` keys, written only when they
//! differ from the defaults, so a shared link reproduces the same run step for step.

use serde::{Deserialize, Serialize};

/// How the in-page model routes while it trains (a subset of the native trainer's recipes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainRecipe {
    /// Learned gate, top-k, load-balancing loss and z-loss.
    #[default]
    Topk,
    /// Switch: top-1 with the same losses.
    Switch,
    /// THOR: one random expert per layer per pass, two passes, consistency loss.
    Thor,
    /// SMoE-Dropout: frozen random router, k rising from 2 to E.
    SmoeDropout,
    /// DeepSeek-V3 sigmoid routing balanced by a selection bias, no balancing loss.
    Lossfree,
}

/// The Train view's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Experts per layer, 2 to 16.
    pub experts: usize,
    /// Experts per token (top-k and loss-free), 1 to `experts`.
    pub k: usize,
    /// Hidden size, 32 to 128 (a multiple of 8).
    pub width: usize,
    /// Decoder blocks, 1 to 4.
    pub layers: usize,
    /// The routing recipe.
    pub recipe: TrainRecipe,
    /// Coefficient of the load-balancing loss (top-k, Switch), 0 to 1.
    pub lbl: f32,
    /// Coefficient of the router z-loss, 0 to 0.1.
    pub z: f32,
    /// Peak learning rate, 1e-5 to 0.1.
    pub lr: f64,
    /// Seed of initialisation, data order and the recipe's draws.
    pub seed: u64,
    /// Optimizer steps, 1 to 100000.
    pub steps: u64,
    /// Relative weight of each shipped training sample, by domain (absent: 1).
    pub mix: Vec<(String, f32)>,
}

impl Default for TrainSettings {
    /// A model that shows something within a minute on a laptop: 4 experts, top-2, width 64,
    /// 2 layers, LBL 0.01, z 0.001, lr 0.003, 300 steps.
    fn default() -> Self {
        Self {
            experts: 4,
            k: 2,
            width: 64,
            layers: 2,
            recipe: TrainRecipe::Topk,
            lbl: 0.01,
            z: 0.001,
            lr: 0.003,
            seed: 1,
            steps: 300,
            mix: Vec::new(),
        }
    }
}

impl TrainSettings {
    /// The weight of `domain` in the data mix.
    pub fn weight(&self, domain: &str) -> f32 {
        self.mix.iter().find(|(d, _)| d == domain).map_or(1.0, |(_, w)| *w)
    }
}
