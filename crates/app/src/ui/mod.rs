//! The playground: prompt, checkpoint and router controls on the left, the routing views on the
//! right. The state lives in the URL (`switchyard-state`'s codec); the model lives in the engine
//! worker ([`client`]); every view is computed from the latest trace.

pub mod backend;
mod canvas;
mod capacity;
pub mod client;
mod compare;
mod controls;
mod domains;
mod embed;
pub mod export;
mod open_model;
mod palette;
pub mod params;
mod snapshot;
mod table;
mod test_hooks;
mod theme;
mod tokens;
mod tour;
mod train;
mod train_charts;
mod views;

use leptos::prelude::*;
use switchyard_protocol::Extras;
use switchyard_state::{Panel, PlaygroundState, Problem, View};
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::Closure;

pub use client::EngineSignals;
use client::Want;
pub use switchyard_protocol::EXAMPLES;

/// The state and the ways to change it (a context newtype).
#[derive(Debug, Clone, Copy)]
pub struct Ctl {
    /// What is shown.
    pub state: RwSignal<PlaygroundState>,
    /// What the last link or edit could not use (the banner).
    pub problems: RwSignal<Vec<Problem>>,
    /// The engine.
    pub engine: EngineSignals,
    /// Debounce before the next run (ms): 0 for clicks, more while typing.
    delay: StoredValue<u32>,
    /// A slider is being dragged: its first change made a history entry, the rest replace it.
    dragging: StoredValue<bool>,
    /// The selected layer (a memo: views that only need it do not redraw on other changes).
    pub layer: Memo<usize>,
    /// The open panel.
    pub panel: Memo<switchyard_state::Panel>,
    /// The selected token.
    pub token: Memo<Option<usize>>,
    /// A token id whose occurrences the strip highlights (from the expert dictionary).
    pub highlight: RwSignal<Option<u32>>,
    /// Where the model runs, and why.
    pub backend: backend::BackendStatus,
}

/// How a change enters the browser history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A deliberate change: a new history entry, run at once.
    Deliberate,
    /// Typing: replaces the current entry, runs after a pause.
    Typing,
    /// A slider being dragged: one entry for the whole drag.
    Drag,
    /// Set from outside (the embedding page's postMessage): replaces the current entry, runs at
    /// once; a tutorial driving the view must not fill the reader's history.
    Outside,
}

fn window() -> web_sys::Window {
    web_sys::window().expect("the playground runs in a browser window")
}

/// The query part of the current URL (without `?`).
fn current_query() -> String {
    window().location().search().unwrap_or_default().trim_start_matches('?').to_string()
}

fn write_url(query: &str, push: bool) {
    let location = window().location();
    let hash = location.hash().unwrap_or_default();
    let url = format!("?{query}{hash}");
    let Ok(history) = window().history() else { return };
    let _ = if push {
        history.push_state_with_url(&JsValue::NULL, "", Some(&url))
    } else {
        history.replace_state_with_url(&JsValue::NULL, "", Some(&url))
    };
}

/// What a first visit shows: the top-k checkpoint on the Rust example.
pub fn default_state() -> PlaygroundState {
    PlaygroundState { checkpoint: "topk".into(), prompt: EXAMPLES[0].text.into(), ..PlaygroundState::default() }
}

/// The state a URL query gives (a bare URL is the default state, not a problem).
fn state_from(query: &str) -> (PlaygroundState, Vec<Problem>) {
    if query.is_empty() {
        return (default_state(), Vec::new());
    }
    // Where the model runs is not part of what a link shows: `?backend=webgpu` alone is the
    // first visit's page on that path (not a versionless link read as an empty one).
    let only_backend = query.split('&').filter(|p| !p.is_empty()).all(|p| p.split('=').next() == Some("backend"));
    if only_backend {
        let (parsed, problems) = PlaygroundState::from_query(&format!("v=1&{query}"));
        return (PlaygroundState { backend: parsed.backend, ..default_state() }, problems);
    }
    PlaygroundState::from_query(query)
}

impl Ctl {
    /// Replaces the state and records it in the URL.
    pub fn set(self, next: PlaygroundState, change: Change) {
        if self.state.with_untracked(|s| *s == next) {
            return;
        }
        let push = match change {
            Change::Deliberate => true,
            Change::Typing | Change::Outside => false,
            Change::Drag => {
                let first = !self.dragging.get_value();
                self.dragging.set_value(true);
                first
            }
        };
        self.delay.set_value(if change == Change::Typing { 250 } else { 0 });
        write_url(&next.to_query(), push);
        self.state.set(next);
    }

    /// Edits the state in place.
    pub fn edit(self, f: impl FnOnce(&mut PlaygroundState), change: Change) {
        let mut next = self.state.get_untracked();
        f(&mut next);
        self.set(next, change);
    }

    /// Sets or removes query parameters through the codec; what it rejects goes to the banner.
    pub fn set_params(self, changes: &[(&str, Option<String>)], change: Change) {
        let (next, problems) = params::with_params(&self.state.get_untracked(), changes);
        if !problems.is_empty() {
            self.problems.set(problems);
        }
        self.set(next, change);
    }

    /// The slider was let go: the next drag makes a new history entry.
    pub fn end_drag(self) {
        self.dragging.set_value(false);
    }

    /// Changes only the view (layer, panel, token): a history entry, no re-run.
    pub fn view(self, f: impl FnOnce(&mut View)) {
        self.edit(|s| f(&mut s.view), Change::Deliberate);
    }
}

/// What the engine runs for a state: the state without its view (configuration B only for the
/// compare view, labelled prompts only for the domain view), and the extras the open view needs.
pub fn run_query(state: &PlaygroundState) -> (String, Extras) {
    let mut s = state.clone();
    let open = s.view.embed.unwrap_or(s.view.panel);
    let extras = Extras { compare: open == Panel::Compare && s.compare.is_some(), domains: open == Panel::Domains };
    s.view = View::default();
    // The Train view's settings are the trainer's, not the engine's.
    s.train = Default::default();
    if !extras.domains {
        s.labelled.clear();
    }
    if !extras.compare {
        s.compare = None;
    }
    (s.to_query(), extras)
}

/// Loads the state's checkpoint whenever it changes, and runs the state (debounced) whenever
/// anything but the view changes and the right checkpoint is loaded.
fn drive_engine(ctl: Ctl) {
    let engine = ctl.engine;
    let requested = StoredValue::new(None::<Want>);
    Effect::new(move || {
        let want = ctl.state.with(Want::of);
        // A link to a recorded trace needs no model.
        if ctl.state.with(|s| s.trace.is_some()) {
            return;
        }
        if requested.get_value().as_ref() != Some(&want) {
            requested.set_value(Some(want.clone()));
            engine.load(&want);
        }
    });
    drive_recorded(ctl);
    let run_query = Memo::new(move |_| ctl.state.with(run_query));
    let pending = StoredValue::new(0u64);
    Effect::new(move || {
        let query = run_query.get();
        if engine.recorded.with_untracked(Option::is_some) || ctl.state.with_untracked(|s| s.trace.is_some()) {
            return; // read-only: the what-ifs go through `drive_recorded`
        }
        let want = ctl.state.with_untracked(Want::of);
        let ready = engine.loaded.with(|l| l.as_ref().is_some_and(|l| want.is(l)));
        // Not ready, or the run that stopped the engine: it waits for a person's Run.
        if !ready || engine.held_back(&query.0) {
            return;
        }
        let ticket = pending.get_value() + 1;
        pending.set_value(ticket);
        let delay = ctl.delay.get_value();
        if delay == 0 {
            engine.run(query);
        } else {
            set_timeout(
                move || {
                    if pending.get_value() == ticket {
                        engine.run(query);
                    }
                },
                std::time::Duration::from_millis(u64::from(delay)),
            );
        }
    });
}

/// The read-only mode: a link's `trace=` opens that trace; while a recorded trace is on show,
/// a change of router, interventions or seed re-routes its probabilities (a what-if) instead of
/// running a model.
fn drive_recorded(ctl: Ctl) {
    let engine = ctl.engine;
    Effect::new(move |before: Option<Option<String>>| {
        let url = ctl.state.with(|s| s.trace.clone());
        if let Some(u) = url.clone().filter(|_| before.as_ref() != Some(&url)) {
            engine.open_trace_url(u);
        }
        url
    });
    let what_if_key = |s: &PlaygroundState| {
        let only = PlaygroundState {
            router: s.router.clone(),
            interventions: s.interventions.clone(),
            seed: s.seed,
            ..PlaygroundState::default()
        };
        only.to_query()
    };
    // The what-ifs start from the recorded routing: a newly opened trace selects the router it
    // matches, and that is the baseline nothing is re-routed for.
    let baseline = StoredValue::new(String::new());
    Effect::new(move |before: Option<bool>| {
        let router = engine.recorded.with(|r| r.as_ref().map(|r| r.router.clone()));
        let open = router.is_some();
        if let Some(router) = router.filter(|_| before != Some(true)) {
            ctl.edit(
                |s| {
                    s.router = params::router_from(&router);
                    s.interventions = Default::default();
                },
                Change::Outside,
            );
            baseline.set_value(ctl.state.with_untracked(what_if_key));
        }
        open
    });
    let what_if = Memo::new(move |_| ctl.state.with(what_if_key));
    Effect::new(move || {
        let key = what_if.get();
        if engine.recorded.with_untracked(Option::is_some) && baseline.get_value() != key {
            baseline.set_value(key);
            engine.reroute(ctl.state.with_untracked(|s| run_query(s).0));
        }
    });
}

/// Back and forward restore the state from the URL.
fn follow_history(ctl: Ctl) {
    let on_pop = Closure::<dyn FnMut()>::new(move || {
        let (state, problems) = state_from(&current_query());
        ctl.problems.set(problems);
        ctl.delay.set_value(0);
        ctl.state.set(state);
    });
    let _ = window().add_event_listener_with_callback("popstate", on_pop.as_ref().unchecked_ref());
    on_pop.forget();
}

use wasm_bindgen::JsCast;

/// The playground page.
#[component]
pub fn Playground() -> impl IntoView {
    let (initial, problems) = state_from(&current_query());
    if !problems.is_empty() {
        // The address bar shows what is actually used; the link as opened stays one step back
        // in history (nothing a person typed or was sent is lost).
        write_url(&initial.to_query(), true);
    }
    let initial_backend = initial.backend;
    let engine = EngineSignals::start(client::EngineKind::for_backend(initial_backend));
    let state = RwSignal::new(initial);
    // A link may name a layer the loaded model does not have: the views show its last one.
    let n_layers = move || match engine.recorded.with(Option::is_some) {
        // A recorded trace has its own layers, whatever model is loaded.
        true => engine.result.with(|r| r.as_ref().map_or(usize::MAX, |r| r.trace.layers.len())),
        false => engine.loaded.with(|l| l.as_ref().map_or(usize::MAX, |l| l.n_layers)),
    };
    let ctl = Ctl {
        state,
        layer: Memo::new(move |_| state.with(|s| s.view.layer).min(n_layers().saturating_sub(1))),
        panel: Memo::new(move |_| state.with(|s| s.view.panel)),
        token: Memo::new(move |_| state.with(|s| s.view.token)),
        highlight: RwSignal::new(None),
        backend: backend::BackendStatus::start(initial_backend),
        problems: RwSignal::new(problems),
        engine,
        delay: StoredValue::new(0),
        dragging: StoredValue::new(false),
    };
    provide_context(ctl);
    theme::install();
    drive_engine(ctl);
    follow_history(ctl);
    embed::listen(ctl);
    tour::listen(ctl);
    backend::calibrate_when_ready(ctl);
    backend::follow_forced_backend(ctl);
    let embed = Memo::new(move |_| state.with(|s| s.view.embed));
    test_hooks::install(ctl.engine);
    view! {
        {move || match embed.get() {
            Some(panel) => view! { <embed::Embedded panel=panel /> }.into_any(),
            None => view! { <Full /> }.into_any(),
        }}
    }
}

/// The whole playground (everything but embed mode).
#[component]
fn Full() -> impl IntoView {
    // A recorded trace has no model to type a prompt to: the whole prompt panel is off.
    let recorded = expect_context::<Ctl>().engine.recorded;
    let read_only = move || recorded.with(Option::is_some);
    // What the page says about the engine, the link and the checkpoint is a landmark of its own
    // (a labelled region), so that nothing on the page is outside one.
    view! {
        <div class="app">
            <a class="skip" href="#views" data-testid="skip">"Skip to the views"</a>
            <controls::Header />
            <section class="status" aria-label="engine and checkpoint status">
                <controls::BackendNotice />
                <controls::Banner />
                <controls::LoadStatus />
            </section>
            <div class="layout">
                <aside class="side">
                    <open_model::ReadOnly />
                    <fieldset class="bare" disabled=read_only>
                        <controls::PromptPanel />
                    </fieldset>
                    <controls::RouterPanel />
                </aside>
                <main class="views" id="views" tabindex="-1">
                    <tokens::TokenViews />
                    <views::ViewTabs />
                </main>
                <tour::TourCard />
            </div>
            <footer class="foot">
                "Switchyard — a real MoE, trained by us, running in your browser. "
                <a href="#backend-check" target="_blank">"Backend check"</a>
            </footer>
        </div>
    }
}
