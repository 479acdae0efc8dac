//! The token strip (each token coloured by its top expert at the selected layer, or by the
//! compute it got: how many FFN experts ran on it), the layer selector and the detail of a
//! clicked token.

use leptos::prelude::*;
use switchyard_protocol::trace::{Trace, TraceLayer};
use switchyard_state::{Named, Shade};

use super::palette::{expert_mark, expert_name, free_style, kind_bg, kind_style, ramp_style};
use super::{Ctl, client::RunResult};
use switchyard_routing::record::ExpertKind;

/// FFN experts that ran on a token at a layer: its kept slots (dropped ones cost nothing) on
/// FFN experts (free experts (§6) cost none).
fn experts_used(layer: &TraceLayer, token: usize) -> Option<usize> {
    let ffn = |e: &usize| ExpertKind::at(&layer.expert_kinds, *e) == ExpertKind::Ffn;
    layer.routing.get(token).map(|r| r.experts.iter().zip(&r.dropped).filter(|(e, d)| !**d && ffn(e)).count())
}

/// The compute a token got under `shade`: experts used at `layer`, or summed over the layers;
/// `None` for a token not run through the model, or when the strip shows experts.
fn compute_of(trace: &Trace, shade: Shade, layer: usize, token: usize) -> Option<usize> {
    match shade {
        Shade::Expert | Shade::Shared => None,
        Shade::Compute => layer_of(trace, layer).and_then(|l| experts_used(l, token)),
        Shade::ComputeAll => trace.layers.iter().map(|l| experts_used(l, token)).sum(),
    }
}

/// The shared expert's share of a token's MoE output at `layer`, when the strip shows it and
/// the model has a shared expert.
fn shared_of(trace: &Trace, shade: Shade, layer: usize, token: usize) -> Option<f32> {
    (shade == Shade::Shared).then(|| layer_of(trace, layer)?.routing.get(token)?.shared_share).flatten()
}

/// What a free expert does, for its legend chip's tooltip.
fn free_meaning(kind: ExpertKind) -> &'static str {
    match kind {
        ExpertKind::Null => {
            "null expert (AdaMoE): outputs nothing and costs nothing; its weight goes to the token's FFN experts"
        }
        ExpertKind::Zero => "zero expert (MoE++): outputs nothing; the token's other expert gets the whole weight",
        ExpertKind::Copy => "copy expert (MoE++): outputs its input",
        ExpertKind::Constant => "constant expert (MoE++): mixes its input with a learned vector",
        ExpertKind::Ffn => "FFN expert",
    }
}

/// "1 expert", "3 experts".
fn experts_label(n: usize) -> String {
    format!("{n} expert{}", if n == 1 { "" } else { "s" })
}

/// The most compute a token got in this run under `shade` (the colour scale's top, so that
/// the differences between tokens show; the legend prints the numbers).
fn compute_max(trace: &Trace, shade: Shade, layer: usize) -> usize {
    (0..trace.tokens.len()).filter_map(|t| compute_of(trace, shade, layer, t)).max().unwrap_or(0).max(1)
}

/// The expert a token is shown with at a layer: its first kept slot on an expert that outputs
/// something (or on a null / zero expert when that is all it has: it skipped the FFN experts),
/// else its first slot if all were dropped; and whether it was dropped.
pub fn shown_expert(layer: &TraceLayer, token: usize) -> Option<(usize, bool)> {
    let r = layer.routing.get(token)?;
    let nothing = |e: &usize| ExpertKind::at(&layer.expert_kinds, *e).outputs_nothing();
    let mut kept = r.experts.iter().zip(&r.dropped).filter(|(_, d)| !**d).map(|(e, _)| *e);
    let first_kept = kept.clone().next();
    let shown = kept.find(|e| !nothing(e)).or(first_kept).map(|e| (e, false));
    shown.or_else(|| r.experts.first().map(|&e| (e, true)))
}

/// The number in attribute `attr` of the element matching `selector` that an event hit (one
/// listener per view instead of one per cell keeps large views fast to draw).
fn clicked(ev: &leptos::ev::MouseEvent, selector: &str, attr: &str) -> Option<usize> {
    use wasm_bindgen::JsCast;
    let target: web_sys::Element = ev.target()?.dyn_into().ok()?;
    target.closest(selector).ok()??.get_attribute(attr)?.parse().ok()
}

/// ← and → (and Home, End) move the focus along the strip's tokens; Enter or Space on a token
/// opens its detail (they are buttons). The tour's own arrow keys give way.
fn strip_keys(ev: &leptos::ev::KeyboardEvent) {
    use wasm_bindgen::JsCast;
    let Some(token) = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
    let Some(strip) = token.parent_element() else { return };
    let tokens = strip.query_selector_all("button[data-index]").ok();
    let n = tokens.as_ref().map_or(0, |t| t.length());
    let Some(at) = token.get_attribute("data-index").and_then(|i| i.parse::<u32>().ok()) else { return };
    let to = match ev.key().as_str() {
        "ArrowRight" => at + 1,
        "ArrowLeft" => at.saturating_sub(1),
        "Home" => 0,
        "End" => n.saturating_sub(1),
        _ => return,
    };
    ev.prevent_default();
    if let Some(el) =
        tokens.and_then(|t| t.get(to.min(n.saturating_sub(1)))).and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = el.focus();
    }
}

fn layer_of(trace: &Trace, layer: usize) -> Option<&TraceLayer> {
    trace.layers.get(layer.min(trace.layers.len().saturating_sub(1)))
}

/// The strip, the layer selector and the token detail.
#[component]
pub fn TokenViews() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let engine = ctl.engine;
    let layer = move || ctl.layer.get();
    let n_layers = move || engine.result.with(|r| r.as_ref().map_or(0, |r| r.trace.layers.len()));
    let shade = Memo::new(move |_| ctl.state.with(|s| s.view.shade));
    view! {
        <section class="card tokens">
            <div class="card-head">
                <h2>{move || match shade.get() {
                    Shade::Expert => "Tokens by top expert",
                    Shade::Compute => "Tokens by experts used",
                    Shade::ComputeAll => "Tokens by experts used, all layers",
                    Shade::Shared => "Tokens by the shared expert's share",
                }}</h2>
                <ShadeChoice />
                <div class="layers" role="group" aria-label="layer" class:hidden=move || ctl.state.with(|s| s.view.embed.is_some() && !s.view.show.contains(&switchyard_state::Control::Layers))>
                    {move || (0..n_layers()).map(|l| view! {
                        <button class="layer" class:active=move || layer() == l data-testid=format!("layer-{l}")
                            on:click=move |_| ctl.view(|v| v.layer = l)>{format!("layer {l}")}</button>
                    }).collect_view()}
                </div>
            </div>
            <RunError />
            {move || match engine.result.get() {
                None => view! { <p class="pending" data-testid="waiting">"Waiting for the first run…"</p> }.into_any(),
                Some(r) => {
                    ctl.layer.track();
                    shade.track();
                    view! { <Strip result=r /> }.into_any()
                }
            }}
            <Legend />
            {move || {
                shade.track();
                ctl.layer.track();
                engine.result.get().map(|r| view! { <ComputeDistribution result=r /> })
            }}
            <super::export::ExportButtons />
            {move || engine.result.get().zip(ctl.token.get()).map(|(r, t)| view! { <Detail result=r token=t /> })}
        </section>
    }
}

/// Why the latest run failed, if it did.
#[component]
pub fn RunError() -> impl IntoView {
    let engine = expect_context::<Ctl>().engine;
    move || {
        engine.run_error.get().map(|e| {
            let hint = if e.contains("context") { " Shorten the prompt or generate fewer tokens." } else { "" };
            view! { <p class="error" role="alert" data-testid="run-error">{e}{hint}</p> }
        })
    }
}

/// What the strip's colours say (`shade=` in the link).
#[component]
fn ShadeChoice() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let choose = move |name: String| {
        if let Some(shade) = Shade::parse(&name) {
            ctl.view(|v| v.shade = shade);
        }
    };
    view! {
        <select class="shade" data-testid="shade" aria-label="colour tokens by" title="colour tokens by"
            prop:value=move || ctl.state.with(|s| s.view.shade.name())
            on:change=move |ev| choose(event_target_value(&ev))>
            <option value="expert">"colour: top expert"</option>
            <option value="compute">"colour: experts used (this layer)"</option>
            <option value="compute_all">"colour: experts used (all layers)"</option>
            <option value="shared">"colour: shared expert's share"</option>
        </select>
    }
}

#[component]
fn Legend() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let n = move || ctl.engine.n_experts(0);
    let kinds = move || {
        ctl.engine.result.with(|r| {
            r.as_ref().and_then(|r| r.trace.layers.first().map(|l| l.expert_kinds.clone())).unwrap_or_default()
        })
    };
    let shade = move || ctl.state.with(|s| s.view.shade);
    view! {
        <div class="legend">
            {move || match shade() {
                Shade::Expert => {
                    let kinds = kinds();
                    let ffn = if kinds.is_empty() { n() } else { kinds.iter().filter(|k| **k == ExpertKind::Ffn).count() };
                    let mut free: Vec<ExpertKind> = kinds.iter().copied().filter(|k| *k != ExpertKind::Ffn).collect();
                    free.dedup();
                    view! {
                        {(0..ffn).map(|e| view! { <span class="chip" style=kind_style(&[], e)>{format!("E{e}")}</span> }).collect_view()}
                        {free.into_iter().map(|k| view! {
                            <span class="chip" style=free_style(k) data-testid="free-chip" title=free_meaning(k)>{k.name()}</span>
                        }).collect_view()}
                    }.into_any()
                }
                Shade::Shared => [0.0f32, 0.5, 1.0].into_iter().map(|p| {
                    view! { <span class="chip" style=ramp_style(p)>{format!("{:.0}% shared", 100.0 * p)}</span> }
                }).collect_view().into_any(),
                _ => {
                    let top = ctl.engine.result.with(|r| r.as_ref().map_or(1, |r| compute_max(&r.trace, shade(), ctl.layer.get())));
                    [0, top / 2, top].into_iter().map(|c| {
                        view! { <span class="chip" style=ramp_style(c as f32 / top as f32)>{experts_label(c)}</span> }
                    }).collect_view().into_any()
                }
            }}
            <span class="hint">"Click a token for its routing in every layer."</span>
        </div>
    }
}

/// The shared expert's share over the strip's tokens at a layer: its mean and range, or why
/// there is none.
fn shared_summary(trace: &Trace, layer: usize) -> impl IntoView + use<> {
    let shares: Vec<f32> =
        layer_of(trace, layer).map(|l| l.routing.iter().filter_map(|r| r.shared_share).collect()).unwrap_or_default();
    let mean = (!shares.is_empty()).then(|| shares.iter().sum::<f32>() / shares.len() as f32);
    let text = if let Some(mean) = mean {
        let (lo, hi) = shares.iter().fold((1.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        format!(
            "The shared expert gives {:.0}% of the MoE output (by norm, ‖shared‖ / (‖shared‖ + ‖routed‖)) on average at this layer, from {:.0}% to {:.0}%.",
            100.0 * mean,
            100.0 * lo,
            100.0 * hi
        )
    } else {
        "This checkpoint has no shared expert (the deepseek checkpoint has one).".to_string()
    };
    view! { <div class="compute-dist" data-testid="shared-summary" data-mean=mean.map(|m| format!("{m:.4}"))><p class="hint">{text}</p></div> }
}

/// How many tokens got each amount of compute, beside the strip when it shows compute.
#[component]
fn ComputeDistribution(result: RunResult) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let shade = ctl.state.with_untracked(|s| s.view.shade);
    let layer = ctl.layer.get_untracked();
    let trace = &result.trace;
    if shade == Shade::Shared {
        return Some(shared_summary(trace, layer).into_any());
    }
    let counts: Vec<usize> = (0..trace.tokens.len()).filter_map(|t| compute_of(trace, shade, layer, t)).collect();
    if counts.is_empty() {
        return None;
    }
    let mut hist = std::collections::BTreeMap::<usize, usize>::new();
    counts.iter().for_each(|&c| *hist.entry(c).or_default() += 1);
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    let widest = hist.values().copied().max().unwrap_or(1);
    Some(
        view! {
            <div class="compute-dist" data-testid="compute-distribution" data-mean=format!("{mean:.3}")>
                <p class="hint">{format!("{mean:.2} FFN experts per token on average ({} tokens)", counts.len())}</p>
                {hist.into_iter().map(|(c, n)| view! {
                    <div class="dist-row" data-experts=c data-tokens=n>
                        <span class="dist-label">{experts_label(c)}</span>
                        <span class="dist-bar" style=format!("width:{:.1}%", 100.0 * n as f64 / widest as f64)></span>
                        <span class="dist-count">{n}</span>
                    </div>
                }).collect_view()}
            </div>
        }
        .into_any(),
    )
}

#[component]
fn Strip(result: RunResult) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let trace = result.trace.clone();
    let layer = ctl.layer.get_untracked();
    let shade = ctl.state.with_untracked(|s| s.view.shade);
    let top = compute_max(&trace, shade, layer);
    let selected = move || ctl.token.get();
    let l = layer_of(&trace, layer).cloned();
    let kinds = l.as_ref().map(|l| l.expert_kinds.clone()).unwrap_or_default();
    view! {
        <div class="strip" data-testid="token-strip" data-snapshot="token-strip" data-layer=layer data-checkpoint=trace.checkpoint.clone()
            role="group" aria-label="tokens of the prompt; arrow keys move between them, Enter opens one"
            on:keydown=move |ev| strip_keys(&ev)
            on:click=move |ev| {
            if let Some(index) = clicked(&ev, "button[data-index]", "data-index") {
                ctl.view(|v| v.token = if v.token == Some(index) { None } else { Some(index) });
            }
        }>
            {trace.tokens.iter().map(|t| {
                let index = t.index;
                let shown = l.as_ref().and_then(|l| shown_expert(l, index));
                let drops = l.as_ref().and_then(|l| l.routing.get(index)).map_or(0, |r| r.dropped.iter().filter(|&&d| d).count());
                let partial = shown.is_some_and(|s| !s.1) && drops > 0;
                let compute = compute_of(&trace, shade, layer, index);
                let shared = shared_of(&trace, shade, layer, index);
                // The value on the ramp (compute against the run's most, or the shared share).
                let ramp = shared.or(compute.map(|c| c as f32 / top as f32));
                let style = match (ramp, shown) {
                    (Some(v), _) => ramp_style(v),
                    (None, Some((e, _))) if shade == Shade::Expert => kind_style(&kinds, e),
                    _ => "background:#eee;color:#555".to_string(),
                };
                let title = match shown {
                    Some((e, dropped)) => format!("token {index} · id {} · expert {}{}", t.id, expert_name(&kinds, e), match (dropped, drops) {
                        (true, _) => " (every slot dropped by capacity)".to_string(),
                        (false, 0) => String::new(),
                        (false, d) => format!(" ({d} slot{} dropped by capacity)", if d == 1 { "" } else { "s" }),
                    }) + &compute.map(|c| format!(" · {c} FFN expert{} ran", if c == 1 { "" } else { "s" })).unwrap_or_default()
                      + &shared.map(|p| format!(" · shared expert {:.0}% of the MoE output", 100.0 * p)).unwrap_or_default(),
                    None => format!("token {index} · id {} · not run through the model (last generated token)", t.id),
                };
                // What the colour says, written small after the token (a CSS mark, so the
                // token's text stays its text): its expert, its compute or its shared share.
                let mark = match (shared, compute, shown) {
                    (Some(p), _, _) => Some(format!("{:.0}", 100.0 * p)),
                    (None, Some(c), _) => Some(c.to_string()),
                    (None, None, Some((e, _))) if shade == Shade::Expert => Some(expert_mark(&kinds, e)),
                    _ => None,
                };
                let text = t.text.clone();
                let id = t.id;
                view! {
                    <button class="tok" class:generated=t.kind == "generated" class:dropped=shown.is_some_and(|s| s.1) class:partial=partial
                        class:highlight=move || ctl.highlight.get() == Some(id)
                        class:selected=move || selected() == Some(index)
                        style=style title=title data-mark=mark data-expert=shown.map(|s| s.0.to_string()).unwrap_or_default()
                        data-compute=compute.map(|c| c.to_string())
                        data-shared=shared.map(|p| format!("{p:.4}"))
                        data-testid="token" data-index=index>
                        {text}
                    </button>
                }
            }).collect_view()}
            <super::snapshot::PngButton name="token-strip" />
        </div>
    }
}

/// One token's routing in every layer: the router distribution, the chosen experts and weights,
/// dropped slots, and SCMoE's candidates when the token was generated by it.
#[component]
fn Detail(result: RunResult, token: usize) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let trace = result.trace.clone();
    let Some(tok) = trace.tokens.get(token).cloned() else {
        return view! { <p class="hint">"That token is not in this run."</p> }.into_any();
    };
    let step = trace.steps.iter().find(|s| s.token == token).cloned();
    view! {
        <div class="detail" data-testid="token-detail" data-snapshot="token-detail">
            <div class="card-head">
                <h3>{format!("Token {token}: “{}” (id {}, {})", tok.text, tok.id, tok.kind)}</h3>
                <span><super::snapshot::PngButton name="token-detail" />
                <button class="small" data-snapshot-skip="" on:click=move |_| ctl.view(|v| v.token = None)>"close"</button></span>
            </div>
            <table class="dist">
                <thead><tr><th>"layer"</th><th>"router distribution (bar height = probability; outlined = chosen)"</th><th>"chosen: weight"</th></tr></thead>
                <tbody>
                // The token's row of each layer only: a big trace's layers are tens of megabytes.
                {trace.layers.iter().map(|l| {
                    let Some(r) = l.routing.get(token).cloned() else {
                        return view! { <tr><td>{l.layer}</td><td colspan="2">"not run (last generated token)"</td></tr> }.into_any();
                    };
                    let chosen = r.experts.clone();
                    let kinds = l.expert_kinds.clone();
                    let names = kinds.clone();
                    view! {
                        <tr>
                            <td>{l.layer}</td>
                            <td><div class="bars">
                                {r.probs.iter().enumerate().map(|(e, p)| view! {
                                    <div class="pbar" class:chosen=chosen.contains(&e) title=format!("{}: p = {p:.3}", expert_name(&kinds, e))>
                                        <div class="pfill" style=format!("height:{:.1}%;background:{}", 100.0 * p, kind_bg(&kinds, e))></div>
                                        <span>{if ExpertKind::at(&kinds, e) == ExpertKind::Ffn { e.to_string() } else { "·".to_string() }}</span>
                                    </div>
                                }).collect_view()}
                            </div>{l.probs_are_uniform.then_some(" (this router has no probabilities: uniform shown)")}</td>
                            <td class="slots">{r.experts.iter().enumerate().map(|(i, e)| view! {
                                <span class="chip" class:dropped=r.dropped[i] style=kind_style(&names, *e)>
                                    {format!("{}: {:.2}{}", expert_name(&names, *e), r.weights[i], if r.dropped[i] { " dropped" } else { "" })}
                                </span>
                            }).collect_view()}</td>
                        </tr>
                    }.into_any()
                }).collect_view()}
                </tbody>
            </table>
            {step.map(|s| {
                let text = result.candidate_text.clone();
                let list = move |v: Vec<(u32, f32)>| v.into_iter().map(|(id, p)| format!("{} {:.2}", text.get(&id).cloned().unwrap_or_else(|| format!("#{id}")), p)).collect::<Vec<_>>().join(" · ");
                view! {
                    <div class="scmoe" data-testid="scmoe-candidates">
                        <p><strong>"strong: "</strong>{list(s.strong)}</p>
                        <p><strong>"weak: "</strong>{list(s.weak)}</p>
                        <p><strong>"contrast: "</strong>{list(s.contrast)}</p>
                    </div>
                }
            })}
        </div>
    }.into_any()
}
