//! The training module: the worker of the Train view, which the page starts only when that
//! view opens (the playground's first paint never pays for it). Its whole job is to start the
//! trainer in the worker it runs in.

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point: the trainer starts listening for the page's requests.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    switchyard_engine::start_trainer();
}
