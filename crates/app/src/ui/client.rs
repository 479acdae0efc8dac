//! The page's side of the engine: one Web Worker, the signals its replies feed, and a restart
//! on the CPU backend when the worker dies (a lost GPU takes the worker down with it).

use std::cell::RefCell;
use std::sync::Arc;

use leptos::prelude::*;
use switchyard_trace::{Comparison, DomainShares, Trace};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{ErrorEvent, MessageEvent, Worker};

use crate::backend_check::Report;
use crate::protocol::{Loaded, Reply, Request};

/// Starts this same wasm module in a module worker. trunk names the files with a content hash,
/// so their URLs are read from the `modulepreload` / `preload` links it puts in the page.
fn start_worker() -> Result<Worker, String> {
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let href = |selector: &str| -> Result<String, String> {
        let link = document.query_selector(selector).ok().flatten().ok_or(format!("the page has no {selector}"))?;
        // The `href` property is the absolute URL (a Blob worker has no base to resolve against).
        js_sys::Reflect::get(&link, &"href".into()).ok().and_then(|v| v.as_string()).ok_or("no href".into())
    };
    let js = href(r#"link[rel="modulepreload"][href$=".js"]"#)?;
    let wasm = href(r#"link[rel="preload"][href$=".wasm"]"#)?;
    // A Blob worker has no base URL of its own: give it the page's, for `assets/`.
    let base = js_sys::Reflect::get(&document, &"baseURI".into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    let source = format!(
        "self.SWITCHYARD_BASE = new URL('.', {base:?}).href;\nimport init from {js:?};\nawait init({{ module_or_path: {wasm:?} }});\n"
    );
    let url = super::export::object_url(&js_sys::Array::of1(&source.into()), "text/javascript")
        .map_err(|e| format!("{e:?}"))?;
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"type".into(), &"module".into());
    let _ = js_sys::Reflect::set(&options, &"name".into(), &"switchyard-engine".into());
    let worker = super::export::construct("Worker", &js_sys::Array::of2(&url.into(), &options));
    Ok(worker.map_err(|e| format!("{e:?}"))?.unchecked_into())
}

/// Download progress of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// File name under `assets/`.
    pub file: String,
    /// Bytes so far.
    pub loaded: u64,
    /// Total bytes when known.
    pub total: Option<u64>,
}

/// A finished run as the views draw it.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The trace.
    pub trace: Arc<Trace>,
    /// Engine milliseconds.
    pub run_ms: f64,
    /// Decode speed, when tokens were generated.
    pub tokens_per_s: Option<f64>,
    /// Milliseconds from the request leaving the page to the reply arriving.
    pub round_trip_ms: f64,
    /// Text of SCMoE candidate tokens and A/B next tokens.
    pub candidate_text: Arc<std::collections::BTreeMap<u32, String>>,
    /// The router A/B (compare view), or why B could not run.
    pub comparison: Option<Result<Arc<Comparison>, String>>,
    /// Domain × expert shares (domain view), or why they could not be computed.
    pub domains: Option<Result<Arc<DomainShares>, String>>,
}

/// Everything the engine reports, as signals (a context newtype).
#[derive(Debug, Clone, Copy)]
pub struct EngineSignals {
    /// Current download.
    pub progress: RwSignal<Option<Progress>>,
    /// The loaded checkpoint.
    pub loaded: RwSignal<Option<Loaded>>,
    /// A checkpoint that is being loaded.
    pub loading: RwSignal<Option<String>>,
    /// Why loading failed.
    pub load_error: RwSignal<Option<String>>,
    /// The latest run's result.
    pub result: RwSignal<Option<RunResult>>,
    /// Why the latest run failed.
    pub run_error: RwSignal<Option<String>>,
    /// A run is in flight.
    pub running: RwSignal<bool>,
    /// Tokens of the generation in progress.
    pub streaming: RwSignal<Vec<String>>,
    /// The engine stopped and was restarted (why).
    pub crashed: RwSignal<Option<String>>,
    /// The backend check's report.
    pub check: RwSignal<Option<Report>>,
}

struct Inner {
    worker: Worker,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
    latest: u64,
    sent_at: f64,
    /// The last checkpoint asked for and the last run's query, replayed by a new worker.
    last_checkpoint: Option<String>,
    last_query: Option<String>,
    webgpu: bool,
    /// Requests waiting for the worker to start listening (`None` once it has).
    queue: Option<Vec<String>>,
}

thread_local! {
    static CLIENT: RefCell<Option<Inner>> = const { RefCell::new(None) };
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

impl EngineSignals {
    /// Starts the engine worker and returns the signals it feeds.
    pub fn start() -> Self {
        let signals = Self {
            progress: RwSignal::new(None),
            loaded: RwSignal::new(None),
            loading: RwSignal::new(None),
            load_error: RwSignal::new(None),
            result: RwSignal::new(None),
            run_error: RwSignal::new(None),
            running: RwSignal::new(false),
            streaming: RwSignal::new(Vec::new()),
            crashed: RwSignal::new(None),
            check: RwSignal::new(None),
        };
        signals.spawn(true);
        signals
    }

    fn spawn(self, webgpu: bool) {
        let worker = match start_worker() {
            Ok(w) => w,
            Err(e) => {
                self.load_error.set(Some(format!("the engine (a Web Worker) could not start: {e}")));
                return;
            }
        };
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(text) = event.data().as_string() {
                match serde_json::from_str::<Reply>(&text) {
                    Ok(reply) => self.receive(reply),
                    Err(e) => self.run_error.set(Some(format!("unreadable reply from the engine: {e}"))),
                }
            }
        });
        let on_error = Closure::<dyn FnMut(ErrorEvent)>::new(move |event: ErrorEvent| {
            event.prevent_default();
            self.restart(event.message());
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let previous = CLIENT.with(|c| c.borrow_mut().take());
        let (latest, last_checkpoint, last_query) = previous.map_or((0, None, None), |p| {
            p.worker.terminate();
            (p.latest, p.last_checkpoint, p.last_query)
        });
        CLIENT.with(|c| {
            *c.borrow_mut() = Some(Inner {
                worker,
                _on_message: on_message,
                _on_error: on_error,
                latest,
                sent_at: now_ms(),
                last_checkpoint: None,
                last_query: None,
                webgpu,
                queue: Some(Vec::new()),
            });
        });
        // Replay what the dead worker was doing, on the CPU this time.
        if let Some(checkpoint) = last_checkpoint {
            self.load(&checkpoint);
        }
        if let Some(query) = last_query {
            self.run(query);
        }
    }

    /// The worker died (a panic, a lost device): start a new one on the CPU and replay.
    fn restart(self, why: String) {
        self.crashed.set(Some(format!(
            "The engine stopped ({why}). It was restarted on the CPU backend; your prompt and settings are kept."
        )));
        self.running.set(false);
        self.spawn(false);
    }

    fn send(request: &Request) {
        CLIENT.with(|c| {
            if let Some(inner) = c.borrow_mut().as_mut() {
                match inner.queue.as_mut() {
                    Some(queue) => queue.push(request.to_json()),
                    None => {
                        let _ = inner.worker.post_message(&request.to_json().into());
                    }
                }
            }
        });
    }

    /// The worker listens now: send what waited.
    fn started() {
        CLIENT.with(|c| {
            if let Some(inner) = c.borrow_mut().as_mut() {
                for json in inner.queue.take().unwrap_or_default() {
                    let _ = inner.worker.post_message(&json.into());
                }
            }
        });
    }

    /// Loads a checkpoint (the views keep the old result until the new one runs).
    pub fn load(self, checkpoint: &str) {
        let webgpu = CLIENT.with(|c| {
            let mut c = c.borrow_mut();
            let inner = c.as_mut();
            let webgpu = inner.as_ref().is_none_or(|i| i.webgpu);
            if let Some(inner) = inner {
                inner.last_checkpoint = Some(checkpoint.into());
            }
            webgpu
        });
        self.loading.set(Some(checkpoint.into()));
        self.load_error.set(None);
        self.progress.set(None);
        Self::send(&Request::Load { checkpoint: checkpoint.into(), webgpu });
    }

    /// Runs a state (its query); supersedes every earlier run.
    pub fn run(self, query: String) {
        let request = CLIENT.with(|c| {
            let mut c = c.borrow_mut();
            let inner = c.as_mut()?;
            inner.latest += 1;
            inner.sent_at = now_ms();
            inner.last_query = Some(query.clone());
            Some(Request::Run { id: inner.latest, query })
        });
        if let Some(request) = request {
            self.running.set(true);
            self.streaming.set(Vec::new());
            Self::send(&request);
        }
    }

    /// Asks for the backend check.
    pub fn check(self) {
        Self::send(&Request::Check);
    }

    /// Test hook: makes the worker fail as a lost GPU would.
    pub fn crash(self) {
        Self::send(&Request::Crash);
    }

    fn is_latest(id: u64) -> Option<f64> {
        CLIENT.with(|c| c.borrow().as_ref().filter(|i| i.latest == id).map(|i| now_ms() - i.sent_at))
    }

    fn receive(self, reply: Reply) {
        match reply {
            Reply::Started => Self::started(),
            Reply::Progress { file, loaded, total } => self.progress.set(Some(Progress { file, loaded, total })),
            Reply::Ready(info) => {
                self.loading.set(None);
                self.load_error.set(None);
                self.loaded.set(Some(info));
            }
            Reply::LoadFailed { checkpoint, message } => {
                self.loading.set(None);
                self.load_error.set(Some(format!("Could not load checkpoint `{checkpoint}`: {message}")));
            }
            Reply::Token { id, text, .. } => {
                if Self::is_latest(id).is_some() {
                    self.streaming.update(|s| s.push(text));
                }
            }
            Reply::Traced { id, trace, run_ms, tokens_per_s, candidate_text, comparison, domains } => {
                // A stale result is never drawn.
                if let Some(round_trip_ms) = Self::is_latest(id) {
                    self.running.set(false);
                    self.run_error.set(None);
                    self.result.set(Some(RunResult {
                        trace: Arc::from(trace),
                        run_ms,
                        tokens_per_s,
                        round_trip_ms,
                        candidate_text: Arc::new(candidate_text.into_iter().collect()),
                        comparison: comparison.map(|c| c.map(Arc::from)),
                        domains: domains.map(|d| d.map(Arc::new)),
                    }));
                }
            }
            Reply::RunFailed { id, message } => {
                if id == 0 || Self::is_latest(id).is_some() {
                    self.running.set(false);
                    self.run_error.set(Some(message));
                }
            }
            Reply::Checked(report) => self.check.set(Some(*report)),
        }
    }
}
