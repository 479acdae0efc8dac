//! Domain × expert shares (Mixtral fig. 7, spec §10.2) over a set of labelled prompts, under a
//! state's router, interventions and seed: the page's live version of the model card's
//! validation-set statistics.

use switchyard_analysis::domain_distribution;
use switchyard_model::{Model, Tokenizer, decoding_passes};
use switchyard_state::PlaygroundState;

use crate::{DomainShares, DomainText, TraceError, run_options};

/// Runs every `(label, text)` through the model (no generation) and returns the shares.
pub async fn domain_shares(
    model: &Model,
    tok: &Tokenizer,
    state: &PlaygroundState,
    texts: &[(String, String)],
) -> Result<DomainShares, TraceError> {
    let cfg = model.config();
    state.router.validate(cfg.n_experts)?;
    state.decoding.validate(cfg.n_experts)?;
    state.interventions.validate(cfg.n_layers, cfg.n_experts)?;
    // Route as the trace does: under SCMoE that is the strong pass's rank list.
    let opts = decoding_passes(&run_options(model, state, &state.router), &state.decoding).0;
    let mut domains: Vec<DomainText> = Vec::new();
    let mut records = Vec::new();
    for (label, text) in texts {
        let mut ids = tok.encode(text);
        ids.truncate(cfg.max_seq_len);
        if ids.is_empty() {
            continue;
        }
        let out = model.forward(&[ids.clone()], None, None, &opts).await?;
        match domains.iter_mut().find(|d| &d.label == label) {
            Some(d) => d.tokens += ids.len(),
            None => domains.push(DomainText { label: label.clone(), tokens: ids.len() }),
        }
        records.push((label.clone(), out.routing));
    }
    let shares = (0..cfg.n_layers)
        .map(|l| {
            let by = domain_distribution(records.iter().map(|(d, r)| (d.as_str(), &r.layers[l])));
            domains.iter().map(|d| by.get(&d.label).cloned().unwrap_or_default()).collect()
        })
        .collect();
    Ok(DomainShares { domains, shares })
}
