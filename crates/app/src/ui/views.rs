//! The tabbed views under the token strip: the all-layers grid, the token × expert heatmap, the
//! load bars (where experts are switched off or forced) and the metrics table.

use leptos::prelude::*;
use switchyard_protocol::trace::Trace;
use switchyard_state::Panel;

use super::canvas::{Cell, CellCanvas, CellGrid, LEFT};
use super::palette::{expert_bg, expert_fg, expert_style};
use super::snapshot::PngButton;
use super::tokens::shown_expert;
use super::{Change, Ctl};

const TABS: &[(Panel, &str)] = &[
    (Panel::Tokens, "Overview"),
    (Panel::Grid, "All layers"),
    (Panel::Heatmap, "Heatmap"),
    (Panel::Load, "Load & metrics"),
    (Panel::Capacity, "Capacity"),
    (Panel::Experts, "Experts"),
    (Panel::Domains, "Domains"),
    (Panel::Compare, "Router A/B"),
];

/// Tabs and the open view.
#[component]
pub fn ViewTabs() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let panel = move || ctl.panel.get();
    view! {
        <section class="card" class:stale=move || ctl.engine.running.get()>
            <div class="tabs" role="tablist">
                {TABS.iter().map(|&(p, label)| view! {
                    <button role="tab" class="tab" class:active=move || panel() == p aria-selected=move || (panel() == p).to_string()
                        data-testid=format!("tab-{label}") on:click=move |_| ctl.view(|v| v.panel = p)>{label}</button>
                }).collect_view()}
            </div>
            <PanelView panel=Signal::derive(panel) />
        </section>
    }
}

/// One panel's view of the latest run (the tabs' content, and an embedded view).
#[component]
pub fn PanelView(
    /// Which panel.
    panel: Signal<Panel>,
) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    move || {
        ctl.engine.result.get().map(|r| {
            let t = r.trace.clone();
            let layer = ctl.layer.get().min(t.layers.len().saturating_sub(1));
            match panel.get() {
                Panel::Tokens => view! {
                    <div class="overview"><Grid trace=t.clone() /><LoadBars trace=t layer=layer /></div>
                }
                .into_any(),
                Panel::Grid => view! { <Grid trace=t /> }.into_any(),
                Panel::Heatmap => view! { <Heatmap trace=t layer=layer /> }.into_any(),
                Panel::Load => {
                    view! { <LoadBars trace=t.clone() layer=layer /><BiasBars layer=layer /><Metrics trace=t /> }
                        .into_any()
                }
                Panel::Experts => view! { <Experts trace=t layer=layer /> }.into_any(),
                Panel::Capacity => view! { <super::capacity::CapacityView trace=t layer=layer /> }.into_any(),
                Panel::Domains => {
                    view! { <super::domains::DomainsView shares=r.domains.clone() layer=layer /> }.into_any()
                }
                Panel::Compare => view! { <super::compare::CompareView result=r /> }.into_any(),
            }
        })
    }
}

/// One layer's row of a token chart: each token's shown expert in its colour, outlined where
/// `outline(token)` or dropped (dashed).
pub(super) fn expert_row(
    layer: &switchyard_protocol::trace::TraceLayer,
    n: usize,
    outline: impl Fn(usize) -> bool,
) -> Vec<Option<Cell>> {
    (0..n)
        .map(|t| {
            shown_expert(layer, t).map(|(e, dropped)| Cell {
                bg: expert_bg(e).to_string(),
                fg: expert_fg(e),
                text: e.to_string(),
                outline: outline(t) || dropped,
                dashed: dropped,
            })
        })
        .collect()
}

/// Token × layer: each cell is the token's top expert at that layer (click: that token and layer).
#[component]
fn Grid(trace: std::sync::Arc<Trace>) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let n = trace.tokens.len();
    let grid = CellGrid {
        left: LEFT,
        rows: trace.layers.iter().map(|l| (format!("L{}", l.layer), "#eceef3".to_string(), "#1d2330")).collect(),
        cols: trace.tokens.iter().map(|t| t.text.clone()).collect(),
        cells: trace.layers.iter().map(|l| expert_row(l, n, |_| false)).collect(),
    };
    let layers: Vec<usize> = trace.layers.iter().map(|l| l.layer).collect();
    view! {
        <div class="scroll">
            <CellCanvas grid=grid testid="grid" label=format!("top expert of each of {n} tokens in each layer")
                on_cell=move |r, t| { let l = layers[r]; ctl.view(|v| { v.token = Some(t); v.layer = l; }) } />
        </div>
    }
}

/// Token × expert gate probabilities of one layer (in %); chosen cells outlined, dropped ones dashed.
#[component]
fn Heatmap(trace: std::sync::Arc<Trace>, layer: usize) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let Some(l) = trace.layers.get(layer).cloned() else { return ().into_any() };
    let n_experts = l.routing.first().map_or(0, |r| r.probs.len());
    let grid = CellGrid {
        left: LEFT,
        rows: (0..n_experts).map(|e| (format!("E{e}"), expert_bg(e).to_string(), expert_fg(e))).collect(),
        cols: trace.tokens.iter().take(l.routing.len()).map(|t| t.text.clone()).collect(),
        cells: (0..n_experts)
            .map(|e| {
                l.routing
                    .iter()
                    .map(|r| {
                        let p = f64::from(r.probs[e]);
                        let slot = r.experts.iter().position(|&x| x == e);
                        Some(Cell { dashed: slot.is_some_and(|i| r.dropped[i]), ..Cell::percent(p, p, slot.is_some()) })
                    })
                    .collect()
            })
            .collect(),
    };
    view! {
        <div class="scroll" data-testid="heatmap">
            <p class="hint">{format!("Layer {layer}: router probability p(expert | token) in %; outlined cells are the chosen experts, dashed ones were dropped.{}",
                if l.probs_are_uniform { " This router has no probabilities: uniform shown." } else { "" })}</p>
            <CellCanvas grid=grid testid="heatmap-canvas" label=format!("router probabilities of layer {layer}")
                on_cell=move |_, t| ctl.view(|v| v.token = Some(t)) />
        </div>
    }.into_any()
}

/// Load per expert against the balanced line 1/E; each expert can be switched off or forced.
#[component]
fn LoadBars(trace: std::sync::Arc<Trace>, layer: usize) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let Some(l) = trace.layers.get(layer).cloned() else { return ().into_any() };
    let fr = l.metrics.load.fraction.clone();
    let n = fr.len().max(1);
    let top = fr.iter().copied().fold(1.0 / n as f64, f64::max) * 1.1;
    let balanced = 100.0 / n as f64 / top;
    view! {
        <div class="load" data-testid="load-bars" data-snapshot="load-bars">
            <h3>{format!("Load at layer {layer} (share of routed slots; the line is 1/E)")} <PngButton name="load-bars" /></h3>
            {fr.into_iter().enumerate().map(|(e, f)| {
                let ablated = move || ctl.state.with(|s| s.interventions.ablate.contains(&(layer, e)));
                let forced = move || ctl.state.with(|s| s.interventions.force.contains(&(layer, e)));
                view! {
                    <div class="lrow" data-testid=format!("expert-{e}")>
                        <span class="chip" style=expert_style(e)>{format!("E{e}")}</span>
                        <div class="ltrack">
                            <div class="lfill" style=format!("width:{:.1}%;{}", 100.0 * f / top, expert_style(e))></div>
                            <div class="balanced" style=format!("left:{balanced:.1}%")></div>
                        </div>
                        <span class="lval">{format!("{:.1}%", 100.0 * f)}</span>
                        <button class="small" class:on=ablated data-testid=format!("ablate-{e}") title="never route to this expert"
                            on:click=move |_| ctl.edit(|s| {
                                let iv = &mut s.interventions;
                                if iv.ablate.contains(&(layer, e)) { iv.ablate.retain(|p| *p != (layer, e)) } else { iv.force.retain(|p| *p != (layer, e)); iv.ablate.push((layer, e)) }
                            }, Change::Deliberate)>{move || if ablated() { "off ✓" } else { "off" }}</button>
                        <button class="small" class:on=forced data-testid=format!("force-{e}") title="route every token to this expert alone"
                            on:click=move |_| ctl.edit(|s| {
                                let iv = &mut s.interventions;
                                if iv.force.contains(&(layer, e)) { iv.force.retain(|p| *p != (layer, e)) } else { iv.ablate.retain(|p| *p != (layer, e)); iv.force.retain(|p| p.0 != layer); iv.force.push((layer, e)) }
                            }, Change::Deliberate)>{move || if forced() { "only ✓" } else { "only" }}</button>
                    </div>
                }
            }).collect_view()}
        </div>
    }.into_any()
}

/// A checkpoint's learned selection bias at one layer (auxiliary-loss-free balancing, spec
/// §8.2), as bars either side of zero: what the sigmoid router adds to each expert's affinity
/// before choosing. Nothing for checkpoints without one.
#[component]
fn BiasBars(layer: usize) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    move || {
        let bias = ctl.engine.loaded.with(|l| l.as_ref().and_then(|l| l.selection_bias.get(layer).cloned()));
        bias.map(|bias| bias_bars(layer, bias))
    }
}

fn bias_bars(layer: usize, bias: Vec<f32>) -> impl IntoView {
    let top = bias.iter().fold(1e-6f32, |m, b| m.max(b.abs()));
    let values = bias.iter().map(|b| format!("{b:.4}")).collect::<Vec<_>>().join(",");
    view! {
        <div class="load" data-testid="bias-bars" data-layer=layer data-values=values data-snapshot="bias-bars">
            <h3>{format!("Learned selection bias b at layer {layer} (chooses, never weighs)")} <PngButton name="bias-bars" /></h3>
            <p class="hint">"Higher: the expert was under-used in training and is pulled in; lower: it was over-used. Only the differences between experts matter (a constant added to every b changes nothing). The router A/B with “sigmoid without the bias” shows what it changes."</p>
            {bias.into_iter().enumerate().map(|(e, b)| {
                let half = 50.0 * b.abs() / top;
                let (left, width) = if b < 0.0 { (50.0 - half, half) } else { (50.0, half) };
                view! {
                    <div class="lrow">
                        <span class="chip" style=expert_style(e)>{format!("E{e}")}</span>
                        <div class="ltrack">
                            <div class="lfill" style=format!("position:absolute;left:{left:.1}%;width:{width:.1}%;{}", expert_style(e))></div>
                            <div class="balanced" style="left:50%"></div>
                        </div>
                        <span class="lval">{format!("{b:+.3}")}</span>
                    </div>
                }
            }).collect_view()}
        </div>
    }.into_any()
}

/// The metrics of every layer (analysis crate, over this run's tokens).
#[component]
fn Metrics(trace: std::sync::Arc<Trace>) -> impl IntoView {
    view! {
        <div class="scroll" data-snapshot="metrics">
            <PngButton name="metrics" />
            <table class="metrics" data-testid="metrics">
                <thead><tr>
                    <th>"layer"</th><th title="E·Σ f_e·P̄_e, k under balance">"LBL (top-k)"</th><th title="first choice, 1 under balance">"LBL (Switch)"</th>
                    <th title="coefficient of variation of the load">"CV"</th><th>"max/mean"</th><th title="H(load)/log E">"load entropy"</th>
                    <th title="mean H(p)/log E">"token entropy"</th><th>"dead experts"</th><th>"drop rate"</th><th>"active experts"</th><th title="mean top-1 probability">"confidence"</th>
                </tr></thead>
                <tbody>
                {trace.layers.iter().map(|l| {
                    let m = &l.metrics;
                    view! { <tr>
                        <td>{l.layer}</td><td>{format!("{:.3}", m.lbl_topk)}</td><td>{format!("{:.3}", m.lbl_switch)}</td>
                        <td>{format!("{:.3}", m.load.cv)}</td><td>{format!("{:.2}", m.load.max_over_mean)}</td>
                        <td>{format!("{:.3}", m.load.load_entropy)}</td><td>{format!("{:.3}", m.load.token_entropy)}</td>
                        <td>{m.load.dead_experts}</td><td>{format!("{:.1}%", 100.0 * m.drop_rate_slots)}</td>
                        <td>{format!("{:.2}", m.active_experts_mean)}</td><td>{format!("{:.3}", m.confidence)}</td>
                    </tr> }
                }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// One dictionary entry: token id, its text, the share of its routing slots on the expert.
type DictEntry = (u32, String, f64);

/// What the experts of one layer learned on this text (spec §10): the tokens each expert
/// receives most (OpenMoE token-ID specialisation), consecutive-token same-expert rates,
/// co-activation within the layer and affinity to the next layer (ExFlow), each with its
/// random or uniform baseline.
#[component]
fn Experts(trace: std::sync::Arc<Trace>, layer: usize) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let Some(l) = trace.layers.get(layer).cloned() else { return ().into_any() };
    let text = |id: u32| trace.tokens.iter().find(|t| t.id == id).map_or_else(|| format!("#{id}"), |t| t.text.clone());
    let spec = l.specialisation.clone();
    let rows: Vec<(usize, Vec<DictEntry>)> = spec
        .top_tokens
        .iter()
        .enumerate()
        .map(|(e, top)| (e, top.iter().map(|&(id, share)| (id, text(id), share)).collect()))
        .collect();
    let matrix = |m: &[Vec<f64>], baseline: f64| CellGrid {
        left: LEFT,
        rows: (0..m.len()).map(|e| (format!("E{e}"), expert_bg(e).to_string(), expert_fg(e))).collect(),
        cols: (0..m.first().map_or(0, Vec::len)).map(|e| format!("E{e}")).collect(),
        cells: m.iter().map(|row| row.iter().map(|&v| Some(Cell::percent(v, v, v > baseline))).collect()).collect(),
    };
    let (co, co_base) = l.co_activation.clone();
    let co_grid = matrix(&co, co_base);
    let affinity = l.affinity_to_next.clone().map(|(a, summary, base)| (matrix(&a, base), summary, base));
    let c = l.consecutive.clone();
    view! {
        <div class="experts" data-testid="experts">
            <h3>{format!("Layer {layer}: the tokens each expert receives most")}</h3>
            <p class="hint" data-testid="specialisation">{format!(
                "Token-ID specialisation {:.3} (random routing: {:.3}). Share = the fraction of that token's routing slots (k per occurrence) that went to the expert.",
                spec.score, spec.baseline)}</p>
            <div data-snapshot="dictionary"><PngButton name="dictionary" />
            <table class="dictionary" data-testid="dictionary">
                <tbody>
                {rows.into_iter().map(|(e, top)| view! {
                    <tr>
                        <th><span class="chip" style=expert_style(e)>{format!("E{e}")}</span></th>
                        <td>{top.into_iter().map(|(id, t, share)| view! {
                            <button class="piece dict-token" class:on=move || ctl.highlight.get() == Some(id) data-testid="dict-token"
                                title="highlight its occurrences in the text"
                                on:click=move |_| ctl.highlight.update(|h| *h = if *h == Some(id) { None } else { Some(id) })>{t}</button>
                            <span class="dict-share">{format!(" {:.0}% ", 100.0 * share)}</span>
                        }).collect_view()}</td>
                    </tr>
                }).collect_view()}
                </tbody>
            </table>
            </div>
            <h3>"Consecutive tokens on the same expert"</h3>
            <p data-testid="consecutive">{format!(
                "First choice equal for {:.1}% of {} adjacent pairs (random: {:.1}%); any shared expert {:.1}% (random: {:.1}%).",
                100.0 * c.first_choice, c.pairs, 100.0 * c.first_choice_baseline, 100.0 * c.any_overlap, 100.0 * c.any_overlap_baseline)}</p>
            <div class="pair">
                <div>
                    <h3>"Co-activation within the layer"</h3>
                    <p class="hint">{format!("C[i][j]: of the tokens routed to expert i, the share also routed to j (%). Uniform baseline {:.1}%; outlined cells are above it.", 100.0 * co_base)}</p>
                    <CellCanvas grid=co_grid testid="coactivation" label="co-activation matrix".to_string() on_cell=|_, _| {} />
                </div>
                {affinity.map(|(grid, summary, base)| view! {
                    <div>
                        <h3>{format!("Affinity to layer {}", layer + 1)}</h3>
                        <p class="hint">{format!("A[i][j]: of the tokens on expert i here, the share on expert j in the next layer (%). Mean of each row's maximum {:.1}%; uniform routing gives k/E = {:.1}% per cell (outlined cells are above it).", 100.0 * summary, 100.0 * base)}</p>
                        <CellCanvas grid=grid testid="affinity" label="layer-to-layer affinity".to_string()
                            on_cell=move |_, _| ctl.view(|v| v.layer = layer + 1) />
                    </div>
                })}
            </div>
        </div>
    }
    .into_any()
}
