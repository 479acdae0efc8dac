//! Decoding settings (greedy, seeded sampling, SCMoE self-contrast, spec §4) and the host
//! functions that choose a token from next-token logits. The model runs the passes; this is the
//! arithmetic on their logits, plain Rust so the page and the CLI can reason about it too.

use serde::{Deserialize, Serialize};

use crate::router::{RouterError, bounds, check_ranks, softmax_row as softmax};

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

/// How many candidates a step reports.
const CANDIDATES: usize = 5;

/// Index of the largest value (the lowest index on ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// The most likely tokens of a distribution with their probabilities, best first.
pub fn top_candidates(p: &[f32]) -> Vec<(u32, f32)> {
    crate::router::rank_experts(p).into_iter().take(CANDIDATES).map(|i| (i as u32, p[i])).collect()
}

/// Draws an index from `probs` with the uniform `u` (inverse CDF in index order).
pub fn draw(probs: &[f32], u: f64) -> usize {
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
pub fn sample(logits: &[f32], cfg: &SampleConfig, u: f64) -> usize {
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
