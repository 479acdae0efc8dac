//! Where the model runs, chosen by measurement. The page asks the browser for a WebGPU adapter
//! itself; `backend=cpu|webgpu` in the link forces a path. Otherwise the CPU engine starts (it
//! paints the first views), and when the browser has an adapter, the WebGPU engine is started
//! beside it on the same checkpoint, both are timed on the state's work (a forward pass of its
//! prompt, decoding steps), and the page moves to WebGPU only if it is faster for what the state
//! asks (its prompt and generation). A visit without an adapter, or with `backend=cpu`, never
//! downloads the WebGPU engine.

use gloo_events::EventListener;
use leptos::prelude::*;
use switchyard_protocol::{Reply, Request, Timing};
use switchyard_state::Backend;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::client::{EngineKind, start_worker};
use super::{Ctl, run_query};

/// The outcome of a calibration: both timings and the choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The CPU engine's timing.
    pub cpu: Timing,
    /// The WebGPU engine's, or why it could not run.
    pub webgpu: Result<Timing, String>,
    /// Generated tokens the estimate counted.
    pub generate: usize,
    /// The engine chosen.
    pub chosen: EngineKind,
}

impl Calibration {
    /// One line for the header: both estimates and the reason.
    pub fn summary(&self) -> String {
        let cpu = self.cpu.estimate_ms(self.generate);
        match &self.webgpu {
            Ok(gpu) => {
                let g = gpu.estimate_ms(self.generate);
                let (faster, by) =
                    if self.chosen == EngineKind::WebGpu { ("WebGPU", cpu / g) } else { ("the CPU", g / cpu) };
                format!(
                    "measured on this model: CPU {cpu:.0} ms, WebGPU {g:.0} ms per run (read-backs per token on WebGPU: {}): {faster} is {by:.1}× faster here",
                    gpu.read_backs_per_token
                )
            }
            Err(e) => format!("measured on this model: CPU {cpu:.0} ms per run; WebGPU could not run ({e})"),
        }
    }
}

/// What the page knows about the backends (a context value beside [`super::Ctl`]).
#[derive(Debug, Clone, Copy)]
pub struct BackendStatus {
    /// The WebGPU adapter's description, or why there is none (`None` while asking).
    pub adapter: RwSignal<Option<Result<String, String>>>,
    /// The choice the link made.
    pub forced: Backend,
    /// The measurement (auto with an adapter), once done.
    pub calibration: RwSignal<Option<Calibration>>,
    /// A calibration is running.
    pub calibrating: RwSignal<bool>,
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
        Self { adapter, forced, calibration: RwSignal::new(None), calibrating: RwSignal::new(false) }
    }

    /// Why the page runs on the CPU, for the notice under the header (`None` while unknown).
    pub fn cpu_reason(self) -> Option<String> {
        if let Some(c) = self.calibration.get() {
            return Some(c.summary());
        }
        match self.adapter.get()? {
            Err(reason) => Some(reason),
            Ok(adapter) if self.calibrating.get() => Some(format!("measuring WebGPU ({adapter}) against it")),
            Ok(adapter) => Some(format!("WebGPU is available ({adapter})")),
        }
    }
}

/// With `backend=auto` and an adapter: after the first finished run, times both engines once on
/// the state's work and moves to WebGPU if it is faster.
pub fn calibrate_when_ready(ctl: Ctl) {
    let status = ctl.backend;
    if status.forced != Backend::Auto {
        return;
    }
    let started = StoredValue::new(false);
    Effect::new(move || {
        let adapter_ok = status.adapter.with(|a| matches!(a, Some(Ok(_))));
        let ran = ctl.engine.result.with(Option::is_some);
        if !adapter_ok || !ran || started.get_value() {
            return;
        }
        started.set_value(true);
        status.calibrating.set(true);
        let (query, _) = ctl.state.with_untracked(run_query);
        ctl.engine.calibrate(query.clone());
        let webgpu = RwSignal::new(None::<Result<Timing, String>>);
        time_webgpu_engine(ctl, query, webgpu);
        Effect::new(move || {
            let (Some(cpu), Some(gpu)) = (ctl.engine.calibration.get(), webgpu.get()) else { return };
            status.calibrating.set(false);
            let Ok(cpu) = cpu else { return };
            let generate = ctl.state.with_untracked(|s| s.generate);
            let faster = gpu.as_ref().is_ok_and(|g| g.estimate_ms(generate) < cpu.estimate_ms(generate));
            let chosen = if faster { EngineKind::WebGpu } else { EngineKind::Cpu };
            status.calibration.set(Some(Calibration { cpu, webgpu: gpu, generate, chosen }));
            ctl.engine.switch(chosen);
        });
    });
}

/// A state whose `backend=cpu|webgpu` changes (the picker, back and forward, a postMessage)
/// moves the engine to that path; `auto` keeps the engine that runs. Only a change counts: the
/// first engine already follows the link, and after a crash the CPU engine stays.
pub fn follow_forced_backend(ctl: Ctl) {
    let backend = Memo::new(move |_| ctl.state.with(|s| s.backend));
    Effect::new(move |before: Option<Backend>| {
        let now = backend.get();
        if before.is_some_and(|b| b != now) {
            match now {
                Backend::Cpu => ctl.engine.switch(EngineKind::Cpu),
                Backend::Webgpu => ctl.engine.switch(EngineKind::WebGpu),
                Backend::Auto => {}
            }
        }
        now
    });
}

/// Starts the WebGPU engine in a worker of its own, loads the state's checkpoint there, times
/// it and stops it; the timing (or why there is none) lands in `out`.
fn time_webgpu_engine(ctl: Ctl, query: String, out: RwSignal<Option<Result<Timing, String>>>) {
    let worker = match start_worker(EngineKind::WebGpu) {
        Ok(w) => w,
        Err(e) => return out.set(Some(Err(e))),
    };
    let want = ctl.state.with_untracked(super::client::Want::of);
    let post = {
        let worker = worker.clone();
        move |r: &Request| {
            let _ = worker.post_message(&r.to_json().into());
        }
    };
    let done = {
        let worker = worker.clone();
        move |result: Result<Timing, String>| {
            worker.terminate();
            out.set(Some(result));
        }
    };
    let listener = EventListener::new(&worker, "message", move |event| {
        let text = event.dyn_ref::<web_sys::MessageEvent>().and_then(|m| m.data().as_string()).unwrap_or_default();
        match serde_json::from_str::<Reply>(&text) {
            Ok(Reply::Started) => {
                // A folder opened from files lives in the first engine only: the timing
                // worker loads by name and fails, and the page stays on the CPU.
                post(&Request::Load {
                    id: 1,
                    checkpoint: want.checkpoint.clone(),
                    webgpu: true,
                    hash: want.hash.clone(),
                    url: want.url.clone(),
                });
                post(&Request::Calibrate { id: 1, query: query.clone() });
            }
            Ok(Reply::LoadFailed { message, .. }) => done(Err(message)),
            Ok(Reply::Ready { loaded, .. }) if loaded.backend != "webgpu" => {
                done(Err(loaded.notice.unwrap_or_else(|| "the WebGPU engine fell back to the CPU".into())))
            }
            Ok(Reply::Calibrated { timing, .. }) => done(timing),
            _ => {}
        }
    });
    listener.forget();
    let error = EventListener::new(&worker, "error", move |_| out.set(Some(Err("the WebGPU engine stopped".into()))));
    error.forget();
}
