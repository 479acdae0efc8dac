//! The CPU engine module (burn's flex backend only): what every visit loads. Its whole job is to
//! start the engine in the worker it runs in.

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point: the engine starts listening for the page's requests.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    switchyard_engine::start();
}
