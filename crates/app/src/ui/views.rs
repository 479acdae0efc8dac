//! The tabbed views under the token strip: the all-layers grid, the token × expert heatmap, the
//! load bars (where experts are switched off or forced) and the metrics table.

use leptos::prelude::*;
use switchyard_protocol::trace::Trace;
use switchyard_state::Panel;

use super::canvas::{Cell, CellCanvas, CellGrid, LEFT};
use super::palette::{expert_groups, expert_mark, expert_name, kind_bg, kind_fg, kind_style};
use super::snapshot::PngButton;
use super::tokens::shown_expert;
use super::{Change, Ctl};
use switchyard_routing::record::ExpertKind;

const TABS: &[(Panel, &str)] = &[
    (Panel::Tokens, "Overview"),
    (Panel::Grid, "All layers"),
    (Panel::Heatmap, "Heatmap"),
    (Panel::Load, "Load & metrics"),
    (Panel::Capacity, "Capacity"),
    (Panel::Experts, "Experts"),
    (Panel::Domains, "Domains"),
    (Panel::Compare, "Router A/B"),
    (Panel::Train, "Train"),
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
            let n = t.layers.len();
            let layer = move || ctl.layer.get().min(n.saturating_sub(1));
            // Only what shows one layer is rebuilt when the layer changes: the all-layers grid of
            // a big trace (48 layers × 4096 tokens) is drawn once per run.
            match panel.get() {
                Panel::Tokens => {
                    let bars = t.clone();
                    view! {
                        <div class="overview"><Grid trace=t />{move || view! { <LoadBars trace=bars.clone() layer=layer() /> }}</div>
                    }
                    .into_any()
                }
                Panel::Grid => view! { <Grid trace=t /> }.into_any(),
                Panel::Compare if ctl.engine.recorded.with(Option::is_some) => view! {
                    <p class="hint" data-testid="compare-read-only">"The router A/B runs the model twice on the same tokens; a recorded trace has only the routing it recorded. Open the model (if it fits in the page) to compare routers on it."</p>
                }
                .into_any(),
                Panel::Compare => view! { <super::compare::CompareView result=r /> }.into_any(),
                Panel::Train => view! { <super::train::TrainView /> }.into_any(),
                one => (move || {
                    let (t, layer) = (t.clone(), layer());
                    match one {
                        Panel::Heatmap => view! { <Heatmap trace=t layer=layer /> }.into_any(),
                        Panel::Load => {
                            view! { <LoadBars trace=t.clone() layer=layer /><BiasBars layer=layer /><Metrics trace=t /> }
                                .into_any()
                        }
                        Panel::Experts => view! { <Experts trace=t layer=layer /> }.into_any(),
                        Panel::Capacity => view! { <super::capacity::CapacityView trace=t layer=layer /> }.into_any(),
                        _ => {
                            let kinds = t.layers.get(layer).map(|l| l.expert_kinds.clone()).unwrap_or_default();
                            view! { <super::domains::DomainsView shares=r.domains.clone() layer=layer kinds=kinds /> }
                                .into_any()
                        }
                    }
                })
                .into_any(),
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
                bg: kind_bg(&layer.expert_kinds, e).to_string(),
                fg: kind_fg(&layer.expert_kinds, e),
                text: expert_mark(&layer.expert_kinds, e),
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
            <CellCanvas grid=grid testid="grid" corner="layer" label=format!("top expert of each of {n} tokens in each layer")
                on_cell=Callback::new(move |(r, t): (usize, usize)| { let l = layers[r]; ctl.view(|v| { v.token = Some(t); v.layer = l; }) }) />
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
        rows: (0..n_experts)
            .map(|e| {
                (expert_name(&l.expert_kinds, e), kind_bg(&l.expert_kinds, e).to_string(), kind_fg(&l.expert_kinds, e))
            })
            .collect(),
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
            <CellCanvas grid=grid testid="heatmap-canvas" corner="expert" unit="%" marked="chosen" label=format!("router probabilities of layer {layer}")
                on_cell=Callback::new(move |(_, t): (usize, usize)| ctl.view(|v| v.token = Some(t))) />
        </div>
    }.into_any()
}

/// One row of the load bars: an FFN expert, or every free expert of one kind together (they
/// are interchangeable: AdaMoE's 16 null experts are one "skip" choice).
struct LoadRow {
    label: String,
    style: String,
    /// The entries of the expert list the row stands for.
    experts: Vec<usize>,
    share: f64,
    kind: ExpertKind,
}

fn load_rows(kinds: &[ExpertKind], fraction: &[f64]) -> Vec<LoadRow> {
    expert_groups(kinds, fraction.len())
        .into_iter()
        .map(|(kind, experts)| {
            let first = experts[0];
            let name = if kind == ExpertKind::Constant { "const" } else { kind.name() };
            let label = match (kind, experts.len()) {
                (ExpertKind::Ffn, _) => expert_name(kinds, first),
                (_, 1) => name.to_string(),
                (_, n) => format!("{name} ×{n}"),
            };
            let share = experts.iter().map(|&e| fraction[e]).sum();
            LoadRow { label, style: kind_style(kinds, first), experts, share, kind }
        })
        .collect()
}

/// Load per expert against the balanced line (1/E, or the FFN experts' mean when free experts
/// take some slots); each expert (or kind of free expert) can be switched off or forced.
#[component]
fn LoadBars(trace: std::sync::Arc<Trace>, layer: usize) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let Some(l) = trace.layers.get(layer).cloned() else { return ().into_any() };
    let rows = load_rows(&l.expert_kinds, &l.metrics.load.fraction);
    let ffn: Vec<f64> = rows.iter().filter(|r| r.kind == ExpertKind::Ffn).map(|r| r.share).collect();
    let line = if l.expert_kinds.is_empty() {
        1.0 / rows.len().max(1) as f64
    } else {
        ffn.iter().sum::<f64>() / ffn.len().max(1) as f64
    };
    let top = rows.iter().map(|r| r.share).fold(line, f64::max) * 1.1;
    let balanced = 100.0 * line / top;
    let title = if l.expert_kinds.is_empty() { "the line is 1/E" } else { "the line is the FFN experts' mean" };
    view! {
        <div class="load" data-testid="load-bars" data-snapshot="load-bars">
            <h3>{format!("Load at layer {layer} (share of routed slots; {title})")} <PngButton name="load-bars" /></h3>
            <FreeSummary layer=l.clone() />
            {rows.into_iter().map(|row| {
                let experts = row.experts.clone();
                let first = experts[0];
                let (on_a, on_f) = (experts.clone(), experts.clone());
                let ablated = Memo::new(move |_| ctl.state.with(|s| on_a.iter().all(|&e| s.interventions.ablate.contains(&(layer, e)))));
                let forced = Memo::new(move |_| ctl.state.with(|s| on_f.iter().any(|&e| s.interventions.force.contains(&(layer, e)))));
                let kind = row.kind.name();
                let ablate = move |_| ctl.edit(|s| {
                    let iv = &mut s.interventions;
                    if experts.iter().all(|&e| iv.ablate.contains(&(layer, e))) {
                        iv.ablate.retain(|p| !(p.0 == layer && experts.contains(&p.1)))
                    } else {
                        iv.force.retain(|p| !(p.0 == layer && experts.contains(&p.1)));
                        let new: Vec<(usize, usize)> = experts.iter().filter(|&&e| !iv.ablate.contains(&(layer, e))).map(|&e| (layer, e)).collect();
                        iv.ablate.extend(new);
                    }
                }, Change::Deliberate);
                let force = move |_| ctl.edit(|s| {
                    let iv = &mut s.interventions;
                    if iv.force.contains(&(layer, first)) { iv.force.retain(|p| *p != (layer, first)) } else { iv.ablate.retain(|p| *p != (layer, first)); iv.force.retain(|p| p.0 != layer); iv.force.push((layer, first)) }
                }, Change::Deliberate);
                view! {
                    <div class="lrow" data-testid=format!("expert-{first}") data-kind=kind>
                        <span class="chip" style=row.style.clone()>{row.label}</span>
                        <div class="ltrack">
                            <div class="lfill" style=format!("width:{:.1}%;{}", 100.0 * row.share / top, row.style)></div>
                            <div class="balanced" style=format!("left:{balanced:.1}%")></div>
                        </div>
                        <span class="lval">{format!("{:.1}%", 100.0 * row.share)}</span>
                        <button class="small" class:on=ablated data-testid=format!("ablate-{first}") title="never route here" on:click=ablate>
                            {move || if ablated.get() { "off ✓" } else { "off" }}</button>
                        <button class="small" class:on=forced data-testid=format!("force-{first}") title="route every token here alone" on:click=force>
                            {move || if forced.get() { "only ✓" } else { "only" }}</button>
                    </div>
                }
            }).collect_view()}
        </div>
    }.into_any()
}

/// With free experts: what share of the slots they took at this layer, and how many tokens ran
/// no FFN expert at all (AdaMoE: skipped the layer's MoE).
#[component]
fn FreeSummary(layer: switchyard_protocol::trace::TraceLayer) -> impl IntoView {
    let shares = layer.metrics.load.free_share.clone();
    if shares.is_empty() {
        return None;
    }
    let hist = &layer.metrics.active_experts_hist;
    let tokens = hist.iter().sum::<u64>().max(1);
    let skipped = hist.first().copied().unwrap_or(0);
    let parts: Vec<String> = shares.iter().map(|(k, v)| format!("{} {:.1}%", k.name(), 100.0 * v)).collect();
    let data = shares.iter().map(|(k, v)| format!("{}={v:.4}", k.name())).collect::<Vec<_>>().join(",");
    Some(view! {
        <p class="hint" data-testid="free-share" data-shares=data data-skipped=format!("{:.4}", skipped as f64 / tokens as f64)>{format!(
            "Free experts took {} of the slots; {:.1}% of the tokens ran no FFN expert here, {:.2} FFN experts per token on average.",
            parts.join(", "), 100.0 * skipped as f64 / tokens as f64, layer.metrics.active_experts_mean)}</p>
    })
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
                        <span class="chip" style=kind_style(&[], e)>{format!("E{e}")}</span>
                        <div class="ltrack">
                            <div class="lfill" style=format!("position:absolute;left:{left:.1}%;width:{width:.1}%;{}", kind_style(&[], e))></div>
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
                    <th title="mean H(p)/log E">"token entropy"</th><th>"dead experts"</th><th>"drop rate"</th><th title="kept FFN experts per token (free experts cost none)">"FFN experts/token"</th><th title="mean top-1 probability">"confidence"</th>
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
    let kinds = l.expert_kinds.clone();
    let matrix = |m: &[Vec<f64>], baseline: f64| CellGrid {
        left: LEFT,
        rows: (0..m.len())
            .map(|e| (expert_name(&kinds, e), kind_bg(&kinds, e).to_string(), kind_fg(&kinds, e)))
            .collect(),
        cols: (0..m.first().map_or(0, Vec::len)).map(|e| expert_name(&kinds, e)).collect(),
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
                        <th><span class="chip" style=kind_style(&kinds, e)>{expert_name(&kinds, e)}</span></th>
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
                    <CellCanvas grid=co_grid testid="coactivation" corner="expert" unit="%" marked="above the baseline" label="co-activation matrix".to_string() />
                </div>
                {affinity.map(|(grid, summary, base)| view! {
                    <div>
                        <h3>{format!("Affinity to layer {}", layer + 1)}</h3>
                        <p class="hint">{format!("A[i][j]: of the tokens on expert i here, the share on expert j in the next layer (%). Mean of each row's maximum {:.1}%; uniform routing gives k/E = {:.1}% per cell (outlined cells are above it).", 100.0 * summary, 100.0 * base)}</p>
                        <CellCanvas grid=grid testid="affinity" corner="expert here" unit="%" marked="above the baseline" label="layer-to-layer affinity".to_string()
                            on_cell=Callback::new(move |_| ctl.view(|v| v.layer = layer + 1)) />
                    </div>
                })}
            </div>
        </div>
    }
    .into_any()
}
