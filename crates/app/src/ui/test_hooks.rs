//! Hooks for the browser tests, installed only in a browser under automation
//! (`navigator.webdriver`, which WebDriver and the DevTools protocol set and no web page can):
//! the page a person opens has none of them.
//!
//! - `switchyardCrashEngine()`: the engine worker panics, as when a lost GPU takes it down.
//! - `switchyardCrashOnRun(bool)`: from now on every run request also kills the worker, as a
//!   link that crashes the engine would.

use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::Closure;

use super::EngineSignals;

/// Whether this browser is driven by automation.
fn automated() -> bool {
    web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w.navigator(), &"webdriver".into()).ok())
        .is_some_and(|v| v.as_bool() == Some(true))
}

fn expose(name: &str, f: &JsValue) {
    if let Some(w) = web_sys::window() {
        let _ = js_sys::Reflect::set(&w, &name.into(), f);
    }
}

/// Installs the hooks when the browser is automated.
pub fn install(engine: EngineSignals) {
    if !automated() {
        return;
    }
    let crash = Closure::<dyn Fn()>::new(move || engine.crash());
    expose("switchyardCrashEngine", crash.as_ref());
    crash.forget();
    let crash_on_run = Closure::<dyn Fn(bool)>::new(move |on: bool| engine.crash_on_run(on));
    expose("switchyardCrashOnRun", crash_on_run.as_ref());
    crash_on_run.forget();
}
