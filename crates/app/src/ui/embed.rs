//! Embedding in tutorials: `embed=<panel>` shows one view with minimal chrome (and the controls
//! named in `show=`), and a small postMessage API lets the page around the iframe drive it.
//!
//! To the iframe: `{type: "switchyard:set", prompt?: string, query?: string}` (a query replaces
//! the state; the embed settings are kept). From the iframe, after every run:
//! `{type: "switchyard:routing", query, tokens: [text], experts: [[expert per token] per layer]}`,
//! and in the router A/B view also `comparison: {a, b, changed_rate: [per layer],
//! router_js: [per layer, null where not comparable], next_js_mean}`; when a set could not be
//! used as given, `{type: "switchyard:problems", problems: [{param, message}]}`.
//!
//! Trust rules: only an embedded page (`embed=` in its link, inside a frame) listens, and only
//! to its parent window (`event.source`); everything else is ignored. A flood of sets is
//! coalesced into the latest, applied at most every [`COALESCE_MS`], and none adds a history
//! entry. Reports go to the origin the link pins (`origin=`), else to any parent (`"*"`): an
//! embedding page learns the prompt and the routing, nothing else. `www/embed.html` is a worked
//! example.

use std::time::Duration;

use gloo_events::EventListener;
use leptos::prelude::*;
use serde::Serialize;
use switchyard_state::{Control, MAX_PROMPT_CHARS, Named, Panel, PlaygroundState, Problem, valid_origin};
use wasm_bindgen::{JsCast, JsValue};

use super::{Change, Ctl, controls, tokens, views};

/// Sets arriving closer together than this are coalesced into the latest.
pub const COALESCE_MS: u64 = 100;

/// What the iframe tells its parent after a run.
#[derive(Serialize)]
struct Routing<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    query: &'a str,
    tokens: Vec<&'a str>,
    experts: Vec<Vec<Option<usize>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comparison: Option<AbSummary>,
}

/// The router A/B in a routing message: what a tutorial needs to narrate it.
#[derive(Serialize)]
struct AbSummary {
    a: String,
    b: String,
    changed_rate: Vec<f64>,
    router_js: Vec<Option<f64>>,
    next_js_mean: f64,
}

/// What could not be used of a set, told to the parent.
#[derive(Serialize)]
struct Problems {
    #[serde(rename = "type")]
    kind: &'static str,
    problems: Vec<ProblemMessage>,
}

#[derive(Serialize)]
struct ProblemMessage {
    param: String,
    message: String,
}

/// A `switchyard:set` as received.
#[derive(Debug, Clone, Default)]
struct SetMessage {
    query: Option<String>,
    prompt: Option<String>,
    /// Fields that were there but not strings.
    malformed: Vec<&'static str>,
}

impl SetMessage {
    /// Reads a message's data; `None` when it is not a `switchyard:set`.
    fn read(data: &JsValue) -> Option<Self> {
        let field = |k: &str| js_sys::Reflect::get(data, &k.into()).ok().filter(|v| !v.is_undefined());
        if field("type")?.as_string().as_deref() != Some("switchyard:set") {
            return None;
        }
        let mut set = SetMessage::default();
        for (name, slot) in [("query", &mut set.query), ("prompt", &mut set.prompt)] {
            if let Some(v) = field(name) {
                match v.as_string() {
                    Some(text) => *slot = Some(text),
                    None => set.malformed.push(name),
                }
            }
        }
        Some(set)
    }

    /// The state after this set, and what could not be used.
    fn apply(self, current: &PlaygroundState) -> (PlaygroundState, Vec<Problem>) {
        let mut next = current.clone();
        let mut problems: Vec<Problem> = self
            .malformed
            .iter()
            .map(|name| Problem { param: (*name).into(), message: "must be a string; ignored".into() })
            .collect();
        if let Some(query) = self.query {
            let (state, found) = PlaygroundState::from_query(&query);
            problems.extend(found);
            // The iframe's own embed settings are not the parent's to change.
            let view = next.view.clone();
            next = state;
            next.view.embed = view.embed;
            next.view.show = view.show;
            next.view.origin = view.origin;
        }
        if let Some(prompt) = self.prompt {
            let n = prompt.chars().count();
            if n > MAX_PROMPT_CHARS {
                problems.push(Problem {
                    param: "prompt".into(),
                    message: format!(
                        "the prompt is {n} characters long; the playground takes at most {MAX_PROMPT_CHARS}, so it was not used"
                    ),
                });
            } else {
                next.prompt = prompt;
            }
        }
        (next, problems)
    }
}

/// This frame's parent window, when it is embedded in one.
fn parent_window() -> Option<web_sys::Window> {
    let window = web_sys::window()?;
    let parent = window.parent().ok().flatten()?;
    (JsValue::from(parent.clone()) != JsValue::from(window)).then_some(parent)
}

/// Sends `message` to the parent, at the origin the link pins (or any).
fn tell_parent(ctl: Ctl, message: &impl Serialize) {
    let Some(parent) = parent_window() else { return };
    let origin = ctl.state.with_untracked(|s| s.view.origin.clone()).unwrap_or_else(|| "*".into());
    if let Ok(json) = serde_json::to_string(message)
        && let Ok(value) = js_sys::JSON::parse(&json)
    {
        let _ = parent.post_message(&value, &origin);
    }
}

/// Applies the latest set that waited.
fn apply_pending(ctl: Ctl, pending: StoredValue<Option<SetMessage>>) {
    let Some(set) = pending.try_update_value(Option::take).flatten() else { return };
    let replaces_state = set.query.is_some();
    let (next, problems) = set.apply(&ctl.state.get_untracked());
    if !problems.is_empty() {
        let list = problems.iter().map(|p| ProblemMessage { param: p.param.clone(), message: p.message.clone() });
        tell_parent(ctl, &Problems { kind: "switchyard:problems", problems: list.collect() });
    }
    // A new query replaces the state, and with it what the banner said about the old one.
    if !problems.is_empty() || replaces_state {
        ctl.problems.set(problems);
    }
    ctl.set(next, Change::Outside);
}

/// Follows messages from the parent page (embed mode only) and reports every run to it.
pub fn listen(ctl: Ctl) {
    let Some(window) = web_sys::window() else { return };
    let pending = StoredValue::new(None::<SetMessage>);
    let scheduled = StoredValue::new(false);
    let listener = EventListener::new(&window, "message", move |event| {
        let Some(event) = event.dyn_ref::<web_sys::MessageEvent>() else { return };
        let embedded = ctl.state.with_untracked(|s| s.view.embed.is_some());
        let from_parent = match (parent_window(), event.source()) {
            (Some(parent), Some(source)) => JsValue::from(parent) == JsValue::from(source),
            _ => false,
        };
        if !embedded || !from_parent {
            return;
        }
        let Some(set) = SetMessage::read(&event.data()) else { return };
        pending.set_value(Some(set));
        if !scheduled.get_value() {
            scheduled.set_value(true);
            set_timeout(
                move || {
                    scheduled.set_value(false);
                    apply_pending(ctl, pending);
                },
                Duration::from_millis(COALESCE_MS),
            );
        }
    });
    listener.forget();
    Effect::new(move || {
        let Some(r) = ctl.engine.result.get() else { return };
        if ctl.state.with_untracked(|s| s.view.embed.is_none()) {
            return;
        }
        let t = &r.trace;
        let message = Routing {
            kind: "switchyard:routing",
            query: &t.query,
            tokens: t.tokens.iter().map(|x| x.text.as_str()).collect(),
            experts: t
                .layers
                .iter()
                .map(|l| (0..t.tokens.len()).map(|i| tokens::shown_expert(l, i).map(|e| e.0)).collect())
                .collect(),
            comparison: r.comparison.as_ref().and_then(|c| c.as_ref().ok()).map(|c| AbSummary {
                a: c.a.query.clone(),
                b: c.b.query.clone(),
                changed_rate: c.layers.iter().map(|l| l.changed_rate).collect(),
                router_js: c.layers.iter().map(|l| l.js_comparable.then_some(l.mean_js)).collect(),
                next_js_mean: c.next_js.iter().sum::<f64>() / c.next_js.len().max(1) as f64,
            }),
        };
        tell_parent(ctl, &message);
    });
}

/// The iframe snippet for the current state shown as `panel`, its reports pinned to `origin`.
pub fn embed_code(state: &PlaygroundState, panel: Panel, origin: Option<String>) -> String {
    let mut s = state.clone();
    s.view.embed = Some(panel);
    s.view.origin = origin;
    let location = web_sys::window().map(|w| w.location());
    let base =
        location.as_ref().and_then(|l| Some(format!("{}{}", l.origin().ok()?, l.pathname().ok()?))).unwrap_or_default();
    format!(
        "<iframe src=\"{base}?{}\" width=\"100%\" height=\"460\" style=\"border:0\" title=\"Switchyard: MoE routing\"></iframe>",
        s.to_query().replace('"', "%22")
    )
}

/// "Embed…": the iframe snippet of the open view, with the tutorial's origin to pin.
#[component]
pub fn EmbedDialog(
    /// Closes the dialog.
    close: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let (origin, set_origin) = signal(String::new());
    let (copied, set_copied) = signal(false);
    let pinned = move || {
        let o = origin.get().trim().trim_end_matches('/').to_string();
        valid_origin(&o).then_some(o)
    };
    let code = move || ctl.state.with(|s| embed_code(s, s.view.panel, pinned()));
    let copy = move |_| {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&code());
        }
        set_copied.set(true);
    };
    view! {
        <section class="embed-dialog card" data-testid="embed-dialog" aria-label="embed this view">
            <label class="param"><span>"page that embeds it (origin, optional)"</span>
                <input type="url" placeholder="https://your-tutorial.example" data-testid="embed-origin"
                    prop:value=move || origin.get() on:input=move |ev| set_origin.set(event_target_value(&ev)) />
            </label>
            {move || (!origin.get().trim().is_empty() && pinned().is_none()).then(|| view! {
                <p class="hint warn">"Not an origin (write it as https://host or https://host:port, no path); the snippet reports to any page."</p>
            })}
            <textarea readonly rows="4" data-testid="embed-snippet" aria-label="embed code" prop:value=code></textarea>
            <p class="hint">{move || match pinned() {
                Some(o) => format!("Routing reports (the prompt, its tokens and their experts) go only to {o}."),
                None => "Without an origin, routing reports (the prompt, its tokens and their experts) go to whichever page embeds the view.".to_string(),
            }}</p>
            <div class="run-row">
                <button class="primary" data-testid="embed-copy" on:click=copy>{move || if copied.get() { "Copied" } else { "Copy embed code" }}</button>
                <button on:click=move |_| close()>"Close"</button>
            </div>
        </section>
    }
}

/// One view with minimal chrome.
#[component]
pub fn Embedded(
    /// The view to show.
    panel: Panel,
) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let shows = move |c: Control| ctl.state.with(|s| s.view.show.contains(&c));
    let full = move || {
        let mut s = ctl.state.get();
        s.view.embed = None;
        s.view.show.clear();
        s.view.origin = None;
        format!("?{}", s.to_query())
    };
    view! {
        <main class="embedded" data-testid="embedded" aria-label=format!("Switchyard: the {} view", panel.name())
            aria-busy=move || ctl.engine.running.get().to_string()>
            <h1 class="sr-only">"Switchyard"</h1>
            <h2 class="sr-only">{format!("The {} view", panel.name())}</h2>
            <controls::Banner />
            <controls::LoadStatus />
            {move || shows(Control::Prompt).then(|| view! { <controls::PromptPanel /> })}
            {move || shows(Control::Router).then(|| view! { <controls::RouterPanel /> })}
            {match panel {
                Panel::Tokens => view! { <tokens::TokenViews /> }.into_any(),
                p => view! { <section class="card"><tokens::RunError /><views::PanelView panel=Signal::derive(move || p) /></section> }.into_any(),
            }}
            <super::tour::TourCard />
            <p class="embed-foot"><a href=full target="_blank">"Open in Switchyard ↗"</a></p>
        </main>
    }
}
