//! The engine worker's entry point; the engine lives in the library.

fn main() {
    console_error_panic_hook::set_once();
    switchyard_app::engine::start();
}
