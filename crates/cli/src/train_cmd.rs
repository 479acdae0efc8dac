//! `switchyard tokenizer` and `switchyard train`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use futures_lite::future::block_on;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use switchyard_model::corpus::load_corpus;
use switchyard_model::train::{Recipe, StepStats, TokenizedCorpus, TrainConfig, Trainer};
use switchyard_model::{
    ByteTokenizer, Checkpoint, Device, ModelConfig, RunOptions, Tokenizer, devices, eval_tokens, param_count, train_bpe,
};

/// Flags of `switchyard tokenizer`.
#[derive(Args)]
pub struct TokenizerArgs {
    /// Folder of .txt files, one per domain (training splits are used).
    #[arg(long)]
    corpus: PathBuf,
    /// Vocabulary size (256 byte tokens included).
    #[arg(long, default_value_t = 4096)]
    vocab: usize,
    /// Output tokenizer.json.
    #[arg(short, long)]
    output: PathBuf,
}

/// Trains the BPE tokenizer on every domain's training split, line by line.
pub fn tokenizer(args: &TokenizerArgs) -> Result<()> {
    if !(257..=65536).contains(&args.vocab) {
        bail!("--vocab must be between 257 and 65536, got {}", args.vocab);
    }
    let corpus = load_corpus(&args.corpus)?;
    let t0 = Instant::now();
    let lines = corpus.iter().flat_map(|d| d.train.split_inclusive('\n'));
    let json = train_bpe(lines, args.vocab)?;
    std::fs::write(&args.output, &json).with_context(|| format!("writing {}", args.output.display()))?;
    let tok = Tokenizer::load(&args.output)?;
    println!(
        "wrote {} ({} ids, {}) in {:.1} s",
        args.output.display(),
        tok.vocab_size(),
        tok.id(),
        t0.elapsed().as_secs_f64()
    );
    for d in &corpus {
        let n = tok.encode(&d.validation).len();
        println!("{:<18} {:>6.2} bytes/token on validation", d.name, d.validation.len() as f64 / n.max(1) as f64);
    }
    Ok(())
}

#[derive(Clone, Copy, ValueEnum, Debug)]
enum RecipeArg {
    /// Top-k with load-balancing and z-loss.
    Topk,
    /// Top-k with the load-balancing loss over the global batch (`--lbl-window` steps).
    TopkGlobal,
    /// Dynamic top-p with load-balancing, z-loss and the dynamic (entropy) loss.
    TopP,
    /// DeepSeek-V3 sigmoid routing balanced by a selection bias instead of a loss.
    Lossfree,
    /// DeepSeekMoE: fine-grained experts and a shared expert at top-k's active compute.
    Deepseek,
    /// AdaMoE: null experts beside the FFN experts, so a token can use fewer of them.
    Adamoe,
    /// MoE++: zero, copy and constant experts, a two-layer gate with gating residuals.
    Moepp,
    /// THOR: random experts, two passes, consistency loss.
    Thor,
    /// SMoE-Dropout: frozen random router, k rising to E.
    SmoeDropout,
}

/// Flags of `switchyard train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Recipe.
    #[arg(long, value_enum)]
    recipe: RecipeArg,
    /// Folder of .txt files, one per domain (file stem = domain).
    #[arg(long)]
    corpus: PathBuf,
    /// BPE tokenizer.json (default: byte-level tokens).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Output folder: state/ (resumable), log.jsonl, curve.csv, train.json and the checkpoint.
    #[arg(long)]
    out: PathBuf,
    /// Checkpoint name (default: the recipe's name).
    #[arg(long)]
    name: Option<String>,
    /// Continue the run saved in OUT/state.
    #[arg(long)]
    resume: bool,
    /// Hidden size.
    #[arg(long, default_value_t = 128)]
    d_model: usize,
    /// Decoder blocks.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Attention heads (KV heads = heads / 2).
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Experts per layer.
    #[arg(long, default_value_t = 8)]
    experts: usize,
    /// Hidden size of each expert.
    #[arg(long, default_value_t = 256)]
    d_ff: usize,
    /// Context window of the model (and of training sequences unless --seq-len).
    #[arg(long, default_value_t = 256)]
    context: usize,
    /// Tie the LM head to the embedding.
    #[arg(long)]
    tie_embeddings: bool,
    /// Optimizer steps.
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per training sequence (default: the context).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Final learning rate.
    #[arg(long, default_value_t = 2e-4)]
    min_lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f32,
    /// Gradient-norm clipping.
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f32,
    /// Seed of initialisation, data order and the recipe's random draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// top-k: experts per token.
    #[arg(long, default_value_t = 2)]
    k: usize,
    /// top-k: load-balancing coefficient.
    #[arg(long, default_value_t = 0.01)]
    lbl_coef: f32,
    /// top-k: z-loss coefficient.
    #[arg(long, default_value_t = 1e-3)]
    z_coef: f32,
    /// top-k: steps whose expert counts make the LBL's load fractions (topk: 1; topk-global:
    /// 16).
    #[arg(long)]
    lbl_window: Option<u64>,
    /// top-p: threshold p.
    #[arg(long, default_value_t = 0.4)]
    p: f32,
    /// top-p: coefficient of the dynamic (router entropy) loss.
    #[arg(long, default_value_t = 1e-4)]
    dyn_coef: f32,
    /// deepseek: fine-grained experts per base expert (each of d_ff / segments).
    #[arg(long, default_value_t = 2)]
    segments: usize,
    /// deepseek: fine-grained experts merged into the shared expert (the routed ones per token
    /// are then k·segments − shared, the active compute of top-k).
    #[arg(long, default_value_t = 1)]
    shared: usize,
    /// adamoe: null experts beside the FFN experts (the reference: 16 beside 8).
    #[arg(long, default_value_t = 16)]
    null: usize,
    /// adamoe: slots per token over FFN and null experts (the reference raises Mixtral's 2
    /// to 4).
    #[arg(long, default_value_t = 4)]
    null_k: usize,
    /// moepp: the load-balancing loss's weight τ on the zero-computation experts.
    #[arg(long, default_value_t = 0.75)]
    tau: f32,
    /// lossfree: how far each step moves a selection bias.
    #[arg(long, default_value_t = 1e-3)]
    gamma: f32,
    /// THOR: consistency weight α.
    #[arg(long, default_value_t = 1.0)]
    alpha: f32,
    /// SMoE-Dropout: k at the first step (k rises to the number of experts).
    #[arg(long, default_value_t = 2)]
    k_min: usize,
    /// SMoE-Dropout: standard deviation of the frozen router.
    #[arg(long, default_value_t = 0.02)]
    init_std: f32,
    /// Validate (and save the state) every N steps.
    #[arg(long, default_value_t = 250)]
    eval_every: u64,
    /// Validation tokens per domain at each periodic validation (`switchyard eval` uses all).
    #[arg(long, default_value_t = 4096)]
    eval_tokens: usize,
}

/// One line of `log.jsonl`.
#[derive(Serialize, Deserialize, Clone)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogLine {
    /// An optimizer step.
    Step {
        /// Step statistics.
        #[serde(flatten)]
        stats: StepStats,
        /// Training tokens seen after this step.
        tokens_seen: u64,
        /// Wall seconds since the run started (resumes included).
        wall_s: f64,
    },
    /// A periodic validation.
    Validation {
        /// Steps done.
        step: u64,
        /// Bits per byte on the first validation tokens of each domain.
        bits_per_byte: std::collections::BTreeMap<String, f64>,
        /// Their mean.
        mean_bits_per_byte: f64,
        /// Wall seconds since the run started.
        wall_s: f64,
    },
}

/// `train.json`: what the model card reports about the run.
#[derive(Serialize, Deserialize)]
pub struct TrainSummary {
    /// Checkpoint name.
    pub name: String,
    /// Model configuration.
    pub model: ModelConfig,
    /// Parameter count.
    pub parameters: usize,
    /// Training settings (recipe included).
    pub train: TrainConfig,
    /// Tokenizer identity.
    pub tokenizer: String,
    /// Training tokens (steps × batch × seq_len).
    pub tokens_seen: u64,
    /// Tokens in the training split.
    pub train_split_tokens: usize,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
    /// Mean training throughput.
    pub tokens_per_s: f64,
    /// Threads the CPU backend used (`RAYON_NUM_THREADS`, else the machine's cores).
    pub threads: usize,
    /// Backend.
    pub backend: String,
}

fn recipe(args: &TrainArgs, cfg: &ModelConfig) -> Recipe {
    match args.recipe {
        RecipeArg::Topk | RecipeArg::TopkGlobal => {
            let global =
                matches!(args.recipe, RecipeArg::TopkGlobal).then_some(switchyard_model::train::GLOBAL_LBL_WINDOW);
            let lbl_window = args.lbl_window.or(global).unwrap_or(1);
            Recipe::Topk { k: args.k, lbl_coef: args.lbl_coef, z_coef: args.z_coef, lbl_window }
        }
        RecipeArg::Lossfree => Recipe::Lossfree { k: args.k, gamma: args.gamma },
        RecipeArg::Deepseek => Recipe::Deepseek {
            k: (args.k * args.segments).saturating_sub(args.shared),
            segments: args.segments,
            shared: args.shared,
            lbl_coef: args.lbl_coef,
            z_coef: args.z_coef,
        },
        RecipeArg::Adamoe => {
            Recipe::Adamoe { k: args.null_k, null: args.null, lbl_coef: args.lbl_coef, z_coef: args.z_coef }
        }
        RecipeArg::Moepp => Recipe::Moepp { tau: args.tau, lbl_coef: args.lbl_coef, z_coef: args.z_coef },
        RecipeArg::TopP => {
            Recipe::TopP { p: args.p, lbl_coef: args.lbl_coef, z_coef: args.z_coef, dyn_coef: args.dyn_coef }
        }
        RecipeArg::Thor => Recipe::Thor { alpha: args.alpha },
        RecipeArg::SmoeDropout => {
            Recipe::SmoeDropout { k_min: args.k_min, k_max: cfg.n_experts, init_std: args.init_std }
        }
    }
}

fn read_log(path: &Path, before_step: u64) -> Result<Vec<LogLine>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let l: LogLine = serde_json::from_str(line).with_context(|| format!("bad line in {}", path.display()))?;
        let keep = match &l {
            LogLine::Step { stats, .. } => stats.step < before_step,
            LogLine::Validation { step, .. } => *step <= before_step,
        };
        if keep {
            out.push(l);
        }
    }
    Ok(out)
}

fn validate(
    trainer: &Trainer,
    data: &TokenizedCorpus,
    tok: &Tokenizer,
    args: &TrainArgs,
    cpu: &Device,
) -> Result<(std::collections::BTreeMap<String, f64>, f64)> {
    let model = block_on(trainer.inference_model(cpu))?;
    let opts = RunOptions {
        router: trainer.config().recipe.inference_router(model.config()),
        seed: 0,
        ..RunOptions::for_config(model.config())
    };
    let mut out = std::collections::BTreeMap::new();
    for (name, ids) in data.names.iter().zip(&data.validation) {
        let ids = &ids[..ids.len().min(args.eval_tokens + 1)];
        let e = block_on(eval_tokens(&model, ids, tok, model.config().max_seq_len, 8, &opts, false))?;
        out.insert(name.clone(), e.eval.bits_per_byte());
    }
    let mean = out.values().sum::<f64>() / out.len().max(1) as f64;
    Ok((out, mean))
}

/// Trains, logging every step, validating and saving the state every `eval_every` steps, and
/// writes the f16 checkpoint at the end.
pub fn train(args: &TrainArgs) -> Result<()> {
    let tok = match &args.tokenizer {
        Some(p) => Tokenizer::load(p)?,
        None => Tokenizer::Byte(ByteTokenizer),
    };
    let model_cfg = ModelConfig {
        vocab_size: tok.vocab_size(),
        d_model: args.d_model,
        n_layers: args.layers,
        n_heads: args.heads,
        n_kv_heads: (args.heads / 2).max(1),
        d_ff: args.d_ff,
        n_experts: args.experts,
        top_k: args.k.min(args.experts),
        max_seq_len: args.context,
        tie_embeddings: args.tie_embeddings,
        ..ModelConfig::tiny()
    };
    model_cfg.validate()?;
    let config = TrainConfig {
        recipe: recipe(args, &model_cfg),
        steps: args.steps,
        batch_size: args.batch,
        seq_len: args.seq_len.unwrap_or(args.context),
        lr: args.lr,
        min_lr: args.min_lr,
        warmup: args.warmup,
        weight_decay: args.weight_decay,
        beta_2: 0.95,
        grad_clip: args.grad_clip,
        seed: args.seed,
    };
    let name = args.name.clone().unwrap_or_else(|| config.recipe.name().to_string());
    // Read the corpus before writing anything, so a bad corpus leaves no half-made run behind.
    let corpus = load_corpus(&args.corpus)?;
    eprintln!("tokenizing {} ...", args.corpus.display());
    let data = TokenizedCorpus::new(&corpus, &tok);
    let cpu = devices::cpu();
    let state_dir = args.out.join("state");
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut trainer = if args.resume {
        Trainer::resume(&state_dir, &config, &tok.id(), &cpu)?
    } else {
        if state_dir.join("state.json").exists() {
            bail!("{} already holds a run: pass --resume to continue it, or use another --out", args.out.display());
        }
        Trainer::new(&model_cfg, config.clone(), &tok.id(), &cpu)?
    };
    let start = trainer.step_index();
    let log_path = args.out.join("log.jsonl");
    let mut log_lines = read_log(&log_path, start)?;
    let wall0 = log_lines
        .iter()
        .rev()
        .find_map(|l| match l {
            LogLine::Step { wall_s, .. } => Some(*wall_s),
            LogLine::Validation { .. } => None,
        })
        .unwrap_or(0.0);
    let mut log = std::io::BufWriter::new(std::fs::File::create(&log_path)?);
    for l in &log_lines {
        writeln!(log, "{}", serde_json::to_string(l)?)?;
    }
    log_lines.clear();

    let per_step = (config.batch_size * config.seq_len) as u64;
    eprintln!(
        "{}: {} parameters, {} training tokens ({:.1} epochs over {} steps), recipe {:?}",
        name,
        param_count(trainer.model_config()),
        data.train_tokens(),
        (per_step * config.steps) as f64 / data.train_tokens().max(1) as f64,
        config.steps,
        config.recipe
    );
    let bar = ProgressBar::new(config.steps).with_position(start);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    let mut tokens_done = 0u64;
    for step in start..config.steps {
        let batch = data.batch(config.seed, step, config.batch_size, config.seq_len + 1);
        let stats = block_on(trainer.step(&batch))?;
        if !stats.loss.is_finite() {
            bail!("the loss diverged at step {step} ({}); lower --lr", stats.loss);
        }
        tokens_done += per_step;
        let elapsed = t0.elapsed().as_secs_f64();
        let tps = tokens_done as f64 / elapsed.max(1e-9);
        bar.set_message(format!(
            "loss {:.3} ce {:.3} experts/token {:.2} | {:.0} tok/s",
            stats.loss, stats.ce, stats.active, tps
        ));
        bar.inc(1);
        let line = LogLine::Step { stats, tokens_seen: (step + 1) * per_step, wall_s: wall0 + elapsed };
        writeln!(log, "{}", serde_json::to_string(&line)?)?;
        let done = step + 1;
        if done % args.eval_every == 0 || done == config.steps {
            let (bpb, mean) = validate(&trainer, &data, &tok, args, &cpu)?;
            let line = LogLine::Validation {
                step: done,
                bits_per_byte: bpb,
                mean_bits_per_byte: mean,
                wall_s: wall0 + t0.elapsed().as_secs_f64(),
            };
            writeln!(log, "{}", serde_json::to_string(&line)?)?;
            log.flush()?;
            block_on(trainer.save_state(&state_dir))?;
            bar.println(format!("step {done}: validation {mean:.3} bits/byte (mean of domains), {tps:.0} tok/s"));
        }
    }
    bar.finish();
    log.flush()?;
    drop(log);
    let wall_s = wall0 + t0.elapsed().as_secs_f64();
    write_curve_csv(&log_path, &args.out.join("curve.csv"))?;
    let params = block_on(trainer.params())?;
    let ckpt = Checkpoint { name: name.clone(), config: trainer.model_config().clone(), params, tokenizer: tok.id() };
    let ckpt_path = args.out.join(format!("{name}.safetensors"));
    ckpt.save(&ckpt_path)?;
    let summary = TrainSummary {
        name: name.clone(),
        model: trainer.model_config().clone(),
        parameters: param_count(trainer.model_config()),
        train: config.clone(),
        tokenizer: tok.id(),
        tokens_seen: config.steps * per_step,
        train_split_tokens: data.train_tokens(),
        wall_s,
        tokens_per_s: (config.steps * per_step) as f64 / wall_s.max(1e-9),
        threads: std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
        backend: "cpu (flex)".into(),
    };
    std::fs::write(args.out.join("train.json"), serde_json::to_string_pretty(&summary)?)?;
    println!(
        "wrote {} (hash {}); {:.0} s, {:.0} tokens/s",
        ckpt_path.display(),
        &ckpt.content_hash()[..12],
        wall_s,
        summary.tokens_per_s
    );
    Ok(())
}

/// `curve.csv`: step, lr, loss, ce, lbl, z, kl, k, tokens_seen, wall_s, and the validation mean
/// where one was taken.
fn write_curve_csv(log: &Path, out: &Path) -> Result<()> {
    let lines = read_log(log, u64::MAX)?;
    let mut w = csv::Writer::from_path(out)?;
    w.write_record([
        "step",
        "lr",
        "loss",
        "ce",
        "lbl",
        "z",
        "kl",
        "k",
        "tokens_seen",
        "wall_s",
        "val_mean_bits_per_byte",
    ])?;
    let val: std::collections::BTreeMap<u64, f64> = lines
        .iter()
        .filter_map(|l| match l {
            LogLine::Validation { step, mean_bits_per_byte, .. } => Some((*step, *mean_bits_per_byte)),
            LogLine::Step { .. } => None,
        })
        .collect();
    for l in &lines {
        if let LogLine::Step { stats: s, tokens_seen, wall_s } = l {
            let v = val.get(&(s.step + 1)).map(|v| v.to_string()).unwrap_or_default();
            w.write_record([
                s.step.to_string(),
                s.lr.to_string(),
                s.loss.to_string(),
                s.ce.to_string(),
                s.lbl.to_string(),
                s.z.to_string(),
                s.kl.to_string(),
                s.k.to_string(),
                tokens_seen.to_string(),
                format!("{wall_s:.2}"),
                v,
            ])?;
        }
    }
    w.flush()?;
    Ok(())
}

/// Reads a run's log (for the model card).
pub fn load_log(path: &Path) -> Result<Vec<LogLine>> {
    read_log(path, u64::MAX)
}
