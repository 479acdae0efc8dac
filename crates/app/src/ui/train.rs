//! The Train view: train a small MoE in the page and watch its router learn. The trainer runs
//! in its own worker and wasm module (`engine-train`), started the first time this view opens;
//! its settings are the link's `train.*` keys, so a shared link reproduces the run.

use std::cell::RefCell;

use leptos::prelude::*;
use switchyard_protocol::TRAINED_IN_PAGE;
use switchyard_protocol::training::{HeldOut, TRAIN_SAMPLES, TrainPoint, TrainReply, TrainRequest};
use switchyard_state::{Named, TrainRecipe, TrainSettings};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{MessageEvent, Worker};

use super::canvas::{Cell, CellCanvas, CellGrid};
use super::{Change, Ctl};

/// Where a run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Nothing started yet (the worker is loading or waiting).
    Idle,
    /// Reading the samples and building the model.
    Building,
    /// Stepping.
    Running,
    /// Paused at a step.
    Paused,
    /// The last step is done.
    Finished,
    /// The run failed (the message says why).
    Failed(String),
}

/// What the view draws, filled by the trainer's replies.
#[derive(Clone, Copy)]
pub struct TrainSignals {
    status: RwSignal<Status>,
    pub(super) points: RwSignal<Vec<TrainPoint>>,
    pub(super) held: RwSignal<Vec<HeldOut>>,
    tokens_per_s: RwSignal<f64>,
    parameters: RwSignal<usize>,
    bias: RwSignal<Vec<Vec<f32>>>,
    /// The run replies are drawn for.
    run: RwSignal<u64>,
}

struct Trainer {
    worker: Worker,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    /// Requests made before the worker said it started.
    queue: Option<Vec<String>>,
}

thread_local! {
    static TRAINER: RefCell<Option<Trainer>> = const { RefCell::new(None) };
    static SIGNALS: RefCell<Option<(Owner, TrainSignals)>> = const { RefCell::new(None) };
    /// The page's controller, and whether the export asked for is for "Use this model".
    static USE: RefCell<(Option<Ctl>, bool)> = const { RefCell::new((None, false)) };
}

/// What to do with an exported checkpoint: hand it to the engine ("Use this model": every view
/// then runs the trained model) or save it.
fn exported(bytes: Vec<u8>) {
    let (ctl, use_it) = USE.with(|u| {
        let mut u = u.borrow_mut();
        (u.0, std::mem::take(&mut u.1))
    });
    match ctl.filter(|_| use_it) {
        Some(ctl) => {
            if !ctl.engine.adopt(&bytes) {
                signals().status.set(Status::Failed("the engine is not running yet; try again in a moment".into()));
                return;
            }
            let k = ctl.state.with_untracked(|s| s.train.k.min(s.train.experts));
            let already = ctl.state.with_untracked(|s| s.checkpoint == TRAINED_IN_PAGE);
            ctl.edit(
                |s| {
                    s.checkpoint = TRAINED_IN_PAGE.into();
                    s.checkpoint_hash = None;
                    s.router = switchyard_routing::RouterSpec::top_k(k, true);
                    s.interventions = Default::default();
                },
                Change::Deliberate,
            );
            // Already on it: the state did not change, so load the new weights by hand.
            if already {
                ctl.engine.load(&super::client::Want { checkpoint: TRAINED_IN_PAGE.into(), hash: None, url: None });
            }
        }
        None => {
            let _ = super::export::save_bytes(&bytes, "application/octet-stream", "trained-in-page.safetensors");
        }
    }
}

/// The view's signals, made once per page under their own root owner: the view is rebuilt
/// whenever the panel redraws (a layer change), and the run and its curves outlive it.
pub(super) fn signals() -> TrainSignals {
    SIGNALS.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| {
                // `new_root` makes itself the current owner: the view being built keeps its own.
                let building = Owner::current();
                let owner = Owner::new_root(None);
                if let Some(b) = &building {
                    b.set();
                }
                let signals = owner.with(|| TrainSignals {
                    status: RwSignal::new(Status::Idle),
                    points: RwSignal::new(Vec::new()),
                    held: RwSignal::new(Vec::new()),
                    tokens_per_s: RwSignal::new(0.0),
                    parameters: RwSignal::new(0),
                    bias: RwSignal::new(Vec::new()),
                    run: RwSignal::new(0),
                });
                (owner, signals)
            })
            .1
    })
}

/// Starts the trainer's worker (and so downloads its module) if it is not running yet.
fn ensure_worker() {
    TRAINER.with(|t| {
        let mut t = t.borrow_mut();
        if t.is_none() {
            match start_worker() {
                Ok(w) => *t = Some(w),
                Err(e) => signals().status.set(Status::Failed(format!("the trainer could not start: {e}"))),
            }
        }
    });
}

/// Sends a request, starting the worker the first time.
fn send(request: &TrainRequest) {
    let text = serde_json::to_string(request).unwrap_or_default();
    ensure_worker();
    TRAINER.with(|t| {
        let mut t = t.borrow_mut();
        let Some(t) = t.as_mut() else { return };
        match &mut t.queue {
            Some(q) => q.push(text),
            None => {
                let _ = t.worker.post_message(&text.into());
            }
        }
    });
}

fn start_worker() -> Result<Trainer, String> {
    let options = web_sys::WorkerOptions::new();
    options.set_name("switchyard-trainer");
    let url = format!("switchyard-engine-train_loader.js?v={}", env!("CARGO_PKG_VERSION"));
    let worker = Worker::new_with_options(&url, &options).map_err(|e| format!("{e:?}"))?;
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let data = event.data();
        if let Some(bytes) = data.dyn_ref::<js_sys::Uint8Array>() {
            exported(bytes.to_vec());
            return;
        }
        let Some(text) = data.as_string() else { return };
        if text == "\"started\"" {
            TRAINER.with(|t| {
                if let Some(t) = t.borrow_mut().as_mut() {
                    for m in t.queue.take().unwrap_or_default() {
                        let _ = t.worker.post_message(&m.into());
                    }
                }
            });
            return;
        }
        match serde_json::from_str::<TrainReply>(&text) {
            Ok(reply) => receive(reply),
            Err(e) => {
                signals().status.set(Status::Failed(format!("the trainer sent a reply this page could not read ({e})")))
            }
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    Ok(Trainer { worker, _on_message: on_message, queue: Some(Vec::new()) })
}

fn receive(reply: TrainReply) {
    let s = signals();
    let current = s.run.get_untracked();
    match reply {
        TrainReply::Ready { id, parameters, .. } if id == current => {
            s.parameters.set(parameters);
            s.status.update(|st| {
                if *st == Status::Building {
                    *st = Status::Paused;
                }
            });
        }
        TrainReply::Progress { id, points, tokens_per_s, bias, held_out } if id == current => {
            if !points.is_empty() {
                s.points.update(|p| p.extend(points));
                s.status.set(Status::Running);
            }
            if tokens_per_s > 0.0 {
                s.tokens_per_s.set(tokens_per_s);
            }
            // Redraw the bias table only when it moved (empty for most recipes).
            if s.bias.with_untracked(|b| *b != bias) {
                s.bias.set(bias);
            }
            if let Some(h) = held_out {
                s.held.update(|v| v.push(h));
            }
        }
        TrainReply::Stopped { id, finished, .. } if id == current => {
            s.status.set(if finished { Status::Finished } else { Status::Paused })
        }
        TrainReply::Failed { id, message } if id == current || id == 0 => s.status.set(Status::Failed(message)),
        _ => {}
    }
}

thread_local! {
    /// A text of the person's own for the mix (not in the link: it can be long).
    static OWN_TEXT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Starts the state's run from step 0.
fn start(settings: TrainSettings, play: bool) {
    let s = signals();
    let id = s.run.get_untracked() + 1;
    s.run.set(id);
    s.points.set(Vec::new());
    s.held.set(Vec::new());
    s.tokens_per_s.set(0.0);
    s.status.set(Status::Building);
    let own_text = OWN_TEXT.with(|t| t.borrow().clone());
    send(&TrainRequest::Start { id, settings, own_text, play });
}

/// The Train view.
#[component]
pub fn TrainView() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let s = signals();
    ensure_worker();
    USE.with(|u| u.borrow_mut().0 = Some(ctl));
    let settings = Memo::new(move |_| ctl.state.with(|st| st.train.clone()));
    let status_text = move || match s.status.get() {
        Status::Idle => "Press Train to start.".to_string(),
        Status::Building => "Reading the samples and building the model…".to_string(),
        Status::Running => "Training…".to_string(),
        Status::Paused => "Paused.".to_string(),
        Status::Finished => "Done.".to_string(),
        Status::Failed(m) => format!("Training failed: {m}"),
    };
    let step = move || s.points.with(|p| p.last().map_or(0, |p| p.step));
    let running = move || matches!(s.status.get(), Status::Running | Status::Building);
    view! {
        <div class="train" data-testid="train">
            <div class="train-controls">
                <TrainSettingsForm />
                <div class="train-buttons">
                    <button data-testid="train-start" on:click=move |_| start(settings.get_untracked(), true)>"Train"</button>
                    <button data-testid="train-pause" disabled=move || !running() on:click=move |_| send(&TrainRequest::Pause)>"Pause"</button>
                    <button data-testid="train-resume" disabled=move || s.status.get() != Status::Paused on:click=move |_| send(&TrainRequest::Play)>"Resume"</button>
                    <button data-testid="train-step" disabled=move || s.status.get() != Status::Paused on:click=move |_| send(&TrainRequest::Step)>"Step"</button>
                    <button data-testid="train-reset" on:click=move |_| start(settings.get_untracked(), false)>"Reset"</button>
                    <button data-testid="train-use" disabled=move || step() == 0 title="every view then runs the model trained here"
                        on:click=move |_| { USE.with(|u| u.borrow_mut().1 = true); send(&TrainRequest::Export); }>"Use this model"</button>
                    <button data-testid="train-download" disabled=move || step() == 0
                        on:click=move |_| { USE.with(|u| u.borrow_mut().1 = false); send(&TrainRequest::Export); }>"Download"</button>
                </div>
                <p class="hint" data-testid="train-status" data-status=move || format!("{:?}", s.status.get()) data-step=step>
                    {move || format!("{} Step {} of {} · {:.0} tokens/s · {} parameters", status_text(), step(), settings.get().steps, s.tokens_per_s.get(), s.parameters.get())}
                </p>
            </div>
            <div class="train-charts">
                <super::train_charts::LossChart />
                <super::train_charts::LoadChart />
                <super::train_charts::RouterChart />
                <BiasTable />
                <DomainSnapshots />
            </div>
        </div>
    }
}

/// One number of the settings, as a range input bound to `train.<key>`.
#[component]
fn Slider(
    label: &'static str,
    key: &'static str,
    min: f64,
    max: f64,
    step: f64,
    get: fn(&TrainSettings) -> f64,
    set: fn(&mut TrainSettings, f64),
) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let value = move || ctl.state.with(|s| get(&s.train));
    view! {
        <label class="param"><span>{label}</span>
            <input type="range" min=min max=max step=step data-testid=format!("train-{key}") prop:value=move || value().to_string()
                on:change=move |ev| {
                    if let Ok(v) = event_target_value(&ev).parse::<f64>() {
                        ctl.edit(|s| set(&mut s.train, v), Change::Deliberate);
                    }
                } />
            <span class="value">{move || short(value())}</span>
        </label>
    }
}

fn set_recipe(ctl: Ctl, name: &str) {
    if let Some(r) = TrainRecipe::parse(name) {
        ctl.edit(|s| s.train.recipe = r, Change::Deliberate);
    }
}

/// A domain's weight in the mix (1, the default, is not written).
fn set_weight(ctl: Ctl, name: &'static str, value: &str) {
    let Ok(w) = value.parse::<f32>() else { return };
    ctl.edit(
        |s| {
            s.train.mix.retain(|(n, _)| n != name);
            if w != 1.0 {
                s.train.mix.push((name.to_string(), w));
            }
        },
        Change::Deliberate,
    );
}

/// A setting as a person reads it: `4`, `0.01`, `0.0005` (no f32 noise).
fn short(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() { "0".into() } else { s.to_string() }
}

#[component]
fn TrainSettingsForm() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let recipe = move || ctl.state.with(|s| s.train.recipe);
    view! {
        <div class="train-form">
            <label class="param"><span>"recipe"</span>
                <select data-testid="train-recipe" prop:value=move || recipe().name()
                    on:change=move |ev| set_recipe(ctl, &event_target_value(&ev))>
                    <option value="topk">"top-k (LBL + z-loss)"</option>
                    <option value="switch">"Switch (top-1)"</option>
                    <option value="thor">"THOR (random experts)"</option>
                    <option value="smoe_dropout">"SMoE-Dropout (frozen router, k rising)"</option>
                    <option value="lossfree">"loss-free bias balancing"</option>
                </select>
            </label>
            <Slider label="experts E" key="e" min=2.0 max=16.0 step=1.0 get=|t| t.experts as f64 set=|t, v| { t.experts = v as usize; t.k = t.k.min(t.experts); } />
            <Slider label="experts per token k" key="k" min=1.0 max=4.0 step=1.0 get=|t| t.k as f64 set=|t, v| t.k = (v as usize).min(t.experts) />
            <Slider label="width" key="d" min=32.0 max=128.0 step=32.0 get=|t| t.width as f64 set=|t, v| t.width = v as usize />
            <Slider label="layers" key="layers" min=1.0 max=4.0 step=1.0 get=|t| t.layers as f64 set=|t, v| t.layers = v as usize />
            <Slider label="LBL coefficient" key="lbl" min=0.0 max=0.1 step=0.005 get=|t| f64::from(t.lbl) set=|t, v| t.lbl = v as f32 />
            <Slider label="z-loss coefficient" key="z" min=0.0 max=0.01 step=0.001 get=|t| f64::from(t.z) set=|t, v| t.z = v as f32 />
            <Slider label="learning rate" key="lr" min=0.0005 max=0.01 step=0.0005 get=|t| t.lr set=|t, v| t.lr = v />
            <Slider label="steps" key="steps" min=50.0 max=2000.0 step=50.0 get=|t| t.steps as f64 set=|t, v| t.steps = v as u64 />
            <Slider label="seed" key="seed" min=0.0 max=99.0 step=1.0 get=|t| t.seed as f64 set=|t, v| t.seed = v as u64 />
            <details class="mix"><summary>"data mix (relative weight of each shipped sample)"</summary>
                {TRAIN_SAMPLES.iter().map(|&name| view! {
                    <label class="param"><span>{name}</span>
                        <input type="range" min="0" max="3" step="0.5" data-testid=format!("train-mix-{name}")
                            prop:value=move || ctl.state.with(|s| s.train.weight(name)).to_string()
                            on:change=move |ev| set_weight(ctl, name, &event_target_value(&ev)) />
                        <span class="value">{move || ctl.state.with(|s| s.train.weight(name)).to_string()}</span>
                    </label>
                }).collect_view()}
            </details>
            <details class="mix"><summary>"your own text (added to the mix as “yours”, weight 1; not kept in the link)"</summary>
                <textarea rows="4" data-testid="train-own-text" aria-label="your own training text"
                    maxlength=switchyard_protocol::training::MAX_OWN_TEXT
                    placeholder="paste text to train on beside the samples"
                    prop:value=move || OWN_TEXT.with(|t| t.borrow().clone())
                    on:input=move |ev| OWN_TEXT.with(|t| *t.borrow_mut() = event_target_value(&ev))></textarea>
            </details>
        </div>
    }
}

/// Loss-free balancing's selection bias per expert and layer, as it moves.
#[component]
fn BiasTable() -> impl IntoView {
    let s = signals();
    move || {
        let bias = s.bias.get();
        (!bias.is_empty()).then(|| {
            let top = bias.iter().flatten().fold(1e-6f32, |m, b| m.max(b.abs()));
            view! {
                <div class="train-chart" data-testid="train-bias">
                    <h3>"Selection bias b (chooses, never weighs)"</h3>
                    <table class="metrics"><tbody>
                        {bias.into_iter().enumerate().map(|(l, row)| view! {
                            <tr><th>{format!("layer {l}")}</th>
                                {row.into_iter().enumerate().map(|(e, b)| view! {
                                    <td style=super::palette::ramp_style(0.5 + 0.5 * b / top) title=format!("E{e}")>{format!("{b:+.3}")}</td>
                                }).collect_view()}
                            </tr>
                        }).collect_view()}
                    </tbody></table>
                </div>
            }
        })
    }
}

/// The domain × expert map on the held-out slices: the first measurement and the latest, side
/// by side.
#[component]
fn DomainSnapshots() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let s = signals();
    move || {
        let layer = ctl.layer.get().min(ctl.state.with(|st| st.train.layers).saturating_sub(1));
        let held = s.held.get();
        let snapshots: Vec<HeldOut> = match (held.first(), held.last()) {
            (Some(a), Some(b)) if held.len() > 1 => vec![a.clone(), b.clone()],
            (Some(a), _) => vec![a.clone()],
            _ => Vec::new(),
        };
        let count = snapshots.len();
        // The latest map's strongest specialisation: the largest share over its uniform 1/E
        // at any layer (what the benchmark waits for: ≥ 2).
        let ratio = held.last().map(|h| {
            h.share.iter().flatten().flat_map(|row| row.iter().map(move |v| v * row.len() as f64)).fold(0.0, f64::max)
        });
        let at = held.last().map(|h| h.step);
        let names = held.last().map(|h| h.domains.join(","));
        let measured = held.last().map(|h| h.share.get(layer).map_or(0, Vec::len));
        view! {
            <div class="pair" data-testid="train-domains" data-snapshots=count
                data-max-ratio=ratio.map(|r| format!("{r:.3}")) data-step=at data-domains=names data-rows=measured>
                {snapshots.into_iter().enumerate().map(|(i, h)| {
                    let rows = h.share.get(layer).cloned().unwrap_or_default();
                    let e = rows.first().map_or(0, Vec::len);
                    let uniform = 1.0 / e.max(1) as f64;
                    let grid = CellGrid {
                        left: 118.0,
                        rows: h.domains.iter().map(|d| (d.clone(), "#eceef3".to_string(), "#1d2330")).collect(),
                        cols: (0..e).map(|x| format!("E{x}")).collect(),
                        cells: rows.iter().map(|r| r.iter().map(|&v| Some(Cell::percent(v / (4.0 * uniform), v, v > 2.0 * uniform))).collect()).collect(),
                    };
                    view! {
                        <div>
                            <h3>{format!("Held-out domains × experts at step {} (layer {layer}, %)", h.step)}</h3>
                            <CellCanvas grid=grid testid=if i == 0 { "train-domain-first" } else { "train-domain-latest" } corner="domain" unit="%" marked="over twice uniform" label=format!("domain by expert at step {}", h.step) />
                        </div>
                    }
                }).collect_view()}
            </div>
        }
    }
}
