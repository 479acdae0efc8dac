//! Router A/B: the state's configuration (A) and its `compare` configuration (B) run on the
//! same tokens with the same seed and interventions. B does not generate its own text: it reads
//! A's tokens (prompt and A's generation), so every position can be compared. Both sides run the
//! whole text as one forward pass: for routers whose groups share a capacity (top-k with
//! capacity, GShard, expert choice) the whole text is one group, as in a prompt-only trace, and
//! a position's next-token distribution then depends on the tokens after it.

use switchyard_analysis::{compare_layer, js_divergence};
use switchyard_model::{Model, next_token_distributions, top_candidates};
use switchyard_state::{PlaygroundState, Variant};

use crate::{Comparison, Side, TraceError, layers, run_options};

/// Runs A and B over `tokens` (teacher-forced) and compares them. `None` when the state has no
/// configuration B.
pub async fn compare(model: &Model, state: &PlaygroundState, tokens: &[u32]) -> Result<Option<Comparison>, TraceError> {
    let Some(b) = &state.compare else { return Ok(None) };
    let cfg = model.config();
    b.router.validate(cfg.n_experts)?;
    b.decoding.validate(cfg.n_experts)?;
    let run = |v: &Variant| run_options(model, state, &v.router);
    let a = state.variant();
    let (ra, pa) = next_token_distributions(model, tokens, &run(&a), &a.decoding).await?;
    let (rb, pb) = next_token_distributions(model, tokens, &run(b), &b.decoding).await?;
    let side = |v: &Variant, r, p: &[Vec<f32>]| Side {
        query: v.to_query(),
        layers: layers(r, tokens),
        next: p.iter().map(|row| top_candidates(row)).collect(),
    };
    Ok(Some(Comparison {
        query: state.to_query(),
        tokens: tokens.to_vec(),
        layers: ra.layers.iter().zip(&rb.layers).map(|(x, y)| compare_layer(x, y)).collect(),
        next_js: pa.iter().zip(&pb).map(|(x, y)| js_divergence(x, y)).collect(),
        a: side(&a, &ra, &pa),
        b: side(b, &rb, &pb),
    }))
}
