//! Held-out evaluation: next-token negative log-likelihood of a token stream, counted per byte
//! so that models with different tokenizers compare (bits per byte = total nats / total bytes /
//! ln 2).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use switchyard_record::RoutingRecord;

use crate::model::{Model, ModelError, RunOptions};
use crate::tokenizer::Tokenizer;

/// Loss totals of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DomainEval {
    /// Tokens predicted (all but the first).
    pub tokens: usize,
    /// Bytes of the predicted tokens.
    pub bytes: usize,
    /// Total negative log-likelihood, nats.
    pub nats: f64,
}

impl DomainEval {
    /// `nats / bytes / ln 2`.
    pub fn bits_per_byte(&self) -> f64 {
        self.nats / self.bytes.max(1) as f64 / std::f64::consts::LN_2
    }

    /// Nats per token.
    pub fn nats_per_token(&self) -> f64 {
        self.nats / self.tokens.max(1) as f64
    }
}

/// Loss totals, and the routing of every input token when asked for.
#[derive(Debug, Clone, Default)]
pub struct EvalOutput {
    /// The totals.
    pub eval: DomainEval,
    /// Routing of the input tokens (every id but the last), in stream order; each chunk is its
    /// own sequence (`seq_id` = chunk index).
    pub routing: RoutingRecord,
    /// The input token ids, aligned with `routing`.
    pub inputs: Vec<u32>,
}

/// Scores `ids`: each token after the first is predicted from the tokens before it in the same
/// chunk. The inputs `ids[..n-1]` are cut into consecutive chunks of `context` tokens (a chunk
/// starts with no memory of the previous one), run `batch` chunks per forward call.
pub async fn eval_tokens(
    model: &Model,
    ids: &[u32],
    tok: &Tokenizer,
    context: usize,
    batch: usize,
    opts: &RunOptions,
    keep_routing: bool,
) -> Result<EvalOutput, ModelError> {
    let mut out = EvalOutput::default();
    if ids.len() < 2 {
        return Ok(out);
    }
    let context = context.clamp(1, model.config().max_seq_len);
    let inputs = &ids[..ids.len() - 1];
    let targets = &ids[1..];
    let chunks: Vec<(usize, usize)> =
        (0..inputs.len()).step_by(context).map(|s| (s, (s + context).min(inputs.len()))).collect();
    // Full chunks go in batches; the shorter last chunk runs alone.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, &(s, e)) in chunks.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if g.len() < batch.max(1) && e - s == context && chunks[g[0]].1 - chunks[g[0]].0 == context => {
                g.push(i)
            }
            _ => groups.push(vec![i]),
        }
    }
    for group in groups {
        let rows: Vec<Vec<u32>> = group.iter().map(|&i| inputs[chunks[i].0..chunks[i].1].to_vec()).collect();
        let tgt: Vec<i32> =
            group.iter().flat_map(|&i| targets[chunks[i].0..chunks[i].1].iter().map(|&t| t as i32)).collect();
        let seq_ids: Vec<u32> = group.iter().map(|&i| i as u32).collect();
        let (b, s) = (rows.len(), rows[0].len());
        let f = model.forward(&rows, Some(&seq_ids), None, opts).await?;
        let t = Tensor::<3, Int>::from_data(TensorData::new(tgt.clone(), [b, s, 1]), model.device());
        let nll = log_softmax(f.logits, 2).gather(2, t).sum().neg();
        let nats = crate::host::to_host(nll).await?.first().map_or(f64::NAN, |&v| f64::from(v));
        out.eval.nats += nats;
        out.eval.tokens += tgt.len();
        out.eval.bytes += tgt.iter().map(|&id| tok.token_bytes(id as u32).len()).sum::<usize>();
        if keep_routing {
            out.routing.extend(&f.routing);
            out.inputs.extend(rows.iter().flatten());
        }
    }
    Ok(out)
}
