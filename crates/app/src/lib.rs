//! The Switchyard playground (Leptos, client-side rendered, compiled to wasm).
//!
//! Two programs share this library: the page (`switchyard-app`: the UI, [`ui`]) and the
//! engine (`switchyard-engine`: a Web Worker that owns the model, [`engine`]). They talk through
//! [`protocol`]. The page never runs the model, so inference never blocks it.

pub mod backend_check;
pub mod engine;
pub mod protocol;
pub mod ui;

use leptos::prelude::*;

/// The page root: the playground, or the backend check at `#backend-check`.
#[component]
pub fn App() -> impl IntoView {
    let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
    if hash == "#backend-check" {
        let engine = ui::EngineSignals::start();
        engine.check();
        let report = Signal::derive(move || engine.check.get());
        view! { <backend_check::BackendCheck report=report /> }.into_any()
    } else {
        view! { <ui::Playground /> }.into_any()
    }
}
