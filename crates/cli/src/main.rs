//! `switchyard`: the native command line of the Switchyard MoE playground.

mod eval_cmd;
mod hf_cmd;
mod router_args;
mod train_cmd;

use router_args::{DecodeArgs, RouterArgs, RouterKind};
use switchyard_model::{ByteTokenizer, Tokenizer};
use switchyard_state::PlaygroundState;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_lite::future::block_on;
use serde::Serialize;
use switchyard_model::{
    Checkpoint, Device, Model, ModelConfig, RunOptions, devices, generate_greedy, param_count, read_backs,
};

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
        /// A `.safetensors` checkpoint written by `switchyard init` or training, or a Hugging
        /// Face model folder (config.json, safetensors, tokenizer.json).
        checkpoint: PathBuf,
    },
    /// Write a checkpoint as a Hugging Face Mixtral folder that transformers loads.
    ExportHf(hf_cmd::ExportArgs),
    /// Print a model's logits and router logits for token ids, as JSON (for parity checks).
    Logits(hf_cmd::LogitsArgs),
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
        job: Job,
    },
    /// Like `run`, but write the routing trace as JSON (schema: docs/trace.md) or CSV.
    Trace {
        #[command(flatten)]
        job: Job,
        /// Write the flat per-(token, layer, slot) CSV table instead of JSON.
        #[arg(long)]
        csv: bool,
    },
    /// Router A/B of a link with a configuration B (`b.router=…`): A's trace is run, then A and B
    /// read its tokens; prints the comparison as JSON (the page's A/B export has the same form).
    Compare {
        #[command(flatten)]
        job: Job,
    },
    /// Train a byte-level BPE tokenizer on a corpus's training split.
    Tokenizer(train_cmd::TokenizerArgs),
    /// Print the tokens of a text as JSON: the tokenizer id, the ids and their printable pieces.
    Tokenize {
        /// A tokenizer.json (default: byte-level).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// The text.
        #[arg(long)]
        text: String,
    },
    /// Train a model with one of the recipes (topk, topk-global, top-p, thor, smoe-dropout).
    Train(Box<train_cmd::TrainArgs>),
    /// Bits per byte per domain on a corpus's validation split, and routing statistics.
    Eval(Box<eval_cmd::EvalArgs>),
    /// Write a model card (Markdown and JSON) from a training log and an eval report.
    Card(eval_cmd::CardArgs),
    /// Print README's comparison tables (Markdown) from model cards' JSON.
    CardsTable {
        /// Cards (`assets/NAME.card.json`), in the order of the columns.
        cards: Vec<std::path::PathBuf>,
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

/// A prompt through a model with a router and a decoding mode: from flags or from a share link.
#[derive(Args)]
struct Job {
    #[command(flatten)]
    model: ModelArgs,
    /// A playground share link (or its query string). It sets the router, interventions,
    /// decoding, seed, prompt and generation length; those flags are then ignored.
    #[arg(long)]
    url: Option<String>,
    /// The prompt.
    #[arg(long)]
    prompt: Option<String>,
    /// Generate this many tokens after the prompt.
    #[arg(long, default_value_t = 0)]
    generate: usize,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    decode: DecodeArgs,
}

impl Job {
    /// The playground state this job runs, and the model it runs on.
    fn resolve(&self) -> Result<(PlaygroundState, Model, String, String, Tokenizer)> {
        let device = self.run.device()?;
        let backend = match self.run.backend {
            Backend::Cpu => "cpu (flex)",
            Backend::Wgpu => "wgpu",
        };
        let mut state = match &self.url {
            Some(url) => {
                let (state, problems) = PlaygroundState::from_query(url);
                for p in &problems {
                    eprintln!("warning: link parameter {p}");
                }
                state
            }
            None => PlaygroundState {
                prompt: self.prompt.clone().unwrap_or_default(),
                generate: self.generate,
                ..Default::default()
            },
        };
        let (model, name, hash, tok) = self.model.resolve(&state.checkpoint, &device)?;
        if let Some(prefix) = &state.checkpoint_hash
            && !hash.starts_with(prefix.as_str())
        {
            bail!("the link pins checkpoint hash {prefix}…, but `{name}` hashes to {hash}");
        }
        state.checkpoint = name;
        if self.url.is_none() {
            let cfg = model.config().clone();
            let opts = self.run.options(&cfg)?;
            state.router = opts.router;
            state.interventions = opts.interventions;
            state.seed = opts.seed;
            state.decoding = self.decode.decoding()?;
        }
        Ok((state, model, hash, backend.to_string(), tok))
    }
}

#[derive(Args)]
struct ModelArgs {
    /// Load this checkpoint: a `.safetensors` file of ours, or a Hugging Face model folder
    /// (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE). Otherwise a model is initialised from --config
    /// and --seed.
    #[arg(long, conflicts_with = "config")]
    checkpoint: Option<PathBuf>,
    /// Model configuration JSON (default: the built-in tiny configuration).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the initialisation when no checkpoint is given.
    #[arg(long, default_value_t = 0)]
    init_seed: u64,
    /// The tokenizer.json of a BPE checkpoint (default: tokenizer.json beside the checkpoint).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
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
    /// The model for the checkpoint name a state gives: `--checkpoint` wins; `seed-init` is
    /// the configuration initialised from `--init-seed`; other names are looked up as
    /// `assets/<name>.safetensors`. Returns the model, its name, its content hash and its
    /// tokenizer.
    fn resolve(&self, name: &str, device: &Device) -> Result<(Model, String, String, Tokenizer)> {
        let path = match &self.checkpoint {
            Some(p) => Some(p.clone()),
            None if name == "seed-init" => None,
            None => {
                let p = PathBuf::from("assets").join(format!("{name}.safetensors"));
                if !p.exists() {
                    bail!("checkpoint `{name}` not found at {}; pass --checkpoint FILE", p.display());
                }
                Some(p)
            }
        };
        match path {
            Some(p) if p.is_dir() => {
                let (_, ckpt, tok) = hf_cmd::open(&p, self.tokenizer.as_deref())?;
                let hash = ckpt.content_hash();
                Ok((Model::from_params(&ckpt.config, &ckpt.params, device)?, ckpt.name, hash, tok))
            }
            Some(p) => {
                let ckpt = Checkpoint::load(&p)?;
                let tok = load_tokenizer(&ckpt, &p, self.tokenizer.as_deref())?;
                let hash = ckpt.content_hash();
                Ok((Model::from_params(&ckpt.config, &ckpt.params, device)?, ckpt.name, hash, tok))
            }
            None => {
                let cfg = self.config()?;
                let ckpt = Checkpoint {
                    name: "seed-init".into(),
                    params: switchyard_model::init_from_seed(&cfg, self.init_seed),
                    config: cfg,
                    tokenizer: "byte".into(),
                };
                let model = Model::from_params(&ckpt.config, &ckpt.params, device)?;
                Ok((model, ckpt.name.clone(), ckpt.content_hash(), Tokenizer::Byte(ByteTokenizer)))
            }
        }
    }

    fn config(&self) -> Result<ModelConfig> {
        match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Ok(ModelConfig::from_json(&text).with_context(|| format!("in {}", path.display()))?)
            }
            None => Ok(ModelConfig::tiny()),
        }
    }
}

/// The tokenizer a checkpoint was trained with: byte-level, or the BPE `tokenizer.json` given or
/// found beside the checkpoint, checked against the hash the checkpoint records.
fn load_tokenizer(ckpt: &Checkpoint, path: &std::path::Path, given: Option<&std::path::Path>) -> Result<Tokenizer> {
    if ckpt.tokenizer == "byte" {
        if ckpt.config.vocab_size < ByteTokenizer::VOCAB {
            bail!("byte-level prompts need 256 ids but this model's vocabulary has {}", ckpt.config.vocab_size);
        }
        return Ok(Tokenizer::Byte(ByteTokenizer));
    }
    let file = match given {
        Some(f) => f.to_path_buf(),
        None => path.parent().unwrap_or(std::path::Path::new(".")).join("tokenizer.json"),
    };
    let tok = Tokenizer::load(&file).with_context(|| format!("checkpoint `{}` needs its tokenizer", ckpt.name))?;
    if tok.id() != ckpt.tokenizer {
        bail!(
            "{} is not the tokenizer `{}` was trained with (it records {}, the file is {})",
            file.display(),
            ckpt.name,
            ckpt.tokenizer,
            tok.id()
        );
    }
    if tok.vocab_size() > ckpt.config.vocab_size {
        bail!("the tokenizer has {} ids but the model only {}", tok.vocab_size(), ckpt.config.vocab_size);
    }
    Ok(tok)
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

fn info(path: &PathBuf) -> Result<()> {
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let (ckpt, format) = if path.is_dir() {
        let (hf, ckpt, _) = hf_cmd::open(path, None)?;
        let format =
            format!("Hugging Face {} ({}, {} bytes of weights)", hf.architecture.name(), hf.dtype, hf.stored_bytes());
        (ckpt, format)
    } else {
        (Checkpoint::load(path)?, format!("{size} bytes ({:.2} MB, f16)", size as f64 / 1e6))
    };
    let c = &ckpt.config;
    println!("checkpoint   {}", path.display());
    println!("name         {}", ckpt.name);
    println!("content hash {}", ckpt.content_hash());
    println!("size         {format}");
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

/// A job's state run to its trace, with what it ran on.
struct Traced {
    trace: switchyard_trace::Trace,
    state: PlaygroundState,
    model: Model,
    hash: String,
    backend: String,
    tok: Tokenizer,
}

impl Job {
    /// Runs the job's state and returns its trace with the state, model, checkpoint hash,
    /// backend and tokenizer.
    fn trace(&self) -> Result<Traced> {
        let (state, model, hash, backend, tok) = self.resolve()?;
        let train = self.run.routing.training()?;
        let trace = block_on(switchyard_trace::trace(&model, &tok, &state, &hash, &backend, train, async |_| true))?;
        Ok(Traced { trace, state, model, hash, backend, tok })
    }
}

fn run(job: &Job) -> Result<()> {
    let Traced { trace: t, state, hash, backend, tok, .. } = job.trace()?;
    println!("model: {} (hash {}) on {backend}", state.checkpoint, &hash[..12]);
    println!("link:  ?{}", t.query);
    print!("{:>4} {:>6} {:<8}", "pos", "kind", "token");
    for l in &t.layers {
        print!(" | layer {:<14}", l.layer);
    }
    println!();
    for tok in &t.tokens {
        print!(
            "{:>4} {:>6} {:<8}",
            tok.index,
            if tok.kind == "prompt" { "prompt" } else { "gen" },
            format!("'{}'", tok.text)
        );
        for l in &t.layers {
            let cell = match l.routing.get(tok.index) {
                Some(r) => r
                    .experts
                    .iter()
                    .enumerate()
                    .map(|(j, e)| if r.dropped[j] { format!("e{e}:drop") } else { format!("e{e}:{:.2}", r.weights[j]) })
                    .collect::<Vec<_>>()
                    .join(" "),
                None => "(not run)".into(),
            };
            print!(" | {cell:<20}");
        }
        println!();
    }
    for l in &t.layers {
        let m = &l.metrics;
        let loads: Vec<String> = m.load.fraction.iter().map(|f| format!("{f:.2}")).collect();
        println!(
            "layer {}: load [{}], CV {:.2}, load entropy {:.2}, LBL {:.2}, active experts {:.2}, drop rate {:.2}",
            l.layer,
            loads.join(" "),
            m.load.cv,
            m.load.load_entropy,
            m.lbl_topk,
            m.active_experts_mean,
            m.drop_rate_slots
        );
    }
    if state.generate > 0 {
        let ids: Vec<u32> = t.tokens.iter().map(|x| x.id).collect();
        println!("text: {:?}", tok.decode(&ids));
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
    /// Host read-backs per forward pass of the prompt.
    read_backs_per_forward: f64,
    /// Host read-backs per decoded token.
    read_backs_per_token: f64,
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
/// A router's speed: forward latency (median and best), decode speed, and read-backs per
/// forward pass and per decoded token.
struct Measured {
    forward_ms: f64,
    forward_ms_min: f64,
    decode_tokens_per_s: f64,
    read_backs_per_forward: f64,
    read_backs_per_token: f64,
}

fn measure(m: &Model, opts: &RunOptions, runs: usize, decode_tokens: usize) -> Result<Measured> {
    let cfg = m.config();
    let n = 128.min(cfg.max_seq_len);
    let toks: Vec<u32> = (0..n).map(|i| (i * 31 % cfg.vocab_size) as u32).collect();
    let forward_once = || -> Result<f64> {
        let t0 = Instant::now();
        // The forward pass reads back what decoding needs (the last logits, with the routing).
        block_on(m.forward(std::slice::from_ref(&toks), None, None, opts))?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    forward_once()?; // warm-up (shader compilation on wgpu)
    let before = read_backs();
    let fwd: Vec<f64> = (0..runs).map(|_| forward_once()).collect::<Result<_>>()?;
    let read_backs_per_forward = (read_backs() - before) as f64 / runs as f64;
    // Greedy generation: KV-cached steps, or whole-sequence recomputes for group-level routers.
    let decode_once = || -> Result<f64> {
        let t0 = Instant::now();
        block_on(generate_greedy(m, &[1], decode_tokens, opts))?;
        Ok(decode_tokens as f64 / t0.elapsed().as_secs_f64())
    };
    decode_once()?;
    let before = read_backs();
    let dec: Vec<f64> = (0..runs).map(|_| decode_once()).collect::<Result<_>>()?;
    let read_backs_per_token = (read_backs() - before) as f64 / (runs * decode_tokens.max(1)) as f64;
    Ok(Measured {
        forward_ms: median(fwd.clone()),
        forward_ms_min: fwd.iter().copied().fold(f64::INFINITY, f64::min),
        decode_tokens_per_s: median(dec),
        read_backs_per_forward,
        read_backs_per_token,
    })
}

fn bench(model: &ModelArgs, run: &RunArgs, runs: usize, decode_tokens: usize, all: bool, json: bool) -> Result<()> {
    let runs = runs.max(1);
    let device = run.device()?;
    let (m, name, hash, _) = model.resolve("seed-init", &device)?;
    let label = format!("{name} (hash {})", &hash[..12]);
    let cfg = m.config().clone();
    let decode_tokens = decode_tokens.min(cfg.max_seq_len - 1);
    let kinds: Vec<RouterKind> = if all { RouterKind::ALL.to_vec() } else { vec![run.routing.router] };
    let mut rows: Vec<BenchRow> = Vec::new();
    let mut topk: Option<(f64, f64)> = None;
    for kind in kinds {
        let opts = run.routing.options_for(kind, &cfg)?;
        let r = measure(&m, &opts, runs, decode_tokens)?;
        if kind == RouterKind::Topk {
            topk = Some((r.forward_ms, r.decode_tokens_per_s));
        }
        rows.push(BenchRow {
            router: serde_json::to_string(&opts.router)?,
            forward_ms_median: r.forward_ms,
            forward_ms_min: r.forward_ms_min,
            decode_tokens_per_s_median: r.decode_tokens_per_s,
            forward_vs_topk: topk.map(|(f, _)| r.forward_ms / f),
            decode_vs_topk: topk.map(|(_, d)| r.decode_tokens_per_s / d),
            read_backs_per_forward: r.read_backs_per_forward,
            read_backs_per_token: r.read_backs_per_token,
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
            "{:<90} forward {:>7.2} ms  decode {:>6.0} tok/s  read-backs {:.1}/forward {:.2}/token{rel}",
            r.router,
            r.forward_ms_median,
            r.decode_tokens_per_s_median,
            r.read_backs_per_forward,
            r.read_backs_per_token
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Info { checkpoint } => info(checkpoint),
        Command::ExportHf(args) => hf_cmd::export(args),
        Command::Logits(args) => hf_cmd::logits(args),
        Command::Init { model, name, output } => {
            let cfg = model.config()?;
            let ckpt = Checkpoint {
                name: name.clone(),
                params: switchyard_model::init_from_seed(&cfg, model.init_seed),
                config: cfg,
                tokenizer: "byte".into(),
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
        Command::Run { job } => run(job),
        Command::Trace { job, csv } => {
            let t = job.trace()?.trace;
            if *csv {
                switchyard_trace::write_csv(&t, std::io::stdout().lock()).map_err(Into::into)
            } else {
                println!("{}", serde_json::to_string_pretty(&t)?);
                Ok(())
            }
        }
        Command::Compare { job } => {
            let Traced { trace, state, model, .. } = job.trace()?;
            let ids: Vec<u32> = trace.tokens.iter().map(|x| x.id).collect();
            let Some(c) = block_on(switchyard_trace::compare(&model, &state, &ids))? else {
                bail!("the link has no configuration B: add b.router=… (and its parameters) or b.decode=…");
            };
            println!("{}", serde_json::to_string_pretty(&c)?);
            Ok(())
        }
        Command::Tokenizer(args) => train_cmd::tokenizer(args),
        Command::Tokenize { tokenizer, text } => {
            let tok = match tokenizer {
                Some(p) => Tokenizer::load(p)?,
                None => Tokenizer::Byte(ByteTokenizer),
            };
            let ids = tok.encode(text);
            let pieces: Vec<String> = ids.iter().map(|&i| tok.display(i)).collect();
            println!("{}", serde_json::json!({ "id": tok.id(), "ids": ids, "pieces": pieces }));
            Ok(())
        }
        Command::Train(args) => train_cmd::train(args),
        Command::Eval(args) => eval_cmd::eval(args),
        Command::Card(args) => eval_cmd::card(args),
        Command::CardsTable { cards } => eval_cmd::cards_table(cards),
        Command::Bench { model, run: r, runs, decode_tokens, all_routers, json } => {
            bench(model, r, *runs, *decode_tokens, *all_routers, *json)
        }
    }
}
