//! Link the wasm module without its name section (function names for stack traces): 6.8 MB raw,
//! 1.2 MB gzip of a 6.3 MB download. Only this crate's final link changes, so dependencies are
//! not rebuilt; native builds (tests, clippy) keep their symbols.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=--strip-all");
        // wasm-bindgen reads the enabled wasm features from this section.
        println!("cargo:rustc-link-arg-cdylib=--keep-section=target_features");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
