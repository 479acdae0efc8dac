//! Command-line flags for choosing a router, its parameters and interventions.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use switchyard_model::{
    Capacity, CapacityFormula, Dispatch, Interventions, Jitter, JitterScope, ModelConfig, Priority, RouterSpec,
    RunOptions, SecondPolicy, SmoeDense, ThorMode,
};

/// Router names on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RouterKind {
    /// Softmax top-k (Mixtral); `--capacity-factor` adds capacity and dropping.
    Topk,
    /// Switch top-1 with the raw probability as weight.
    Switch,
    /// GShard top-2 with a second-expert policy and capacity.
    Gshard,
    /// Dynamic top-p.
    TopP,
    /// THOR: a random expert, weight 1.
    Thor,
    /// SMoE-Dropout: a frozen random router from the seed.
    SmoeDropout,
    /// Expert choice (non-causal).
    ExpertChoice,
    /// Hash routing on the token id.
    Hash,
    /// DeepSeek-V3 sigmoid top-k with the checkpoint's selection bias (`--no-bias`: without).
    Sigmoid,
}

impl RouterKind {
    /// Every router, in the order benchmarks list them.
    pub const ALL: [Self; 9] = [
        Self::Topk,
        Self::Switch,
        Self::Gshard,
        Self::TopP,
        Self::Thor,
        Self::SmoeDropout,
        Self::ExpertChoice,
        Self::Hash,
        Self::Sigmoid,
    ];
}

macro_rules! value_enum {
    ($name:ident => $target:ty { $($v:ident => $t:expr),* $(,)? }) => {
        #[derive(Clone, Copy, Debug, ValueEnum)]
        #[allow(missing_docs)]
        pub enum $name { $($v),* }
        impl From<$name> for $target {
            fn from(v: $name) -> Self {
                match v { $($name::$v => $t),* }
            }
        }
    };
}

value_enum!(FormulaArg => CapacityFormula { Mtf => CapacityFormula::Mtf, Flax => CapacityFormula::Flax, KAware => CapacityFormula::KAware });
value_enum!(PriorityArg => Priority { Position => Priority::Position, ReversePosition => Priority::ReversePosition, Bpr => Priority::Bpr });
value_enum!(PolicyArg => SecondPolicy { Random => SecondPolicy::Random, All => SecondPolicy::All, Threshold => SecondPolicy::Threshold, None => SecondPolicy::None });
value_enum!(ThorArg => ThorMode { Token => ThorMode::Token, Sequence => ThorMode::Sequence, SequenceRef => ThorMode::SequenceRef, Mean => ThorMode::Mean });
value_enum!(DenseArg => SmoeDense { Softmax => SmoeDense::Softmax, Uniform => SmoeDense::Uniform });
value_enum!(DispatchArg => Dispatch { Sparse => Dispatch::Sparse, Dense => Dispatch::Dense, Device => Dispatch::Device });
value_enum!(ScopeArg => JitterScope { RouterOnly => JitterScope::RouterOnly, RouterAndExperts => JitterScope::RouterAndExperts });

/// Router, parameters, seed and interventions.
#[derive(Args, Debug, Clone)]
pub struct RouterArgs {
    /// The router.
    #[arg(long, value_enum, default_value_t = RouterKind::Topk)]
    pub router: RouterKind,
    /// Experts per token for topk and smoe-dropout (default: the model's top_k).
    #[arg(long)]
    pub k: Option<usize>,
    /// topk: use raw probabilities as weights (norm_topk_prob = false).
    #[arg(long)]
    pub no_renormalise: bool,
    /// topk: capacity factor (enables token dropping); gshard and expert-choice: their CF.
    #[arg(long)]
    pub capacity_factor: Option<f32>,
    /// Capacity formula for topk.
    #[arg(long, value_enum, default_value_t = FormulaArg::Mtf)]
    pub capacity_formula: FormulaArg,
    /// Lower bound of the capacity (flax formula, expert choice).
    #[arg(long, default_value_t = 1)]
    pub min_capacity: usize,
    /// Capacity priority for topk.
    #[arg(long, value_enum, default_value_t = PriorityArg::Position)]
    pub priority: PriorityArg,
    /// GShard's second-expert policy.
    #[arg(long, value_enum, default_value_t = PolicyArg::Random)]
    pub gshard_policy: PolicyArg,
    /// GShard's θ.
    #[arg(long, default_value_t = 0.2)]
    pub gshard_threshold: f32,
    /// Threshold p of top-p.
    #[arg(long, default_value_t = 0.4)]
    pub top_p: f32,
    /// Sigmoid router: choose without the checkpoint's selection bias.
    #[arg(long)]
    pub no_bias: bool,
    /// THOR mode.
    #[arg(long, value_enum, default_value_t = ThorArg::Token)]
    pub thor_mode: ThorArg,
    /// SMoE-Dropout router standard deviation.
    #[arg(long, default_value_t = 0.02)]
    pub init_std: f32,
    /// SMoE-Dropout combination at k = E.
    #[arg(long, value_enum, default_value_t = DenseArg::Softmax)]
    pub smoe_dense: DenseArg,
    /// Seed of the router's random draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Switch an expert off: LAYER:EXPERT (repeatable).
    #[arg(long, value_name = "LAYER:EXPERT")]
    pub ablate: Vec<String>,
    /// Send every token of a layer to one expert: LAYER:EXPERT (repeatable).
    #[arg(long, value_name = "LAYER:EXPERT")]
    pub force: Vec<String>,
    /// Expert dispatch.
    #[arg(long, value_enum, default_value_t = DispatchArg::Sparse)]
    pub dispatch: DispatchArg,
    /// Router input jitter ε (training only: needs --train-step).
    #[arg(long)]
    pub jitter: Option<f32>,
    /// Jitter scope: the router only (reference) or router and experts (HF).
    #[arg(long, value_enum, default_value_t = ScopeArg::RouterOnly)]
    pub jitter_scope: ScopeArg,
    /// Treat the pass as training step N (turns training-only options such as jitter on).
    #[arg(long)]
    pub train_step: Option<u64>,
}

fn pair(s: &str) -> Result<(usize, usize)> {
    let (l, e) = s.split_once(':').with_context(|| format!("`{s}` is not LAYER:EXPERT"))?;
    Ok((
        l.trim().parse().with_context(|| format!("bad layer in `{s}`"))?,
        e.trim().parse().with_context(|| format!("bad expert in `{s}`"))?,
    ))
}

impl RouterArgs {
    /// The router spec for `kind` with these flags' parameters.
    pub fn spec(&self, kind: RouterKind, cfg: &ModelConfig) -> RouterSpec {
        let k = self.k.unwrap_or(cfg.top_k);
        match kind {
            RouterKind::Topk => RouterSpec::TopK {
                k,
                norm_topk_prob: !self.no_renormalise,
                capacity: self.capacity_factor.map(|factor| Capacity {
                    factor,
                    formula: self.capacity_formula.into(),
                    min_capacity: self.min_capacity,
                    priority: self.priority.into(),
                }),
            },
            RouterKind::Switch => RouterSpec::switch(),
            RouterKind::Gshard => RouterSpec::GShard {
                policy: self.gshard_policy.into(),
                threshold: self.gshard_threshold,
                capacity_factor: self.capacity_factor.unwrap_or(2.0),
            },
            RouterKind::TopP => RouterSpec::TopP { p: self.top_p },
            RouterKind::Thor => RouterSpec::Thor { mode: self.thor_mode.into() },
            RouterKind::SmoeDropout => {
                RouterSpec::SmoeDropout { k, init_std: self.init_std, dense: self.smoe_dense.into() }
            }
            RouterKind::ExpertChoice => RouterSpec::ExpertChoice {
                capacity_factor: self.capacity_factor.unwrap_or(2.0),
                min_capacity: self.min_capacity,
            },
            RouterKind::Hash => RouterSpec::Hash,
            RouterKind::Sigmoid => RouterSpec::Sigmoid { k, bias: !self.no_bias },
        }
    }

    /// Run options for `kind`, validated against the model.
    pub fn options_for(&self, kind: RouterKind, cfg: &ModelConfig) -> Result<RunOptions> {
        let router = self.spec(kind, cfg);
        router.validate(cfg.n_experts)?;
        let interventions = Interventions {
            ablate: self.ablate.iter().map(|s| pair(s)).collect::<Result<_>>()?,
            force: self.force.iter().map(|s| pair(s)).collect::<Result<_>>()?,
        };
        interventions.validate(cfg.n_layers, cfg.n_experts)?;
        if let Some(why) = router.non_causal() {
            eprintln!("note: {why}");
        }
        if self.capacity_factor.is_some()
            && !matches!(kind, RouterKind::Topk | RouterKind::Gshard | RouterKind::ExpertChoice)
        {
            bail!("--capacity-factor applies to topk, gshard and expert-choice only");
        }
        let (jitter, train_step) = self.training()?;
        Ok(RunOptions { router, dispatch: self.dispatch.into(), seed: self.seed, interventions, jitter, train_step })
    }

    /// The training-only options: jitter and the step.
    pub fn training(&self) -> Result<(Option<Jitter>, Option<u64>)> {
        let jitter = match self.jitter {
            Some(e) if !(e.is_finite() && (0.0..1.0).contains(&e)) => bail!("--jitter must be in [0, 1)"),
            Some(epsilon) => Some(Jitter { epsilon, scope: self.jitter_scope.into() }),
            None => None,
        };
        if jitter.is_some() && self.train_step.is_none() {
            eprintln!("note: jitter is training-only; without --train-step it has no effect");
        }
        Ok((jitter, self.train_step))
    }

    /// Run options for the chosen router.
    pub fn options(&self, cfg: &ModelConfig) -> Result<RunOptions> {
        self.options_for(self.router, cfg)
    }
}

/// Decoding flags.
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// How tokens are generated.
    #[arg(long, value_enum, default_value_t = DecodeMode::Greedy)]
    pub decode: DecodeMode,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Sampling: keep the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    pub sample_k: usize,
    /// Sampling: nucleus threshold (1 = all).
    #[arg(long, default_value_t = 1.0)]
    pub sample_p: f32,
    /// SCMoE strong ranks, e.g. `0,1`.
    #[arg(long, default_value = "0,1")]
    pub strong: String,
    /// SCMoE weak activation: ranks such as `0` or `2`, or `random`.
    #[arg(long, default_value = "0")]
    pub weak: String,
    /// SCMoE plausibility α.
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f32,
    /// SCMoE contrast β.
    #[arg(long, default_value_t = 0.5)]
    pub beta: f32,
    /// SCMoE strong temperature.
    #[arg(long, default_value_t = 1.0)]
    pub tau_s: f32,
    /// SCMoE weak temperature.
    #[arg(long, default_value_t = 1.0)]
    pub tau_w: f32,
    /// SCMoE: allow the end-of-sequence token (the reference bans it).
    #[arg(long)]
    pub allow_eos: bool,
    /// SCMoE: sample from the contrast distribution instead of taking its argmax.
    #[arg(long)]
    pub scmoe_sample: bool,
}

/// Decoding modes on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecodeMode {
    /// Most likely token.
    Greedy,
    /// Seeded sampling.
    Sample,
    /// SCMoE self-contrast.
    Scmoe,
}

fn rank_list(s: &str, what: &str) -> Result<Vec<usize>> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse().with_context(|| format!("bad {what} rank `{x}`")))
        .collect::<Result<_>>()?;
    if v.is_empty() {
        bail!("{what} needs at least one rank");
    }
    Ok(v)
}

impl DecodeArgs {
    /// The decoding these flags describe.
    pub fn decoding(&self) -> Result<switchyard_model::Decoding> {
        use switchyard_model::{Decoding, SampleConfig, ScmoeConfig, WeakMode};
        Ok(match self.decode {
            DecodeMode::Greedy => Decoding::Greedy,
            DecodeMode::Sample => Decoding::Sample(SampleConfig {
                temperature: self.temperature,
                top_k: self.sample_k,
                top_p: self.sample_p,
            }),
            DecodeMode::Scmoe => Decoding::SelfContrast(ScmoeConfig {
                strong_ranks: rank_list(&self.strong, "strong")?,
                weak: if self.weak.trim() == "random" {
                    WeakMode::Random
                } else {
                    WeakMode::Ranks { ranks: rank_list(&self.weak, "weak")? }
                },
                alpha: self.alpha,
                beta: self.beta,
                tau_strong: self.tau_s,
                tau_weak: self.tau_w,
                ban_eos: !self.allow_eos,
                eos_id: None,
                sample: self.scmoe_sample,
            }),
        })
    }
}
