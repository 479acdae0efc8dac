//! Decoding: greedy, seeded sampling, and SCMoE self-contrast decoding (spec §4), all with the
//! KV cache (or whole-sequence recomputes for group-level routers).

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use switchyard_record::RoutingRecord;

use crate::model::{KvCache, Model, ModelError, RunOptions};
use crate::rng::{self, stream};
use crate::router::{RouterError, RouterSpec, bounds, check_ranks, softmax_row as softmax};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Decoding {
    /// The most likely token (lowest id on ties).
    Greedy,
    /// A seeded draw (stream `SAMPLING`, keyed by sequence and step) after temperature, top-k
    /// and top-p filtering.
    Sample(SampleConfig),
    /// SCMoE self-contrast decoding (spec §4): a strong and a weak pass of the same model with
    /// their own KV caches, scored `(1+β)·z_s − β·z_w` under the plausibility cutoff.
    SelfContrast(ScmoeConfig),
}

/// Sampling parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleConfig {
    /// Temperature (> 0).
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1 = all).
    pub top_p: f32,
}

/// SCMoE's weak activation (spec §4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WeakMode {
    /// Experts at these ranks (default `[0]`, top-1; `[2]` is the README's rank-3).
    Ranks {
        /// 0-based ranks.
        ranks: Vec<usize>,
    },
    /// One uniformly random expert per token and layer.
    Random,
}

/// SCMoE parameters (spec §4.3), reference defaults in [`ScmoeConfig::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScmoeConfig {
    /// Ranks of the strong activation (default `[0, 1]`).
    pub strong_ranks: Vec<usize>,
    /// The weak activation.
    pub weak: WeakMode,
    /// Plausibility cutoff α: only tokens with `p_s ≥ α·max p_s` survive.
    pub alpha: f32,
    /// Contrast strength β.
    pub beta: f32,
    /// Strong temperature τ_s.
    pub tau_strong: f32,
    /// Weak temperature τ_w.
    pub tau_weak: f32,
    /// Ban the end-of-sequence token (the reference default); needs `eos_id`.
    pub ban_eos: bool,
    /// The vocabulary's end-of-sequence id, if it has one.
    pub eos_id: Option<u32>,
    /// Sample from `softmax(score)` (seeded) instead of taking the argmax.
    pub sample: bool,
}

impl Default for ScmoeConfig {
    fn default() -> Self {
        Self {
            strong_ranks: vec![0, 1],
            weak: WeakMode::Ranks { ranks: vec![0] },
            alpha: 0.1,
            beta: 0.5,
            tau_strong: 1.0,
            tau_weak: 1.0,
            ban_eos: true,
            eos_id: None,
            sample: false,
        }
    }
}

impl Decoding {
    /// Checks the parameters against a model with `n_experts` experts: every real value inside
    /// its [`bounds`], SCMoE's rank lists non-empty, below E and without repeats.
    pub fn validate(&self, n_experts: usize) -> Result<(), RouterError> {
        match self {
            Self::Greedy => Ok(()),
            Self::Sample(c) => {
                bounds::TEMPERATURE.check("sampling temperature", c.temperature)?;
                bounds::SAMPLE_P.check("sampling top-p", c.top_p)
            }
            Self::SelfContrast(c) => c.validate(n_experts),
        }
    }
}

impl ScmoeConfig {
    /// Checks the parameters (see [`Decoding::validate`]).
    pub fn validate(&self, n_experts: usize) -> Result<(), RouterError> {
        check_ranks("SCMoE's strong rank list", &self.strong_ranks, n_experts)?;
        if let WeakMode::Ranks { ranks } = &self.weak {
            check_ranks("SCMoE's weak rank list", ranks, n_experts)?;
        }
        bounds::ALPHA.check("SCMoE α", self.alpha)?;
        bounds::BETA.check("SCMoE β", self.beta)?;
        bounds::TEMPERATURE.check("SCMoE τ_s", self.tau_strong)?;
        bounds::TEMPERATURE.check("SCMoE τ_w", self.tau_weak)
    }
}

/// The strong, weak and contrast candidates of one SCMoE step (top tokens with probabilities).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCandidates {
    /// `softmax(z_s)`'s top tokens.
    pub strong: Vec<(u32, f32)>,
    /// `softmax(z_w)`'s top tokens.
    pub weak: Vec<(u32, f32)>,
    /// `softmax(score)`'s top tokens (after the cutoff).
    pub contrast: Vec<(u32, f32)>,
}

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

/// How many candidates a step reports.
const CANDIDATES: usize = 5;

/// Index of the largest value (the lowest index on ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// The positions `[from, from + n)` of the first sequence's logits, read back to the host as
/// one flat `n × V` vector.
async fn logits_to_host(logits: Tensor<3>, from: usize, n: usize) -> Result<Vec<f32>, ModelError> {
    let v = logits.dims()[2];
    let host = logits
        .narrow(0, 0, 1)
        .narrow(1, from, n)
        .reshape([n * v])
        .into_data_async()
        .await
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
    crate::model::finite(host, || "in the next-token logits".into())
}

/// The logits of the last position of the first sequence, read back to the host.
pub async fn last_logits(logits: Tensor<3>) -> Result<Vec<f32>, ModelError> {
    let s = logits.dims()[1];
    logits_to_host(logits, s - 1, 1).await
}

/// The most likely tokens of a distribution with their probabilities, best first.
pub fn top_candidates(p: &[f32]) -> Vec<(u32, f32)> {
    crate::router::rank_experts(p).into_iter().take(CANDIDATES).map(|i| (i as u32, p[i])).collect()
}

/// Draws an index from `probs` with the uniform `u` (inverse CDF in index order).
fn draw(probs: &[f32], u: f64) -> usize {
    let mut acc = 0.0f64;
    for (i, &p) in probs.iter().enumerate() {
        acc += f64::from(p);
        if u < acc {
            return i;
        }
    }
    probs.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

/// The distribution seeded sampling draws from: temperature, then top-k and top-p filtering.
pub fn sample_probs(logits: &[f32], cfg: &SampleConfig) -> Vec<f32> {
    let t = cfg.temperature.max(1e-6);
    let mut z: Vec<f32> = logits.iter().map(|&v| v / t).collect();
    let order = crate::router::rank_experts(&z);
    let mut keep = vec![false; z.len()];
    let k = if cfg.top_k == 0 { z.len() } else { cfg.top_k.min(z.len()) };
    let p = softmax(&z);
    let mut mass = 0.0f32;
    for &i in order.iter().take(k) {
        keep[i] = true;
        mass += p[i];
        if mass >= cfg.top_p {
            break;
        }
    }
    for (v, k) in z.iter_mut().zip(&keep) {
        if !k {
            *v = f32::NEG_INFINITY;
        }
    }
    softmax(&z)
}

/// Temperature, top-k and top-p filtering, then a seeded draw.
fn sample(logits: &[f32], cfg: &SampleConfig, u: f64) -> usize {
    draw(&sample_probs(logits, cfg), u)
}

/// The SCMoE score of spec §4.2 (−∞ outside the plausible set and, if banned, at EOS).
pub fn contrast_scores(strong: &[f32], weak: &[f32], cfg: &ScmoeConfig) -> Vec<f32> {
    let zs: Vec<f32> = strong.iter().map(|v| v / cfg.tau_strong).collect();
    let zw: Vec<f32> = weak.iter().map(|v| v / cfg.tau_weak).collect();
    let cutoff = cfg.alpha.ln() + zs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut score: Vec<f32> = zs
        .iter()
        .zip(&zw)
        .map(|(&s, &w)| if s < cutoff { f32::NEG_INFINITY } else { (1.0 + cfg.beta) * s - cfg.beta * w })
        .collect();
    if cfg.ban_eos
        && let Some(eos) = cfg.eos_id
        && let Some(v) = score.get_mut(eos as usize)
    {
        *v = f32::NEG_INFINITY;
    }
    score
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

    /// Runs the tokens not seen yet and returns the next-token logits.
    async fn advance(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let out = if self.opts.router.is_group_level() {
            let out = self.model.forward(&[tokens.to_vec()], None, None, self.opts).await?;
            self.routing = out.routing;
            out.logits
        } else {
            let new = tokens[self.cache.len()..].to_vec();
            let out = self.model.forward(&[new], None, Some(&mut self.cache), self.opts).await?;
            self.routing.extend(&out.routing);
            out.logits
        };
        last_logits(out).await
    }
}
