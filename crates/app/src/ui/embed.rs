//! Embedding in tutorials: `embed=<panel>` shows one view with minimal chrome (and the controls
//! named in `show=`), and a small postMessage API lets the page around the iframe drive it.
//!
//! To the iframe: `{type: "switchyard:set", prompt?: string, query?: string}` (a query replaces
//! the state; the embed settings are kept). From the iframe, after every run:
//! `{type: "switchyard:routing", query, tokens: [text], experts: [[expert per token] per layer]}`,
//! and in the router A/B view also `comparison: {a, b, changed_rate: [per layer],
//! router_js: [per layer, null where not comparable], next_js_mean}`.
//! `www/embed.html` is a worked example.

use leptos::prelude::*;
use serde::Serialize;
use switchyard_state::{Control, Panel, PlaygroundState};
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};

use super::{Change, Ctl, controls, tokens, views};

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

/// Follows messages from the parent page and reports every run to it.
pub fn listen(ctl: Ctl) {
    let Some(window) = web_sys::window() else { return };
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
        let data = event.data();
        let get = |k: &str| js_sys::Reflect::get(&data, &k.into()).ok().and_then(|v| v.as_string());
        if get("type").as_deref() != Some("switchyard:set") {
            return;
        }
        let mut next = ctl.state.get_untracked();
        if let Some(query) = get("query") {
            let (state, problems) = PlaygroundState::from_query(&query);
            ctl.problems.set(problems);
            let view = next.view.clone();
            next = state;
            next.view.embed = view.embed;
            next.view.show = view.show;
        }
        if let Some(prompt) = get("prompt") {
            next.prompt = prompt;
        }
        ctl.set(next, Change::Deliberate);
    });
    let _ = window.add_event_listener_with_callback("message", on_message.as_ref().unchecked_ref());
    on_message.forget();
    // Only an embedded page has a parent to tell.
    let Ok(Some(parent)) = window.parent() else { return };
    if JsValue::from(parent.clone()) == JsValue::from(window) {
        return;
    }
    Effect::new(move || {
        let Some(r) = ctl.engine.result.get() else { return };
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
        if let Ok(json) = serde_json::to_string(&message)
            && let Ok(value) = js_sys::JSON::parse(&json)
        {
            let _ = parent.post_message(&value, "*");
        }
    });
}

/// The iframe snippet for the current state shown as `panel`.
pub fn embed_code(state: &PlaygroundState, panel: Panel) -> String {
    let mut s = state.clone();
    s.view.embed = Some(panel);
    let location = web_sys::window().map(|w| w.location());
    let base =
        location.as_ref().and_then(|l| Some(format!("{}{}", l.origin().ok()?, l.pathname().ok()?))).unwrap_or_default();
    format!(
        "<iframe src=\"{base}?{}\" width=\"100%\" height=\"460\" style=\"border:0\" title=\"Switchyard: MoE routing\"></iframe>",
        s.to_query().replace('"', "%22")
    )
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
        format!("?{}", s.to_query())
    };
    view! {
        <div class="embedded" data-testid="embedded">
            <controls::Banner />
            <controls::LoadStatus />
            {move || shows(Control::Prompt).then(|| view! { <controls::PromptPanel /> })}
            {move || shows(Control::Router).then(|| view! { <controls::RouterPanel /> })}
            {match panel {
                Panel::Tokens => view! { <tokens::TokenViews /> }.into_any(),
                p => view! { <section class="card"><views::PanelView panel=Signal::derive(move || p) /></section> }.into_any(),
            }}
            <p class="embed-foot"><a href=full target="_blank">"Open in Switchyard ↗"</a></p>
        </div>
    }
}
