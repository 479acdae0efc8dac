//! The Switchyard playground (Leptos, client-side rendered, compiled to wasm).
//!
//! One wasm module, two roles: in the page it mounts the UI ([`ui`]); in the Web Worker the page
//! starts from the same module it runs the engine that owns the model ([`engine`]). They talk
//! through [`protocol`]. The page never runs the model, so inference never blocks it.

pub mod backend_check;
pub mod engine;
pub mod protocol;
pub mod ui;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::wasm_bindgen;

/// Runs the module's static constructors (cubecl registers its kernels with `inventory`).
/// Calling them from an export tells the linker this module is a "reactor"; otherwise it treats
/// it as a "command" and re-runs every constructor at the top of every call from JS into wasm,
/// which the profiler showed costing more than the model itself. `inventory`'s constructors are
/// idempotent, so running them again is harmless.
#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
fn run_constructors() {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }
    // SAFETY: the linker-synthesised constructor list; called once, before anything else runs.
    unsafe { __wasm_call_ctors() }
}

/// Entry point (runs once when the module starts): the engine in a worker, the UI in a page.
#[wasm_bindgen(start)]
pub fn start() {
    #[cfg(target_family = "wasm")]
    run_constructors();
    console_error_panic_hook::set_once();
    if js_sys::global().dyn_ref::<web_sys::DedicatedWorkerGlobalScope>().is_some() {
        engine::start();
    } else {
        leptos::mount::mount_to_body(App);
    }
}

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
