//! Decoding: greedy generation with the KV cache.

use burn::prelude::*;
use switchyard_record::RoutingRecord;

use crate::model::{KvCache, Model, ModelError, RunOptions};

/// Tokens and routing of a prompt plus its continuation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Prompt tokens followed by generated tokens.
    pub tokens: Vec<u32>,
    /// How many of `tokens` are the prompt.
    pub prompt_len: usize,
    /// Routing of every token that went through the model, per layer, in position order.
    pub routing: RoutingRecord,
}

/// Index of the largest value (the lowest index on ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// The logits of the last position of the first sequence, read back to the host.
pub async fn last_logits(logits: Tensor<3>) -> Result<Vec<f32>, ModelError> {
    let [_, s, v] = logits.dims();
    logits
        .narrow(0, 0, 1)
        .narrow(1, s - 1, 1)
        .reshape([v])
        .into_data_async()
        .await
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))
}

/// Greedy decoding of `max_new` tokens after `prompt`, one cached step per token.
///
/// The last generated token is not run through the model (nothing would read its output), so
/// `routing` covers `tokens.len() - 1` positions when `max_new > 0`. For group-level routers
/// ([`crate::RouterSpec::is_group_level`]) every step recomputes the whole sequence without a
/// cache, and `routing` is the last full pass.
pub async fn generate_greedy(
    model: &Model,
    prompt: &[u32],
    max_new: usize,
    opts: &RunOptions,
) -> Result<Generation, ModelError> {
    let total = prompt.len() + max_new;
    if total > model.config().max_seq_len {
        return Err(ModelError::Context { len: total, max: model.config().max_seq_len });
    }
    if opts.router.is_group_level() {
        return generate_by_recompute(model, prompt, max_new, opts).await;
    }
    let mut cache = KvCache::default();
    let mut tokens = prompt.to_vec();
    let mut routing = RoutingRecord::default();
    let mut input = vec![prompt.to_vec()];
    for step in 0..=max_new {
        let out = model.forward(&input, None, Some(&mut cache), opts).await?;
        routing.extend(&out.routing);
        if step == max_new {
            break;
        }
        let next = argmax(&last_logits(out.logits).await?) as u32;
        tokens.push(next);
        if step + 1 == max_new {
            break;
        }
        input = vec![vec![next]];
    }
    Ok(Generation { tokens, prompt_len: prompt.len(), routing })
}

async fn generate_by_recompute(
    model: &Model,
    prompt: &[u32],
    max_new: usize,
    opts: &RunOptions,
) -> Result<Generation, ModelError> {
    let mut tokens = prompt.to_vec();
    loop {
        // The pass over `tokens` routes every position the cached path would have run.
        let out = model.forward(std::slice::from_ref(&tokens), None, None, opts).await?;
        if max_new > 0 {
            tokens.push(argmax(&last_logits(out.logits).await?) as u32);
        }
        if tokens.len() == prompt.len() + max_new {
            return Ok(Generation { tokens, prompt_len: prompt.len(), routing: out.routing });
        }
    }
}
