//! The WebGPU engine module (burn's wgpu backend and flex): loaded only when the page runs on
//! WebGPU, or measures whether it should. Its whole job is to start the engine in its worker.

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point: the engine starts listening for the page's requests.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    switchyard_engine::start();
}
