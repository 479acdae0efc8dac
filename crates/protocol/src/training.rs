//! Messages between the page and the training worker (the Train view), as JSON strings; the
//! exported checkpoint travels as a bare `Uint8Array` message instead (megabytes of numbers in
//! JSON would cost more than the training step).

use serde::{Deserialize, Serialize};
use switchyard_state::TrainSettings;

/// The shipped training samples (`assets/train/NAME.txt`), one per corpus domain.
pub const TRAIN_SAMPLES: &[&str] = &[
    "code_c",
    "code_javascript",
    "code_python",
    "code_rust",
    "de_prose",
    "en_prose",
    "en_verse",
    "fr_prose",
    "markup_html",
    "markup_json",
    "markup_markdown",
    "numbers",
];

/// Longest text of their own a person can add to the data mix, in bytes.
pub const MAX_OWN_TEXT: usize = 200_000;

/// What the page asks of the training worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainRequest {
    /// Start a run from step 0 (a running one is dropped), paused after building the model
    /// unless `play`.
    Start {
        /// Increasing id: replies carry it, so a stale run's are ignored.
        id: u64,
        /// The run.
        settings: TrainSettings,
        /// Text of their own, as the domain `yours` (empty: none).
        #[serde(default)]
        own_text: String,
        /// Start stepping at once.
        play: bool,
    },
    /// Keep stepping until the run's last step.
    Play,
    /// Stop after the step in flight.
    Pause,
    /// One step, then pause.
    Step,
    /// The current weights as a safetensors checkpoint (answered with a `Uint8Array`).
    Export,
}

/// One point of the run's curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainPoint {
    /// Steps done.
    pub step: u64,
    /// Training cross-entropy of that step (nats per byte: the in-page model reads bytes).
    pub ce: f32,
    /// The load-balancing loss before its coefficient.
    pub lbl: f32,
    /// The router's mean entropy (nats).
    pub entropy: f32,
    /// The router's mean top-1 probability.
    #[serde(default)]
    pub confidence: f32,
    /// Experts per token this step (SMoE-Dropout: the schedule's k).
    pub k: usize,
    /// Share of the slots each expert took, per layer.
    pub load: Vec<Vec<f32>>,
}

/// A held-out measurement: loss on each domain's held-out slice and its domain × expert map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// Steps done.
    pub step: u64,
    /// Mean cross-entropy over the domains' held-out slices (nats per byte).
    pub ce: f64,
    /// The domains, in order.
    pub domains: Vec<String>,
    /// `share[layer][domain][expert]` on the held-out slices.
    pub share: Vec<Vec<Vec<f64>>>,
}

/// What the training worker tells the page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainReply {
    /// The run's model is built and its data read.
    Ready {
        /// The run's id.
        id: u64,
        /// Parameters of the model.
        parameters: usize,
        /// Training bytes in the mix.
        train_tokens: usize,
    },
    /// Steps done since the last report.
    Progress {
        /// The run's id.
        id: u64,
        /// One point per step.
        points: Vec<TrainPoint>,
        /// Training tokens per second over the last steps.
        tokens_per_s: f64,
        /// Each layer's selection bias (loss-free balancing), else empty.
        bias: Vec<Vec<f32>>,
        /// A held-out measurement, every few steps.
        held_out: Option<HeldOut>,
    },
    /// Stepping stopped (paused, or the last step was done).
    Stopped {
        /// The run's id.
        id: u64,
        /// Steps done.
        step: u64,
        /// True at the run's last step.
        finished: bool,
    },
    /// The run could not start or a step failed.
    Failed {
        /// The run's id.
        id: u64,
        /// What went wrong, for a person.
        message: String,
    },
}
