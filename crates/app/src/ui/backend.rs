//! Where the model runs. The page asks the browser for a WebGPU adapter itself (so it knows
//! before starting anything whether the WebGPU engine could run at all); `backend=` in the link
//! forces a path. The CPU engine is what every visit starts; the WebGPU engine module is only
//! ever downloaded to run on WebGPU.

use leptos::prelude::*;
use switchyard_state::Backend;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

/// What the page knows about the backends (a context value beside [`super::Ctl`]).
#[derive(Debug, Clone, Copy)]
pub struct BackendStatus {
    /// The WebGPU adapter's description, or why there is none (`None` while asking).
    pub adapter: RwSignal<Option<Result<String, String>>>,
    /// The choice the link made.
    pub forced: Backend,
}

fn get(v: &JsValue, key: &str) -> Option<JsValue> {
    js_sys::Reflect::get(v, &key.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// A WebGPU adapter's description, or why the browser has none.
async fn probe() -> Result<String, String> {
    let window = web_sys::window().ok_or("no window")?;
    let Some(gpu) = get(&window.navigator(), "gpu") else {
        return Err("this browser exposes no navigator.gpu (WebGPU is off or unsupported)".into());
    };
    let request = get(&gpu, "requestAdapter").ok_or("navigator.gpu has no requestAdapter")?;
    let promise = js_sys::Function::from(request).call0(&gpu).map_err(|e| format!("{e:?}"))?;
    let adapter = JsFuture::from(js_sys::Promise::from(promise)).await.map_err(|e| format!("{e:?}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("the browser supports WebGPU but offered no adapter (no usable GPU, or WebGPU is blocked)".into());
    }
    let info = get(&adapter, "info");
    let field = |k: &str| info.as_ref().and_then(|i| get(i, k)).and_then(|v| v.as_string()).filter(|s| !s.is_empty());
    let words: Vec<String> =
        ["vendor", "architecture", "device", "description"].iter().filter_map(|k| field(k)).collect();
    let fallback = get(&adapter, "isFallbackAdapter")
        .or_else(|| info.as_ref().and_then(|i| get(i, "isFallbackAdapter")))
        .is_some_and(|v| v.is_truthy());
    let name = if words.is_empty() { "a WebGPU adapter".to_string() } else { words.join(" ") };
    Ok(if fallback { format!("{name} (a software fallback adapter)") } else { name })
}

impl BackendStatus {
    /// Starts asking for an adapter (skipped when the link forces the CPU: nothing about WebGPU
    /// is touched then).
    pub fn start(forced: Backend) -> Self {
        let adapter = RwSignal::new(None);
        if forced == Backend::Cpu {
            adapter.set(Some(Err("backend=cpu in the link".into())));
        } else {
            leptos::task::spawn_local(async move { adapter.set(Some(probe().await)) });
        }
        Self { adapter, forced }
    }

    /// Why the page runs on the CPU, for the notice under the header (`None` while unknown).
    pub fn cpu_reason(self) -> Option<String> {
        match self.adapter.get()? {
            Err(reason) => Some(reason),
            Ok(adapter) if self.forced != Backend::Webgpu => {
                Some(format!("WebGPU is available ({adapter}); add backend=webgpu to the link to run on it"))
            }
            Ok(_) => None,
        }
    }
}
