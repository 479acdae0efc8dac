//! The backend check (`#backend-check`): the same seeded model and prompt through burn's CPU
//! (flex) backend and its wgpu backend on WebGPU, with the results side by side. The engine
//! worker computes the [`Report`]; the page shows it.

use leptos::prelude::*;
use switchyard_protocol::backend::{BackendResult, CHECK_PROMPT as PROMPT, Report};

/// One backend's card.
#[component]
fn BackendCard(
    /// Card title.
    title: &'static str,
    /// `cpu` or `webgpu`, used for the test id.
    id: &'static str,
    /// The result, `None` while running.
    result: Signal<Option<Result<BackendResult, String>>>,
) -> impl IntoView {
    view! {
        <section class="card" data-testid=format!("{id}-card")>
            <h2>{title}</h2>
            {move || match result.get() {
                None => view! { <p class="pending" data-testid=format!("{id}-status")>"running…"</p> }.into_any(),
                Some(Err(e)) => view! {
                    <p class="error" data-testid=format!("{id}-status")>"not available: " {e}</p>
                    <p class="note">"The CPU backend is used instead."</p>
                }.into_any(),
                Some(Ok(r)) => view! {
                    <div data-testid=format!("{id}-status") class="ok">
                        <p>"ran on " <strong>{r.backend.clone()}</strong> " — " {r.adapter.clone()}</p>
                        <p>{format!("forward pass of {} tokens: {:.1} ms", PROMPT.len(), r.forward_ms)}</p>
                        <p>{format!("logits checksum: {:.6}", r.logits_sum)}</p>
                        <p>"layer 0 top experts: " <code>{r.top_experts.first().map(|l| l.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")).unwrap_or_default()}</code></p>
                    </div>
                }.into_any(),
            }}
        </section>
    }
}

/// The backend check page.
#[component]
pub fn BackendCheck(
    /// The engine's report, `None` while it runs.
    report: Signal<Option<Report>>,
) -> impl IntoView {
    let get = move || report.get().unwrap_or_default();
    let cpu = Signal::derive(move || get().cpu);
    let gpu = Signal::derive(move || get().webgpu);
    let json = move || serde_json::to_string(&get()).unwrap_or_default();
    view! {
        <main class="check">
            <h1>"Switchyard — backend check"</h1>
            <p class="lede">"One seeded MoE model (d=128, 4 layers, 8 experts, top-2), one prompt, two backends, run in the engine worker. "
                <a href="./">"Back to the playground"</a></p>
            <p><code>{PROMPT}</code></p>
            <div class="cards">
                <BackendCard title="CPU (burn flex)" id="cpu" result=cpu />
                <BackendCard title="WebGPU (burn wgpu)" id="webgpu" result=gpu />
            </div>
            <p data-testid="agreement">{move || {
                let r = get();
                match (r.max_abs_diff, r.same_routing) {
                    (Some(d), Some(same)) => format!("CPU vs WebGPU: max |Δ logit| = {d:.2e}; routing {}", if same { "identical" } else { "differs" }),
                    _ if r.done => "Only the CPU backend ran, so there is nothing to compare.".to_string(),
                    _ => "comparing…".to_string(),
                }
            }}</p>
            <section class="card" data-testid="tokenizer">
                <h2>"Tokenizer (assets/tokenizer.json)"</h2>
                {move || match get().tokenizer {
                    None => view! { <p class="pending">"loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error">"could not load the tokenizer: " {e}</p> }.into_any(),
                    Some(Ok(t)) => view! {
                        <p>{format!("{} tokens, round trip {}", t.ids.len(), if t.round_trip { "exact" } else { "FAILED" })}</p>
                        <p class="pieces">{t.pieces.into_iter().map(|p| view! { <code class="piece">{p}</code> " " }).collect_view()}</p>
                    }.into_any(),
                }}
            </section>
            <pre data-testid="report" data-done=move || get().done.to_string() hidden>{json}</pre>
        </main>
    }
}
