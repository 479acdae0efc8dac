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
mod train;

use serde::{Deserialize, Serialize};
use switchyard_routing::{Decoding, Interventions, RouterSpec};

pub use names::Named;
pub use train::{TrainRecipe, TrainSettings};

/// Every panel, in tab order.
pub const PANELS: [Panel; 9] = [
    Panel::Tokens,
    Panel::Grid,
    Panel::Heatmap,
    Panel::Load,
    Panel::Capacity,
    Panel::Experts,
    Panel::Domains,
    Panel::Compare,
    Panel::Train,
];
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
    /// Capacity factor and priority: dropped tokens and drop rate by position bucket.
    Capacity,
    /// Domain × expert shares over the example prompts and the user's labelled prompts.
    Domains,
    /// Router A/B: this configuration against [`PlaygroundState::compare`] on the same tokens.
    Compare,
    /// Train a small MoE in the page and watch its router learn.
    Train,
}

/// A router configuration to compare with (the `b.` keys of the query): router and decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Router and parameters of configuration B.
    pub router: RouterSpec,
    /// Decoding of configuration B (its next-token distribution; SCMoE contrasts two passes).
    pub decoding: Decoding,
}

impl Variant {
    /// Its query keys (`router=topk&k=2&norm=true&decode=greedy`), for a person and a link.
    pub fn to_query(&self) -> String {
        query::variant_query(self)
    }
}

/// Most labelled prompts a state carries for the domain view.
pub const MAX_LABELLED: usize = 8;

/// Longest prompt, in characters. A link, the prompt form and the postMessage API refuse
/// longer ones with a message (the models' contexts hold a few thousand characters at most).
pub const MAX_PROMPT_CHARS: usize = 8000;

/// Longest checkpoint name.
pub const MAX_CHECKPOINT_NAME: usize = 64;

/// Whether `name` can name a checkpoint: 1 to 64 of `A-Z a-z 0-9 _ -`. Nothing else reaches a
/// download path.
pub fn valid_checkpoint_name(name: &str) -> bool {
    (1..=MAX_CHECKPOINT_NAME).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether `origin` is a web origin an embedding page can have (`https://host[:port]`, or
/// `http://` for local work): what `postMessage` accepts as a target origin.
pub fn valid_origin(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let host_ok = (1..=253).contains(&host.len())
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !host.starts_with('.')
        && !host.ends_with('.');
    let port_ok = port.is_none_or(|p| (1..=5).contains(&p.len()) && p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

/// Longest Hugging Face folder address a link carries.
pub const MAX_FOLDER_URL: usize = 2000;

/// Whether `url` can be the address of a model folder (`hf=`) or a trace (`trace=`): `https://`
/// or `http://`, a host,
/// at most [`MAX_FOLDER_URL`] characters of printable ASCII, no quotes, spaces or backslashes.
/// The engine fetches `config.json` and the rest under it.
pub fn valid_folder_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    url.len() <= MAX_FOLDER_URL
        && valid_origin(&url[..url.len() - rest.len() + host.len()])
        && url.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\' | b'<' | b'>' | b'`'))
}

/// Longest labelled prompt, in characters.
pub const MAX_LABELLED_CHARS: usize = 4000;

/// A prompt the user added to the domain view under a label (`add.<label>=<text>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labelled {
    /// Domain label: 1 to 24 of `A-Z a-z 0-9 _ -`.
    pub label: String,
    /// The prompt.
    pub text: String,
}

/// Why a labelled prompt cannot be added (the link reader and the page word it each their way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelledRefusal {
    /// The label is not 1 to 24 of `A-Z a-z 0-9 _ -`.
    Label,
    /// The prompt is blank.
    Empty,
    /// The prompt is longer than [`MAX_LABELLED_CHARS`].
    TooLong,
    /// There are [`MAX_LABELLED`] already.
    TooMany,
}

impl Labelled {
    /// Whether `label` can be a domain label.
    pub fn valid_label(label: &str) -> bool {
        (1..=24).contains(&label.len()) && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    /// Checks a labelled prompt to add next to `others` prompts already kept.
    pub fn check(label: &str, text: &str, others: usize) -> Result<(), LabelledRefusal> {
        if !Self::valid_label(label) {
            Err(LabelledRefusal::Label)
        } else if text.trim().is_empty() {
            Err(LabelledRefusal::Empty)
        } else if text.chars().count() > MAX_LABELLED_CHARS {
            Err(LabelledRefusal::TooLong)
        } else if others >= MAX_LABELLED {
            Err(LabelledRefusal::TooMany)
        } else {
            Ok(())
        }
    }
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
    /// In embed mode, the origin of the page allowed to hear the routing reports (`origin=`);
    /// without it they go to any parent (`"*"`).
    #[serde(default)]
    pub origin: Option<String>,
    /// What the token strip's colours say (`shade=`): the top expert, or the compute a token got.
    #[serde(default)]
    pub shade: Shade,
    /// The guided tour's step on show (`tour=N`, 1 to [`TOUR_STEPS`]); none: no tour.
    #[serde(default)]
    pub tour: Option<usize>,
}

/// Steps of the guided tour (the app writes them; the link names one by its number).
pub const TOUR_STEPS: usize = 11;

/// What the token strip's colours say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shade {
    /// Each token in its top expert's colour at the selected layer.
    #[default]
    Expert,
    /// How many FFN experts ran on the token at the selected layer ("which tokens are hard").
    Compute,
    /// The same, summed over every layer.
    ComputeAll,
    /// The shared expert's share of the token's MoE output at the selected layer (§8.1).
    Shared,
}

/// Where the model runs (`backend=` in a link; absent means [`Backend::Auto`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Measured: the CPU engine first, and WebGPU too when the browser has an adapter and a
    /// short calibration on this model says it is faster.
    #[default]
    Auto,
    /// The CPU engine only (the WebGPU engine is never downloaded).
    Cpu,
    /// The WebGPU engine (the CPU engine where WebGPU fails).
    Webgpu,
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
    /// Router A/B: configuration B, run on the same tokens and seed.
    #[serde(default)]
    pub compare: Option<Variant>,
    /// Prompts added to the domain view, with their labels.
    #[serde(default)]
    pub labelled: Vec<Labelled>,
    /// Where the model runs.
    #[serde(default)]
    pub backend: Backend,
    /// The Train view's run (`train.*`).
    #[serde(default)]
    pub train: TrainSettings,
    /// The address of a Hugging Face model folder (`hf=`), for the checkpoint `hf-url`.
    #[serde(default)]
    pub hf: Option<String>,
    /// The address of a recorded trace (`trace=`): the page opens it read-only.
    #[serde(default)]
    pub trace: Option<String>,
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
            compare: None,
            labelled: Vec::new(),
            backend: Backend::Auto,
            train: TrainSettings::default(),
            hf: None,
            trace: None,
        }
    }
}

impl PlaygroundState {
    /// The canonical query string (without the leading `?`).
    pub fn to_query(&self) -> String {
        query::encode(self)
    }

    /// Reads a query string, a `?query`, or a whole URL (`https://…/?query#fragment`: the part
    /// after the first `?`, before `#`). A `?` or `#` inside a bare query is part of a value
    /// (`prompt=Why?`, `prompt=C#`): only an input that starts with a URL has a prefix and a
    /// fragment to cut. Never fails: unusable parts are listed as problems and replaced by
    /// defaults.
    pub fn from_query(input: &str) -> (Self, Vec<Problem>) {
        Self::from_query_bytes(input.as_bytes())
    }

    /// This state's own router configuration (A of a router A/B).
    pub fn variant(&self) -> Variant {
        Variant { router: self.router.clone(), decoding: self.decoding.clone() }
    }

    /// [`Self::from_query`] on raw bytes (invalid UTF-8 is decoded lossily).
    pub fn from_query_bytes(input: &[u8]) -> (Self, Vec<Problem>) {
        query::decode(input)
    }
}

#[cfg(test)]
mod tests;
