//! The Switchyard playground (Leptos, client-side rendered, compiled to wasm).
//!
//! For now it shows that the model runs in the page: one forward pass on the CPU backend and
//! one on WebGPU, both results and their agreement. The full playground UI comes later.

mod backend_check;

pub use backend_check::App;
