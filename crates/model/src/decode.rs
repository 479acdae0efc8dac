//! Decoding: greedy, seeded sampling, and SCMoE self-contrast decoding (spec §4), all with the
//! KV cache (or whole-sequence recomputes for group-level routers).

use burn::prelude::*;
use switchyard_record::RoutingRecord;
use switchyard_routing::rng::{self, stream};
use switchyard_routing::{
    Decoding, RouterSpec, StepCandidates, WeakMode, argmax, contrast_scores, draw, sample, sample_probs,
    softmax_row as softmax, top_candidates,
};

use crate::model::{KvCache, Model, ModelError, RunOptions};

/// Tokens and routing of a prompt plus its continuation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Prompt tokens followed by generated tokens.
    pub tokens: Vec<u32>,
    /// How many of `tokens` are the prompt.
    pub prompt_len: usize,
    /// Routing of every token that went through the model (the strong pass under SCMoE), per
    /// layer, in position order.
    pub routing: RoutingRecord,
    /// SCMoE only: the weak pass's routing.
    pub weak_routing: Option<RoutingRecord>,
    /// SCMoE only: the candidates of every generated token.
    pub candidates: Vec<StepCandidates>,
}

/// The positions `[from, from + n)` of the first sequence's logits, read back to the host as
/// one flat `n × V` vector.
async fn logits_to_host(logits: Tensor<3>, from: usize, n: usize) -> Result<Vec<f32>, ModelError> {
    let v = logits.dims()[2];
    let host = crate::host::to_host(logits.narrow(0, 0, 1).narrow(1, from, n).reshape([n * v])).await?;
    crate::host::finite(host, || "in the next-token logits".into())
}

/// The logits of the last position of the first sequence, read back to the host.
pub async fn last_logits(logits: Tensor<3>) -> Result<Vec<f32>, ModelError> {
    let s = logits.dims()[1];
    logits_to_host(logits, s - 1, 1).await
}

/// Greedy decoding of `max_new` tokens after `prompt`.
pub async fn generate_greedy(
    model: &Model,
    prompt: &[u32],
    max_new: usize,
    opts: &RunOptions,
) -> Result<Generation, ModelError> {
    generate(model, prompt, max_new, opts, &Decoding::Greedy).await
}

/// Decodes `max_new` tokens after `prompt` (sequence id 0).
///
/// The last generated token is not run through the model (nothing would read its output), so
/// `routing` covers `tokens.len() - 1` positions when `max_new > 0`. Group-level routers
/// ([`RouterSpec::is_group_level`]) recompute the whole sequence at every step instead of
/// using the KV cache, and `routing` is then the last full pass.
pub async fn generate(
    model: &Model,
    prompt: &[u32],
    max_new: usize,
    opts: &RunOptions,
    decoding: &Decoding,
) -> Result<Generation, ModelError> {
    generate_streaming(model, prompt, max_new, opts, decoding, async |_| true).await
}

/// [`generate`], calling `on_token` with every generated token as soon as it is chosen. When
/// `on_token` returns `false` decoding stops there (a superseded request in the playground) and
/// the generation so far is returned.
pub async fn generate_streaming(
    model: &Model,
    prompt: &[u32],
    max_new: usize,
    opts: &RunOptions,
    decoding: &Decoding,
    mut on_token: impl AsyncFnMut(u32) -> bool,
) -> Result<Generation, ModelError> {
    let total = prompt.len() + max_new;
    if prompt.is_empty() {
        return Err(ModelError::Input("the prompt is empty".into()));
    }
    if total > model.config().max_seq_len {
        return Err(ModelError::Context { len: total, max: model.config().max_seq_len });
    }
    let (strong_opts, weak_opts) = decoding_passes(opts, decoding);
    let mut strong = Pass::new(model, &strong_opts);
    let mut weak = weak_opts.as_ref().map(|o| Pass::new(model, o));
    let mut tokens = prompt.to_vec();
    let mut candidates = Vec::new();
    for step in 0..=max_new {
        let zs = strong.advance(&tokens).await?;
        let zw = match weak.as_mut() {
            Some(w) => Some(w.advance(&tokens).await?),
            None => None,
        };
        if step == max_new {
            break;
        }
        let u = rng::u01(opts.seed, stream::SAMPLING, &[0, step as u64]);
        let next = match (decoding, &zw) {
            (Decoding::Greedy, _) => argmax(&zs),
            (Decoding::Sample(cfg), _) => sample(&zs, cfg, u),
            (Decoding::SelfContrast(cfg), Some(zw)) => {
                let score = contrast_scores(&zs, zw, cfg);
                let p = softmax(&score);
                candidates.push(StepCandidates {
                    strong: top_candidates(&softmax(&zs.iter().map(|v| v / cfg.tau_strong).collect::<Vec<_>>())),
                    weak: top_candidates(&softmax(&zw.iter().map(|v| v / cfg.tau_weak).collect::<Vec<_>>())),
                    contrast: top_candidates(&p),
                });
                if cfg.sample { draw(&p, u) } else { argmax(&score) }
            }
            (Decoding::SelfContrast(_), None) => {
                return Err(ModelError::Input("self-contrast needs a weak pass".into()));
            }
        };
        tokens.push(next as u32);
        if !on_token(next as u32).await || step + 1 == max_new {
            break;
        }
    }
    Ok(Generation {
        tokens,
        prompt_len: prompt.len(),
        routing: strong.routing,
        weak_routing: weak.map(|w| w.routing),
        candidates,
    })
}

/// The router and pass options a decoding runs with: SCMoE replaces the router by its strong
/// rank list and adds a weak pass; the other modes use `opts` as given.
pub fn decoding_passes(opts: &RunOptions, decoding: &Decoding) -> (RunOptions, Option<RunOptions>) {
    match decoding {
        Decoding::SelfContrast(c) => {
            let strong = RunOptions { router: RouterSpec::Ranks { ranks: c.strong_ranks.clone() }, ..opts.clone() };
            let weak_router = match &c.weak {
                WeakMode::Ranks { ranks } => RouterSpec::Ranks { ranks: ranks.clone() },
                WeakMode::Random => RouterSpec::RandomOne,
            };
            (strong, Some(RunOptions { router: weak_router, ..opts.clone() }))
        }
        _ => (opts.clone(), None),
    }
}

/// The logits of every position of the first sequence, `[S][V]`, read back to the host.
pub async fn all_logits(logits: Tensor<3>) -> Result<Vec<Vec<f32>>, ModelError> {
    let [_, s, v] = logits.dims();
    let flat = logits_to_host(logits, 0, s).await?;
    Ok(flat.chunks(v).map(<[f32]>::to_vec).collect())
}

/// Runs `tokens` once (teacher-forced) and returns the routing record (the strong pass under
/// SCMoE) and, at every position, the next-token distribution the decoding chooses from:
/// `softmax(z)` for greedy (its argmax is the choice), the filtered distribution for sampling,
/// and `softmax` of the self-contrast score for SCMoE.
pub async fn next_token_distributions(
    model: &Model,
    tokens: &[u32],
    opts: &RunOptions,
    decoding: &Decoding,
) -> Result<(RoutingRecord, Vec<Vec<f32>>), ModelError> {
    let (strong_opts, weak_opts) = decoding_passes(opts, decoding);
    let strong = model.forward(&[tokens.to_vec()], None, None, &strong_opts).await?;
    let zs = all_logits(strong.logits).await?;
    let dists = match (decoding, weak_opts) {
        (Decoding::SelfContrast(cfg), Some(w)) => {
            let zw = all_logits(model.forward(&[tokens.to_vec()], None, None, &w).await?.logits).await?;
            zs.iter().zip(&zw).map(|(s, w)| softmax(&contrast_scores(s, w, cfg))).collect()
        }
        (Decoding::Sample(cfg), _) => zs.iter().map(|z| sample_probs(z, cfg)).collect(),
        _ => zs.iter().map(|z| softmax(z)).collect(),
    };
    Ok((strong.routing, dists))
}

/// One pass of the model over a growing sequence: KV-cached steps, or full recomputes for
/// group-level routers.
struct Pass<'a> {
    model: &'a Model,
    opts: &'a RunOptions,
    cache: KvCache,
    routing: RoutingRecord,
}

impl<'a> Pass<'a> {
    fn new(model: &'a Model, opts: &'a RunOptions) -> Self {
        Self { model, opts, cache: KvCache::default(), routing: RoutingRecord::default() }
    }

    /// Runs the tokens not seen yet and returns the next-token logits (read back with the
    /// routing: no second read-back).
    async fn advance(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        if self.opts.router.is_group_level() {
            let out = self.model.forward(&[tokens.to_vec()], None, None, self.opts).await?;
            self.routing = out.routing;
            return Ok(out.last_logits);
        }
        let new = tokens[self.cache.len()..].to_vec();
        let out = self.model.forward(&[new], None, Some(&mut self.cache), self.opts).await?;
        self.routing.extend(&out.routing);
        Ok(out.last_logits)
    }
}
