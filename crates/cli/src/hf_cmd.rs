//! Hugging Face folders in the CLI: `--checkpoint DIR` opens one, `export-hf` writes one, and
//! `logits` prints a model's raw numbers (what `tools/hf/check_export.py` compares with
//! transformers).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_lite::future::block_on;
use switchyard_model::hf::{self, HfConfig};
use switchyard_model::{Checkpoint, Model, RunOptions, Tokenizer, all_logits};

/// Opens a Hugging Face model folder: `config.json`, the weights (one file, or shards with their
/// index) and `tokenizer.json` (or `tokenizer`, when given).
pub fn open(dir: &Path, tokenizer: Option<&Path>) -> Result<(HfConfig, Checkpoint, Tokenizer)> {
    let files = hf::read_dir(dir).map_err(anyhow::Error::msg)?;
    let tok_path = tokenizer.map_or_else(|| dir.join("tokenizer.json"), Path::to_path_buf);
    let tok = Tokenizer::load(&tok_path)
        .with_context(|| format!("{} needs a tokenizer.json (or pass --tokenizer)", dir.display()))?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("hf-model").to_string();
    let (hf, ckpt) = hf::load(&name, &files, &tok.id()).with_context(|| format!("opening {}", dir.display()))?;
    if tok.vocab_size() > ckpt.config.vocab_size {
        bail!("the tokenizer has {} ids but the model only {}", tok.vocab_size(), ckpt.config.vocab_size);
    }
    if let Some(note) = &hf.context_note {
        eprintln!("note: {note}");
    }
    Ok((hf, ckpt, tok))
}

/// `switchyard export-hf`.
#[derive(Args)]
pub struct ExportArgs {
    /// A Switchyard checkpoint (`assets/topk.safetensors`).
    checkpoint: PathBuf,
    /// The folder to write (created): config.json, model.safetensors, tokenizer.json.
    dir: PathBuf,
}

/// Writes a checkpoint as a Hugging Face Mixtral folder.
pub fn export(args: &ExportArgs) -> Result<()> {
    let ckpt = Checkpoint::load(&args.checkpoint)?;
    let (config, weights) = hf::export_mixtral(&ckpt)?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(args.dir.join(name), bytes).with_context(|| format!("writing {}", args.dir.join(name).display()))
    };
    write("config.json", config.as_bytes())?;
    write("model.safetensors", &weights)?;
    if ckpt.tokenizer != "byte" {
        let tok = args.checkpoint.parent().unwrap_or(Path::new(".")).join("tokenizer.json");
        let json =
            std::fs::read(&tok).with_context(|| format!("`{}` needs its tokenizer {}", ckpt.name, tok.display()))?;
        write("tokenizer.json", &json)?;
    } else {
        eprintln!(
            "note: `{}` is byte-level; transformers has no tokenizer.json for it (feed byte values as ids)",
            ckpt.name
        );
    }
    println!("wrote {} (MixtralForCausalLM, {} parameters, f32)", args.dir.display(), ckpt.config.param_count());
    println!(
        "note: transformers runs it with Mixtral's top-{} router; the playground's other routers are ours",
        ckpt.config.top_k
    );
    Ok(())
}

/// `switchyard logits`.
#[derive(Args)]
pub struct LogitsArgs {
    /// A Switchyard checkpoint file or a Hugging Face folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    tokens: Vec<u32>,
}

/// Prints `{"logits": [[…]], "router_logits": [[[…]]]}` for one sequence with the model's own
/// top-k router, on the CPU.
pub fn logits(args: &LogitsArgs) -> Result<()> {
    let ckpt = match args.checkpoint.is_dir() {
        true => open(&args.checkpoint, None)?.1,
        false => Checkpoint::load(&args.checkpoint)?,
    };
    let model = Model::from_params(&ckpt.config, &ckpt.params, &switchyard_model::devices::cpu())?;
    let out =
        block_on(model.forward(std::slice::from_ref(&args.tokens), None, None, &RunOptions::for_config(&ckpt.config)))?;
    let logits = block_on(all_logits(out.logits))?;
    let e = ckpt.config.n_experts;
    let router: Vec<Vec<&[f32]>> = out.routing.layers.iter().map(|l| l.logits.chunks(e).collect()).collect();
    println!("{}", serde_json::json!({ "logits": logits, "router_logits": router }));
    Ok(())
}
