//! Parity with transformers: the tiny random checkpoints of `tools/hf/make_fixtures.py` (one
//! per architecture and layout), loaded by our Hugging Face loader, must give transformers'
//! logits, router logits and router probabilities within 1e-4, and the same greedy
//! continuation, on every backend under test. The references were computed by transformers
//! (the version is in each `reference.json`); no torch is needed here.

use std::path::PathBuf;

use futures_lite::future::block_on;
use serde::Deserialize;

use super::devices;
use crate::decode::{all_logits, generate_greedy};
use crate::hf::{self, Architecture};
use crate::{Dispatch, Model, RunOptions, Tokenizer};

#[derive(Deserialize)]
struct Reference {
    transformers: String,
    architecture: String,
    tokens: Vec<u32>,
    logits: Vec<Vec<f32>>,
    router_logits: Vec<Vec<Vec<f32>>>,
    greedy: Vec<u32>,
}

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf").join(name)
}

/// The fixture folder as a checkpoint (with its tokenizer) and transformers' numbers.
fn open(name: &str) -> (crate::Checkpoint, Tokenizer, Reference) {
    let dir = fixture(name);
    let files = hf::read_dir(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let (_, ckpt) = hf::load(name, &files, &tok.id()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let reference: Reference = serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    (ckpt, tok, reference)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn softmax_rows(rows: &[Vec<f32>]) -> Vec<f32> {
    rows.iter()
        .flat_map(|r| {
            let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = r.iter().map(|v| (v - m).exp()).sum();
            r.iter().map(move |v| (v - m).exp() / z).collect::<Vec<_>>()
        })
        .collect()
}

fn check(name: &str, arch: Architecture) {
    let (ckpt, tok, want) = open(name);
    assert_eq!(want.architecture, arch.name(), "{name}");
    assert!(tok.vocab_size() <= ckpt.config.vocab_size);
    for (backend, device) in devices() {
        for dispatch in [Dispatch::Sparse, Dispatch::Device] {
            let model = Model::from_params(&ckpt.config, &ckpt.params, &device).unwrap().with_dispatch(dispatch);
            let opts = RunOptions { dispatch, ..RunOptions::for_config(&ckpt.config) };
            let out = block_on(model.forward(std::slice::from_ref(&want.tokens), None, None, &opts)).unwrap();
            let logits: Vec<f32> = block_on(all_logits(out.logits)).unwrap().concat();
            let at = format!("{name} on {backend} ({dispatch:?}, transformers {})", want.transformers);
            let d = max_diff(&logits, &want.logits.concat());
            assert!(d < TOL, "{at}: logits differ by {d}");
            assert_eq!(out.routing.layers.len(), want.router_logits.len(), "{at}: layers");
            for (layer, (rec, theirs)) in out.routing.layers.iter().zip(&want.router_logits).enumerate() {
                let d = max_diff(&rec.logits, &theirs.concat());
                assert!(d < TOL, "{at}: layer {layer} router logits differ by {d}");
                let d = max_diff(&rec.probs, &softmax_rows(theirs));
                assert!(d < TOL, "{at}: layer {layer} router probabilities differ by {d}");
            }
            let generated = block_on(generate_greedy(&model, &want.tokens, want.greedy.len(), &opts)).unwrap();
            assert_eq!(generated.tokens[generated.prompt_len..], want.greedy[..], "{at}: greedy continuation");
        }
    }
}

#[test]
fn mixtral_hub_layout_matches_transformers() {
    check("mixtral", Architecture::Mixtral);
}

#[test]
fn mixtral_fused_bf16_tied_matches_transformers() {
    check("mixtral-fused", Architecture::Mixtral);
}

#[test]
fn qwen2_moe_sharded_matches_transformers() {
    check("qwen2-moe", Architecture::Qwen2Moe);
}

#[test]
fn qwen3_moe_matches_transformers() {
    check("qwen3-moe", Architecture::Qwen3Moe);
}

#[test]
fn olmoe_matches_transformers() {
    check("olmoe", Architecture::Olmoe);
}

/// The fixtures exercise what they claim: a fused layout, shards, every dtype, both embeddings.
#[test]
fn the_fixtures_cover_the_layouts_and_dtypes() {
    let dtypes: Vec<String> = ["mixtral", "mixtral-fused", "qwen2-moe", "qwen3-moe", "olmoe"]
        .iter()
        .map(|n| hf::read_config(&std::fs::read(fixture(n).join("config.json")).unwrap()).unwrap().dtype)
        .collect();
    for want in ["float32", "float16", "bfloat16"] {
        assert!(dtypes.iter().any(|d| d == want), "no {want} fixture");
    }
    let fused = hf::read_dir(&fixture("mixtral-fused")).unwrap();
    assert!(block_names(&fused).iter().any(|n| n.ends_with("mlp.experts.gate_up_proj")));
    assert!(hf::read_dir(&fixture("qwen2-moe")).unwrap().weights.len() > 1, "qwen2-moe is sharded");
    let (tied, untied) = (open("olmoe").0.config.tie_embeddings, open("mixtral").0.config.tie_embeddings);
    assert!(tied && !untied);
}

fn block_names(files: &hf::HfFiles) -> Vec<String> {
    files
        .weights
        .iter()
        .flat_map(|(_, b)| {
            safetensors::SafeTensors::deserialize(b)
                .unwrap()
                .names()
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}
