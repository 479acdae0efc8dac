//! `switchyard eval` (bits per byte and routing statistics on the validation split) and
//! `switchyard card` (a model card from a run's files and eval reports).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_lite::future::block_on;
use serde::{Deserialize, Serialize};
use switchyard_analysis::{LoadStats, layer_metrics};
use switchyard_analysis::{domain_distribution, token_specialisation};
use switchyard_model::corpus::load_corpus;
use switchyard_model::eval_tokens;
use switchyard_record::LayerRouting;

use crate::train_cmd::{LogLine, TrainSummary, load_log};
use crate::{ModelArgs, RunArgs};

/// Flags of `switchyard eval`.
#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Folder of .txt files, one per domain; their validation splits are scored.
    #[arg(long)]
    corpus: PathBuf,
    /// Tokens of context per chunk (default: the model's context).
    #[arg(long)]
    context: Option<usize>,
    /// Chunks per forward call.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Score only the first N validation tokens of each domain (default: all).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Only these domains (repeatable).
    #[arg(long)]
    domain: Vec<String>,
    /// Skip the routing statistics.
    #[arg(long)]
    no_routing: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One domain's score.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct DomainScore {
    /// Domain (file stem).
    pub domain: String,
    /// Tokens predicted.
    pub tokens: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Total negative log-likelihood, nats.
    pub nats: f64,
    /// nats / bytes / ln 2.
    pub bits_per_byte: f64,
}

/// Routing statistics of one layer over the validation split.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LayerStats {
    /// Layer.
    pub layer: usize,
    /// Load over all domains.
    pub load: LoadStats,
    /// Top-k load-balancing loss value (§9.1).
    pub lbl_topk: f64,
    /// Mean top-1 probability.
    pub confidence: f64,
    /// Mean FFN experts that ran per token (kept slots).
    #[serde(default)]
    pub active_experts: f64,
    /// Share of the tokens that ran no FFN expert (free experts only, spec §6).
    #[serde(default)]
    pub skipped_tokens: f64,
    /// Share of each domain's slots that each expert takes (Mixtral fig. 7), domain -> [E].
    pub domain_share: BTreeMap<String, Vec<f64>>,
    /// Per expert: its share of code tokens over its share of prose tokens (code = `code_*`
    /// domains, prose = `*_prose` and `en_verse`).
    /// `None` where the expert has no prose share (a free expert prose never uses): no ratio.
    pub code_over_prose: Vec<Option<f64>>,
    /// The largest ratio either way (`max(r, 1/r)` over the FFN experts both groups use).
    pub max_code_prose_ratio: f64,
    /// OpenMoE token-ID specialisation score and its random baseline.
    pub specialisation: f64,
    /// Its baseline.
    pub specialisation_baseline: f64,
}

/// `switchyard eval`'s report.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct EvalReport {
    /// Checkpoint name.
    pub checkpoint: String,
    /// Its content hash.
    pub content_hash: String,
    /// Tokenizer identity.
    pub tokenizer: String,
    /// The router, as JSON.
    pub router: serde_json::Value,
    /// Router seed.
    pub seed: u64,
    /// Context per chunk.
    pub context: usize,
    /// Per domain.
    pub domains: Vec<DomainScore>,
    /// Unweighted mean of the domains' bits per byte.
    pub mean_bits_per_byte: f64,
    /// All nats over all bytes.
    pub overall_bits_per_byte: f64,
    /// Per layer (empty with --no-routing).
    pub layers: Vec<LayerStats>,
    /// Wall seconds of the evaluation.
    pub wall_s: f64,
}

fn is_code(d: &str) -> bool {
    d.starts_with("code_")
}

fn is_prose(d: &str) -> bool {
    d.ends_with("_prose") || d == "en_verse"
}

fn layer_stats(layer: usize, per_domain: &[(String, LayerRouting, Vec<u32>)]) -> LayerStats {
    let mut all: Option<LayerRouting> = None;
    let mut ids = Vec::new();
    for (_, rec, inputs) in per_domain {
        match &mut all {
            Some(a) => a.extend(rec),
            None => all = Some(rec.clone()),
        }
        ids.extend_from_slice(inputs);
    }
    let all = all.unwrap_or_default();
    let m = layer_metrics(&all);
    let share = domain_distribution(per_domain.iter().map(|(d, r, _)| (d.as_str(), r)));
    let group = |pred: fn(&str) -> bool| {
        let recs: Vec<(&str, &LayerRouting)> =
            per_domain.iter().filter(|(d, _, _)| pred(d)).map(|(_, r, _)| ("g", r)).collect();
        domain_distribution(recs).remove("g").unwrap_or_default()
    };
    let (code, prose) = (group(is_code), group(is_prose));
    let ratio: Vec<Option<f64>> = code.iter().zip(&prose).map(|(c, p)| (*p > 0.0).then(|| c / p)).collect();
    // Over the FFN experts that both groups use (a ratio with a zero share is no number).
    let max_ratio = (ratio.iter().take(all.ffn_experts()))
        .filter_map(|r| r.filter(|r| *r > 0.0).map(|r| r.max(1.0 / r)))
        .fold(0.0, f64::max);
    let tokens = m.active_experts_hist.iter().sum::<u64>().max(1) as f64;
    let spec = token_specialisation(&all, &ids, 0);
    LayerStats {
        layer,
        load: m.load,
        lbl_topk: m.lbl_topk,
        confidence: m.confidence,
        active_experts: m.active_experts_mean,
        skipped_tokens: m.active_experts_hist.first().copied().unwrap_or(0) as f64 / tokens,
        domain_share: share,
        code_over_prose: ratio,
        max_code_prose_ratio: max_ratio,
        specialisation: spec.score,
        specialisation_baseline: spec.baseline,
    }
}

/// Scores every domain's validation split and gathers the routing statistics.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let device = args.run.device()?;
    let (model, name, hash, tok) = args.model.resolve("seed-init", &device)?;
    let cfg = model.config().clone();
    let opts = args.run.options(&cfg)?;
    let context = args.context.unwrap_or(cfg.max_seq_len);
    if context == 0 || context > cfg.max_seq_len {
        bail!("--context must be between 1 and the model's context {}", cfg.max_seq_len);
    }
    let corpus = load_corpus(&args.corpus)?;
    for d in &args.domain {
        if !corpus.iter().any(|c| &c.name == d) {
            bail!("no domain `{d}` in {}", args.corpus.display());
        }
    }
    let t0 = Instant::now();
    let mut scores = Vec::new();
    let mut routed: Vec<(String, switchyard_record::RoutingRecord, Vec<u32>)> = Vec::new();
    for d in corpus.iter().filter(|d| args.domain.is_empty() || args.domain.contains(&d.name)) {
        let mut ids = tok.encode(&d.validation);
        if let Some(n) = args.max_tokens {
            ids.truncate(n + 1);
        }
        let out = block_on(eval_tokens(&model, &ids, &tok, context, args.batch, &opts, !args.no_routing))?;
        let e = out.eval;
        eprintln!("{:<18} {:>8} tokens {:>8} bytes {:>7.4} bits/byte", d.name, e.tokens, e.bytes, e.bits_per_byte());
        scores.push(DomainScore {
            domain: d.name.clone(),
            tokens: e.tokens,
            bytes: e.bytes,
            nats: e.nats,
            bits_per_byte: e.bits_per_byte(),
        });
        if !args.no_routing {
            routed.push((d.name.clone(), out.routing, out.inputs));
        }
    }
    let layers = if args.no_routing {
        Vec::new()
    } else {
        (0..cfg.n_layers)
            .map(|l| {
                let per: Vec<(String, LayerRouting, Vec<u32>)> =
                    routed.iter().map(|(d, r, ids)| (d.clone(), r.layers[l].clone(), ids.clone())).collect();
                layer_stats(l, &per)
            })
            .collect()
    };
    let mean = scores.iter().map(|s| s.bits_per_byte).sum::<f64>() / scores.len().max(1) as f64;
    let (nats, bytes) = scores.iter().fold((0.0, 0usize), |(n, b), s| (n + s.nats, b + s.bytes));
    let report = EvalReport {
        checkpoint: name,
        content_hash: hash,
        tokenizer: tok.id(),
        router: serde_json::to_value(&opts.router)?,
        seed: opts.seed,
        context,
        domains: scores,
        mean_bits_per_byte: mean,
        overall_bits_per_byte: nats / bytes.max(1) as f64 / std::f64::consts::LN_2,
        layers,
        wall_s: t0.elapsed().as_secs_f64(),
    };
    println!("{}  router {}", report.checkpoint, report.router);
    println!(
        "mean bits/byte over {} domains: {:.4} (overall {:.4})",
        report.domains.len(),
        mean,
        report.overall_bits_per_byte
    );
    for l in &report.layers {
        println!(
            "layer {}: load CV {:.2}, dead experts {}, max code/prose ratio {:.2}, specialisation {:.3} (baseline {:.3})",
            l.layer,
            l.load.cv,
            l.load.dead_experts,
            l.max_code_prose_ratio,
            l.specialisation,
            l.specialisation_baseline
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Flags of `switchyard card`.
#[derive(Args)]
pub struct CardArgs {
    /// The run's output folder (train.json, log.jsonl).
    #[arg(long, required_unless_present = "from_card", conflicts_with = "from_card")]
    run: Option<PathBuf>,
    /// Instead of a run folder: an earlier card's JSON, whose training part (summary, curves,
    /// note) is kept while the evaluations are replaced (re-evaluating a shipped checkpoint
    /// without its training run).
    #[arg(long)]
    from_card: Option<PathBuf>,
    /// The eval report of the checkpoint with its own router (from `switchyard eval --json`).
    #[arg(long)]
    eval: PathBuf,
    /// More eval reports of the same checkpoint under other routers (repeatable).
    #[arg(long)]
    also: Vec<PathBuf>,
    /// The playground query that shows this checkpoint with its own router.
    #[arg(long)]
    query: String,
    /// A line on the conditions of the run (shown with the wall time).
    #[arg(long)]
    note: Option<String>,
    /// Output stem: writes STEM.md and STEM.json.
    #[arg(short, long)]
    output: PathBuf,
}

/// The JSON model card.
#[derive(Serialize, Deserialize)]
pub struct Card {
    /// The run.
    pub training: TrainSummary,
    /// Training curve, sampled: (step, tokens seen, train cross-entropy nats/token, wall s).
    pub train_curve: Vec<(u64, u64, f32, f64)>,
    /// At each periodic validation: (step, tokens seen, mean training cross-entropy since the
    /// previous validation, mean bits per byte over domains on their first tokens, wall s).
    pub validation_curve: Vec<(u64, u64, f32, f64, f64)>,
    /// The checkpoint's own router, on the full validation split.
    pub eval: EvalReport,
    /// Other routers on the same checkpoint.
    pub other_routers: Vec<EvalReport>,
    /// Playground query of the default view.
    pub query: String,
    /// How the run was done, where the numbers alone do not say (machine sharing, ...).
    pub note: Option<String>,
}

/// One checkpoint's headline numbers, averaged over its layers.
struct Headline {
    experts: f64,
    cv: f64,
    dead: usize,
    code_prose: f64,
    spec: (f64, f64),
}

impl Headline {
    fn of(layers: &[LayerStats]) -> Self {
        let n = layers.len().max(1) as f64;
        let mean = |f: fn(&LayerStats) -> f64| layers.iter().map(f).sum::<f64>() / n;
        Self {
            experts: mean(|l| l.active_experts),
            cv: mean(|l| l.load.cv),
            dead: layers.iter().map(|l| l.load.dead_experts).sum(),
            code_prose: mean(|l| l.max_code_prose_ratio),
            spec: (mean(|l| l.specialisation), mean(|l| l.specialisation_baseline)),
        }
    }
}

/// `switchyard cards-table`: the comparison README shows, each checkpoint with its own router.
pub fn cards_table(paths: &[PathBuf]) -> Result<()> {
    let cards: Vec<Card> = paths.iter().map(|p| read_json(p)).collect::<Result<_>>()?;
    println!(
        "| checkpoint | router | mean bits/byte | FFN experts/token | MFLOPs/token | load CV | dead experts | code/prose ratio | token-ID specialisation (random) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for c in &cards {
        let h = Headline::of(&c.eval.layers);
        println!(
            "| `{}` | {} | {:.3} | {:.2} | {:.2} | {:.3} | {} | {:.2} | {:.3} ({:.3}) |",
            c.training.name,
            router_label(&c.eval.router),
            c.eval.mean_bits_per_byte,
            h.experts,
            c.training.model.weight_flops_per_token(h.experts) / 1e6,
            h.cv,
            h.dead,
            h.code_prose,
            h.spec.0,
            h.spec.1
        );
    }
    let head: String = cards.iter().map(|c| format!(" `{}` |", c.training.name)).collect();
    println!("\n| domain (bits/byte) |{head}\n|---|{}", "---:|".repeat(cards.len()));
    let domains: Vec<String> =
        cards.first().map(|c| c.eval.domains.iter().map(|d| d.domain.clone()).collect()).unwrap_or_default();
    for d in domains {
        let cells: String = cards
            .iter()
            .map(|c| {
                c.eval
                    .domains
                    .iter()
                    .find(|x| x.domain == d)
                    .map_or(" |".into(), |x| format!(" {:.3} |", x.bits_per_byte))
            })
            .collect();
        println!("| {d} |{cells}");
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes the Markdown and JSON card.
pub fn card(args: &CardArgs) -> Result<()> {
    let eval: EvalReport = read_json(&args.eval)?;
    let other_routers: Vec<EvalReport> = args.also.iter().map(|p| read_json(p)).collect::<Result<_>>()?;
    let (training, train_curve, validation_curve, note) = match (&args.run, &args.from_card) {
        (Some(run), _) => {
            let (training, train_curve, validation_curve) = curves(run)?;
            (training, train_curve, validation_curve, args.note.clone())
        }
        (None, Some(path)) => {
            let old: Card = read_json(path)?;
            (old.training, old.train_curve, old.validation_curve, args.note.clone().or(old.note))
        }
        (None, None) => bail!("give --run or --from-card"),
    };
    let card = Card { training, train_curve, validation_curve, eval, other_routers, query: args.query.clone(), note };
    let md = markdown(&card);
    let stem = args.output.display().to_string();
    std::fs::write(format!("{stem}.md"), md)?;
    std::fs::write(format!("{stem}.json"), serde_json::to_string_pretty(&card)?)?;
    println!("wrote {stem}.md and {stem}.json");
    Ok(())
}

/// A training curve sampled at about 40 points and the periodic validations.
type Curves = (TrainSummary, Vec<(u64, u64, f32, f64)>, Vec<(u64, u64, f32, f64, f64)>);

/// The run's summary and curves from its folder (`train.json`, `log.jsonl`).
fn curves(run: &std::path::Path) -> Result<Curves> {
    let training: TrainSummary = read_json(&run.join("train.json"))?;
    let log = load_log(&run.join("log.jsonl"))?;
    let every = (training.train.steps / 40).max(1);
    let mut train_curve = Vec::new();
    let mut validation_curve = Vec::new();
    let mut window: Vec<f32> = Vec::new();
    let mut since_validation: Vec<f32> = Vec::new();
    let mut seen = 0;
    for l in &log {
        match l {
            LogLine::Step { stats, tokens_seen, wall_s } => {
                seen = *tokens_seen;
                since_validation.push(stats.ce);
                window.push(stats.ce);
                if (stats.step + 1) % every == 0 || stats.step + 1 == training.train.steps {
                    let mean = window.iter().sum::<f32>() / window.len() as f32;
                    train_curve.push((stats.step + 1, *tokens_seen, mean, *wall_s));
                    window.clear();
                }
            }
            LogLine::Validation { step, mean_bits_per_byte, wall_s, .. } => {
                let ce = since_validation.iter().sum::<f32>() / since_validation.len().max(1) as f32;
                validation_curve.push((*step, seen, ce, *mean_bits_per_byte, *wall_s));
                since_validation.clear();
            }
        }
    }
    Ok((training, train_curve, validation_curve))
}

/// `top_k (k 2, norm_topk_prob true)` from the router's JSON.
fn router_label(v: &serde_json::Value) -> String {
    let Some(map) = v.as_object() else { return v.to_string() };
    let kind = map.get("kind").and_then(|k| k.as_str()).unwrap_or("router");
    let params: Vec<String> = map
        .iter()
        .filter(|(k, v)| *k != "kind" && !v.is_null())
        .map(|(k, v)| match (v.as_str(), v.as_f64()) {
            (Some(text), _) => format!("{k} {text}"),
            // f32 parameters (0.02 stored as 0.019999999552965164) print at f32 precision.
            (None, Some(x)) if !v.is_u64() && !v.is_i64() => format!("{k} {}", x as f32),
            _ => format!("{k} {v}"),
        })
        .collect();
    if params.is_empty() { kind.to_string() } else { format!("{kind} ({})", params.join(", ")) }
}

/// What a recipe does differently from the reference code it follows (spec §2, §3), for the
/// card; the playground's router notes say the same.
pub fn departures(recipe: &str) -> &'static [&'static str] {
    match recipe {
        "thor" => &[
            "THOR is in every layer: the reference (`microsoft/Stochastic-Mixture-of-Experts`) makes only even-indexed layers expert layers; here every layer is an MoE layer, as in the rest of the playground.",
            "No label smoothing (the reference's IWSLT script uses 0.1): the card reports likelihoods.",
            "No dropout (the reference uses 0.3); each pass's randomness is only its expert draw.",
            "The losses are token means (CE₁ + CE₂ + α·KL with α = 1) where fairseq sums over tokens and divides the gradient by the token count: the same gradient.",
        ],
        "smoe-dropout" => &[
            "SwiGLU experts without dropout: the reference (`VITA-Group/Random-MoE-as-Dropout`) uses ReLU experts with dropout.",
            "The frozen router is rounded to f16 before training, so the file holds exactly the router the model learned with.",
        ],
        "top-p" => &[
            "The reference (`ZhenweiAn/Dynamic_MoE`) ships inference code only; the training loss follows the paper's description (§5.2): CE + 0.01·LBL + 0.001·z + 1e-4·H(P), where the LBL's f counts the variable-size sets, H is the router's mean entropy (the dynamic loss) and both coefficients are ours (the paper's are not verified). The z-loss is ours too, kept so that the recipe differs from `topk` only in its routing and dynamic loss.",
            "Every layer is an MoE layer; the reference alternates MoE and dense FFN layers (`expert_frequency = 2`).",
            "Router, softmax and cumulative sum in f32 (the reference runs them in bf16), so choices right at the threshold can differ from it.",
        ],
        "lossfree" => &[
            "DeepSeek-V3's inference routing (`inference/model.py::Gate`, sigmoid scores, no groups, route_scale 1) with the bias update of the paper (b_e ← b_e + γ·sign(c̄ − c_e) after every step, γ = 0.001, counts over the step's batch per layer); V3's complementary sequence-wise balance loss (α = 1e-4) is left out, so the bias is the only balancing force.",
            "No shared expert and no fine-grained experts: the same 8 experts of 256 as `topk`, so the two differ only in the router and the balancing.",
            "The bias is stored in f16 like every tensor (rounding under 0.0005 at the values it reaches), so a choice right at a tie can differ from the one training made.",
        ],
        "deepseek" => &[
            "DeepSeekMoE's fine-grained and shared experts at the size of `topk`: each of its 8 experts of 256 split in two (m = 2), one of the 16 halves made the shared expert (K_s = 1, weight 1, outside the router), the other 15 routed, 3 per token (m·k − K_s), so a token uses 3·128 + 128 = 512 hidden units, as top-2 of 256 does.",
            "Softmax top-3 with raw weights (`norm_topk_prob = false`, the DeepSeekMoE default); the balancing loss is ours (E·Σ f·P̄ at 0.01, as `topk`) instead of DeepSeek's normalised sequence-wise one at 0.001, and the z-loss of `topk` is kept, so the two recipes differ only in the experts.",
            "Every layer is an MoE layer (DeepSeekMoE 16B makes its first layer dense).",
        ],
        "adamoe" => &[
            "AdaMoE's null experts (`CengZihao/AdaMoE`) trained from scratch, not added to a pretrained Mixtral: 8 FFN experts of 256 and N = 16 null experts in one softmax, top-4 (the exp_2 setting: N = 16, k raised from 2 to 4), the null router rows initialised as copies of the FFN rows (tiled, as `loader.py`). One linear gate over E + N (exp_1's form), not exp_2's second `gate2`.",
            "The balancing loss is exp_1's (the null counts replaced by their mean, f normalised to 1, times E + N), not exp_2's, which indexes the wrong axis and ends up the plain HF loss; its coefficient is ours (0.01, as `topk`) with `topk`'s z-loss, where the reference uses 1e-3 (exp_1) or 1e-4 (exp_2).",
            "The true-expert test is `index < E` (the code hard-codes `≤ 7` or `≤ 3`).",
        ],
        "moepp" => &[
            "MoE++ (`SkyworkAI/MoE-plus-plus`) at the size of `topk`: 8 FFN experts of 256 followed by 2 constant, 1 copy and 1 zero expert (E = 12), the reference's default two-layer gate (tanh, 8·E = 96 hidden, f32) with the gating residual from the second layer on, top-2 with the code's weights (the zero expert's gate set to 0, then renormalised: {FFN a, zero} gives FFN a weight 1) and the experts' input multiplied by k = 2 (the default mode).",
            "The reference code has no training loss. Ours is the paper's heterogeneous balancing loss as we read it, E·Σ η_e·f_e·P̄_e with η = τ = 0.75 on the zero-computation experts ([PAPER?], not verified against the paper's code), at 0.01 with `topk`'s z-loss.",
            "W_g is initialised N(0, 0.02²) and v N(0, 1) (the reference's constant init); the gate layers N(0, 0.02²).",
        ],
        "topk-global" => &[
            "The global-batch LBL (\"Demons in the Detail\", §9.1) as a running buffer: each step's f_e pools the expert counts of that step and the 15 before it (128 sequences, 32768 tokens per layer), P̄_e is the step's own; the paper synchronises f_e over the micro-batches of one global batch. `topk` computes f_e over its step's 8 sequences (each from one domain).",
        ],
        _ => &[],
    }
}

fn markdown(c: &Card) -> String {
    let t = &c.training;
    let m = &t.model;
    let mut s = String::new();
    let _ = writeln!(s, "# Model card: `{}`\n", t.name);
    let _ = writeln!(
        s,
        "Trained by `switchyard train` with the `{}` recipe; every number below comes from `switchyard eval` on the \
         validation split of the corpus (the last ~5 % of each file, never trained on). Open it in the playground with \
         `?{}`.\n",
        t.train.recipe.name(),
        c.query
    );
    let _ = writeln!(s, "## Architecture\n");
    let _ = writeln!(
        s,
        "Decoder-only Mixtral-style MoE: {} layers, d_model {}, {} heads ({} KV heads), {} SwiGLU experts of {} per layer, \
         {}, context {} tokens, vocabulary {} ({}), {} the LM head. \
         **{} parameters** (f16 on disk).\n",
        m.n_layers,
        m.d_model,
        m.n_heads,
        m.n_kv_heads,
        m.ffn_experts(),
        m.d_ff,
        match t.train.recipe.name() {
            "thor" => "no router (THOR: one random expert per token, weight 1; the file's gate tensors are untrained \
                       and unused)"
                .to_string(),
            "smoe-dropout" =>
                "a frozen random gate N(0, 0.02²) (SMoE-Dropout; any k from 1 to E at inference)".to_string(),
            "deepseek" => format!("a learned softmax top-{} gate with raw weights, plus a shared expert of {} that every token uses", m.top_k, m.shared_d_ff),
            "lossfree" => "a learned sigmoid gate with a per-expert selection bias (DeepSeek-V3, top-2 of σ(z) + b, no balancing loss)".to_string(),
            "adamoe" => format!("plus {} null experts in one softmax with them, top-{} (AdaMoE: the weights renormalised over the chosen FFN experts)", m.free_experts.len(), m.top_k),
            "moepp" => format!("plus {} free experts (constant, constant, copy, zero), a two-layer gate of {} with gating residuals, top-{} (MoE++)", m.free_experts.len(), m.gate_hidden, m.top_k),
            "top-p" => "a learned gate with dynamic top-p routing (p 0.4: the fewest experts whose probabilities sum past p, raw weights)".to_string(),
            _ => format!("a learned top-{} gate", m.top_k),
        },
        m.max_seq_len,
        m.vocab_size,
        if t.tokenizer == "byte" {
            "byte-level".to_string()
        } else {
            format!("byte-level BPE, `tokenizer.json` {}…", &t.tokenizer[..t.tokenizer.len().min(16)])
        },
        if m.tie_embeddings { "embedding tied to" } else { "embedding separate from" },
        t.parameters
    );
    let departures = departures(t.train.recipe.name());
    if !departures.is_empty() {
        let _ = writeln!(s, "## Where this departs from the reference\n");
        for d in departures {
            let _ = writeln!(s, "- {d}");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## Training\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| recipe | `{}` |", serde_json::to_string(&t.train.recipe).unwrap_or_default());
    let _ = writeln!(s, "| seed | {} |", t.train.seed);
    let _ =
        writeln!(s, "| steps × batch × sequence | {} × {} × {} |", t.train.steps, t.train.batch_size, t.train.seq_len);
    let _ = writeln!(
        s,
        "| training tokens | {} ({:.2} epochs of the {}-token training split) |",
        t.tokens_seen,
        t.tokens_seen as f64 / t.train_split_tokens.max(1) as f64,
        t.train_split_tokens
    );
    let _ = writeln!(
        s,
        "| optimizer | AdamW (β₂ {}, weight decay {}), lr {} → {} (warmup {} steps, cosine), clip ‖g‖ ≤ {} |",
        t.train.beta_2, t.train.weight_decay, t.train.lr, t.train.min_lr, t.train.warmup, t.train.grad_clip
    );
    let _ = writeln!(
        s,
        "| wall time | {:.1} min on {}, compute threads: {}, {:.0} tokens/s |",
        t.wall_s / 60.0,
        t.backend,
        t.threads,
        t.tokens_per_s
    );
    if let Some(note) = &c.note {
        let _ = writeln!(s, "| conditions | {note} |");
    }
    let _ = writeln!(s, "\n### Curves\n");
    let _ = writeln!(
        s,
        "| step | tokens | train CE since the previous row (nats/token) | validation mean bits/byte | minutes |\n\
         |---:|---:|---:|---:|---:|"
    );
    for (step, tokens, ce, bpb, wall) in &c.validation_curve {
        let _ = writeln!(s, "| {step} | {tokens} | {ce:.3} | {bpb:.3} | {:.1} |", wall / 60.0);
    }
    let _ = writeln!(
        s,
        "\nValidation during training scores the first 4096 tokens of each domain; the table below scores all of \
         them. `{}.card.json` has the training curve at {} points.\n",
        t.name,
        c.train_curve.len()
    );
    let _ = writeln!(s, "## Bits per byte on the validation split\n");
    let mut header = format!("| domain | `{}` |", router_label(&c.eval.router));
    let mut rule = "|---|---:|".to_string();
    for o in &c.other_routers {
        let _ = write!(header, " `{}` |", router_label(&o.router));
        rule.push_str("---:|");
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for d in &c.eval.domains {
        let mut row = format!("| {} | {:.3} |", d.domain, d.bits_per_byte);
        for o in &c.other_routers {
            let v = o.domains.iter().find(|x| x.domain == d.domain).map(|x| format!("{:.3}", x.bits_per_byte));
            let _ = write!(row, " {} |", v.unwrap_or_default());
        }
        let _ = writeln!(s, "{row}");
    }
    let mut row = format!("| **mean** | **{:.3}** |", c.eval.mean_bits_per_byte);
    for o in &c.other_routers {
        let _ = write!(row, " **{:.3}** |", o.mean_bits_per_byte);
    }
    let _ = writeln!(s, "{row}\n");
    let _ = writeln!(s, "## Routing on the validation split (own router)\n");
    let _ = writeln!(
        s,
        "| layer | FFN experts per token | load CV | dead experts | LBL (k = perfect) | max code/prose share ratio | token-ID specialisation (baseline) |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    for l in &c.eval.layers {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} | {} | {:.3} | {:.2} | {:.3} ({:.3}) |",
            l.layer,
            l.active_experts,
            l.load.cv,
            l.load.dead_experts,
            l.lbl_topk,
            l.max_code_prose_ratio,
            l.specialisation,
            l.specialisation_baseline
        );
    }
    if c.eval.layers.iter().any(|l| !l.load.free_share.is_empty()) {
        let _ = writeln!(
            s,
            "\nFree experts' share of the routing slots (spec §6; the load CV and dead experts above are over the FFN experts):\n"
        );
        let _ = writeln!(s, "| layer | free experts' share | tokens with no FFN expert |\n|---:|---|---:|");
        for l in &c.eval.layers {
            let shares: Vec<String> =
                l.load.free_share.iter().map(|(k, v)| format!("{} {:.1} %", k.name(), 100.0 * v)).collect();
            let _ = writeln!(s, "| {} | {} | {:.1} % |", l.layer, shares.join(", "), 100.0 * l.skipped_tokens);
        }
    }
    let experts = c.eval.layers.iter().map(|l| l.active_experts).sum::<f64>() / c.eval.layers.len().max(1) as f64;
    let _ = writeln!(
        s,
        "\nCompute: {experts:.3} FFN experts per token on average over the layers, {:.2} MFLOPs per token in the weight \
         matmuls (attention projections, router, the experts used, LM head; attention scores left out).",
        m.weight_flops_per_token(experts) / 1e6
    );
    let _ = writeln!(
        s,
        "\nThe specialisation baseline is the score a router that ignores the token would get: each occurrence's \
         experts drawn uniformly at random, as many as it kept (simulated with the seeded generator). A score near \
         its baseline means no token-ID specialisation."
    );
    for l in &c.eval.layers {
        let e = l.load.fraction.len();
        let _ = writeln!(s, "\n### Layer {}: share of each domain's slots per expert (%)\n", l.layer);
        let kinds = m.expert_kinds();
        let head: String = (0..e)
            .map(|j| match kinds.get(j) {
                Some(k) if *k != switchyard_model::record::ExpertKind::Ffn => format!(" {} {j} |", k.name()),
                _ => format!(" e{j} |"),
            })
            .collect();
        let _ = writeln!(s, "| domain |{head}\n|---|{}", "---:|".repeat(e));
        for (d, shares) in &l.domain_share {
            let cells: String = shares.iter().map(|v| format!(" {:.1} |", v * 100.0)).collect();
            let _ = writeln!(s, "| {d} |{cells}");
        }
        let cells: String =
            l.code_over_prose.iter().map(|v| v.map_or(" — |".to_string(), |v| format!(" {v:.2} |"))).collect();
        let _ = writeln!(s, "| *code ÷ prose* |{cells}");
    }
    s
}
