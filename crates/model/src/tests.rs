//! Numeric tests of the model, run on every backend named in `SWITCHYARD_TEST_BACKENDS`
//! (default `flex,wgpu`; natively wgpu runs on whatever Vulkan driver exists, mesa's llvmpipe in
//! CI). One switch, every test, every backend.

use std::sync::OnceLock;

use burn::prelude::*;
use futures_lite::future::block_on;

use crate::params::{ParamStore, init_from_seed};
use crate::{Dispatch, KvCache, Model, ModelConfig, ModelError, RouterSpec, RunOptions};

mod reference;

fn wgpu_device() -> Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(|| {
        let gpu =
            block_on(crate::devices::wgpu()).unwrap_or_else(|e| panic!("wgpu backend requested but unavailable: {e}"));
        println!("wgpu adapter: {}", gpu.adapter);
        gpu.device
    })
    .clone()
}

/// The backends under test, by name.
fn devices() -> Vec<(&'static str, Device)> {
    let wanted = std::env::var("SWITCHYARD_TEST_BACKENDS").unwrap_or_else(|_| "flex,wgpu".into());
    let mut out = Vec::new();
    for name in wanted.split(',').map(str::trim) {
        match name {
            "flex" => out.push(("flex", crate::devices::cpu())),
            "wgpu" => out.push(("wgpu", wgpu_device())),
            "" => {}
            other => panic!("unknown backend `{other}` in SWITCHYARD_TEST_BACKENDS"),
        }
    }
    assert!(!out.is_empty(), "SWITCHYARD_TEST_BACKENDS names no backend");
    out
}

fn small_config() -> ModelConfig {
    ModelConfig {
        vocab_size: 40,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 24,
        n_experts: 4,
        top_k: 2,
        max_seq_len: 32,
        ..ModelConfig::tiny()
    }
}

fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7 + 3) % vocab) as u32).collect()
}

fn host(t: Tensor<3>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 logits")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn run(model: &Model, toks: &[u32], opts: &RunOptions) -> crate::ForwardOutput {
    block_on(model.forward(&[toks.to_vec()], None, None, opts)).expect("forward")
}

/// The whole forward pass against an independent host implementation (f64, plain loops):
/// embedding, RMSNorm, RoPE (rotate-half), grouped-query causal attention, top-k MoE, LM head.
#[test]
fn forward_matches_the_independent_reference() {
    let cfg = small_config();
    let store = init_from_seed(&cfg, 11);
    let toks = tokens(9, cfg.vocab_size);
    let want = reference::forward(&cfg, &store, &toks);
    for (name, dev) in devices() {
        let model = Model::from_seed(&cfg, 11, &dev).unwrap();
        let out = run(&model, &toks, &RunOptions::for_config(&cfg));
        let got = host(out.logits);
        let diff = max_diff(&got, &want);
        println!("[{name}] forward vs reference: max |diff| = {diff:e}");
        assert!(diff < 2e-4, "[{name}] max diff {diff}");
    }
}

#[test]
fn sparse_and_dense_dispatch_agree() {
    let cfg = small_config();
    let toks = tokens(12, cfg.vocab_size);
    for (name, dev) in devices() {
        let model = Model::from_seed(&cfg, 5, &dev).unwrap();
        let mut opts = RunOptions::for_config(&cfg);
        let sparse = run(&model, &toks, &opts);
        opts.dispatch = Dispatch::Dense;
        let dense = run(&model, &toks, &opts);
        assert_eq!(sparse.routing, dense.routing, "[{name}] routing differs");
        let diff = max_diff(&host(sparse.logits), &host(dense.logits));
        println!("[{name}] sparse vs dense: max |diff| = {diff:e}");
        assert!(diff < 1e-5, "[{name}] {diff}");
    }
}

#[test]
fn kv_cached_decoding_equals_full_recomputation() {
    let cfg = small_config();
    let toks = tokens(10, cfg.vocab_size);
    for (name, dev) in devices() {
        let model = Model::from_seed(&cfg, 9, &dev).unwrap();
        let opts = RunOptions::for_config(&cfg);
        let full = run(&model, &toks, &opts);
        let full_logits = host(full.logits);
        let mut cache = KvCache::default();
        let mut cached = Vec::new();
        let mut routing = crate::record::RoutingRecord::default();
        // A 4-token prefill, then one token per step.
        let mut chunks: Vec<Vec<u32>> = vec![toks[..4].to_vec()];
        chunks.extend(toks[4..].iter().map(|&t| vec![t]));
        for chunk in chunks {
            let out = block_on(model.forward(&[chunk], None, Some(&mut cache), &opts)).unwrap();
            cached.extend(host(out.logits));
            routing.extend(&out.routing);
        }
        assert_eq!(cache.len(), toks.len());
        let diff = max_diff(&cached, &full_logits);
        println!("[{name}] cached vs full: max |diff| = {diff:e}");
        assert!(diff < 1e-4, "[{name}] {diff}");
        for (a, b) in routing.layers.iter().zip(&full.routing.layers) {
            assert_eq!(a.idx, b.idx, "[{name}] layer {} experts differ", a.layer);
            assert_eq!(a.pos, b.pos);
        }
    }
}

#[test]
fn backends_agree_on_logits_and_routing() {
    let devs = devices();
    if devs.len() < 2 {
        println!("only one backend selected; cross-backend check needs two");
        return;
    }
    let cfg = small_config();
    let toks = tokens(16, cfg.vocab_size);
    let opts = RunOptions::for_config(&cfg);
    let outs: Vec<_> = devs.iter().map(|(_, d)| run(&Model::from_seed(&cfg, 3, d).unwrap(), &toks, &opts)).collect();
    let (a, b) = (&outs[0], &outs[1]);
    for (la, lb) in a.routing.layers.iter().zip(&b.routing.layers) {
        assert_eq!(la.idx, lb.idx, "layer {} experts differ across backends", la.layer);
        assert!(max_diff(&la.probs, &lb.probs) < 1e-5);
    }
    let diff = max_diff(&host(a.logits.clone()), &host(b.logits.clone()));
    println!("[{} vs {}] logits max |diff| = {diff:e}", devs[0].0, devs[1].0);
    assert!(diff < 1e-4);
}

/// Spec §1.2 invariant 1 / §1.4: with E = 1 the MoE block is the dense SwiGLU layer.
#[test]
fn single_expert_block_is_the_dense_ffn() {
    let cfg = ModelConfig { n_experts: 1, top_k: 1, ..small_config() };
    for (name, dev) in devices() {
        let model = Model::from_seed(&cfg, 2, &dev).unwrap();
        let block = &model.net.layers[0].block_sparse_moe;
        let x = Tensor::<2>::from_data(
            TensorData::new(tokens(6 * 32, 17).iter().map(|&t| t as f32 / 17.0 - 0.5).collect::<Vec<_>>(), [6, 32]),
            &dev,
        );
        let logits = block.router_logits(x.clone()).into_data().try_into_vec::<f32>().unwrap();
        let seq = vec![0; 6];
        let pos: Vec<u32> = (0..6).collect();
        let rec = RouterSpec::switch().route(logits, 1, &crate::RouteContext { layer: 0, seq_id: &seq, pos: &pos });
        assert!(rec.weight.iter().all(|&w| w == 1.0), "P = 1 with one expert");
        let y = block.combine(x.clone(), &rec, Dispatch::Sparse).into_data().try_into_vec::<f32>().unwrap();
        let ffn = block.experts[0].forward(x).into_data().try_into_vec::<f32>().unwrap();
        let diff = max_diff(&y, &ffn);
        println!("[{name}] E=1 block vs FFN: {diff:e}");
        assert!(diff < 1e-6);
    }
}

/// Spec §1.4 invariant 3: with k = E the block is the dense softmax mixture.
#[test]
fn k_equals_e_is_the_softmax_mixture() {
    let cfg = small_config();
    for (name, dev) in devices() {
        let model = Model::from_seed(&cfg, 4, &dev).unwrap();
        let block = &model.net.layers[1].block_sparse_moe;
        let x = Tensor::<2>::from_data(
            TensorData::new(tokens(5 * 32, 13).iter().map(|&t| t as f32 / 13.0 - 0.5).collect::<Vec<_>>(), [5, 32]),
            &dev,
        );
        let z = block.router_logits(x.clone());
        let p = burn::tensor::activation::softmax(z.clone(), 1);
        let mut want = Tensor::<2>::zeros([5, 32], &dev);
        for (j, e) in block.experts.iter().enumerate() {
            want = want + e.forward(x.clone()) * p.clone().narrow(1, j, 1);
        }
        let seq = vec![0; 5];
        let pos: Vec<u32> = (0..5).collect();
        let rec = RouterSpec::TopK { k: 4, norm_topk_prob: true }.route(
            z.into_data().try_into_vec().unwrap(),
            4,
            &crate::RouteContext { layer: 1, seq_id: &seq, pos: &pos },
        );
        let got = block.combine(x, &rec, Dispatch::Sparse).into_data().try_into_vec::<f32>().unwrap();
        let diff = max_diff(&got, &want.into_data().try_into_vec::<f32>().unwrap());
        println!("[{name}] k=E vs softmax mixture: {diff:e}");
        assert!(diff < 1e-5);
    }
}

#[test]
fn routing_record_is_complete_and_normalised() {
    let cfg = small_config();
    let toks = tokens(7, cfg.vocab_size);
    for (name, dev) in devices() {
        let out = run(&Model::from_seed(&cfg, 1, &dev).unwrap(), &toks, &RunOptions::for_config(&cfg));
        assert_eq!(out.routing.layers.len(), cfg.n_layers);
        for rec in &out.routing.layers {
            rec.check_shapes().unwrap();
            assert_eq!(rec.pos, (0..7).collect::<Vec<u32>>());
            for t in 0..rec.num_tokens() {
                let psum: f32 = rec.probs_row(t).iter().sum();
                let wsum: f32 = rec.slots(t).map(|s| s.weight).sum();
                assert!((psum - 1.0).abs() < 1e-5 && (wsum - 1.0).abs() < 1e-5, "[{name}]");
            }
        }
    }
}

#[test]
fn exported_parameters_equal_the_imported_ones() {
    let cfg = small_config();
    let store: ParamStore = init_from_seed(&cfg, 8);
    for (name, dev) in devices() {
        let model = Model::from_params(&cfg, &store, &dev).unwrap();
        let back = block_on(model.to_params()).unwrap();
        assert_eq!(back.keys().collect::<Vec<_>>(), store.keys().collect::<Vec<_>>());
        for (k, t) in &store {
            assert_eq!(back[k].shape, t.shape, "[{name}] {k}");
            assert!(max_diff(&back[k].data, &t.data) == 0.0, "[{name}] {k} values differ");
        }
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let cfg = small_config();
    let model = Model::from_seed(&cfg, 1, &crate::devices::cpu()).unwrap();
    let opts = RunOptions::for_config(&cfg);
    let long = tokens(cfg.max_seq_len + 1, cfg.vocab_size);
    let err = block_on(model.forward(&[long], None, None, &opts)).unwrap_err();
    assert!(matches!(err, ModelError::Context { len: 33, max: 32 }), "{err}");
    let err = block_on(model.forward(&[vec![1, 999]], None, None, &opts)).unwrap_err();
    assert_eq!(err.to_string(), "token id 999 is outside the vocabulary (size 40)");
    assert!(block_on(model.forward(&[vec![]], None, None, &opts)).is_err());
    assert!(block_on(model.forward(&[vec![1, 2], vec![3]], None, None, &opts)).is_err());
    let bad_k = RunOptions { router: RouterSpec::TopK { k: 5, norm_topk_prob: true }, ..opts };
    assert!(block_on(model.forward(&[vec![1]], None, None, &bad_k)).is_err());
    let mut store = init_from_seed(&cfg, 1);
    store.remove("model.layers.1.block_sparse_moe.experts.2.w3.weight");
    let err = Model::from_params(&cfg, &store, &crate::devices::cpu()).unwrap_err();
    assert!(err.to_string().contains("experts.2.w3.weight"), "{err}");
}

#[test]
fn greedy_generation_is_deterministic_and_cached() {
    let cfg = small_config();
    let model = Model::from_seed(&cfg, 6, &crate::devices::cpu()).unwrap();
    let opts = RunOptions::for_config(&cfg);
    let prompt = tokens(5, cfg.vocab_size);
    let g = block_on(crate::generate_greedy(&model, &prompt, 6, &opts)).unwrap();
    assert_eq!(g.tokens.len(), 11);
    assert_eq!(g.routing.layers[0].num_tokens(), 10);
    // Each generated token is the argmax of a full recomputation over the tokens before it.
    for i in 5..11 {
        let out = run(&model, &g.tokens[..i], &opts);
        let logits = block_on(crate::last_logits(out.logits)).unwrap();
        assert_eq!(crate::argmax(&logits) as u32, g.tokens[i], "position {i}");
    }
    let err = block_on(crate::generate_greedy(&model, &prompt, 40, &opts)).unwrap_err();
    assert!(matches!(err, ModelError::Context { .. }));
}
