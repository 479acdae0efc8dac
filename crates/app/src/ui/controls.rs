//! The header, the banners, the loading bar and the left-hand panels (prompt, checkpoint,
//! decoding, router).

use leptos::prelude::*;
use switchyard_state::{MAX_PROMPT_CHARS, PlaygroundState};

use super::client::Offer;
use super::params::{self, CAPACITY, Control, DECODINGS, ROUTERS, Widget};
use super::{Change, Ctl, EXAMPLES};
use switchyard_protocol::Source;

/// Checkpoints shipped in `assets/` (and the seed-initialised model), with one line each and
/// the router their recipe runs at inference (picking a checkpoint selects it; any router can
/// then be applied to any checkpoint).
const CHECKPOINTS: &[(&str, &str, Option<&str>)] = &[
    ("topk", "topk — trained with top-2 routing", Some("topk&k=2")),
    ("topk-global", "topk-global — top-2, balancing loss over the global batch", Some("topk&k=2")),
    ("top-p", "top-p — dynamic top-p: experts per token vary", Some("top_p&p=0.4")),
    ("lossfree", "lossfree — sigmoid router balanced by a learned bias (DeepSeek-V3)", Some("sigmoid&k=2&bias=true")),
    ("deepseek", "deepseek — 15 fine-grained experts, top-3, plus a shared expert", Some("topk&k=3&norm=false")),
    ("adamoe", "adamoe — 8 experts + 16 null experts, top-4: tokens may skip experts", Some("topk&k=4")),
    ("moepp", "moepp — MoE++: 8 experts + zero, copy, constant experts, top-2", Some("topk&k=2")),
    ("thor", "thor — trained with random experts", Some("thor&thor_mode=token")),
    ("smoe-dropout", "smoe-dropout — frozen random router", Some("smoe_dropout&k=8")),
    ("seed-init", "seed-init — untrained (seed 0, bytes)", None),
    ("trained-in-page", "trained-in-page — the model of this page's Train view", None),
    ("hf-files", "hf-files — a Hugging Face model opened from files", None),
    ("hf-url", "hf-url — a Hugging Face model at the link's address", None),
];

fn ctl() -> Ctl {
    expect_context::<Ctl>()
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A parameter count for people: `49.1 k`, `12.9 M`, `1.35 B`.
fn count(n: u64) -> String {
    match n {
        0..1_000_000 => format!("{:.1} k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.2} B", n as f64 / 1e9),
    }
}

/// Title, backend in use, Share.
#[component]
pub fn Header() -> impl IntoView {
    let ctl = ctl();
    let (copied, set_copied) = signal(None::<&'static str>);
    let (embedding, set_embedding) = signal(false);
    let share = move |_| {
        let Some(w) = web_sys::window() else { return };
        let url = w.location().href().unwrap_or_default();
        let promise = w.navigator().clipboard().write_text(&url);
        leptos::task::spawn_local(async move {
            let done = wasm_bindgen_futures::JsFuture::from(promise).await;
            // Without clipboard permission (or outside https) the link is still in the address bar.
            set_copied.set(Some(if done.is_ok() { "Link copied" } else { "Copy the address bar" }));
            set_timeout(move || set_copied.set(None), std::time::Duration::from_millis(2500));
        });
    };
    view! {
        <header class="top">
            <div class="brand">
                <h1>"Switchyard"</h1>
                <span class="tagline">"see how a Mixture-of-Experts routes every token"</span>
            </div>
            <div class="backend" data-testid="backend">
                {move || ctl.engine.loaded.get().map(|l| view! {
                    <span class=format!("badge {}", l.backend)>{l.backend.to_uppercase()}</span>
                    <span class="adapter">{l.adapter}</span>
                })}
            </div>
            <BackendChoice />
            <super::theme::ThemeChoice />
            <button class="share" data-testid="tour-start" title="a guided tour of what a router does, in eleven steps"
                on:click=move |_| super::tour::start(ctl)>"Tour"</button>
            <button class="share" data-testid="embed-code" title="an iframe snippet of the open view for a tutorial"
                aria-expanded=move || embedding.get().to_string()
                on:click=move |_| set_embedding.update(|open| *open = !*open)>"Embed…"</button>
            <button class="share" data-testid="share" on:click=share>
                {move || copied.get().unwrap_or("Share link")}
            </button>
        </header>
        {move || embedding.get().then(|| view! { <super::embed::EmbedDialog close=move || set_embedding.set(false) /> })}
    }
}

/// Which engine runs the model and why (under the header).
#[component]
pub fn BackendNotice() -> impl IntoView {
    let ctl = ctl();
    view! {
        {move || {
            let loaded = ctl.engine.loaded.get()?;
            if loaded.backend == "webgpu" {
                let why = ctl.backend.calibration.get().map(|c| c.summary())?;
                return Some(view! { <p class="notice" data-testid="backend-notice">"Running on WebGPU: " {why} "."</p> }.into_any());
            }
            let why = loaded.notice.or_else(|| ctl.backend.cpu_reason())?;
            Some(view! { <p class="notice" data-testid="backend-notice">"Running on the CPU backend: " {why} "."</p> }.into_any())
        }}
    }
}

/// Problems listed in the banner; the rest are counted.
const BANNER_PROBLEMS: usize = 20;

/// Where the model runs: measured (auto), or forced; kept in the link as `backend=`.
#[component]
fn BackendChoice() -> impl IntoView {
    use switchyard_state::{Backend, Named};
    let ctl = ctl();
    // The engine follows the state (backend::follow_forced_backend), as it does for a link.
    let choose = move |name: String| {
        let Some(backend) = Backend::parse(&name) else { return };
        ctl.edit(|s| s.backend = backend, Change::Deliberate);
    };
    view! {
        <select class="share" data-testid="backend-choice" aria-label="where the model runs" title="where the model runs"
            prop:value=move || ctl.state.with(|s| s.backend.name())
            on:change=move |ev| choose(event_target_value(&ev))>
            <option value="auto">"auto (measured)"</option>
            <option value="cpu">"CPU"</option>
            <option value="webgpu">"WebGPU"</option>
        </select>
    }
}

/// What the link could not use, and engine restarts.
#[component]
pub fn Banner() -> impl IntoView {
    let ctl = ctl();
    let engine = ctl.engine;
    view! {
        {move || {
            let problems = ctl.problems.get();
            let more = problems.len().saturating_sub(BANNER_PROBLEMS);
            (!problems.is_empty()).then(|| view! {
                <div class="banner warn" role="alert" data-testid="problems">
                    <strong>"Some settings could not be used and were replaced by defaults (a link you opened is one step back in history, as it was):"</strong>
                    <ul>
                        {problems.into_iter().take(BANNER_PROBLEMS).map(|p| view! { <li><code>{p.param.clone()}</code> ": " {p.message.clone()}</li> }).collect_view()}
                        {(more > 0).then(|| view! { <li data-testid="problems-more">{format!("and {more} more")}</li> })}
                    </ul>
                    <button on:click=move |_| ctl.problems.set(Vec::new())>"Dismiss"</button>
                </div>
            })
        }}
        {move || engine.crashed.get().map(|stopped| view! {
            <div class="banner warn" role="alert" data-testid="crashed">
                <span>{stopped.message}</span>
                {match stopped.offer {
                    Offer::Nothing => None,
                    Offer::Run => Some(view! {
                        <button data-testid="crashed-run" on:click=move |_| { engine.crashed.set(None); engine.run(ctl.state.with_untracked(super::run_query)) }>"Run it once more"</button>
                    }.into_any()),
                    Offer::Restart => Some(view! {
                        <button data-testid="crashed-restart" on:click=move |_| engine.restart()>"Restart the engine"</button>
                    }.into_any()),
                }}
            </div>
        })}
    }
}

/// The download bar, or the load error with a retry.
#[component]
pub fn LoadStatus() -> impl IntoView {
    let ctl = ctl();
    let engine = ctl.engine;
    let retry = move |_| engine.load(&ctl.state.with_untracked(super::client::Want::of));
    view! {
        {move || engine.load_error.get().map(|e| view! {
            <div class="banner error" role="alert" data-testid="load-error">
                <span>{e}</span>
                <button data-testid="retry" on:click=retry>"Retry"</button>
            </div>
        })}
        {move || engine.loading.get().map(|name| {
            let p = engine.progress.get();
            let (done, text) = match &p {
                Some(p) => match p.total {
                    Some(t) if t > 0 => (p.loaded as f64 / t as f64, format!("{}: {} of {}", p.file, mb(p.loaded), mb(t))),
                    _ => (0.0, format!("{}: {}", p.file, mb(p.loaded))),
                },
                None => (0.0, "starting the engine…".to_string()),
            };
            view! {
                <div class="loading" data-testid="loading">
                    <span>{format!("Loading checkpoint {name} — {text}")}</span>
                    <button class="cancel" data-testid="cancel-load" on:click=move |_| engine.cancel()>"Cancel"</button>
                    <div class="bar"><div class="fill" style=format!("width:{:.1}%", 100.0 * done)></div></div>
                </div>
            }
        })}
        {move || engine.loaded.get().filter(|_| engine.loading.get().is_none()).map(|l| {
            let from = match l.source {
                Source::Cache => "from the browser cache",
                Source::Network => "downloaded",
                Source::Seed => "built from the seed",
                Source::Trained => "trained in this page",
                Source::HuggingFace => "opened",
            };
            let free = if l.free_experts > 0 { format!(" + {} free", l.free_experts) } else { String::new() };
            let hf = l.hf.as_ref().map(|h| view! {
                <p class="loaded" data-testid="loaded-hf">
                    {format!("{} · {} · {} parameters · {}", h.architecture, h.dtype, count(h.params), h.from)}
                    {h.note.clone().map(|n| format!(" · {n}"))}
                </p>
            });
            view! {
                <p class="loaded" data-testid="loaded">{format!("{} ({}…) {from} in {:.0} ms · {} layers × {} experts{free} · context {}", l.checkpoint, &l.hash[..10], l.load_ms, l.n_layers, l.n_experts.saturating_sub(l.free_experts), l.context)}</p>
                {hf}
            }
        })}
    }
}

/// One control bound to one query parameter (`prefix` + key: `b.` edits configuration B).
#[component]
pub fn ParamControl(
    /// The control.
    control: Control,
    /// Key prefix.
    #[prop(optional)]
    prefix: &'static str,
) -> impl IntoView {
    let ctl = ctl();
    let n_experts = move || ctl.engine.n_experts(8);
    let key = StoredValue::new(format!("{prefix}{}", control.key));
    let value = move || key.with_value(|k| ctl.state.with(|s| params::param(s, k))).unwrap_or_default();
    let set = move |v: String, change: Change| key.with_value(|k| ctl.set_params(&[(k, Some(v))], change));
    let testid = format!("param-{}", key.get_value());
    let input = match control.widget {
        Widget::Range { min, max, step } => view! {
            <div class="range">
                <input type="range" min=min max=move || if max.is_nan() { n_experts() as f64 } else { max } step=step
                    data-testid=testid
                    prop:value=value
                    on:input=move |ev| set(event_target_value(&ev), Change::Drag)
                    on:change=move |_| ctl.end_drag() />
                <output>{value}</output>
            </div>
        }
        .into_any(),
        Widget::Check => view! {
            <input type="checkbox" data-testid=testid prop:checked=move || value() == "true"
                on:change=move |ev| set(event_target_checked(&ev).to_string(), Change::Deliberate) />
        }
        .into_any(),
        Widget::Select(choices) => view! {
            <select data-testid=testid prop:value=value
                on:change=move |ev| set(event_target_value(&ev), Change::Deliberate)>
                {choices.iter().map(|c| view! { <option value=*c>{*c}</option> }).collect_view()}
            </select>
        }
        .into_any(),
        Widget::Text => view! {
            <input type="text" data-testid=testid prop:value=value
                on:change=move |ev| set(event_target_value(&ev), Change::Deliberate) />
        }
        .into_any(),
    };
    view! { <label class="param"><span>{control.label}</span>{input}</label> }
}

/// Prompt, examples, checkpoint, generation and decoding.
#[component]
pub fn PromptPanel() -> impl IntoView {
    let ctl = ctl();
    let engine = ctl.engine;
    let decode_name = Memo::new(move |_| ctl.state.with(|s| params::param(s, "decode")).unwrap_or_default());
    let run_now = move |_| engine.run(ctl.state.with_untracked(super::run_query));
    view! {
        <section class="panel">
            <h2>"Model and prompt"</h2>
            <label class="param"><span>"checkpoint"</span>
                <select data-testid="checkpoint" prop:value=move || ctl.state.with(|s| s.checkpoint.clone())
                    on:change=move |ev| {
                        let v = event_target_value(&ev);
                        let router = CHECKPOINTS.iter().find(|c| c.0 == v).and_then(|c| c.2);
                        ctl.edit(|s| {
                            if let Some(q) = router {
                                s.router = params::router_from(q);
                            }
                            s.checkpoint = v;
                            s.checkpoint_hash = None;
                            s.interventions = Default::default();
                        }, Change::Deliberate)
                    }>
                    {CHECKPOINTS.iter().map(|(name, text, _)| view! { <option value=*name>{*text}</option> }).collect_view()}
                </select>
            </label>
            <super::open_model::OpenModel />
            <super::open_model::OpenTrace />
            <textarea data-testid="prompt" rows="7" spellcheck="false" aria-label="prompt" maxlength=MAX_PROMPT_CHARS
                prop:value=move || ctl.state.with(|s| s.prompt.clone())
                on:input=move |ev| { let v = event_target_value(&ev); ctl.edit(|s| s.prompt = v, Change::Typing) }></textarea>
            {move || ctl.state.with(|s| s.prompt.encode_utf16().count() >= MAX_PROMPT_CHARS).then(|| view! {
                <p class="hint warn" data-testid="prompt-limit">{format!("A prompt holds at most {MAX_PROMPT_CHARS} characters; the rest was not taken.")}</p>
            })}
            <div class="examples" role="group" aria-label="example prompts">
                {EXAMPLES.iter().map(|e| view! {
                    <button class="example" title=e.domain data-testid=format!("example-{}", e.domain)
                        on:click=move |_| ctl.edit(|s| { s.prompt = e.text.into(); s.view.token = None; }, Change::Deliberate)>{e.label}</button>
                }).collect_view()}
            </div>
            <label class="param"><span>"generate tokens"</span>
                <div class="range">
                    <input type="range" min="0" max="64" step="1" data-testid="param-gen"
                        prop:value=move || ctl.state.with(|s| s.generate.to_string())
                        on:input=move |ev| ctl.set_params(&[("gen", Some(event_target_value(&ev)))], Change::Drag)
                        on:change=move |_| ctl.end_drag() />
                    <output>{move || ctl.state.with(|s| s.generate)}</output>
                </div>
            </label>
            <label class="param"><span>"decoding"</span>
                <select data-testid="decoding" prop:value=move || decode_name.get()
                    on:change=move |ev| { let v = event_target_value(&ev); ctl.set(params::switch_decoding(&ctl.state.get_untracked(), &v), Change::Deliberate) }>
                    {DECODINGS.iter().map(|(name, _, _)| view! { <option value=*name>{*name}</option> }).collect_view()}
                </select>
            </label>
            {move || {
                let name = decode_name.get();
                DECODINGS.iter().find(|(n, _, _)| *n == name).map(|(_, explain, controls)| view! {
                    <p class="explain">{*explain}</p>
                    {controls.iter().map(|c| view! { <ParamControl control=*c /> }).collect_view()}
                })
            }}
            <label class="param"><span>"seed"</span>
                <input type="number" min="0" data-testid="param-seed" prop:value=move || ctl.state.with(|s| s.seed.to_string())
                    on:change=move |ev| ctl.set_params(&[("seed", Some(event_target_value(&ev)))], Change::Deliberate) />
            </label>
            <div class="run-row">
                <button class="primary" data-testid="run" on:click=run_now>
                    {move || if ctl.state.with(|s| s.generate > 0) { "Generate" } else { "Run" }}
                </button>
                <span class="speed" data-testid="speed"
                    data-run-ms=move || engine.result.with(|r| r.as_ref().map(|r| format!("{:.2}", r.run_ms)))
                    data-round-trip-ms=move || engine.result.with(|r| r.as_ref().map(|r| format!("{:.2}", r.round_trip_ms)))
                    data-tokens=move || engine.result.with(|r| r.as_ref().map(|r| r.trace.tokens.len()))
                    data-read-backs=move || engine.result.with(|r| r.as_ref().map(|r| r.read_backs))
                    data-tokens-per-s=move || engine.result.with(|r| r.as_ref().and_then(|r| r.tokens_per_s).map(|t| format!("{t:.2}")))>
                    {move || {
                    let running = engine.running.get();
                    let r = engine.result.get();
                    if running { "running…".to_string() } else {
                        r.map(|r| match r.tokens_per_s {
                            Some(tps) => format!("{tps:.1} tokens/s · {:.0} ms", r.run_ms),
                            None => format!("{} tokens in {:.0} ms", r.trace.tokens.len(), r.run_ms),
                        }).unwrap_or_default()
                    }
                }}</span>
            </div>
            {move || (!engine.streaming.get().is_empty() && engine.running.get()).then(|| view! {
                <p class="streaming" data-testid="streaming">{engine.streaming.get().concat()}</p>
            })}
        </section>
    }
}

/// Every router with its parameters, explanation and formula; interventions.
#[component]
pub fn RouterPanel() -> impl IntoView {
    let ctl = ctl();
    let name = Memo::new(move |_| ctl.state.with(params::router_name));
    let info = move || ROUTERS.iter().find(|r| r.name == name.get()).copied();
    let capacity_on = Memo::new(move |_| ctl.state.with(|s| params::param(s, "cf").is_some()));
    view! {
        <section class="panel">
            <h2>"Router"</h2>
            {move || ctl.engine.recorded.with(Option::is_some).then(|| view! {
                <p class="hint" data-testid="router-read-only">"Only top-k applies to a recorded trace: its settings below re-route the recorded probabilities. The other routers need the model."</p>
            })}
            <select data-testid="router" aria-label="router" prop:value=move || name.get()
                disabled=move || ctl.engine.recorded.with(Option::is_some)
                on:change=move |ev| { let v = event_target_value(&ev); ctl.set(params::switch_router(&ctl.state.get_untracked(), &v), Change::Deliberate) }>
                {ROUTERS.iter().map(|r| view! { <option value=r.name>{r.title}</option> }).collect_view()}
            </select>
            {move || (ctl.state.with(|s| matches!(s.decoding, switchyard_routing::Decoding::SelfContrast(_)))).then(|| view! {
                <p class="hint" data-testid="scmoe-router-note">"SCMoE decoding routes by its own rank lists (strong and weak passes); the router chosen here is not used while it is on."</p>
            })}
            {move || ctl.state.with(|s| s.router.non_causal()).map(|why| view! {
                <p class="hint" data-testid="non-causal-note">{format!("Non-causal: {why}. Shown on the fixed text; a left-to-right model could not route this way.")}</p>
            })}
            {move || ctl.engine.loaded.with(|l| l.as_ref().and_then(|l| l.design.clone())).map(|d| view! {
                <p class="explain design" data-testid="design-explain">{d}</p>
            })}
            {move || info().map(|r| view! {
                <p class="explain" data-testid="router-explain">{r.explain}</p>
                <p class="formula">{r.formula}</p>
                {r.controls.iter().map(|c| view! { <ParamControl control=*c /> }).collect_view()}
            })}
            {move || (name.get() == "topk").then(|| view! {
                <label class="param"><span>"capacity limit"</span>
                    <input type="checkbox" data-testid="param-capacity" prop:checked=move || capacity_on.get()
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            let changes: Vec<(&str, Option<String>)> = if on { vec![("cf", Some(params::TRAINING_CF.into()))] } else { CAPACITY.iter().map(|c| (c.key, None)).collect() };
                            ctl.set_params(&changes, Change::Deliberate);
                        } />
                </label>
                {move || capacity_on.get().then(|| CAPACITY.iter().map(|c| view! { <ParamControl control=*c /> }).collect_view())}
            })}
            <Interventions />
        </section>
    }
}

/// The active ablations and forcings, each removable.
#[component]
fn Interventions() -> impl IntoView {
    let ctl = ctl();
    let items = move || {
        ctl.state.with(|s: &PlaygroundState| {
            let mut v: Vec<(bool, usize, usize)> = s.interventions.ablate.iter().map(|&(l, e)| (false, l, e)).collect();
            v.extend(s.interventions.force.iter().map(|&(l, e)| (true, l, e)));
            v
        })
    };
    view! {
        <div class="interventions" data-testid="interventions">
            <h3>"Interventions"</h3>
            {move || {
                let v = items();
                if v.is_empty() {
                    view! { <p class="hint">"None. Click an expert in the load bars to switch it off or force every token to it."</p> }.into_any()
                } else {
                    view! {
                        <ul>{v.into_iter().map(|(force, l, e)| view! {
                            <li>{format!("layer {l}: expert {e} {}", if force { "forced" } else { "switched off" })}
                                <button class="small" on:click=move |_| ctl.edit(|s| {
                                    s.interventions.ablate.retain(|p| *p != (l, e));
                                    s.interventions.force.retain(|p| *p != (l, e));
                                }, Change::Deliberate)>"remove"</button></li>
                        }).collect_view()}</ul>
                        <button class="small" on:click=move |_| ctl.edit(|s| s.interventions = Default::default(), Change::Deliberate)>"Clear all"</button>
                    }.into_any()
                }
            }}
        </div>
    }
}
