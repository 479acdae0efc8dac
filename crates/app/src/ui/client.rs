//! The page's side of the engine: one Web Worker, the signals its replies feed, and restarts on
//! the CPU backend when the worker dies (a lost GPU takes the worker down with it).
//!
//! Restarts are bounded: at most [`MAX_RESTARTS`] in a row, with a growing pause, and a run
//! that was in flight when the worker died is replayed once only. A link that stops the engine
//! again is not run again by itself (no restart loop): the page says so and offers a manual Run.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use leptos::prelude::*;
use switchyard_protocol::trace::{Comparison, DomainShares, Trace};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{ErrorEvent, MessageEvent, Worker};

use switchyard_protocol::backend::Report;
use switchyard_protocol::recorded::Recorded;
use switchyard_protocol::{Extras, Loaded, Reply, Request, Timing};

/// Automatic restarts in a row (without a finished run between them) before the page stops
/// restarting the engine and asks.
pub const MAX_RESTARTS: u32 = 3;

/// Which engine module a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// `crates/engine-cpu`: burn's CPU backend only (what every visit loads).
    Cpu,
    /// `crates/engine-webgpu`: WebGPU (with the CPU backend beside it).
    WebGpu,
}

impl EngineKind {
    /// The engine a link's backend choice starts with.
    pub fn for_backend(backend: switchyard_state::Backend) -> Self {
        match backend {
            switchyard_state::Backend::Webgpu => Self::WebGpu,
            switchyard_state::Backend::Auto | switchyard_state::Backend::Cpu => Self::Cpu,
        }
    }

    /// The worker script trunk writes for the module (beside `index.html`).
    pub fn script(self) -> &'static str {
        match self {
            Self::Cpu => "switchyard-engine-cpu_loader.js",
            Self::WebGpu => "switchyard-engine-webgpu_loader.js",
        }
    }
}

/// Starts an engine module in a (classic) worker. Its script sits beside the page, so the URL
/// is relative and works under any sub-path.
pub fn start_worker(kind: EngineKind) -> Result<Worker, String> {
    let options = web_sys::WorkerOptions::new();
    options.set_name("switchyard-engine");
    let url = format!("{}?v={}", kind.script(), env!("CARGO_PKG_VERSION"));
    Worker::new_with_options(&url, &options).map_err(|e| format!("{e:?}"))
}

/// The checkpoint a state needs: its name, the hash prefix its link pins and, for `hf-url`,
/// the folder's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// Checkpoint name.
    pub checkpoint: String,
    /// Pinned hash prefix.
    pub hash: Option<String>,
    /// A Hugging Face folder's address (`hf-url` only).
    pub url: Option<String>,
}

impl Want {
    /// What `state` needs.
    pub fn of(state: &switchyard_state::PlaygroundState) -> Self {
        let url = (state.checkpoint == switchyard_protocol::HF_URL).then(|| state.hf.clone()).flatten();
        Self { checkpoint: state.checkpoint.clone(), hash: state.checkpoint_hash.clone(), url }
    }

    /// Whether `loaded` is this checkpoint (same name, pinned hash, address).
    pub fn is(&self, loaded: &Loaded) -> bool {
        loaded.checkpoint == self.checkpoint
            && self.hash.as_ref().is_none_or(|p| loaded.hash.starts_with(p.as_str()))
            && (self.url.is_none() || loaded.hf.as_ref().and_then(|h| h.url.as_ref()) == self.url.as_ref())
    }
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
    /// Host read-backs the engine made for the trace.
    pub read_backs: u64,
    /// Milliseconds from the request leaving the page to the reply arriving.
    pub round_trip_ms: f64,
    /// Text of SCMoE candidate tokens and A/B next tokens.
    pub candidate_text: Arc<std::collections::BTreeMap<u32, String>>,
    /// The router A/B (compare view), or why B could not run.
    pub comparison: Option<Result<Arc<Comparison>, String>>,
    /// Domain × expert shares (domain view), or why they could not be computed.
    pub domains: Option<Result<Arc<DomainShares>, String>>,
}

/// What the banner offers after the engine stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Nothing: the engine is restarting by itself.
    Nothing,
    /// Run the current settings again (the link that stopped the engine was not replayed).
    Run,
    /// Restart the engine (it stopped too often to restart by itself).
    Restart,
}

/// The engine stopped: what happened and what the page offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Stopped {
    /// For a person.
    pub message: String,
    /// The banner's button.
    pub offer: Offer,
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
    /// The engine stopped (why, and what the page offers).
    pub crashed: RwSignal<Option<Stopped>>,
    /// The backend check's report.
    pub check: RwSignal<Option<Report>>,
    /// This engine's calibration on the current state, or why it failed.
    pub calibration: RwSignal<Option<Result<Timing, String>>>,
    /// The result on show is a recorded trace (read-only mode): where it came from.
    pub recorded: RwSignal<Option<Recorded>>,
}

struct Inner {
    worker: Worker,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
    kind: EngineKind,
    /// Requests waiting for the worker to start listening (`None` once it has).
    queue: Option<Vec<String>>,
    /// Files waiting for the worker to start listening (sent before the queued requests).
    pending_files: Option<js_sys::Array>,
}

/// What outlives a worker: request ids, what to replay, and the crash history.
#[derive(Default)]
struct Session {
    latest_run: u64,
    /// The latest run that got an answer.
    answered: u64,
    sent_at: f64,
    latest_load: u64,
    /// The last checkpoint asked for and the last run's query.
    last_load: Option<Want>,
    /// The files of the Hugging Face folder opened in the page (a new worker gets them again).
    hf_files: Option<js_sys::Array>,
    last_query: Option<String>,
    last_extras: Extras,
    /// Worker deaths since the last finished run.
    crashes: u32,
    /// The query that was running when the worker last died.
    crashed_query: Option<String>,
    /// Test hook: kill the worker after every run request, as a link that crashes it would.
    crash_on_run: bool,
    /// A run was asked for while the engine was restarting: the new worker runs it.
    run_waiting: bool,
}

thread_local! {
    static CLIENT: RefCell<Option<Inner>> = const { RefCell::new(None) };
    static SESSION: RefCell<Session> = RefCell::new(Session::default());
}

fn session<R>(f: impl FnOnce(&mut Session) -> R) -> R {
    SESSION.with(|s| f(&mut s.borrow_mut()))
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

impl EngineSignals {
    /// Starts the engine worker of `kind` and returns the signals it feeds.
    pub fn start(kind: EngineKind) -> Self {
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
            calibration: RwSignal::new(None),
            recorded: RwSignal::new(None),
        };
        signals.spawn(kind, false);
        signals
    }

    /// A new worker of `kind`; it loads the last checkpoint again and, if `replay_run`, runs the
    /// last query.
    fn spawn(self, kind: EngineKind, replay_run: bool) {
        let worker = match start_worker(kind) {
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
                    Err(e) => {
                        // Never leave the page on "running…".
                        session(|s| s.answered = s.latest_run);
                        self.running.set(false);
                        self.run_error.set(Some(format!("the engine sent a reply this page could not read ({e})")));
                    }
                }
            }
        });
        let on_error = Closure::<dyn FnMut(ErrorEvent)>::new(move |event: ErrorEvent| {
            event.prevent_default();
            self.died(event.message());
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        if let Some(previous) = CLIENT.with(|c| c.borrow_mut().take()) {
            previous.worker.terminate();
        }
        CLIENT.with(|c| {
            *c.borrow_mut() = Some(Inner {
                worker,
                _on_message: on_message,
                _on_error: on_error,
                kind,
                queue: Some(Vec::new()),
                pending_files: None,
            });
        });
        // Replay what the dead worker was doing, on the CPU this time.
        let (load, query, waiting, files) = session(|s| {
            (s.last_load.clone(), s.last_query.clone(), std::mem::take(&mut s.run_waiting), s.hf_files.clone())
        });
        if let Some(files) = files {
            Self::post_files(&files);
        }
        if let Some(want) = load {
            self.load(&want);
        }
        if let Some(query) = query.filter(|_| replay_run || waiting) {
            self.run((query, session(|s| s.last_extras)));
        }
    }

    /// The worker died (a panic, a lost device): restart it on the CPU after a pause that grows
    /// with each death in a row, replaying the run in flight unless that very run stopped the
    /// engine before; after [`MAX_RESTARTS`] deaths in a row, stop and ask.
    fn died(self, why: String) {
        if let Some(dead) = CLIENT.with(|c| c.borrow_mut().take()) {
            dead.worker.terminate();
        }
        self.running.set(false);
        let (crashes, repeat) = session(|s| {
            let in_flight = (s.latest_run > s.answered).then(|| s.last_query.clone()).flatten();
            let repeat = in_flight.is_some() && in_flight == s.crashed_query;
            s.crashed_query = in_flight.or(s.crashed_query.take());
            s.crashes += 1;
            s.answered = s.latest_run;
            (s.crashes, repeat)
        });
        if crashes > MAX_RESTARTS {
            self.crashed.set(Some(Stopped {
                message: format!(
                    "The engine stopped {crashes} times in a row (last: {why}). It is not restarted by itself any more; your prompt and settings are kept."
                ),
                offer: Offer::Restart,
            }));
            return;
        }
        self.crashed.set(Some(if repeat {
            Stopped {
                message: format!(
                    "This link stopped the engine again ({why}). The engine was restarted on the CPU without running it, so it cannot stop it in a loop; change a setting, or run it once more."
                ),
                offer: Offer::Run,
            }
        } else {
            Stopped {
                message: format!(
                    "The engine stopped ({why}). It was restarted on the CPU backend; your prompt and settings are kept."
                ),
                offer: Offer::Nothing,
            }
        }));
        let pause = Duration::from_millis(250 * 4u64.pow(crashes - 1));
        set_timeout(
            move || {
                // A setting changed during the pause is a new run, not the one that crashed.
                let replay = !repeat || session(|s| s.last_query != s.crashed_query);
                self.spawn(EngineKind::Cpu, replay);
            },
            pause,
        );
    }

    /// Starts the engine again after it stopped too often (the banner's button).
    pub fn restart(self) {
        session(|s| s.crashes = 0);
        self.crashed.set(None);
        let replay = session(|s| s.last_query != s.crashed_query);
        self.spawn(EngineKind::Cpu, replay);
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
                if let Some(files) = inner.pending_files.take() {
                    let _ = inner.worker.post_message(&files);
                }
                for json in inner.queue.take().unwrap_or_default() {
                    let _ = inner.worker.post_message(&json.into());
                }
            }
        });
    }

    /// Hands the engine a checkpoint trained in the page (the Train view's "Use this model"); the
    /// next load of `trained-in-page` builds it. False when no engine listens yet.
    pub fn adopt(self, bytes: &[u8]) -> bool {
        CLIENT.with(|c| match c.borrow().as_ref() {
            Some(inner) if inner.queue.is_none() => inner.worker.post_message(&js_sys::Uint8Array::from(bytes)).is_ok(),
            _ => false,
        })
    }

    /// Hands the engine the files of a Hugging Face folder (a list of `File`s); the next load
    /// of `hf-files` opens them. A worker started later gets them too.
    pub fn adopt_files(self, files: js_sys::Array) {
        Self::post_files(&files);
        session(|s| s.hf_files = Some(files));
    }

    /// Posts the files now, or once the worker listens.
    fn post_files(files: &js_sys::Array) {
        CLIENT.with(|c| {
            if let Some(inner) = c.borrow_mut().as_mut() {
                match inner.queue.as_mut() {
                    // The worker's wasm is not listening yet: the files go first once it is.
                    Some(_) => inner.pending_files = Some(files.clone()),
                    None => {
                        let _ = inner.worker.post_message(files);
                    }
                }
            }
        });
    }

    /// Loads a checkpoint, checked against the hash a link pins (the views keep the old result
    /// until the new one runs). Supersedes every earlier load.
    pub fn load(self, want: &Want) {
        let webgpu = CLIENT.with(|c| c.borrow().as_ref().is_some_and(|i| i.kind == EngineKind::WebGpu));
        let id = session(|s| {
            s.latest_load += 1;
            s.last_load = Some(want.clone());
            s.latest_load
        });
        self.loading.set(Some(want.checkpoint.clone()));
        self.load_error.set(None);
        self.progress.set(None);
        Self::send(&Request::Load {
            id,
            checkpoint: want.checkpoint.clone(),
            webgpu,
            hash: want.hash.clone(),
            url: want.url.clone(),
        });
    }

    /// Stops the load in progress (its download is aborted); the page says so and offers Retry.
    pub fn cancel(self) {
        let id = session(|s| s.latest_load);
        Self::send(&Request::Cancel { id });
        // Replies to the cancelled load are ignored from now on.
        session(|s| s.latest_load += 1);
        if let Some(name) = self.loading.get_untracked() {
            self.load_error.set(Some(format!("Loading `{name}` was cancelled.")));
        }
        self.loading.set(None);
        self.progress.set(None);
    }

    /// Runs a state (its query, and the extras its open view needs); supersedes every earlier
    /// run. While the engine restarts, the new worker runs it.
    pub fn run(self, (query, extras): (String, Extras)) {
        let restarting = CLIENT.with(|c| c.borrow().is_none());
        let (id, crash) = session(|s| {
            s.latest_run += 1;
            s.sent_at = now_ms();
            s.last_query = Some(query.clone());
            s.last_extras = extras;
            s.run_waiting = restarting;
            (s.latest_run, s.crash_on_run)
        });
        self.running.set(true);
        self.streaming.set(Vec::new());
        if restarting {
            return;
        }
        // The test hook's crash goes first: sent after the run, it raced the run (a short run
        // could finish before the crash arrived, and the browser test then saw no crash).
        if crash {
            Self::send(&Request::Crash);
        }
        Self::send(&Request::Run { id, query, extras });
    }

    /// Entries of each layer's expert list of what is on show: the recorded trace's, or the
    /// loaded model's (`default` before either).
    pub fn n_experts(self, default: usize) -> usize {
        if self.recorded.with(Option::is_some) {
            let from_trace = self
                .result
                .with(|r| r.as_ref().and_then(|r| r.trace.layers.first()?.routing.first().map(|x| x.probs.len())));
            if let Some(n) = from_trace {
                return n;
            }
        }
        self.loaded.with(|l| l.as_ref().map_or(default, |l| l.n_experts))
    }

    /// A new run id for a request answered like a run (a trace, a what-if on it).
    fn next_run(self) -> u64 {
        let id = session(|s| {
            s.latest_run += 1;
            s.sent_at = now_ms();
            s.latest_run
        });
        self.running.set(true);
        self.run_error.set(None);
        id
    }

    /// Opens a recorded trace file (read-only mode).
    pub fn open_trace_file(self, file: web_sys::File) {
        let id = self.next_run();
        CLIENT.with(|c| {
            if let Some(inner) = c.borrow().as_ref() {
                let _ = inner.worker.post_message(&file);
            }
        });
        Self::send(&Request::OpenTrace { id, url: None });
    }

    /// Opens the recorded trace at `url` (read-only mode).
    pub fn open_trace_url(self, url: String) {
        let id = self.next_run();
        Self::send(&Request::OpenTrace { id, url: Some(url) });
    }

    /// Applies a state's router and interventions to the open recorded trace.
    pub fn reroute(self, query: String) {
        let id = self.next_run();
        Self::send(&Request::Reroute { id, query });
    }

    /// Asks for the backend check.
    pub fn check(self) {
        Self::send(&Request::Check);
    }

    /// Times this engine on a state's work (the answer lands in [`Self::calibration`]).
    pub fn calibrate(self, query: String) {
        self.calibration.set(None);
        Self::send(&Request::Calibrate { id: 1, query });
    }

    /// Which engine module runs now.
    pub fn kind(self) -> Option<EngineKind> {
        CLIENT.with(|c| c.borrow().as_ref().map(|i| i.kind))
    }

    /// Moves to the other engine module: the new worker loads the checkpoint and runs the
    /// current state again.
    pub fn switch(self, kind: EngineKind) {
        if self.kind() != Some(kind) {
            self.spawn(kind, true);
        }
    }

    /// Test hook: makes the worker fail as a lost GPU would.
    pub fn crash(self) {
        Self::send(&Request::Crash);
    }

    /// Test hook: every run request from now on also kills the worker (a link that crashes it).
    pub fn crash_on_run(self, on: bool) {
        session(|s| s.crash_on_run = on);
    }

    /// Whether `query` is held back from automatic runs: it was running when the engine died,
    /// and no run has finished since. Only a person's Run sends it again.
    pub fn held_back(self, query: &str) -> bool {
        session(|s| s.crashes > 0 && s.crashed_query.as_deref() == Some(query))
    }

    /// Milliseconds since run `id` was sent, if it is the latest run.
    fn is_latest(id: u64) -> Option<f64> {
        session(|s| (s.latest_run == id).then(|| now_ms() - s.sent_at))
    }

    fn is_latest_load(id: u64) -> bool {
        session(|s| s.latest_load == id)
    }

    fn receive(self, reply: Reply) {
        match reply {
            Reply::Started => Self::started(),
            Reply::Progress { id, file, loaded, total } => {
                if Self::is_latest_load(id) {
                    self.progress.set(Some(Progress { file, loaded, total }));
                }
            }
            Reply::Ready { id, loaded } => {
                // A stale load never clears or replaces a newer one.
                if Self::is_latest_load(id) {
                    self.loading.set(None);
                    self.load_error.set(None);
                    self.loaded.set(Some(loaded));
                }
            }
            Reply::LoadFailed { id, checkpoint, message } => {
                if Self::is_latest_load(id) {
                    self.loading.set(None);
                    self.load_error.set(Some(format!("Could not load checkpoint `{checkpoint}`: {message}")));
                }
            }
            Reply::Tokens { id, texts, .. } => {
                if Self::is_latest(id).is_some() {
                    self.streaming.update(|s| s.extend(texts));
                }
            }
            Reply::Traced {
                id,
                trace,
                run_ms,
                tokens_per_s,
                read_backs,
                candidate_text,
                comparison,
                domains,
                recorded,
            } => {
                // A stale result is never drawn.
                if let Some(round_trip_ms) = Self::is_latest(id) {
                    session(|s| {
                        s.answered = id;
                        s.crashes = 0;
                        s.crashed_query = None;
                    });
                    self.running.set(false);
                    self.run_error.set(None);
                    if self.recorded.with_untracked(|r| r != &recorded) {
                        self.recorded.set(recorded);
                    }
                    // A run finished: a banner that asked for one has done its job.
                    if self.crashed.with_untracked(|c| c.as_ref().is_some_and(|c| c.offer != Offer::Nothing)) {
                        self.crashed.set(None);
                    }
                    self.result.set(Some(RunResult {
                        trace: Arc::from(trace),
                        run_ms,
                        tokens_per_s,
                        read_backs,
                        round_trip_ms,
                        candidate_text: Arc::new(candidate_text.into_iter().collect()),
                        comparison: comparison.map(|c| c.map(Arc::from)),
                        domains: domains.map(|d| d.map(Arc::new)),
                    }));
                }
            }
            Reply::RunFailed { id, message } => {
                if id == 0 || Self::is_latest(id).is_some() {
                    session(|s| s.answered = s.answered.max(id));
                    self.running.set(false);
                    self.run_error.set(Some(message));
                }
            }
            Reply::Checked(report) => self.check.set(Some(*report)),
            Reply::Calibrated { timing, .. } => self.calibration.set(Some(timing)),
        }
    }
}
