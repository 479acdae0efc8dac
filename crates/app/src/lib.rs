//! The Switchyard playground page (Leptos, client-side rendered, compiled to wasm).
//!
//! This module is the UI only: it never sees the model. The engine runs in a Web Worker started
//! from its own wasm module (`crates/engine-cpu`, or `crates/engine-webgpu` to run on WebGPU);
//! the two talk through `switchyard-protocol` ([`ui::client`] is the page's side).

pub mod backend_check;
pub mod ui;

use leptos::prelude::*;
use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point (runs once when the module starts): mounts the UI.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

/// The page root: the playground, or the backend check at `#backend-check`.
#[component]
pub fn App() -> impl IntoView {
    let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
    if hash == "#backend-check" {
        let engine = ui::EngineSignals::start(ui::client::EngineKind::WebGpu);
        engine.check();
        let report = Signal::derive(move || engine.check.get());
        view! { <backend_check::BackendCheck report=report /> }.into_any()
    } else {
        view! { <ui::Playground /> }.into_any()
    }
}
