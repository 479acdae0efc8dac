//! Training (feature `train`): the recipes of the shipped checkpoints, each following its
//! section of the routing spec, with AdamW, warmup + cosine decay, gradient clipping and
//! resumable state. Every random choice (initialisation, data order, THOR's experts, the
//! SMoE-Dropout router) comes from the counter-based generator, so a run is a pure function of
//! its configuration and seed.

mod data;
mod forward;

use std::path::Path;

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

pub use data::TokenizedCorpus;
use forward::{Lbl, PriorLoad, TrainRouting};

use crate::model::{Model, ModelError};
use crate::params::{HostTensor, ParamStore, init_from_seed};
use crate::rng::stream;
use switchyard_routing::config::ModelConfig;
use switchyard_routing::record::ExpertKind;
use switchyard_routing::router::{RouterSpec, SmoeDense, ThorMode, smoe_router_weights};

/// A training recipe: how the MoE layers route and what the loss adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "recipe", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Recipe {
    /// Learned gate, top-k with renormalised softmax weights (Mixtral, §1.4), top-k
    /// load-balancing loss (§9.1) and router z-loss (§1.5). The LBL's `f_e` counts the step's
    /// batch (8 sequences, each from one domain), or with `lbl_window` > 1 also the previous
    /// steps' counts: the global-batch LBL of "Demons in the Detail" (`topk-global`).
    Topk {
        /// Experts per token.
        k: usize,
        /// Coefficient of the load-balancing loss.
        lbl_coef: f32,
        /// Coefficient of the z-loss.
        z_coef: f32,
        /// Steps whose expert counts make the LBL's `f_e` (this one and the ones before it).
        #[serde(default = "one_step", skip_serializing_if = "is_one_step")]
        lbl_window: u64,
    },
    /// Dynamic top-p (§5): the fewest experts whose probabilities exceed `p`, raw weights;
    /// loss `CE + lbl_coef·LBL + z_coef·z + dyn_coef·H(P)`, the LBL's `f_e` over the variable
    /// sets and the dynamic loss the router's mean entropy (§5.2; its coefficient is not in
    /// the reference code, ours is written on the card).
    TopP {
        /// Threshold p.
        p: f32,
        /// Coefficient of the load-balancing loss.
        lbl_coef: f32,
        /// Coefficient of the z-loss.
        z_coef: f32,
        /// Coefficient of the dynamic (entropy) loss.
        dyn_coef: f32,
    },
    /// DeepSeek-V3 auxiliary-loss-free balancing (§8.2): sigmoid routing, the top-k of
    /// `σ(z) + b` with weights `σ(z)` normalised over the chosen; no balancing loss: after
    /// each step every layer's bias moves by `γ·sign(c̄ − c_e)` (the step's counts).
    Lossfree {
        /// Experts per token.
        k: usize,
        /// Bias update speed γ.
        gamma: f32,
    },
    /// DeepSeekMoE (§8.1): every expert of the base model split into `segments` fine-grained
    /// experts of `d_ff / segments`, `shared` of them merged into one shared expert that every
    /// token uses, and the top `k` of the routed ones by softmax with raw (not renormalised)
    /// weights; LBL and z-loss as `topk`.
    Deepseek {
        /// Routed experts per token.
        k: usize,
        /// Fine-grained experts per base expert (m).
        segments: usize,
        /// Shared fine-grained experts (K_s).
        shared: usize,
        /// Coefficient of the load-balancing loss.
        lbl_coef: f32,
        /// Coefficient of the z-loss.
        z_coef: f32,
    },
    /// AdaMoE (§6.1): `null` null experts after the E FFN experts, the top `k` of the softmax
    /// over all E + N, weights renormalised over the chosen FFN experts (a token may skip the
    /// FFN experts entirely); AdaMoE's exp_1 LBL (the null counts replaced by their mean) and
    /// the z-loss. The null router rows start as copies of the FFN rows (the reference's
    /// `loader.py`).
    Adamoe {
        /// Slots per token (FFN or null).
        k: usize,
        /// Null experts N.
        null: usize,
        /// Coefficient of the load-balancing loss.
        lbl_coef: f32,
        /// Coefficient of the z-loss.
        z_coef: f32,
    },
    /// MoE++ (§6.2): the E FFN experts followed by two constant experts, a copy and a zero
    /// expert; the reference's two-layer gate (`tanh`, 8·E hidden) with the gating residual;
    /// top-2 with the code's weight rule (the zero expert's gate set to 0, then renormalised);
    /// the experts see the input times k = 2 (the reference's default mode). The reference has
    /// no training loss: ours is the paper's heterogeneous LBL with `tau` on the free experts
    /// ([PAPER?]) and the z-loss.
    Moepp {
        /// τ, the LBL's weight on the zero-computation experts.
        tau: f32,
        /// Coefficient of the load-balancing loss.
        lbl_coef: f32,
        /// Coefficient of the z-loss.
        z_coef: f32,
    },
    /// THOR (§2.2): no router; two passes, each with one random expert per layer for the
    /// whole batch; loss `CE₁ + CE₂ + α·½(KL(p¹‖p²) + KL(p²‖p¹))`, all token means.
    Thor {
        /// Consistency weight α.
        alpha: f32,
    },
    /// SMoE-Dropout (§3): frozen random router N(0, init_std²) from the seed, bias 0; k
    /// rising linearly from `k_min` to `k_max` over the run (`linear_increase`); no auxiliary
    /// loss.
    SmoeDropout {
        /// k at step 0.
        k_min: usize,
        /// k at the last step.
        k_max: usize,
        /// Standard deviation of the frozen router.
        init_std: f32,
    },
}

fn one_step() -> u64 {
    1
}

fn is_one_step(n: &u64) -> bool {
    *n == 1
}

/// MoE++'s k (hard-coded in the reference), which is also the factor on the experts' input.
pub const MOEPP_TOP_K: usize = 2;

/// Steps pooled by `topk-global`'s LBL: with 8 sequences a step, 128 sequences (32768 tokens).
pub const GLOBAL_LBL_WINDOW: u64 = 16;

impl Recipe {
    /// The recipe's defaults for a model: top-2, LBL 0.01, z 1e-3 (`topk-global`: LBL over
    /// [`GLOBAL_LBL_WINDOW`] steps); top-p 0.4 (the reference config) with the same LBL and
    /// z-loss and a dynamic loss of 1e-4; THOR α = 1 (the reference task default);
    /// SMoE-Dropout k from 2 to E, init_std 0.02 (the reference).
    pub fn default_named(name: &str, cfg: &ModelConfig) -> Option<Self> {
        match name {
            "topk" => Some(Self::Topk { k: cfg.top_k, lbl_coef: 0.01, z_coef: 1e-3, lbl_window: 1 }),
            "topk-global" => {
                Some(Self::Topk { k: cfg.top_k, lbl_coef: 0.01, z_coef: 1e-3, lbl_window: GLOBAL_LBL_WINDOW })
            }
            "top-p" => Some(Self::TopP { p: 0.4, lbl_coef: 0.01, z_coef: 1e-3, dyn_coef: 1e-4 }),
            "lossfree" => Some(Self::Lossfree { k: cfg.top_k, gamma: 1e-3 }),
            // m = 2, K_s = 1: the routed k' = m·k − K_s keeps the active compute of top-k.
            "deepseek" => {
                Some(Self::Deepseek { k: 2 * cfg.top_k - 1, segments: 2, shared: 1, lbl_coef: 0.01, z_coef: 1e-3 })
            }
            // The reference's exp_2 setting: N = 16 null experts beside 8, k raised to 4.
            "adamoe" => Some(Self::Adamoe { k: 2 * cfg.top_k, null: 2 * cfg.n_experts, lbl_coef: 0.01, z_coef: 1e-3 }),
            // τ = 0.75: the paper's choice as we read it ([PAPER?], not in the code).
            "moepp" => Some(Self::Moepp { tau: 0.75, lbl_coef: 0.01, z_coef: 1e-3 }),
            "thor" => Some(Self::Thor { alpha: 1.0 }),
            "smoe-dropout" => {
                Some(Self::SmoeDropout { k_min: 2.min(cfg.n_experts), k_max: cfg.n_experts, init_std: 0.02 })
            }
            _ => None,
        }
    }

    /// `topk`, `topk-global`, `top-p`, `thor` or `smoe-dropout`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Topk { lbl_window: 1, .. } => "topk",
            Self::Topk { .. } => "topk-global",
            Self::TopP { .. } => "top-p",
            Self::Lossfree { .. } => "lossfree",
            Self::Deepseek { .. } => "deepseek",
            Self::Adamoe { .. } => "adamoe",
            Self::Moepp { .. } => "moepp",
            Self::Thor { .. } => "thor",
            Self::SmoeDropout { .. } => "smoe-dropout",
        }
    }

    /// The router a checkpoint of this recipe is evaluated and shown with: top-k; THOR at token
    /// level (the reference's `inference_level = 0`); SMoE-Dropout dense (k = E, softmax), the
    /// reference's "dense inference" checkpoint.
    pub fn inference_router(&self, cfg: &ModelConfig) -> RouterSpec {
        match self {
            Self::Topk { k, .. } => RouterSpec::top_k(*k, true),
            Self::TopP { p, .. } => RouterSpec::TopP { p: *p },
            Self::Lossfree { k, .. } => RouterSpec::Sigmoid { k: *k, bias: true },
            Self::Deepseek { k, .. } => RouterSpec::top_k(*k, false),
            Self::Adamoe { k, .. } => RouterSpec::top_k(*k, true),
            Self::Moepp { .. } => RouterSpec::top_k(MOEPP_TOP_K, true),
            Self::Thor { .. } => RouterSpec::Thor { mode: ThorMode::Token },
            Self::SmoeDropout { init_std, .. } => {
                RouterSpec::SmoeDropout { k: cfg.n_experts, init_std: *init_std, dense: SmoeDense::Softmax }
            }
        }
    }
}

/// Optimisation and data settings of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Recipe.
    pub recipe: Recipe,
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Tokens per sequence (the model sees `seq_len` inputs and predicts `seq_len` targets).
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Learning rate at the last step (end of the cosine).
    pub min_lr: f64,
    /// Linear warmup steps.
    pub warmup: u64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// AdamW β₂.
    pub beta_2: f32,
    /// Global gradient-norm clipping threshold.
    pub grad_clip: f32,
    /// Seed of initialisation, data order and the recipe's random draws.
    pub seed: u64,
}

/// Learning rate at `step` (0-based): linear warmup to `lr`, then cosine decay to `min_lr` at
/// the last step.
pub fn lr_at(cfg: &TrainConfig, step: u64) -> f64 {
    if step < cfg.warmup {
        return cfg.lr * (step + 1) as f64 / cfg.warmup as f64;
    }
    let span = cfg.steps.saturating_sub(cfg.warmup).max(1) as f64;
    let progress = ((step - cfg.warmup) as f64 / span).min(1.0);
    cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// SMoE-Dropout's `linear_increase` schedule (§3.2): `round((k_max − k_min)·t/T) + k_min`,
/// rounding half to even as Python's `round`, clipped to `[k_min, k_max]`.
pub fn smoe_k(step: u64, total: u64, k_min: usize, k_max: usize) -> usize {
    let x = (k_max as f64 - k_min as f64) * step as f64 / total.max(1) as f64;
    (x.round_ties_even() as i64 + k_min as i64).clamp(k_min as i64, k_max as i64) as usize
}

/// What one optimizer step measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// 0-based step.
    pub step: u64,
    /// Learning rate used.
    pub lr: f64,
    /// The optimised loss.
    pub loss: f32,
    /// Cross-entropy (nats per token; THOR: mean of its two passes).
    pub ce: f32,
    /// Load-balancing loss (top-k), before its coefficient.
    pub lbl: f32,
    /// Router z-loss (top-k), before its coefficient.
    pub z: f32,
    /// The router's mean entropy in nats (top-p's dynamic loss before its coefficient).
    #[serde(default)]
    pub entropy: f32,
    /// The router's mean top-1 probability (0 without a learned gate).
    #[serde(default)]
    pub confidence: f32,
    /// Mean experts per token over the layers (top-p: varies; top-k: k).
    #[serde(default)]
    pub active: f32,
    /// THOR's symmetric KL, before α.
    pub kl: f32,
    /// Experts per token this step.
    pub k: usize,
    /// Fraction of the slots each expert took, per layer (THOR: first pass).
    pub load: Vec<Vec<f32>>,
}

/// What can go wrong in training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The settings are inconsistent.
    #[error("invalid training settings: {0}")]
    Settings(String),
    /// Saving or loading the training state failed.
    #[error("training state in {path}: {problem}")]
    State {
        /// The folder.
        path: String,
        /// What failed.
        problem: String,
    },
}

/// Saved with the state so a resumed run continues the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StateFile {
    step: u64,
    model: ModelConfig,
    train: TrainConfig,
    tokenizer: String,
    /// The global LBL's buffer: `[step][layer][expert]` counts of the last steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lbl_buffer: Vec<Vec<Vec<u64>>>,
}

/// A model being trained, its optimizer and its step counter.
pub struct Trainer {
    model: Model,
    optim: ModuleOptimizer,
    config: TrainConfig,
    tokenizer: String,
    step: u64,
    /// Expert counts of the last `lbl_window − 1` steps, oldest first (global-batch LBL).
    lbl_buffer: std::collections::VecDeque<Vec<Vec<u64>>>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer").field("config", &self.config).field("step", &self.step).finish_non_exhaustive()
    }
}

fn optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_2(cfg.beta_2)
        .with_weight_decay(cfg.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(cfg.grad_clip)))
        .init()
}

/// The model configuration a recipe trains (SMoE-Dropout marks its gate as frozen; lossfree
/// adds the selection biases).
pub fn recipe_model_config(model: &ModelConfig, recipe: &Recipe) -> ModelConfig {
    let base = ModelConfig {
        frozen_gate: matches!(recipe, Recipe::SmoeDropout { .. }),
        selection_bias: matches!(recipe, Recipe::Lossfree { .. }),
        ..model.clone()
    };
    match *recipe {
        Recipe::Adamoe { k, null, .. } => ModelConfig {
            n_experts: model.n_experts + null,
            top_k: k,
            norm_topk_prob: true,
            free_experts: vec![ExpertKind::Null; null],
            ..base
        },
        Recipe::Moepp { .. } => {
            let e = model.n_experts + 4;
            ModelConfig {
                n_experts: e,
                top_k: MOEPP_TOP_K,
                norm_topk_prob: true,
                free_experts: vec![ExpertKind::Constant, ExpertKind::Constant, ExpertKind::Copy, ExpertKind::Zero],
                gate_hidden: 8 * e,
                gating_residual: true,
                expert_input_scale: MOEPP_TOP_K as f32,
                ..base
            }
        }
        Recipe::Deepseek { k, segments, shared, .. } if segments > 0 => {
            let d_ff = model.d_ff / segments;
            ModelConfig {
                n_experts: model.n_experts * segments - shared,
                d_ff,
                top_k: k,
                norm_topk_prob: false,
                shared_d_ff: shared * d_ff,
                ..base
            }
        }
        _ => base,
    }
}

/// Initial parameters: the seeded initialisation; for SMoE-Dropout the gates are replaced by the
/// frozen random router (rounded to f16, so the shipped checkpoint holds exactly the router the
/// model was trained with); for AdaMoE each null expert's router row is a copy of an FFN row,
/// tiled (null expert i copies row i mod E: every FFN expert has N/E null twins).
pub fn initial_params(model: &ModelConfig, train: &TrainConfig) -> ParamStore {
    let mut params = init_from_seed(model, train.seed);
    if let Recipe::Adamoe { .. } = train.recipe {
        let (d, ffn) = (model.d_model, model.ffn_experts());
        for layer in 0..model.n_layers {
            let gate = params.get_mut(&crate::params::keys::layer(layer).gate(false)).expect("the gate is a parameter");
            for row in ffn..model.n_experts {
                let src = (row - ffn) % ffn;
                let copy = gate.data[src * d..(src + 1) * d].to_vec();
                gate.data[row * d..(row + 1) * d].copy_from_slice(&copy);
            }
        }
    }
    if let Recipe::SmoeDropout { init_std, .. } = train.recipe {
        let (d, e) = (model.d_model, model.n_experts);
        for layer in 0..model.n_layers {
            // smoe_router_weights is [d, E]; the HF gate is [E, d].
            let w: Vec<f32> = smoe_router_weights(train.seed, layer, d, e, init_std)
                .into_iter()
                .map(|v| half::f16::from_f32(v).to_f32())
                .collect();
            let hf = crate::model::transpose(&w, d, e);
            params.insert(crate::params::keys::layer(layer).gate(false), HostTensor { shape: vec![e, d], data: hf });
        }
    }
    params
}

/// Mean negative log-likelihood of `targets` under log-probabilities `[T, V]`.
fn nll(log_probs: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let n = targets.dims()[0];
    log_probs.gather(1, targets.reshape([n, 1])).mean().neg()
}

/// THOR's consistency term (spec §2.2): the token mean of
/// `½·Σ_v (p¹_v − p²_v)·(log p¹_v − log p²_v) = ½·(KL(p¹‖p²) + KL(p²‖p¹))`.
///
/// # Shapes
/// - log-probabilities `[T, V]` twice -> `[1]`
fn symmetric_kl(lp1: Tensor<2>, lp2: Tensor<2>) -> Tensor<1> {
    ((lp1.clone().exp() - lp2.clone().exp()) * (lp1 - lp2)).sum_dim(1).mean().mul_scalar(0.5)
}

fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    nll(log_softmax(logits, 1), targets)
}

fn scalar(t: &Tensor<1>) -> f32 {
    t.clone().inner().into_data().iter::<f32>().next().unwrap_or(f32::NAN)
}

impl Trainer {
    /// A fresh run on `device` (autodiff is switched on here).
    pub fn new(model: &ModelConfig, config: TrainConfig, tokenizer: &str, device: &Device) -> Result<Self, TrainError> {
        if let Recipe::Deepseek { segments, shared, .. } = config.recipe
            && (segments == 0 || !model.d_ff.is_multiple_of(segments) || shared >= model.n_experts * segments)
        {
            return Err(TrainError::Settings(format!(
                "deepseek: {segments} segments must divide d_ff ({}) and leave routed experts beside {shared} shared",
                model.d_ff
            )));
        }
        let model = recipe_model_config(model, &config.recipe);
        Self::check(&model, &config)?;
        let params = initial_params(&model, &config);
        Self::from_parts(&model, &params, config, tokenizer, 0, device)
    }

    fn from_parts(
        model: &ModelConfig,
        params: &ParamStore,
        config: TrainConfig,
        tokenizer: &str,
        step: u64,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let net = Model::from_params(model, params, &device.clone().autodiff())?;
        Ok(Self {
            model: net,
            optim: optimizer(&config),
            config,
            tokenizer: tokenizer.into(),
            step,
            lbl_buffer: Default::default(),
        })
    }

    fn check(model: &ModelConfig, cfg: &TrainConfig) -> Result<(), TrainError> {
        model.validate().map_err(ModelError::from)?;
        let bad = |m: String| Err(TrainError::Settings(m));
        if cfg.steps == 0 || cfg.batch_size == 0 || cfg.seq_len < 2 {
            return bad("steps and batch size must be at least 1, and seq_len at least 2".into());
        }
        if cfg.seq_len > model.max_seq_len {
            return bad(format!("seq_len {} exceeds the model's context {}", cfg.seq_len, model.max_seq_len));
        }
        if !(cfg.lr > 0.0 && cfg.lr.is_finite() && cfg.min_lr >= 0.0 && cfg.min_lr <= cfg.lr) {
            return bad(format!("need 0 <= min_lr <= lr and lr > 0, got lr {} min_lr {}", cfg.lr, cfg.min_lr));
        }
        let e = model.n_experts;
        match cfg.recipe {
            Recipe::Topk { k, .. } if k == 0 || k > e => bad(format!("k = {k} is outside 1..={e}")),
            Recipe::Topk { lbl_window, .. } if !(1..=1024).contains(&lbl_window) => {
                bad(format!("lbl_window = {lbl_window} is outside 1..=1024"))
            }
            Recipe::TopP { p, .. } if !(p > 0.0 && p <= 1.0) => bad(format!("p = {p} is outside (0, 1]")),
            Recipe::Lossfree { k, .. } | Recipe::Deepseek { k, .. } if k == 0 || k > e => {
                bad(format!("k = {k} is outside 1..={e}"))
            }
            Recipe::Adamoe { k, null, .. } if k == 0 || k > e || null == 0 => {
                bad(format!("adamoe: k = {k} must be in 1..={e} and null = {null} at least 1"))
            }
            Recipe::Moepp { tau, .. } if !(tau > 0.0 && tau <= 1.0) => bad(format!("tau = {tau} is outside (0, 1]")),
            Recipe::Lossfree { gamma, .. } if !(0.0..=1.0).contains(&gamma) => {
                bad(format!("gamma = {gamma} is outside [0, 1]"))
            }
            Recipe::SmoeDropout { k_min, k_max, .. } if k_min == 0 || k_min > k_max || k_max > e => {
                bad(format!("need 1 <= k_min <= k_max <= {e}, got {k_min}..{k_max}"))
            }
            _ => Ok(()),
        }
    }

    /// The next step's index (= steps done).
    pub fn step_index(&self) -> u64 {
        self.step
    }

    /// The run's settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Each layer's selection bias as it stands (loss-free balancing; empty without one): a
    /// host value, read without copying the model.
    pub fn selection_bias(&self) -> &[Vec<f32>] {
        self.model.selection_bias()
    }

    /// The trained model's configuration.
    pub fn model_config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// Experts per token at `step` for this recipe (0: it varies per token, top-p).
    pub fn k_at(&self, step: u64) -> usize {
        match self.config.recipe {
            Recipe::Topk { k, .. } => k,
            Recipe::TopP { .. } => 0,
            Recipe::Lossfree { k, .. } | Recipe::Deepseek { k, .. } | Recipe::Adamoe { k, .. } => k,
            Recipe::Moepp { .. } => MOEPP_TOP_K,
            Recipe::Thor { .. } => 1,
            Recipe::SmoeDropout { k_min, k_max, .. } => smoe_k(step, self.config.steps.saturating_sub(1), k_min, k_max),
        }
    }

    /// One optimizer step on `batch` (rows of `seq_len + 1` ids: inputs and shifted targets).
    pub async fn step(&mut self, batch: &[Vec<u32>]) -> Result<StepStats, TrainError> {
        let (b, s) = (batch.len(), self.config.seq_len);
        if b == 0 || batch.iter().any(|r| r.len() != s + 1) {
            return Err(TrainError::Settings(format!("every batch row must hold seq_len + 1 = {} ids", s + 1)));
        }
        let device = self.model.device().clone();
        let inputs: Vec<Vec<u32>> = batch.iter().map(|r| r[..s].to_vec()).collect();
        let targets: Vec<i32> = batch.iter().flat_map(|r| r[1..].iter().map(|&t| t as i32)).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [b * s]), &device);
        let (step, seed) = (self.step, self.config.seed);
        let k = self.k_at(step);
        let zero = || Tensor::<1>::zeros([1], &device);
        let prior = self.prior_load();
        let key = (seed, step);
        let (loss, ce, pass, kl) = match self.config.recipe {
            Recipe::Topk { lbl_coef, z_coef, .. }
            | Recipe::Deepseek { lbl_coef, z_coef, .. }
            | Recipe::Adamoe { lbl_coef, z_coef, .. }
            | Recipe::Moepp { lbl_coef, z_coef, .. } => {
                let renormalise = !matches!(self.config.recipe, Recipe::Deepseek { .. });
                let lbl = match self.config.recipe {
                    Recipe::Adamoe { .. } => Lbl::NullMean,
                    Recipe::Moepp { tau, .. } => Lbl::Heterogeneous { tau },
                    _ => Lbl::TopK,
                };
                let routing = TrainRouting::Softmax { k, renormalise, lbl };
                let p = self.model.forward_train(&inputs, routing, &prior, key).await?;
                let ce = cross_entropy(p.logits.clone(), targets);
                let loss = ce.clone() + p.lbl.clone().mul_scalar(lbl_coef) + p.z.clone().mul_scalar(z_coef);
                (loss, ce, p, zero())
            }
            Recipe::TopP { p, lbl_coef, z_coef, dyn_coef } => {
                let p = self.model.forward_train(&inputs, TrainRouting::TopP { p }, &prior, key).await?;
                let ce = cross_entropy(p.logits.clone(), targets);
                let loss = ce.clone()
                    + p.lbl.clone().mul_scalar(lbl_coef)
                    + p.z.clone().mul_scalar(z_coef)
                    + p.entropy.clone().mul_scalar(dyn_coef);
                (loss, ce, p, zero())
            }
            Recipe::Lossfree { .. } => {
                let p = self.model.forward_train(&inputs, TrainRouting::Sigmoid { k }, &prior, key).await?;
                let ce = cross_entropy(p.logits.clone(), targets);
                (ce.clone(), ce, p, zero())
            }
            Recipe::SmoeDropout { .. } => {
                let routing = TrainRouting::Softmax { k, renormalise: true, lbl: Lbl::TopK };
                let p = self.model.forward_train(&inputs, routing, &prior, key).await?;
                let ce = cross_entropy(p.logits.clone(), targets);
                (ce.clone(), ce, p, zero())
            }
            Recipe::Thor { alpha } => {
                let one = TrainRouting::Thor { stream: stream::THOR_FWD1 };
                let two = TrainRouting::Thor { stream: stream::THOR_FWD2 };
                let p1 = self.model.forward_train(&inputs, one, &prior, key).await?;
                let p2 = self.model.forward_train(&inputs, two, &prior, key).await?;
                let (lp1, lp2) = (log_softmax(p1.logits.clone(), 1), log_softmax(p2.logits, 1));
                let ce1 = nll(lp1.clone(), targets.clone());
                let ce2 = nll(lp2.clone(), targets);
                let kl = symmetric_kl(lp1.clone(), lp2.clone());
                let loss = ce1.clone() + ce2.clone() + kl.clone().mul_scalar(alpha);
                (loss, (ce1 + ce2).div_scalar(2.0), p1, kl)
            }
        };
        self.remember_load(&pass.load);
        if let Recipe::Lossfree { gamma, .. } = self.config.recipe {
            for (bias, counts) in self.model.selection_bias.iter_mut().zip(&pass.load) {
                switchyard_routing::router::update_selection_bias(bias, counts, gamma);
            }
        }
        let lr = lr_at(&self.config, step);
        let grads = GradientsParams::from_grads(loss.backward(), &self.model.net);
        self.model.net = self.optim.step(lr, self.model.net.clone(), grads);
        self.step += 1;
        let tokens = (b * s) as f32;
        let ffn = self.model.config().ffn_experts(); // free experts cost no expert compute
        let active = pass.load.iter().map(|c| c[..ffn].iter().sum::<u64>() as f32 / tokens).sum::<f32>()
            / pass.load.len().max(1) as f32;
        let load = pass
            .load
            .into_iter()
            .map(|c| {
                let total: u64 = c.iter().sum();
                c.into_iter().map(|n| n as f32 / total.max(1) as f32).collect()
            })
            .collect();
        Ok(StepStats {
            step,
            lr,
            loss: scalar(&loss),
            ce: scalar(&ce),
            lbl: scalar(&pass.lbl),
            z: scalar(&pass.z),
            entropy: scalar(&pass.entropy),
            confidence: scalar(&pass.confidence),
            active,
            kl: scalar(&kl),
            k,
            load,
        })
    }

    /// The buffered steps' expert counts, summed, for the global LBL (empty without a window).
    fn prior_load(&self) -> PriorLoad {
        let Some(first) = self.lbl_buffer.front() else { return PriorLoad::default() };
        let mut counts: Vec<Vec<u64>> = first.iter().map(|l| vec![0; l.len()]).collect();
        for step in &self.lbl_buffer {
            for (sum, layer) in counts.iter_mut().zip(step) {
                sum.iter_mut().zip(layer).for_each(|(s, &n)| *s += n);
            }
        }
        // Top-k training drops nothing: a step's first-layer slots are k per token.
        let k = self.k_at(self.step).max(1) as u64;
        let tokens = self.lbl_buffer.iter().map(|step| step.first().map_or(0, |l| l.iter().sum::<u64>()) / k).sum();
        PriorLoad { counts, tokens }
    }

    /// Keeps this step's counts for the next steps' global LBL (the last `lbl_window − 1`).
    fn remember_load(&mut self, load: &[Vec<u64>]) {
        let Recipe::Topk { lbl_window, .. } = self.config.recipe else { return };
        if lbl_window <= 1 {
            return;
        }
        self.lbl_buffer.push_back(load.to_vec());
        while self.lbl_buffer.len() as u64 >= lbl_window {
            self.lbl_buffer.pop_front();
        }
    }

    /// The current parameters on the host (HF layout).
    pub async fn params(&self) -> Result<ParamStore, TrainError> {
        Ok(self.model.to_params().await?)
    }

    /// An inference copy of the current model on `device` (no autodiff).
    pub async fn inference_model(&self, device: &Device) -> Result<Model, TrainError> {
        Ok(Model::from_params(self.model.config(), &self.params().await?, device)?)
    }

    /// Writes the state a run resumes from into `dir`: `state.json`, the parameters in f32
    /// (`params.safetensors`) and the AdamW moments (`optim.bpk`). Files are written beside
    /// and renamed, so an interrupted save leaves the previous state whole.
    pub async fn save_state(&self, dir: &Path) -> Result<(), TrainError> {
        let err = |problem: String| TrainError::State { path: dir.display().to_string(), problem };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let params = self.params().await?;
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = params
            .iter()
            .map(|(n, t)| (n.clone(), t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
            .collect();
        let views = bytes
            .iter()
            .map(|(n, shape, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b).map(|v| (n.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        let st = safetensors::serialize(views, None).map_err(|e| err(e.to_string()))?;
        let state = StateFile {
            step: self.step,
            model: self.model.config().clone(),
            train: self.config.clone(),
            tokenizer: self.tokenizer.clone(),
            lbl_buffer: self.lbl_buffer.iter().cloned().collect(),
        };
        let json = serde_json::to_string_pretty(&state).map_err(|e| err(e.to_string()))?;
        let tmp = |name: &str| dir.join(format!("{name}.tmp"));
        std::fs::write(tmp("params.safetensors"), st).map_err(|e| err(e.to_string()))?;
        self.optim.save(tmp("optim.bpk")).map_err(|e| err(format!("{e:?}")))?;
        std::fs::write(tmp("state.json"), json).map_err(|e| err(e.to_string()))?;
        for name in ["params.safetensors", "optim.bpk", "state.json"] {
            std::fs::rename(tmp(name), dir.join(name)).map_err(|e| err(e.to_string()))?;
        }
        Ok(())
    }

    /// Resumes the run saved in `dir`. `train` must equal the saved settings (a different run
    /// would not continue the same curve).
    pub fn resume(dir: &Path, train: &TrainConfig, tokenizer: &str, device: &Device) -> Result<Self, TrainError> {
        let err = |problem: String| TrainError::State { path: dir.display().to_string(), problem };
        let json = std::fs::read_to_string(dir.join("state.json")).map_err(|e| err(e.to_string()))?;
        let state: StateFile = serde_json::from_str(&json).map_err(|e| err(e.to_string()))?;
        if &state.train != train {
            return Err(err(format!(
                "it was saved by a run with other settings ({}); resume with the same settings or use a new folder",
                serde_json::to_string(&state.train).unwrap_or_default()
            )));
        }
        if state.tokenizer != tokenizer {
            return Err(err(format!("it was trained with tokenizer {}, not {tokenizer}", state.tokenizer)));
        }
        let bytes = std::fs::read(dir.join("params.safetensors")).map_err(|e| err(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
        let mut params = ParamStore::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(err(format!("tensor {name} is not f32")));
            }
            let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            params.insert(name, HostTensor { shape: view.shape().to_vec(), data });
        }
        let mut t = Self::from_parts(&state.model, &params, state.train, tokenizer, state.step, device)?;
        t.optim = t.optim.load(dir.join("optim.bpk")).map_err(|e| err(format!("{e:?}")))?;
        let window = match t.config.recipe {
            Recipe::Topk { lbl_window, .. } => lbl_window,
            _ => 1,
        };
        let (layers, experts) = (t.model.config().n_layers, t.model.config().n_experts);
        let fits = |step: &Vec<Vec<u64>>| step.len() == layers && step.iter().all(|l| l.len() == experts);
        if state.lbl_buffer.len() as u64 >= window || !state.lbl_buffer.iter().all(fits) {
            return Err(err(format!(
                "its load buffer holds {} steps of other shapes than {window} − 1 steps of {layers} layers × {experts} experts",
                state.lbl_buffer.len()
            )));
        }
        t.lbl_buffer = state.lbl_buffer.into();
        Ok(t)
    }
}

#[cfg(test)]
mod tests;
