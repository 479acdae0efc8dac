//! The capacity-factor view (spec §1.6): the capacity factor and priority policy of the top-k
//! router, the tokens capacity dropped, and the drop rate by position bucket (OpenMoE's
//! drop-towards-the-end: with `position` priority, later tokens find their experts full).

use leptos::prelude::*;
use switchyard_protocol::trace::Trace;

use super::canvas::{Cell, CellCanvas, CellGrid, LEFT};
use super::controls::ParamControl;
use super::params::{self, CAPACITY};
use super::snapshot::PngButton;
use super::{Change, Ctl};

/// The capacity controls and what capacity did to this run.
#[component]
pub fn CapacityView(trace: std::sync::Arc<Trace>, layer: usize) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let router = Memo::new(move |_| ctl.state.with(params::router_name));
    let has_cf = Memo::new(move |_| ctl.state.with(|s| params::param(s, "cf").is_some()));
    let controls = move || {
        match (router.get().as_str(), has_cf.get()) {
        ("topk", true) => CAPACITY.iter().map(|c| view! { <ParamControl control=*c /> }).collect_view().into_any(),
        ("gshard" | "expert_choice", _) => view! {
            <ParamControl control=CAPACITY[0] />
            <p class="hint">"This router always has a capacity; its priority is fixed by the reference (position order)."</p>
        }
        .into_any(),
        _ => view! {
            <p class="hint" data-testid="capacity-off">{format!("The {} router runs without a capacity limit, so nothing is dropped.", router.get())}</p>
            <button data-testid="capacity-on" on:click=move |_| {
                let mut s = params::switch_router(&ctl.state.get_untracked(), "topk");
                s = params::with_params(&s, &[("cf", Some(params::TRAINING_CF.into())), ("priority", Some("position".into()))]).0;
                ctl.set(s, Change::Deliberate);
            }>"Use top-2 with capacity factor 1.25 (the training value)"</button>
        }
        .into_any(),
    }
    };
    let buckets: Vec<u32> =
        trace.layers.first().map(|l| l.drop_rate_by_position.iter().map(|b| b.0).collect()).unwrap_or_default();
    let width = switchyard_protocol::trace::DROP_BUCKET as u32;
    let last = trace.layers.first().and_then(|l| l.routing.last()).map_or(0, |r| r.token as u32);
    let grid = CellGrid {
        left: LEFT,
        rows: trace.layers.iter().map(|l| (format!("L{}", l.layer), "#eceef3".to_string(), "#1d2330")).collect(),
        cols: buckets.iter().map(|&b| format!("{b}–{}", (b + width - 1).min(last))).collect(),
        cells: trace
            .layers
            .iter()
            .map(|l| l.drop_rate_by_position.iter().map(|&(_, rate)| Some(Cell::percent(rate, rate, false))).collect())
            .collect(),
    };
    let dropped: Vec<(usize, String, usize, usize)> = trace
        .layers
        .get(layer)
        .map(|l| {
            l.routing
                .iter()
                .filter(|r| r.dropped.iter().any(|&d| d))
                .map(|r| {
                    (
                        r.token,
                        trace.tokens[r.token].text.clone(),
                        r.dropped.iter().filter(|&&d| d).count(),
                        r.dropped.len(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let n_dropped = dropped.len();
    view! {
        <div class="capacity" data-testid="capacity">
            <div class="capacity-controls">
                <h3>"Capacity factor and priority"</h3>
                <p class="hint">"Each expert takes at most C tokens of the sequence; the slots past C are dropped (weight 0, the token keeps its residual). Priority decides who comes first: position order (the reference), reverse, or the most confident first (BPR)."</p>
                {controls}
            </div>
            <div data-snapshot="capacity-summary">
                <table class="metrics" data-testid="capacity-summary">
                    <thead><tr><th>"layer"</th><th>"slots dropped"</th><th>"tokens with every slot dropped"</th><th>"tokens with a slot dropped"</th></tr></thead>
                    <tbody>
                    {trace.layers.iter().map(|l| {
                        let some = l.routing.iter().filter(|r| r.dropped.iter().any(|&d| d)).count();
                        view! { <tr>
                            <td>{l.layer}</td><td>{format!("{:.1}%", 100.0 * l.metrics.drop_rate_slots)}</td>
                            <td>{format!("{:.1}%", 100.0 * l.metrics.drop_rate_tokens)}</td><td>{format!("{some} of {}", l.routing.len())}</td>
                        </tr> }
                    }).collect_view()}
                    </tbody>
                </table>
                <PngButton name="capacity-summary" />
            </div>
            <h3>{format!("Drop rate by position (buckets of {} tokens, %)", switchyard_protocol::trace::DROP_BUCKET)}</h3>
            <p class="hint">"OpenMoE's drop-towards-the-end: with position priority the late buckets lose the most. Try reverse_position or bpr."</p>
            <CellCanvas grid=grid testid="drop-by-position" corner="layer" unit="%" label="slot drop rate per layer and position bucket".to_string() />
            <h3>{format!("Dropped at layer {layer}: {n_dropped} tokens lost a slot (in the token strip: dashed = every slot dropped, red underline = some)")}</h3>
            <p class="dropped-list" data-testid="dropped-tokens">
                {dropped.into_iter().map(|(t, text, d, k)| view! {
                    <button class="piece" title=format!("token {t}: {d} of {k} slots dropped") on:click=move |_| ctl.view(|v| v.token = Some(t))>{text}</button>
                    <span class="dict-share">{format!(" {d}/{k} ")}</span>
                }).collect_view()}
            </p>
        </div>
    }
}
