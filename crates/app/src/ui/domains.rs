//! Domain × expert shares (Mixtral fig. 7, spec §10.2) computed live by the engine over our
//! example prompts (one per corpus domain) and the prompts a person adds under a label, beside
//! the shipped model card's statistics over the whole validation split.

use std::sync::Arc;

use leptos::prelude::*;
use switchyard_protocol::trace::DomainShares;
use switchyard_state::{Labelled, LabelledRefusal, MAX_LABELLED, MAX_LABELLED_CHARS};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::canvas::{Cell, CellCanvas, CellGrid};
use super::{Change, Ctl};
use switchyard_routing::record::ExpertKind;

/// Width of the domain labels.
const LABELS: f64 = 118.0;

/// The chart's columns: each FFN expert, then each kind of free expert (spec §6) as one column
/// (its experts' shares summed: AdaMoE's 16 null experts are one "skip" choice), with how many
/// entries of the expert list each column holds.
fn columns(kinds: &[ExpertKind], e: usize) -> Vec<(String, Vec<usize>)> {
    super::palette::expert_groups(kinds, e)
        .into_iter()
        .map(|(kind, members)| match kind {
            ExpertKind::Ffn => (format!("E{}", members[0]), members),
            k => (k.name().to_string(), members),
        })
        .collect()
}

/// `rows` of `(label, shares)` as a domain × expert chart; cells above uniform routing (1/E per
/// entry of the expert list) outlined.
fn grid(rows: &[(String, Vec<f64>)], kinds: &[ExpertKind]) -> CellGrid {
    let e = rows.first().map_or(0, |r| r.1.len());
    let uniform = 1.0 / e.max(1) as f64;
    let cols = columns(kinds, e);
    CellGrid {
        left: LABELS,
        rows: rows.iter().map(|(d, _)| (d.clone(), "#eceef3".to_string(), "#1d2330")).collect(),
        cols: cols.iter().map(|c| c.0.clone()).collect(),
        cells: rows
            .iter()
            .map(|(_, shares)| {
                cols.iter()
                    .map(|(_, members)| {
                        let s: f64 = members.iter().filter_map(|&x| shares.get(x)).sum();
                        let base = uniform * members.len() as f64;
                        // Colour scale: 0 to 4× uniform.
                        Some(Cell::percent(s / (4.0 * base), s, s > base))
                    })
                    .collect()
            })
            .collect(),
    }
}

thread_local! {
    /// The last card fetched, by checkpoint: the view is redrawn after every run.
    static CARD: std::cell::RefCell<Option<(String, Result<serde_json::Value, String>)>> = const { std::cell::RefCell::new(None) };
}

/// The shipped card's `eval` section, or why there is none (fetched once per checkpoint).
async fn card_eval(checkpoint: String) -> Result<serde_json::Value, String> {
    if let Some(hit) = CARD.with_borrow(|c| c.as_ref().filter(|c| c.0 == checkpoint).map(|c| c.1.clone())) {
        return hit;
    }
    let card = fetch_card(&checkpoint).await;
    CARD.with_borrow_mut(|c| *c = Some((checkpoint, card.clone())));
    card
}

async fn fetch_card(checkpoint: &str) -> Result<serde_json::Value, String> {
    if let Some(why) = super::export::no_card(checkpoint) {
        return Err(why.into());
    }
    let url = format!("assets/{checkpoint}.card.json");
    let window = web_sys::window().ok_or("no window")?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(&url))
        .await
        .map_err(|_| format!("{url}: the download failed"))?
        .dyn_into()
        .map_err(|_| "not a response".to_string())?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let text = JsFuture::from(response.text().map_err(|_| "no body".to_string())?)
        .await
        .map_err(|_| "the body could not be read".to_string())?
        .as_string()
        .unwrap_or_default();
    let card: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))?;
    card.get("eval").cloned().ok_or_else(|| format!("{url} has no validation statistics"))
}

/// The card's rows for one layer, in the order of `order` (then any others).
fn card_rows(eval: &serde_json::Value, layer: usize, order: &[String]) -> Vec<(String, Vec<f64>)> {
    let Some(map) = eval.pointer(&format!("/layers/{layer}/domain_share")).and_then(|m| m.as_object()) else {
        return Vec::new();
    };
    let row = |d: &str| -> Option<(String, Vec<f64>)> {
        Some((d.to_string(), map.get(d)?.as_array()?.iter().filter_map(serde_json::Value::as_f64).collect()))
    };
    let mut rows: Vec<_> = order.iter().filter_map(|d| row(d)).collect();
    rows.extend(map.keys().filter(|k| !order.contains(k)).filter_map(|k| row(k)));
    rows
}

/// The domain view of one layer.
#[component]
pub fn DomainsView(
    shares: Option<Result<Arc<DomainShares>, String>>,
    layer: usize,
    /// The expert list's kinds (empty: all FFN experts).
    kinds: Vec<ExpertKind>,
) -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    // A recorded trace's domains are its own labels; the loaded checkpoint's card is not about it.
    let recorded = ctl.engine.recorded.with_untracked(Option::is_some);
    let card = LocalResource::new(move || card_eval(ctl.state.with(|s| s.checkpoint.clone())));
    let live = match shares {
        None => {
            view! { <p class="pending" data-testid="domains-waiting">"Running the example prompts…"</p> }.into_any()
        }
        Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
        Some(Ok(d)) => {
            let rows: Vec<(String, Vec<f64>)> = d
                .domains
                .iter()
                .zip(d.shares.get(layer).cloned().unwrap_or_default())
                .map(|(dom, s)| (dom.label.clone(), s))
                .collect();
            let order: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
            let names = order.join(", ");
            let tokens: usize = d.domains.iter().map(|x| x.tokens).sum();
            let card_kinds = kinds.clone();
            let card_view = move || {
                card.get().filter(|_| !recorded).map(|c| match c {
                    Err(e) => view! { <p class="hint" data-testid="card-domains-missing">{e}</p> }.into_any(),
                    Ok(eval) => {
                        let rows = card_rows(&eval, layer, &order);
                        let kinds = card_kinds.clone();
                        let router = eval.get("router").and_then(|r| r.as_object()).map(|o| {
                            o.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect::<Vec<_>>().join(" ")
                        }).unwrap_or_default();
                        let n: u64 = eval.get("domains").and_then(|d| d.as_array()).map_or(0, |a| a.iter().filter_map(|x| x.get("tokens")?.as_u64()).sum());
                        view! {
                            <h3>"Model card: the validation split"</h3>
                            <p class="hint">{format!("{n} tokens over {} domains, routed by the checkpoint's own router ({router}).", rows.len())}</p>
                            <CellCanvas grid=grid(&rows, &kinds) testid="card-domain-grid" corner="domain" unit="%" marked="above uniform" label=format!("validation domain by expert shares, layer {layer}") />
                        }.into_any()
                    }
                })
            };
            view! {
                <div class="pair">
                    <div>
                        <h3>{if recorded { "Recorded: the trace's labelled tokens" } else { "Live: the example prompts and yours, under this router" }}</h3>
                        <p class="hint">{format!("{tokens} tokens over {} domains: {names}.", rows.len())}</p>
                        <CellCanvas grid=grid(&rows, &kinds) testid="domain-grid" corner="domain" unit="%" marked="above uniform" label=format!("domain by expert shares, layer {layer}") />
                    </div>
                    <div>{card_view}</div>
                </div>
            }
            .into_any()
        }
    };
    view! {
        <div class="domains" data-testid="domains">
            <h3>{format!("Layer {layer}: share of each domain's routing slots that each expert takes (%)")}</h3>
            <p class="hint">"r(domain, e) = #{tokens of the domain routed to e} / (k · tokens). Uniform routing gives 1/E; outlined cells are above it. Mixtral found little domain specialisation; a small model trained on a mixed corpus shows more."</p>
            {(!kinds.is_empty()).then(|| view! { <p class="hint" data-testid="domain-free">"The last columns are the free experts, each kind summed over its experts: the share of each domain's slots that skipped an FFN expert (null, zero) or took a cheap one (copy, constant)."</p> })}
            {live}
            {(!recorded).then(|| view! { <AddPrompt /> })}
        </div>
    }
}

/// The form that adds a labelled prompt (kept in the link as `add.<label>=<text>`).
#[component]
fn AddPrompt() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let (label, set_label) = signal(String::new());
    let (text, set_text) = signal(String::new());
    let (error, set_error) = signal(None::<String>);
    let add = move |_| {
        let (l, t) = (label.get_untracked().trim().to_string(), text.get_untracked());
        let count = ctl.state.with_untracked(|s| s.labelled.iter().filter(|x| x.label != l).count());
        let why = Labelled::check(&l, &t, count).err().map(|refusal| match refusal {
            LabelledRefusal::Label => "A label is 1 to 24 letters, digits, `_` or `-`.".to_string(),
            LabelledRefusal::Empty => "Type the prompt to add.".to_string(),
            LabelledRefusal::TooLong => format!("A prompt of your own has at most {MAX_LABELLED_CHARS} characters."),
            LabelledRefusal::TooMany => format!("At most {MAX_LABELLED} prompts of your own; remove one first."),
        });
        set_error.set(why.clone());
        if why.is_none() {
            ctl.edit(
                |s| {
                    s.labelled.retain(|x| x.label != l);
                    s.labelled.push(Labelled { label: l, text: t });
                    s.labelled.sort_by(|a, b| a.label.cmp(&b.label));
                },
                Change::Deliberate,
            );
            set_text.set(String::new());
        }
    };
    let mine = move || ctl.state.with(|s| s.labelled.clone());
    view! {
        <div class="add-prompt">
            <h3>"Add your own labelled prompt"</h3>
            <div class="add-row">
                <input type="text" placeholder="label, e.g. legal" maxlength="24" data-testid="add-label" aria-label="domain label"
                    prop:value=label on:input=move |ev| set_label.set(event_target_value(&ev)) />
                <textarea rows="2" placeholder="a prompt from that domain" data-testid="add-text" aria-label="prompt to add" maxlength=MAX_LABELLED_CHARS
                    prop:value=text on:input=move |ev| set_text.set(event_target_value(&ev))></textarea>
                <button data-testid="add-prompt" on:click=add>"Add"</button>
            </div>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <ul class="mine" data-testid="my-prompts">
                {move || mine().into_iter().map(|x| {
                    let l = x.label.clone();
                    view! { <li><strong>{x.label.clone()}</strong>": "{x.text.chars().take(80).collect::<String>()}
                        <button class="small" on:click=move |_| { let l = l.clone(); ctl.edit(move |s| s.labelled.retain(|y| y.label != l), Change::Deliberate) }>"remove"</button></li> }
                }).collect_view()}
            </ul>
        </div>
    }
}
