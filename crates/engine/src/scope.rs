//! The worker's global scope: fetch, time, `navigator.gpu`, yielding to the event loop.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, Response};

/// The dedicated worker's global scope.
pub fn global() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// A JS error as text for a person.
pub fn js_text(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The URL of a file next to the page (`assets/...`). The engine's worker script sits beside
/// the page's `index.html`, so a relative URL resolves the same way from the worker.
pub fn url(relative: &str) -> String {
    relative.to_string()
}

/// Milliseconds since the worker started.
pub fn now_ms() -> f64 {
    global().performance().map_or(0.0, |p| p.now())
}

/// A `performance.mark` on the worker's timeline: the phases of a load and a run, for
/// `tests/browser/profile.mjs` (which reads them) and the browser's performance panel.
pub fn mark(name: &str) {
    if let Some(p) = global().performance() {
        let _ = p.mark(name);
    }
}

/// `fetch(url)`, failing on network errors and on HTTP errors.
pub async fn fetch(url: &str) -> Result<Response, String> {
    let response: Response = JsFuture::from(global().fetch_with_str(url))
        .await
        .map_err(|e| format!("{url}: the download failed ({})", js_text(&e)))?
        .dyn_into()
        .map_err(|e| js_text(&e))?;
    if !response.ok() {
        return Err(format!("{url}: the server answered HTTP {} {}", response.status(), response.status_text()));
    }
    Ok(response)
}

/// The whole body of a response.
pub async fn body_bytes(response: &Response) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| js_text(&e))?).await.map_err(|e| js_text(&e))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Why WebGPU cannot be asked for an adapter in this worker, if it cannot.
#[cfg(feature = "webgpu")]
pub fn webgpu_missing() -> Option<String> {
    let nav = js_sys::Reflect::get(&global(), &"navigator".into()).ok()?;
    let gpu = js_sys::Reflect::get(&nav, &"gpu".into()).ok()?;
    (gpu.is_undefined() || gpu.is_null())
        .then(|| "this browser exposes no navigator.gpu (WebGPU is off or unsupported)".to_string())
}

/// Lets the event loop run, so newer requests are seen: a message to ourselves through a
/// `MessageChannel` is one macrotask, and unlike `setTimeout(0)` it is never clamped to 4 ms
/// (browsers clamp timers nested five deep, which a decode loop that yields every 40 ms is).
pub async fn yield_now() {
    let Ok(channel) = web_sys::MessageChannel::new() else { return };
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        channel.port1().set_onmessage(Some(&resolve));
    });
    if channel.port2().post_message(&JsValue::UNDEFINED).is_ok() {
        let _ = JsFuture::from(promise).await;
    }
    channel.port1().set_onmessage(None);
}

/// Sends a reply to the page.
pub fn post(reply: &switchyard_protocol::Reply) {
    post_json(&reply.to_json());
}

/// Sends a reply already written as JSON.
pub fn post_json(json: &str) {
    let _ = global().post_message(&JsValue::from_str(json));
}
