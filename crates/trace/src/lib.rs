//! The trace runner: run a playground state's prompt (and generation) on a model and collect
//! tokens, per-layer routing and the analysis crate's metrics into the protocol crate's trace
//! schema. `switchyard trace` prints it (JSON, schema in `docs/trace.md`, or CSV) and the
//! engine sends the page the same value, so the two can be compared with a diff tool.

mod compare;
mod domains;

pub use compare::compare;
pub use domains::domain_shares;
// The schema lives in the protocol crate (the page reads it without burn); re-exported so the
// runner's callers need one import.
use switchyard_model::{Generation, Jitter, Model, ModelError, RouterError, RunOptions, Tokenizer, generate_streaming};
pub use switchyard_protocol::trace::{
    Comparison, DROP_BUCKET, DomainShares, DomainText, Side, TRACE_FORMAT, TokenRouting, Trace, TraceLayer, TraceStep,
    TraceToken, layers, spreadsheet_safe, write_csv,
};
use switchyard_state::PlaygroundState;

/// Why a state could not be traced.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The prompt has no tokens.
    #[error("the prompt is empty: type a prompt (or give a link with prompt=...)")]
    EmptyPrompt,
    /// The router, the decoding or the interventions do not fit the model.
    #[error("this configuration does not fit the model: {0}")]
    Router(#[from] RouterError),
    /// The forward pass or decoding failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// How a state runs `router` on `model`: the model's preferred dispatch (device routing on a
/// GPU), the state's seed and interventions, no training options.
fn run_options(model: &Model, state: &PlaygroundState, router: &switchyard_model::RouterSpec) -> RunOptions {
    RunOptions {
        router: router.clone(),
        dispatch: model.preferred_dispatch(),
        seed: state.seed,
        interventions: state.interventions.clone(),
        jitter: None,
        train_step: None,
    }
}

/// Training-only router options (jitter and the step it is keyed by); not part of a state.
pub type TrainOptions = (Option<Jitter>, Option<u64>);

/// Runs the state's prompt (and generation) and builds its trace. `on_token` sees each generated
/// token as it is chosen; returning `false` stops decoding early (the trace then covers the
/// tokens so far).
pub async fn trace(
    model: &Model,
    tok: &Tokenizer,
    state: &PlaygroundState,
    checkpoint_hash: &str,
    backend: &str,
    train: TrainOptions,
    on_token: impl AsyncFnMut(u32) -> bool,
) -> Result<Trace, TraceError> {
    let cfg = model.config();
    let prompt = tok.encode(&state.prompt);
    if prompt.is_empty() {
        return Err(TraceError::EmptyPrompt);
    }
    state.router.validate(cfg.n_experts)?;
    state.decoding.validate(cfg.n_experts)?;
    state.interventions.validate(cfg.n_layers, cfg.n_experts)?;
    let opts = RunOptions { jitter: train.0, train_step: train.1, ..run_options(model, state, &state.router) };
    let g: Generation = generate_streaming(model, &prompt, state.generate, &opts, &state.decoding, on_token).await?;
    let mut offset = 0;
    let tokens = g
        .tokens
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let n = tok.token_bytes(id).len();
            let t = TraceToken {
                index: i,
                id,
                text: tok.display(id),
                bytes: [offset, offset + n],
                kind: if i < g.prompt_len { "prompt" } else { "generated" }.to_string(),
            };
            offset += n;
            t
        })
        .collect();
    let steps = g
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| TraceStep {
            token: g.prompt_len + i,
            strong: c.strong.clone(),
            weak: c.weak.clone(),
            contrast: c.contrast.clone(),
        })
        .collect();
    Ok(Trace {
        format: TRACE_FORMAT.to_string(),
        checkpoint: state.checkpoint.clone(),
        checkpoint_hash: checkpoint_hash.to_string(),
        query: state.to_query(),
        state: state.clone(),
        backend: backend.to_string(),
        tokens,
        layers: layers(&g.routing, &g.tokens),
        weak_layers: g.weak_routing.as_ref().map(|w| layers(w, &g.tokens)),
        steps,
    })
}

#[cfg(test)]
mod tests;
