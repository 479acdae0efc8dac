//! Router A/B: the state's router and decoding (A) against configuration B (the `b.` keys) on the
//! same tokens, seed and interventions. Per token and layer: each side's expert, whether the
//! kept experts changed, and the Jensen–Shannon divergence of the router distributions; per
//! position: both next-token distributions (where SCMoE's strong-vs-weak contrast shows).

use std::sync::Arc;

use leptos::prelude::*;
use switchyard_protocol::trace::{Comparison, Trace};
use switchyard_state::{PlaygroundState, Variant};

use super::canvas::{Cell, CellCanvas, CellGrid};
use super::client::RunResult;
use super::controls::ParamControl;
use super::params::{self, CAPACITY, DECODINGS, ROUTERS};
use super::snapshot::PngButton;
use super::views::expert_row;
use super::{Change, Ctl};

/// One-click configurations B, as `(label, router, decoding)` (empty: A's own).
const PRESETS: &[(&str, &str, &str)] = &[
    ("top-1 (Switch)", "topk&k=1", ""),
    ("THOR (random expert)", "thor", ""),
    ("hash", "hash", ""),
    ("third-best expert alone", "ranks&ranks=2", ""),
    ("sigmoid without the bias", "sigmoid&bias=false", ""),
    ("top-2 with capacity factor 1", "topk&cf=1", ""),
    ("SCMoE decoding, same router", "", "scmoe"),
];

fn preset(state: &PlaygroundState, router: &str, decode: &str) -> Variant {
    let a = state.variant();
    Variant {
        router: if router.is_empty() { a.router } else { params::default_router(router) },
        decoding: if decode.is_empty() { a.decoding } else { params::default_decoding(decode) },
    }
}

/// A router/decoding query for a person: `router=topk k=2 …` without URL escapes.
fn readable(query: &str) -> String {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// The A/B view: B's configuration, then the comparison of the latest run.
#[component]
pub fn CompareView(result: RunResult) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let has_b = Memo::new(move |_| ctl.state.with(|s| s.compare.is_some()));
    // Embedded, B is edited only where the author shows the router controls (`show=router`).
    let editable = Memo::new(move |_| {
        ctl.state.with(|s| s.view.embed.is_none() || s.view.show.contains(&switchyard_state::Control::Router))
    });
    view! {
        <div class="compare" data-testid="compare">
            {move || if has_b.get() {
                view! { <BConfig editable=editable /> }.into_any()
            } else if !editable.get() {
                view! { <p class="hint">"This link has no configuration B (b.router=…) to compare with."</p> }.into_any()
            } else {
                view! {
                    <p class="hint">"Compare this router (A, the panel on the left) with another configuration (B) on the same tokens, seed and interventions. B reads A's text, so every token and layer can be compared. Pick a B:"</p>
                    <div class="presets">
                        {PRESETS.iter().map(|&(label, router, decode)| view! {
                            <button data-testid="compare-preset" on:click=move |_| ctl.edit(|s| s.compare = Some(preset(s, router, decode)), Change::Deliberate)>{label}</button>
                        }).collect_view()}
                    </div>
                }.into_any()
            }}
            {match result.comparison.clone() {
                None => ().into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert" data-testid="compare-error">{e}</p> }.into_any(),
                Some(Ok(c)) => view! { <Results trace=result.trace.clone() comparison=c text=result.candidate_text.clone() /> }.into_any(),
            }}
        </div>
    }
}

/// Configuration B's router and decoding, edited through the `b.` keys of the codec.
#[component]
fn BConfig(
    /// Whether B's controls are shown (else only the two configurations are written out).
    editable: Memo<bool>,
) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let router = Memo::new(move |_| ctl.state.with(|s| params::param(s, "b.router")).unwrap_or_default());
    let decode = Memo::new(move |_| ctl.state.with(|s| params::param(s, "b.decode")).unwrap_or_default());
    let a_query = move || ctl.state.with(|s| readable(&s.variant().to_query()));
    let b_query = move || ctl.state.with(|s| s.compare.as_ref().map(|b| readable(&b.to_query())).unwrap_or_default());
    let b_capacity =
        Memo::new(move |_| ctl.state.with(|s| params::param(s, "b.cf").is_some()) && router.get() == "topk");
    let edit_b = move |f: Box<dyn FnOnce(&mut Variant)>| {
        ctl.edit(
            |s| {
                if let Some(b) = s.compare.as_mut() {
                    f(b);
                }
            },
            Change::Deliberate,
        );
    };
    view! {
        <div class="ab-config">
            <p><strong>"A: "</strong><code data-testid="compare-a">{a_query}</code></p>
            <p><strong>"B: "</strong><code data-testid="compare-b">{b_query}</code></p>
            <div class="b-panel" class:hidden=move || !editable.get()>
                <strong>"B:"</strong>
                <select data-testid="b-router" aria-label="router of B" prop:value=move || router.get()
                    on:change=move |ev| { let v = event_target_value(&ev); edit_b(Box::new(move |b| b.router = params::default_router(&v))) }>
                    {ROUTERS.iter().map(|r| view! { <option value=r.name>{r.title}</option> }).collect_view()}
                </select>
                {move || ROUTERS.iter().find(|r| r.name == router.get()).map(|r| r.controls.iter().map(|c| view! { <ParamControl control=*c prefix="b." /> }).collect_view())}
                {move || b_capacity.get().then(|| CAPACITY.iter().map(|c| view! { <ParamControl control=*c prefix="b." /> }).collect_view())}
                <label class="param"><span>"decoding of B"</span>
                    <select data-testid="b-decode" prop:value=move || decode.get()
                        on:change=move |ev| { let v = event_target_value(&ev); edit_b(Box::new(move |b| b.decoding = params::default_decoding(&v))) }>
                        {DECODINGS.iter().map(|d| view! { <option value=d.0>{d.0}</option> }).collect_view()}
                    </select>
                </label>
                {move || DECODINGS.iter().find(|d| d.0 == decode.get()).map(|d| d.2.iter().map(|c| view! { <ParamControl control=*c prefix="b." /> }).collect_view())}
                {move || (decode.get() == "scmoe").then(|| view! {
                    <p class="hint" data-testid="b-scmoe-note">"SCMoE routes by its own rank lists (strong and weak), so B's router above is not used; B's routing is the strong pass."</p>
                })}
                <button class="small" data-testid="compare-swap" title="make B the router on the left and A the one compared with"
                    on:click=move |_| ctl.edit(|s| if let Some(b) = s.compare.take() {
                        let a = s.variant();
                        s.router = b.router;
                        s.decoding = b.decoding;
                        s.compare = Some(a);
                    }, Change::Deliberate)>"swap A and B"</button>
                <button class="small" data-testid="compare-remove" on:click=move |_| ctl.edit(|s| s.compare = None, Change::Deliberate)>"remove B"</button>
            </div>
        </div>
    }
}

/// The comparison: per-layer summary, the token × layer chart, the next-token distributions.
#[component]
fn Results(
    trace: Arc<Trace>,
    comparison: Arc<Comparison>,
    text: Arc<std::collections::BTreeMap<u32, String>>,
) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let c = comparison;
    let n = trace.tokens.len();
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    for (i, change) in c.layers.iter().enumerate() {
        let (la, lb) = (&c.a.layers[i], &c.b.layers[i]);
        let changed = |t: usize| change.tokens.get(t).is_some_and(|x| x.changed());
        rows.push((format!("L{} A", change.layer), "#eceef3".to_string(), "#1d2330"));
        cells.push(expert_row(la, n, |_| false));
        rows.push((format!("L{} B", change.layer), "#eceef3".to_string(), "#1d2330"));
        cells.push(expert_row(lb, n, changed));
        rows.push((format!("L{} JS", change.layer), "#ffffff".to_string(), "#5b6373"));
        cells.push(
            (0..n)
                .map(|t| {
                    change.tokens.get(t).filter(|_| change.js_comparable).map(|x| Cell::percent(x.js, x.js, false))
                })
                .collect(),
        );
    }
    rows.push(("next".to_string(), "#1d2330".to_string(), "#ffffff"));
    cells.push((0..n).map(|t| c.next_js.get(t).map(|&d| Cell::percent(d, d, false))).collect());
    let grid = CellGrid { left: 48.0, rows, cols: trace.tokens.iter().map(|t| t.text.clone()).collect(), cells };
    let position = move || ctl.token.get().unwrap_or(n.saturating_sub(1)).min(n.saturating_sub(1));
    let summary = c.layers.clone();
    let group_level = ctl
        .state
        .with_untracked(|s| s.router.is_group_level() || s.compare.as_ref().is_some_and(|b| b.router.is_group_level()));
    let c2 = c.clone();
    let c3 = c.clone();
    let (export_error, set_export_error) = signal(None::<String>);
    let tokens = trace.clone();
    view! {
        <div data-snapshot="compare-summary">
            <table class="metrics" data-testid="compare-summary">
                <thead><tr><th>"layer"</th><th>"tokens whose experts changed"</th><th>"first expert changed"</th><th title="Jensen–Shannon divergence of the router distributions, bits (0 = same, 1 = disjoint)">"mean router JS (bits)"</th></tr></thead>
                <tbody>
                {summary.into_iter().map(|l| view! { <tr>
                    <td>{l.layer}</td><td>{format!("{:.1}%", 100.0 * l.changed_rate)}</td>
                    <td>{format!("{:.1}%", 100.0 * l.first_changed_rate)}</td>
                    <td title=(!l.js_comparable).then_some("one side has no router probabilities (THOR, hash, random): nothing to compare")>
                        {if l.js_comparable { format!("{:.3}", l.mean_js) } else { "n/a".to_string() }}</td>
                </tr> }).collect_view()}
                </tbody>
            </table>
            <p class="hint">{format!("Mean JS divergence of the next-token distributions: {:.3} bits.", c.next_js.iter().sum::<f64>() / c.next_js.len().max(1) as f64)}</p>
            <PngButton name="compare-summary" />
            <button class="small" data-testid="export-compare" title="the comparison as JSON (the form of `switchyard compare`)"
                on:click=move |_| match serde_json::to_vec_pretty(&*c3) {
                    Ok(bytes) => set_export_error.set(super::export::save_bytes(&bytes, "application/json", "switchyard-compare.json").err().map(|e| format!("export failed: {e:?}"))),
                    Err(e) => set_export_error.set(Some(e.to_string())),
                }>"A/B JSON"</button>
            {move || export_error.get().map(|e| view! { <span class="error">{e}</span> })}
        </div>
        <p class="hint">"Per layer: A's and B's first expert (B outlined where its experts differ from A's), and the router JS divergence ×100 (empty when a side has no router probabilities); the last row is the JS divergence ×100 of the next-token distributions. Click a token for its next-token distributions. Each side's distribution is the one its decoding chooses from (greedy: the softmax; sampling: after its filters; SCMoE: the contrast over its plausible set), so a change of decoding moves it even where the routing is equal."</p>
        {group_level.then(|| view! { <p class="hint" data-testid="compare-group-note">"A router with a shared capacity or expert choice routes the whole text as one group here (as a prompt-only run does), so a position's routing and next-token distribution also depend on the tokens after it."</p> })}
        <div class="scroll">
            <CellCanvas grid=grid testid="compare-grid" corner="row" marked="changed" label="A and B experts and divergences per token".to_string()
                on_cell=Callback::new(move |(_, t): (usize, usize)| ctl.view(|v| v.token = Some(t))) />
        </div>
        {move || {
            let p = position();
            let after = tokens.tokens.get(p).map(|t| t.text.clone()).unwrap_or_default();
            let list = |side: &[Vec<(u32, f32)>], testid: &'static str| {
                let rows = side.get(p).cloned().unwrap_or_default();
                let text = text.clone();
                view! {
                    <table class="next" data-testid=testid><tbody>
                    {rows.into_iter().map(|(id, prob)| view! { <tr>
                        <td class="piece">{text.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))}</td>
                        <td class="nbar"><div style=format!("width:{:.1}%", 100.0 * prob)></div></td>
                        <td>{format!("{prob:.3}")}</td>
                    </tr> }).collect_view()}
                    </tbody></table>
                }
            };
            view! {
                <div class="next-pair" data-snapshot="next-tokens" data-testid="next-tokens">
                    <h3>{format!("Next token after position {p} (“{after}”): JS divergence {:.3} bits", c2.next_js.get(p).copied().unwrap_or(0.0))}</h3>
                    <div class="pair">
                        <div><h3>"A"</h3><code>{readable(&c2.a.query)}</code>{list(&c2.a.next, "next-a")}</div>
                        <div><h3>"B"</h3><code>{readable(&c2.b.query)}</code>{list(&c2.b.next, "next-b")}</div>
                    </div>
                    <PngButton name="next-tokens" />
                </div>
            }
        }}
    }
}
