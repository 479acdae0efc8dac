//! Link the wasm module without its name section (function names for stack traces): 6.8 MB raw,
//! 1.2 MB gzip of a 6.3 MB download. Only this crate's final link changes, so dependencies are
//! not rebuilt; native builds (tests, clippy) keep their symbols.

fn main() {
    // SWITCHYARD_KEEP_NAMES=1 keeps them, for a size profile (twiggy top).
    let keep = std::env::var_os("SWITCHYARD_KEEP_NAMES").is_some();
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") && !keep {
        println!("cargo:rustc-link-arg-cdylib=--strip-all");
        // wasm-bindgen reads the enabled wasm features from this section.
        println!("cargo:rustc-link-arg-cdylib=--keep-section=target_features");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SWITCHYARD_KEEP_NAMES");
}
