//! `switchyard`: the native command line of the Switchyard MoE playground.

mod router_args;

use router_args::{RouterArgs, RouterKind};

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_lite::future::block_on;
use serde::Serialize;
use switchyard_model::{Checkpoint, Device, Model, ModelConfig, RunOptions, devices, generate_greedy, param_count};

#[derive(Parser)]
#[command(name = "switchyard", version, about = "Run, inspect and benchmark Switchyard MoE models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Architecture, parameter count and size of a checkpoint.
    Info {
        /// A `.safetensors` checkpoint written by `switchyard init` or training.
        checkpoint: PathBuf,
    },
    /// Write a checkpoint initialised from a configuration and a seed.
    Init {
        #[command(flatten)]
        model: ModelArgs,
        /// Name stored in the checkpoint.
        #[arg(long, default_value = "seed-init")]
        name: String,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Run a prompt and print each token with its experts in every layer.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        /// The prompt (byte-level tokens until a tokenizer ships).
        #[arg(long)]
        prompt: String,
        /// Greedily generate this many tokens after the prompt.
        #[arg(long, default_value_t = 0)]
        generate: usize,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Forward latency (128 tokens) and KV-cached decode speed.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        run: RunArgs,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Tokens generated per decode run.
        #[arg(long, default_value_t = 128)]
        decode_tokens: usize,
        /// Benchmark every router with its default parameters.
        #[arg(long)]
        all_routers: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ModelArgs {
    /// Load this checkpoint (otherwise a model is initialised from --config and --seed).
    #[arg(long, conflicts_with = "config")]
    checkpoint: Option<PathBuf>,
    /// Model configuration JSON (default: the built-in tiny configuration).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the initialisation when no checkpoint is given.
    #[arg(long, default_value_t = 0)]
    init_seed: u64,
}

#[derive(Args)]
struct RunArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    #[command(flatten)]
    routing: RouterArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// burn's flex CPU backend.
    Cpu,
    /// burn's wgpu backend on the default adapter.
    Wgpu,
}

impl ModelArgs {
    fn config(&self) -> Result<ModelConfig> {
        match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Ok(ModelConfig::from_json(&text).with_context(|| format!("in {}", path.display()))?)
            }
            None => Ok(ModelConfig::tiny()),
        }
    }

    fn load(&self, device: &Device) -> Result<(Model, String)> {
        match &self.checkpoint {
            Some(path) => {
                let ckpt = Checkpoint::load(path)?;
                let label = format!("{} ({}, hash {})", ckpt.name, path.display(), &ckpt.content_hash()[..12]);
                Ok((Model::from_params(&ckpt.config, &ckpt.params, device)?, label))
            }
            None => {
                let cfg = self.config()?;
                Ok((
                    Model::from_seed(&cfg, self.init_seed, device)?,
                    format!("initialised from seed {}", self.init_seed),
                ))
            }
        }
    }
}

impl RunArgs {
    fn device(&self) -> Result<Device> {
        match self.backend {
            Backend::Cpu => Ok(devices::cpu()),
            Backend::Wgpu => {
                let gpu = block_on(devices::wgpu()).map_err(|e| anyhow::anyhow!("wgpu backend unavailable: {e}"))?;
                eprintln!("wgpu adapter: {}", gpu.adapter);
                Ok(gpu.device)
            }
        }
    }

    fn options(&self, cfg: &ModelConfig) -> Result<RunOptions> {
        self.routing.options(cfg)
    }
}

fn byte_tokens(prompt: &str, cfg: &ModelConfig) -> Result<Vec<u32>> {
    if cfg.vocab_size < 256 {
        bail!("prompts are byte-level (256 ids) but this model's vocabulary has {} ids", cfg.vocab_size);
    }
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    Ok(prompt.bytes().map(u32::from).collect())
}

fn show_byte(id: u32) -> String {
    match u8::try_from(id) {
        Ok(b) if b.is_ascii_graphic() => format!("'{}'", b as char),
        Ok(b' ') => "' '".into(),
        Ok(b) => format!("0x{b:02x}"),
        Err(_) => format!("#{id}"),
    }
}

fn info(path: &PathBuf) -> Result<()> {
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let ckpt = Checkpoint::load(path)?;
    let c = &ckpt.config;
    println!("checkpoint   {}", path.display());
    println!("name         {}", ckpt.name);
    println!("content hash {}", ckpt.content_hash());
    println!("size         {size} bytes ({:.2} MB, f16)", size as f64 / 1e6);
    println!("parameters   {}", param_count(c));
    println!(
        "architecture {} layers, d_model {}, {} heads ({} KV), {} SwiGLU experts of {} per layer, top-{}{}, vocab {}, context {}",
        c.n_layers,
        c.d_model,
        c.n_heads,
        c.n_kv_heads,
        c.n_experts,
        c.d_ff,
        c.top_k,
        if c.norm_topk_prob { " renormalised" } else { "" },
        c.vocab_size,
        c.max_seq_len
    );
    Ok(())
}

fn run(model: &ModelArgs, prompt: &str, generate: usize, run: &RunArgs) -> Result<()> {
    let device = run.device()?;
    let (m, label) = model.load(&device)?;
    let cfg = m.config().clone();
    let opts = run.options(&cfg)?;
    let toks = byte_tokens(prompt, &cfg)?;
    let g = block_on(generate_greedy(&m, &toks, generate, &opts))?;
    println!("model: {label}; router: {:?}; dispatch: {:?}", opts.router, opts.dispatch);
    let layers = &g.routing.layers;
    print!("{:>4} {:>6} {:<8}", "pos", "kind", "token");
    for l in 0..layers.len() {
        print!(" | layer {l:<14}");
    }
    println!();
    for (t, &id) in g.tokens.iter().enumerate() {
        let kind = if t < g.prompt_len { "prompt" } else { "gen" };
        print!("{t:>4} {kind:>6} {:<8}", show_byte(id));
        for rec in layers {
            if t < rec.num_tokens() {
                let slots: Vec<String> = rec
                    .slots(t)
                    .map(|s| {
                        if s.dropped { format!("e{}:drop", s.expert) } else { format!("e{}:{:.2}", s.expert, s.weight) }
                    })
                    .collect();
                print!(" | {:<20}", slots.join(" "));
            } else {
                print!(" | {:<20}", "(not run)");
            }
        }
        println!();
    }
    for rec in layers {
        let s = switchyard_analysis::load_stats(rec);
        let loads: Vec<String> = s.fraction.iter().map(|f| format!("{f:.2}")).collect();
        println!("layer {}: load [{}], CV {:.2}, load entropy {:.2}", rec.layer, loads.join(" "), s.cv, s.load_entropy);
    }
    if generate > 0 {
        let text = String::from_utf8_lossy(&g.tokens.iter().map(|&t| t as u8).collect::<Vec<_>>()).into_owned();
        println!("text: {text:?}");
    }
    Ok(())
}

#[derive(Serialize)]
struct BenchRow {
    router: String,
    forward_ms_median: f64,
    forward_ms_min: f64,
    decode_tokens_per_s_median: f64,
    /// Forward latency relative to plain top-k (1.0 = the same).
    forward_vs_topk: Option<f64>,
    /// Decode speed relative to plain top-k (1.0 = the same).
    decode_vs_topk: Option<f64>,
}

#[derive(Serialize)]
struct BenchReport {
    backend: String,
    model: String,
    dispatch: String,
    runs: usize,
    forward_tokens: usize,
    decode_tokens: usize,
    routers: Vec<BenchRow>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median 128-token forward latency (ms, min too) and KV-cached decode speed (tokens/s).
fn measure(m: &Model, opts: &RunOptions, runs: usize, decode_tokens: usize) -> Result<(f64, f64, f64)> {
    let cfg = m.config();
    let n = 128.min(cfg.max_seq_len);
    let toks: Vec<u32> = (0..n).map(|i| (i * 31 % cfg.vocab_size) as u32).collect();
    let forward_once = || -> Result<f64> {
        let t0 = Instant::now();
        let out = block_on(m.forward(std::slice::from_ref(&toks), None, None, opts))?;
        block_on(out.logits.into_data_async()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    forward_once()?; // warm-up (shader compilation on wgpu)
    let fwd: Vec<f64> = (0..runs).map(|_| forward_once()).collect::<Result<_>>()?;
    // Greedy generation: KV-cached steps, or whole-sequence recomputes for group-level routers.
    let decode_once = || -> Result<f64> {
        let t0 = Instant::now();
        block_on(generate_greedy(m, &[1], decode_tokens, opts))?;
        Ok(decode_tokens as f64 / t0.elapsed().as_secs_f64())
    };
    decode_once()?;
    let dec: Vec<f64> = (0..runs).map(|_| decode_once()).collect::<Result<_>>()?;
    Ok((median(fwd.clone()), fwd.iter().copied().fold(f64::INFINITY, f64::min), median(dec)))
}

fn bench(model: &ModelArgs, run: &RunArgs, runs: usize, decode_tokens: usize, all: bool, json: bool) -> Result<()> {
    let runs = runs.max(1);
    let device = run.device()?;
    let (m, label) = model.load(&device)?;
    let cfg = m.config().clone();
    let decode_tokens = decode_tokens.min(cfg.max_seq_len - 1);
    let kinds: Vec<RouterKind> = if all { RouterKind::ALL.to_vec() } else { vec![run.routing.router] };
    let mut rows: Vec<BenchRow> = Vec::new();
    let mut topk: Option<(f64, f64)> = None;
    for kind in kinds {
        let opts = run.routing.options_for(kind, &cfg)?;
        let (fwd, fwd_min, dec) = measure(&m, &opts, runs, decode_tokens)?;
        if kind == RouterKind::Topk {
            topk = Some((fwd, dec));
        }
        rows.push(BenchRow {
            router: serde_json::to_string(&opts.router)?,
            forward_ms_median: fwd,
            forward_ms_min: fwd_min,
            decode_tokens_per_s_median: dec,
            forward_vs_topk: topk.map(|(f, _)| fwd / f),
            decode_vs_topk: topk.map(|(_, d)| dec / d),
        });
    }
    let report = BenchReport {
        backend: match run.backend {
            Backend::Cpu => "cpu (flex)".into(),
            Backend::Wgpu => "wgpu".into(),
        },
        model: format!(
            "{label}: d={} L={} E={} k={} V={}",
            cfg.d_model, cfg.n_layers, cfg.n_experts, cfg.top_k, cfg.vocab_size
        ),
        dispatch: format!("{:?}", run.routing.options(&cfg)?.dispatch).to_lowercase(),
        runs,
        forward_tokens: 128.min(cfg.max_seq_len),
        decode_tokens,
        routers: rows,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("backend  {} ({} dispatch)", report.backend, report.dispatch);
    println!("model    {}", report.model);
    println!(
        "medians over {runs} runs; forward = {} tokens, decode = {decode_tokens} tokens with KV cache",
        report.forward_tokens
    );
    for r in &report.routers {
        let rel = match (r.forward_vs_topk, r.decode_vs_topk) {
            (Some(f), Some(d)) => format!("  ({f:.2}x top-k latency, {d:.2}x top-k decode speed)"),
            _ => String::new(),
        };
        println!(
            "{:<90} forward {:>7.2} ms  decode {:>6.0} tok/s{rel}",
            r.router, r.forward_ms_median, r.decode_tokens_per_s_median
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Info { checkpoint } => info(checkpoint),
        Command::Init { model, name, output } => {
            let cfg = model.config()?;
            let ckpt = Checkpoint {
                name: name.clone(),
                params: switchyard_model::init_from_seed(&cfg, model.init_seed),
                config: cfg,
            };
            ckpt.save(output)?;
            println!(
                "wrote {} ({} parameters, hash {})",
                output.display(),
                param_count(&ckpt.config),
                ckpt.content_hash()
            );
            Ok(())
        }
        Command::Run { model, prompt, generate, run: r } => run(model, prompt, *generate, r),
        Command::Bench { model, run: r, runs, decode_tokens, all_routers, json } => {
            bench(model, r, *runs, *decode_tokens, *all_routers, *json)
        }
    }
}
