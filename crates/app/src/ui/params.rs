//! The router panel's controls, described as data: each control edits one query parameter of
//! the state codec, so defaults, validation and the URL stay in one place (`switchyard-state`).

use switchyard_routing::{Decoding, RouterSpec};
use switchyard_state::{PlaygroundState, Problem};

/// How a parameter is edited.
#[derive(Debug, Clone, Copy)]
pub enum Widget {
    /// A slider.
    Range {
        /// Lowest value.
        min: f64,
        /// Highest value (`f64::NAN` means the number of experts).
        max: f64,
        /// Step.
        step: f64,
    },
    /// A checkbox (`true` / `false`).
    Check,
    /// One of the names.
    Select(&'static [&'static str]),
    /// Free text (lists such as `0,1`).
    Text,
}

/// One control.
#[derive(Debug, Clone, Copy)]
pub struct Control {
    /// Query key.
    pub key: &'static str,
    /// Label shown to a person.
    pub label: &'static str,
    /// Editor.
    pub widget: Widget,
}

const fn c(key: &'static str, label: &'static str, widget: Widget) -> Control {
    Control { key, label, widget }
}

const EXPERTS: f64 = f64::NAN;
const CF: Widget = Widget::Range { min: 0.25, max: 4.0, step: 0.25 };
/// The k slider of every router that takes a fixed number of experts per token.
const K: Control = c("k", "experts per token k", Widget::Range { min: 1.0, max: EXPERTS, step: 1.0 });

/// A router of the panel.
#[derive(Debug, Clone, Copy)]
pub struct RouterInfo {
    /// Query name.
    pub name: &'static str,
    /// Display name.
    pub title: &'static str,
    /// One line for a person.
    pub explain: &'static str,
    /// Its formula.
    pub formula: &'static str,
    /// Its parameters.
    pub controls: &'static [Control],
}

/// The capacity factor a capacity limit starts at (the training value of spec §1.6).
pub const TRAINING_CF: &str = "1.25";

/// Capacity keys of the top-k router (present only when capacity is on).
pub const CAPACITY: &[Control] = &[
    c("cf", "capacity factor", CF),
    c("cap_formula", "capacity formula", Widget::Select(&["mtf", "flax", "k_aware"])),
    c("min_cap", "minimum capacity", Widget::Range { min: 0.0, max: 16.0, step: 1.0 }),
    c("priority", "priority", Widget::Select(&["position", "reverse_position", "bpr"])),
];

/// Every router of the model crate.
pub const ROUTERS: &[RouterInfo] = &[
    RouterInfo {
        name: "topk",
        title: "Top-k (Mixtral, Switch)",
        explain: "Each token goes to its k most probable experts; weights renormalised (Mixtral) or raw (Switch, OLMoE). Optional capacity drops overflow tokens.",
        formula: "p = softmax(W·x);  y = Σ_{e ∈ top-k(p)} w_e·E_e(x),  w_e = p_e / Σ_top-k p  (or p_e)",
        controls: &[K, c("norm", "renormalise weights", Widget::Check)],
    },
    RouterInfo {
        name: "gshard",
        title: "GShard top-2",
        explain: "Top-2 with a shared capacity per expert; the second expert is kept by a policy (reference: random, keep with probability p₂/θ).",
        formula: "w₁, w₂ = p₁, p₂ / (p₁+p₂);  keep e₂ by policy;  C = min(G, ⌊G·CF/E⌋)",
        controls: &[
            c("policy", "second-expert policy", Widget::Select(&["random", "all", "threshold", "none"])),
            c("theta", "threshold θ", Widget::Range { min: 0.05, max: 1.0, step: 0.05 }),
            c("cf", "capacity factor", CF),
        ],
    },
    RouterInfo {
        name: "top_p",
        title: "Dynamic top-p",
        explain: "Experts in order of probability until their sum first exceeds p: confident tokens use fewer experts.",
        formula: "S = shortest prefix of sorted p with Σ p > p_threshold;  w_e = p_e (raw)",
        controls: &[c("p", "threshold p", Widget::Range { min: 0.05, max: 1.0, step: 0.05 })],
    },
    RouterInfo {
        name: "thor",
        title: "THOR (stochastic experts)",
        explain: "No router: every token goes to one uniformly random expert with weight 1 (seeded, so a link reproduces it). `mean` averages all experts (not in the THOR code: a comparison). Our thor checkpoint departs from the reference: THOR in every layer (the reference uses even layers only), no label smoothing, no dropout.",
        formula: "e ~ Uniform{1..E} from (seed, layer, position);  y = E_e(x)",
        controls: &[c("thor_mode", "draw per", Widget::Select(&["token", "sequence", "sequence_ref", "mean"]))],
    },
    RouterInfo {
        name: "smoe_dropout",
        title: "SMoE-Dropout",
        explain: "A frozen random router N(0, σ²) from the seed (the SMoE checkpoint's own trained-with router); top-k with a softmax over the chosen. Any k at inference.",
        formula: "z = W_frozen·x;  y = Σ_{e ∈ top-k(z)} softmax(z_top-k)_e·E_e(x)",
        controls: &[
            K,
            c("init_std", "router std σ", Widget::Range { min: 0.005, max: 0.1, step: 0.005 }),
            c("dense", "at k = E", Widget::Select(&["softmax", "uniform"])),
        ],
    },
    RouterInfo {
        name: "expert_choice",
        title: "Expert choice",
        explain: "Each expert picks its C best tokens of the sequence; a token may get several experts or none. Non-causal: later tokens change earlier routing.",
        formula: "C = max(round(CF·T/E), min_cap);  expert e takes top-C of p_{·,e}",
        controls: &[
            c("cf", "capacity factor", CF),
            c("min_cap", "minimum capacity", Widget::Range { min: 0.0, max: 16.0, step: 1.0 }),
        ],
    },
    RouterInfo {
        name: "hash",
        title: "Hash",
        explain: "A fixed random table from token id to expert, drawn from the seed; weight 1, no router.",
        formula: "e = table_seed[token_id];  y = E_e(x)",
        controls: &[],
    },
    RouterInfo {
        name: "ranks",
        title: "Rank list (SCMoE)",
        explain: "The experts at the given ranks of the learned router's ordering, weights renormalised over them: `0,1` is top-2, `2` is the third-best expert alone.",
        formula: "S = {e_(r) : r ∈ ranks};  w_e = p_e / Σ_S p",
        controls: &[c("ranks", "ranks (0-based, comma-separated)", Widget::Text)],
    },
    RouterInfo {
        name: "sigmoid",
        title: "Sigmoid + bias (DeepSeek-V3)",
        explain: "Sigmoid affinities; the experts with the highest affinity plus a per-expert selection bias, weighted by their unbiased affinities normalised over the chosen. The bias only chooses: the lossfree checkpoint learned it by nudging overloaded experts down and underloaded ones up after each step, instead of a balancing loss. Uncheck it to see the selection without the bias. A model without a learned bias has b = 0.",
        formula: "s = σ(z);  S = top-k(s + b);  w_e = s_e / Σ_S s",
        controls: &[K, c("bias", "choose with the learned bias b", Widget::Check)],
    },
    RouterInfo {
        name: "random_one",
        title: "Random one (SCMoE weak)",
        explain: "One random expert per token and layer, weight 1; the probabilities shown are the learned router's.",
        formula: "e ~ Uniform{1..E};  y = E_e(x)",
        controls: &[],
    },
];

/// Decoding modes and their parameters.
pub const DECODINGS: &[(&str, &str, &[Control])] = &[
    ("greedy", "Greedy: the most likely next token.", &[]),
    (
        "sample",
        "Seeded sampling after temperature, top-k and top-p filtering.",
        &[
            c("temperature", "temperature", Widget::Range { min: 0.1, max: 2.0, step: 0.1 }),
            c("sample_k", "top-k (0 = all)", Widget::Range { min: 0.0, max: 100.0, step: 1.0 }),
            c("sample_p", "top-p", Widget::Range { min: 0.05, max: 1.0, step: 0.05 }),
        ],
    ),
    (
        "scmoe",
        "SCMoE self-contrast: score (1+β)·z_strong − β·z_weak over tokens with p_strong ≥ α·max p_strong.",
        &[
            c("strong", "strong ranks", Widget::Text),
            c("weak", "weak ranks (or random)", Widget::Text),
            c("alpha", "plausibility α", Widget::Range { min: 0.01, max: 1.0, step: 0.01 }),
            c("beta", "contrast β", Widget::Range { min: 0.0, max: 2.0, step: 0.1 }),
            c("tau_s", "strong temperature", Widget::Range { min: 0.1, max: 2.0, step: 0.1 }),
            c("tau_w", "weak temperature", Widget::Range { min: 0.1, max: 2.0, step: 0.1 }),
        ],
    ),
];

/// The router's query name for a state.
pub fn router_name(state: &PlaygroundState) -> String {
    param(state, "router").unwrap_or_else(|| "topk".into())
}

/// The value of one router or decoding parameter as the codec writes it (`b.`-prefixed keys:
/// configuration B's). Only the router and decoding are encoded, not the whole state (this runs
/// in reactive closures on every keystroke).
pub fn param(state: &PlaygroundState, key: &str) -> Option<String> {
    let (query, key) = match key.strip_prefix("b.") {
        Some(k) => (state.compare.as_ref()?.to_query(), k),
        None => (state.variant().to_query(), key),
    };
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// The state with parameters set (`Some`) or removed (`None`), through the codec.
pub fn with_params(state: &PlaygroundState, changes: &[(&str, Option<String>)]) -> (PlaygroundState, Vec<Problem>) {
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(state.to_query().as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    for (key, value) in changes {
        let at = pairs.iter().position(|(k, _)| k == key);
        match (at, value) {
            (Some(i), Some(v)) => pairs[i].1.clone_from(v),
            (Some(i), None) => {
                pairs.remove(i);
            }
            (None, Some(v)) => pairs.push(((*key).to_string(), v.clone())),
            (None, None) => {}
        }
    }
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    PlaygroundState::from_query(&query)
}

/// The router of a router query (`topk&k=1`), the codec's defaults for what it leaves out.
pub fn router_from(query: &str) -> RouterSpec {
    PlaygroundState::from_query(&format!("v=1&router={query}")).0.router
}

/// The router called `name` with its defaults (the codec's).
pub fn default_router(name: &str) -> RouterSpec {
    router_from(name)
}

/// The decoding mode called `name` with its defaults.
pub fn default_decoding(name: &str) -> Decoding {
    PlaygroundState::from_query(&format!("v=1&decode={name}")).0.decoding
}

/// Switches router: the new router with its defaults, everything else kept.
pub fn switch_router(state: &PlaygroundState, name: &str) -> PlaygroundState {
    PlaygroundState { router: default_router(name), ..state.clone() }
}

/// Switches decoding mode with its defaults.
pub fn switch_decoding(state: &PlaygroundState, name: &str) -> PlaygroundState {
    PlaygroundState { decoding: default_decoding(name), ..state.clone() }
}
