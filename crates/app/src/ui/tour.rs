//! The guided tour: eleven short steps through what a router does, each setting up the view it is
//! about (tab, layer, token, router), outlining that part of the page, and saying what the page
//! computes right now (the numbers are the live run's, never canned). The step is in the link
//! (`tour=N`), so a teacher can send "step 5"; an embedded view shows the step's card too.

use leptos::prelude::*;
use switchyard_protocol::trace::{TokenRouting, Trace};
use switchyard_state::{Panel, PlaygroundState, Shade, TOUR_STEPS};

use super::client::RunResult;
use super::{Change, Ctl, params};

/// One step: what it is called, how it sets the page up, which part it outlines, its formula,
/// and its text from the live run.
struct Step {
    title: &'static str,
    setup: fn(&mut PlaygroundState),
    /// `data-testid` of the part of the page the step is about.
    target: &'static str,
    formula: Option<&'static str>,
    text: fn(&RunResult) -> String,
}

/// The token the steps about one token look at.
const TOKEN: usize = 3;

fn panel(s: &mut PlaygroundState, p: Panel, token: Option<usize>) {
    s.view.panel = p;
    s.view.token = token;
    s.view.layer = 0;
    s.view.shade = Shade::Expert;
}

/// The top-2 router the tour explains (steps that change it put it back), on panel `p`.
fn top2_on(s: &mut PlaygroundState, p: Panel, token: Option<usize>) {
    s.router = params::router_from("topk&k=2&norm=true");
    s.compare = None;
    panel(s, p, token);
}

/// The tour's token at layer 0: its text and its routing (experts, weights, probabilities).
fn token_row(t: &Trace) -> Option<(&str, &TokenRouting)> {
    let i = TOKEN.min(t.tokens.len().saturating_sub(1));
    Some((&t.tokens[i].text, t.layers.first()?.routing.get(i)?))
}

fn list(experts: &[usize], values: &[f32]) -> String {
    experts.iter().zip(values).map(|(e, v)| format!("expert {e} ({v:.2})")).collect::<Vec<_>>().join(" and ")
}

const WAITING: &str = "(the numbers appear when the run is done)";

static STEPS: [Step; TOUR_STEPS] = [
    Step {
        title: "A token arrives",
        setup: |s| top2_on(s, Panel::Tokens, None),
        target: "token-strip",
        formula: None,
        text: |r| {
            let t = &r.trace;
            let e = t.layers.first().and_then(|l| l.routing.first()).map_or(0, |x| x.probs.len());
            format!(
                "The prompt is cut into {} tokens, shown here coloured by the expert that took each one. Every token goes through {} layers, and in each a small network, the router, sends it to a few of {e} experts: feed-forward networks of their own. The rest of the model is shared.",
                t.tokens.len(),
                t.layers.len()
            )
        },
    },
    Step {
        title: "The router scores the experts",
        setup: |s| top2_on(s, Panel::Tokens, Some(TOKEN)),
        target: "token-detail",
        formula: Some("p = softmax(W_g · x)"),
        text: |r| match token_row(&r.trace) {
            Some((text, row)) => {
                let probs = &row.probs;
                let mut order: Vec<usize> = (0..probs.len()).collect();
                order.sort_by(|a, b| probs[*b].total_cmp(&probs[*a]));
                let top: Vec<String> =
                    order.iter().take(3).map(|&e| format!("expert {e} p = {:.2}", probs[e])).collect();
                format!(
                    "For “{text}” at layer 0 the router multiplies the token's vector by one weight row per expert and turns the scores into probabilities (the bars): {}. The router is learned with the rest of the model.",
                    top.join(", ")
                )
            }
            None => WAITING.into(),
        },
    },
    Step {
        title: "Top-k picks",
        setup: |s| top2_on(s, Panel::Tokens, Some(TOKEN)),
        target: "token-detail",
        formula: Some("S = top-k(p), k = 2"),
        text: |r| match token_row(&r.trace) {
            Some((text, TokenRouting { experts, probs, .. })) => format!(
                "Top-2 keeps the two highest: for “{text}”, {} (outlined). The other experts get nothing and cost nothing: this token runs {} of the {} experts, which is why an MoE can be large and still cheap per token.",
                list(experts, &experts.iter().map(|&e| probs[e]).collect::<Vec<_>>()),
                experts.len(),
                probs.len()
            ),
            None => WAITING.into(),
        },
    },
    Step {
        title: "The weights",
        setup: |s| top2_on(s, Panel::Tokens, Some(TOKEN)),
        target: "token-detail",
        formula: Some("y = Σ_{e∈S} w_e · E_e(x),  w_e = p_e / Σ_{j∈S} p_j"),
        text: |r| match token_row(&r.trace) {
            Some((text, TokenRouting { experts, weights, .. })) => format!(
                "The kept probabilities, renormalised to sum to 1, weigh the experts' outputs: for “{text}”, {}. The layer's output is that weighted sum, added to the token's vector.",
                list(experts, weights)
            ),
            None => WAITING.into(),
        },
    },
    Step {
        title: "Every layer decides again",
        setup: |s| top2_on(s, Panel::Grid, None),
        target: "grid",
        formula: None,
        text: |r| {
            let t = &r.trace;
            let first = |l: usize| -> Vec<Option<usize>> {
                t.layers
                    .get(l)
                    .map(|l| l.routing.iter().map(|x| x.experts.first().copied()).collect())
                    .unwrap_or_default()
            };
            let (a, b) = (first(0), first(1));
            let changed = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            format!(
                "Each row is a layer, each column a token, each cell its top expert. Routing is per layer: {changed} of {} tokens have another top expert at layer 1 than at layer 0. Experts are not “the code expert” across the model; each layer has its own.",
                a.len().min(b.len())
            )
        },
    },
    Step {
        title: "Load and the balancing loss",
        setup: |s| top2_on(s, Panel::Load, None),
        target: "load-bars",
        formula: Some("LBL = E · Σ_e f_e · P_e  (1 when balanced)"),
        text: |r| match r.trace.layers.first() {
            Some(l) => {
                let f = &l.metrics.load.fraction;
                let max = f.iter().copied().fold(0.0, f64::max);
                format!(
                    "The bars are each expert's share of layer 0's routing slots; the line is perfect balance, {:.0}%. The busiest expert takes {:.0}% here. Training adds a balancing loss so that no expert is starved or swamped; on this text it is {:.2}.",
                    100.0 / f.len().max(1) as f64,
                    100.0 * max,
                    l.metrics.lbl_topk / 2.0
                )
            }
            None => WAITING.into(),
        },
    },
    Step {
        title: "Capacity and dropped tokens",
        setup: |s| {
            s.router = params::router_from("topk&k=2&norm=true&cf=1&priority=position");
            s.compare = None;
            panel(s, Panel::Capacity, None);
        },
        target: "capacity",
        formula: Some("C = ⌈cf · k · T / E⌉"),
        text: |r| {
            let dropped: usize = r
                .trace
                .layers
                .iter()
                .flat_map(|l| l.routing.iter())
                .map(|x| x.dropped.iter().filter(|d| **d).count())
                .sum();
            let slots: usize = r.trace.layers.iter().flat_map(|l| l.routing.iter()).map(|x| x.dropped.len()).sum();
            format!(
                "In training, each expert takes at most C tokens per batch (the capacity factor cf is now 1.0). A token whose expert is full is dropped at that layer: it skips the experts and keeps its vector. Here {dropped} of {slots} slots were dropped, more of them late in the text (position priority)."
            )
        },
    },
    Step {
        title: "What experts learned",
        setup: |s| top2_on(s, Panel::Experts, None),
        target: "experts",
        formula: None,
        text: |r| match r.trace.layers.first() {
            Some(l) => format!(
                "Each expert's most frequent tokens. Specialisation by token identity scores {:.2} here against {:.2} for a random router: experts learn surface patterns (punctuation, word pieces, code symbols) more than topics.",
                l.specialisation.score, l.specialisation.baseline
            ),
            None => WAITING.into(),
        },
    },
    Step {
        title: "Other routers",
        setup: |s| {
            s.router = params::router_from("thor&thor_mode=token");
            s.compare = None;
            panel(s, Panel::Tokens, None);
        },
        target: "router",
        formula: None,
        text: |r| {
            let t = &r.trace;
            format!(
                "The router is now THOR: experts drawn at random, no router at all (its {} tokens are coloured at random). Switch sends each token to one expert; GShard adds a random second; expert choice lets each expert pick its tokens; SMoE-Dropout freezes a random router and raises k; SCMoE decodes by contrasting a strong and a weak routing. Pick any in the router panel: every view follows.",
                t.tokens.len()
            )
        },
    },
    Step {
        title: "Compare two routers",
        setup: |s| {
            top2_on(s, Panel::Compare, None);
            s.compare = Some(switchyard_state::Variant {
                router: params::router_from("expert_choice"),
                decoding: s.decoding.clone(),
            });
        },
        target: "compare",
        formula: None,
        text: |r| match r
            .comparison
            .as_ref()
            .and_then(|c| c.as_ref().ok())
            .and_then(|c| c.layers.first().map(|l| l.changed_rate))
        {
            Some(rate) => format!(
                "Router A/B runs top-2 (A) against expert choice (B) on the same tokens: there each expert picks the tokens it scores highest, up to its capacity, instead of each token picking experts. At layer 0, {:.0}% of tokens end up with a different set of experts. This is how to see what a routing change really does, token by token.",
                100.0 * rate
            ),
            None => WAITING.into(),
        },
    },
    Step {
        title: "Compute per token",
        setup: |s| {
            s.router = params::router_from("top_p&p=0.4");
            s.compare = None;
            panel(s, Panel::Tokens, None);
            s.view.shade = Shade::Compute;
        },
        target: "compute-distribution",
        formula: Some("S = the fewest top experts with Σ_{e∈S} p_e ≥ p"),
        text: |r| match r.trace.layers.first() {
            Some(l) => {
                let hist = &l.metrics.active_experts_hist;
                let counts: Vec<String> =
                    hist.iter().enumerate().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{n} take {k}")).collect();
                format!(
                    "Top-k gives every token the same compute. Dynamic top-p (p = 0.4) gives a token experts until their probabilities reach p: one the router is sure of takes one expert, an unsure one several. At layer 0, {} of the {} tokens; {:.2} experts per token on average. The strip is now shaded by that count. The top-p checkpoint was trained with this router; AdaMoE's null experts let a token skip instead.",
                    counts.join(", "),
                    hist.iter().sum::<u64>(),
                    l.metrics.active_experts_mean
                )
            }
            None => WAITING.into(),
        },
    },
];

/// Goes to step `n` (1-based), setting the page up for it.
fn go(ctl: Ctl, n: usize, change: Change) {
    let step = &STEPS[n - 1];
    ctl.edit(
        |s| {
            s.view.tour = Some(n);
            (step.setup)(s);
        },
        change,
    );
}

/// Starts the tour (the header's button).
pub fn start(ctl: Ctl) {
    go(ctl, 1, Change::Deliberate);
}

/// ← and → step through the tour while it is on, Escape closes it (not while typing). Installed
/// once for the page.
pub fn listen(ctl: Ctl) {
    let keys = gloo_events::EventListener::new(&super::window(), "keydown", move |ev| {
        let Some(ev) = wasm_bindgen::JsCast::dyn_ref::<web_sys::KeyboardEvent>(ev) else { return };
        let Some(n) = ctl.state.with_untracked(|s| s.view.tour) else { return };
        // The token strip's arrow keys move the focus there, not the tour.
        if ev.default_prevented() {
            return;
        }
        let typing = ev
            .target()
            .and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::Element>(t).ok())
            .is_some_and(|e| matches!(e.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"));
        if typing {
            return;
        }
        match ev.key().as_str() {
            "ArrowRight" if n < TOUR_STEPS => go(ctl, n + 1, Change::Deliberate),
            "ArrowLeft" if n > 1 => go(ctl, n - 1, Change::Deliberate),
            "Escape" => ctl.edit(|s| s.view.tour = None, Change::Deliberate),
            _ => {}
        }
    });
    keys.forget();
}

/// The step's card, when the tour is on: title, text, formula, Back, Next, Close, and the
/// outline of the part of the page it is about. ← and → step through it.
#[component]
pub fn TourCard() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let step = Memo::new(move |_| ctl.state.with(|s| s.view.tour));
    // A link that opens on a step sets the page up for it (a shared link already is).
    if let Some(n) = step.get_untracked() {
        go(ctl, n, Change::Outside);
    }
    move || {
        let n = step.get()?;
        let s = &STEPS[n - 1];
        let text = move || ctl.engine.result.with(|r| r.as_ref().map_or_else(|| WAITING.to_string(), |r| (s.text)(r)));
        Some(view! {
            <style>{format!("[data-testid=\"{}\"] {{ outline: 3px solid #e69f00; outline-offset: 3px; border-radius: 4px; }}", s.target)}</style>
            <div class="tour" role="dialog" aria-label="guided tour" data-testid="tour" data-step=n data-target=s.target>
                <p class="tour-count">{format!("Step {n} of {TOUR_STEPS}")}</p>
                <h2>{s.title}</h2>
                <p data-testid="tour-text">{text}</p>
                {s.formula.map(|f| view! { <pre class="formula">{f}</pre> })}
                <div class="tour-buttons">
                    <button data-testid="tour-back" disabled=n == 1 on:click=move |_| go(ctl, n - 1, Change::Deliberate)>"← Back"</button>
                    {if n < TOUR_STEPS {
                        view! { <button class="primary" data-testid="tour-next" on:click=move |_| go(ctl, n + 1, Change::Deliberate)>"Next →"</button> }.into_any()
                    } else {
                        view! { <button class="primary" data-testid="tour-next" on:click=move |_| ctl.edit(|s| s.view.tour = None, Change::Deliberate)>"Finish"</button> }.into_any()
                    }}
                    <button data-testid="tour-close" on:click=move |_| ctl.edit(|s| s.view.tour = None, Change::Deliberate)>"Close"</button>
                </div>
                <p class="hint">"← and → step through the tour; the link keeps the step."</p>
            </div>
        })
    }
}
