//! Spec §6's invariants through the whole model, on every backend: AdaMoE's null experts
//! (§6.1) and MoE++'s zero, copy and constant experts with its two-layer gate and gating
//! residual (§6.2).

use switchyard_record::{ExpertKind, LayerRouting};

use super::{devices, full_and_cached, host, max_diff, run, small_config, tokens};
use crate::params::keys::{ExpertProj, layer};
use crate::params::{ParamStore, init_from_seed};
use crate::{Dispatch, Interventions, Model, ModelConfig, RouterSpec, RunOptions};

/// `small_config` (4 FFN experts of 24, top-2) with 4 null experts, top-2 over all 8.
pub(crate) fn adamoe_config() -> ModelConfig {
    ModelConfig { n_experts: 8, free_experts: vec![ExpertKind::Null; 4], ..small_config() }
}

/// `small_config`'s 4 FFN experts followed by MoE++'s constant, constant, copy, zero; the
/// two-layer gate (8·E hidden), the gating residual and the experts' input times 2.
pub(crate) fn moepp_config() -> ModelConfig {
    use ExpertKind::{Constant, Copy, Zero};
    ModelConfig {
        n_experts: 8,
        free_experts: vec![Constant, Constant, Copy, Zero],
        gate_hidden: 64,
        gating_residual: true,
        expert_input_scale: 2.0,
        ..small_config()
    }
}

/// The FFN experts' weight of each token at each layer, and how many FFN slots it kept.
fn ffn_weights(rec: &LayerRouting) -> Vec<(f32, usize)> {
    (0..rec.num_tokens())
        .map(|t| {
            let ffn: Vec<_> = rec.slots(t).filter(|s| rec.kind(s.expert) == ExpertKind::Ffn && !s.dropped).collect();
            (ffn.iter().map(|s| s.weight).sum(), ffn.len())
        })
        .collect()
}

fn silence_ffn(cfg: &ModelConfig, mut params: ParamStore) -> ParamStore {
    for l in 0..cfg.n_layers {
        for j in 0..cfg.ffn_experts() {
            params.get_mut(&layer(l).expert(j, ExpertProj::W2)).expect("w2").data.iter_mut().for_each(|v| *v = 0.0);
        }
    }
    params
}

/// §6.1 invariants 1–3: with the null experts never chosen (their logits −∞: ablated) the
/// model is the plain top-k model over the FFN experts; a token keeps 0 to k FFN experts whose
/// weights sum to 1 (or it has none, weight 0); routed to a null expert alone, the MoE is
/// skipped (the same logits as with every FFN expert silenced). The record names the kinds.
#[test]
fn null_experts_skip_compute_without_shrinking_the_output() {
    let cfg = adamoe_config();
    let plain = small_config();
    let toks = tokens(11, cfg.vocab_size);
    let params = init_from_seed(&cfg, 21);
    // The plain model: the same parameters without the null router rows.
    let mut plain_params = params.clone();
    for l in 0..cfg.n_layers {
        let g = plain_params.get_mut(&layer(l).gate(false)).expect("gate");
        g.data.truncate(4 * cfg.d_model);
        g.shape = vec![4, cfg.d_model];
    }
    let nulls_off = Interventions { ablate: (0..2).flat_map(|l| (4..8).map(move |e| (l, e))).collect(), force: vec![] };
    let all_null = Interventions { ablate: vec![], force: vec![(0, 5), (1, 6)] };
    for (name, dev) in devices() {
        let model = Model::from_params(&cfg, &params, &dev).unwrap();
        let opts = RunOptions::for_config(&cfg);
        let out = run(&model, &toks, &opts);
        let (mut some, mut none) = (0, 0);
        for rec in &out.routing.layers {
            assert_eq!(rec.kind(5), ExpertKind::Null, "[{name}] the record names the null experts");
            for (w, n) in ffn_weights(rec) {
                assert!(n <= 2, "[{name}] at most k FFN experts");
                assert!(if n == 0 { w == 0.0 } else { (w - 1.0).abs() < 1e-5 }, "[{name}] weights {w} over {n}");
                if n == 0 { none += 1 } else { some += 1 }
            }
            for t in 0..rec.num_tokens() {
                assert!(rec.slots(t).all(|s| rec.kind(s.expert) == ExpertKind::Ffn || s.weight == 0.0), "[{name}]");
            }
        }
        assert!(some > 0, "[{name}] some tokens use FFN experts ({none} skip them)");
        let off = RunOptions { interventions: nulls_off.clone(), ..opts.clone() };
        let a = host(run(&model, &toks, &off).logits);
        let b = host(run(&Model::from_params(&plain, &plain_params, &dev).unwrap(), &toks, &opts).logits);
        assert!(max_diff(&a, &b) < 1e-5, "[{name}] nulls never chosen: the plain top-k model");
        let skipped = RunOptions { interventions: all_null.clone(), ..opts.clone() };
        let a = host(run(&model, &toks, &skipped).logits);
        let silent = Model::from_params(&cfg, &silence_ffn(&cfg, params.clone()), &dev).unwrap();
        let b = host(run(&silent, &toks, &opts).logits);
        assert!(max_diff(&a, &b) < 1e-5, "[{name}] a null expert alone skips the MoE");
        assert!(max_diff(&a, &host(out.logits)) > 1e-4, "[{name}] the FFN experts do contribute");
    }
}

/// §6.2 invariants 1 and 3 and the weight rule: the weights sum to 1, the zero expert never
/// has weight, a token runs 0, 1 or 2 FFN experts; routed to {copy, FFN a} the block's output
/// is `g_c·(2x) + g_a·FFN_a(2x)` (`x` with the input scale off).
#[test]
fn moe_plus_plus_free_experts_follow_the_reference_weights() {
    let cfg = moepp_config();
    let toks = tokens(12, cfg.vocab_size);
    let params = init_from_seed(&cfg, 5);
    for (name, dev) in devices() {
        let model = Model::from_params(&cfg, &params, &dev).unwrap();
        let out = run(&model, &toks, &RunOptions::for_config(&cfg));
        for rec in &out.routing.layers {
            for t in 0..rec.num_tokens() {
                let slots: Vec<_> = rec.slots(t).collect();
                let total: f32 = slots.iter().map(|s| s.weight).sum();
                assert!((total - 1.0).abs() < 1e-5, "[{name}] weights sum to 1: {slots:?}");
                assert!(slots.iter().all(|s| s.expert != 7 || s.weight == 0.0), "[{name}] the zero expert");
                let ffn = slots.iter().filter(|s| s.expert < 4).count();
                assert!(ffn <= 2, "[{name}]");
            }
        }
        for scale in [2.0f32, 1.0] {
            let cfg = ModelConfig { expert_input_scale: scale, ..cfg.clone() };
            let model = Model::from_params(&cfg, &params, &dev).unwrap();
            let block = &model.net.layers[0].block_sparse_moe;
            let x = super::block_input(3, 7, &dev);
            let (g_c, g_a) = (0.3f32, 0.7f32);
            let rec = LayerRouting {
                num_experts: 8,
                k_max: 2,
                logits: vec![0.0; 24],
                probs: vec![0.125; 24],
                idx: vec![6, 1, 6, 1, 6, 1],
                weight: vec![g_c, g_a, g_c, g_a, g_c, g_a],
                valid: vec![true; 6],
                rank: vec![0, 1, 0, 1, 0, 1],
                dropped: vec![false; 6],
                seq_id: vec![0; 3],
                pos: vec![0, 1, 2],
                expert_kinds: cfg.expert_kinds(),
                ..LayerRouting::default()
            };
            let xs = x.clone().mul_scalar(scale);
            let want = xs.clone().mul_scalar(g_c) + block.experts[1].forward(xs).mul_scalar(g_a);
            for dispatch in [Dispatch::Sparse, Dispatch::Dense] {
                let got = block.combine(x.clone(), &rec, dispatch);
                let diff: f32 = (got - want.clone()).abs().max().into_scalar();
                assert!(diff < 1e-5, "[{name}] scale {scale} {dispatch:?}: {diff}");
            }
        }
    }
}

/// §6.2 invariant 2: with `W_g = 0` the gating residual changes nothing (the model without it,
/// same parameters); with it, the routing changes. Sparse and dense dispatch agree, and a
/// KV-cached decode (the residual is per token) routes as the full recompute.
#[test]
fn the_gating_residual_carries_the_previous_layers_logits() {
    let cfg = moepp_config();
    let toks = tokens(10, cfg.vocab_size);
    let params = init_from_seed(&cfg, 9);
    let mut zero_map = params.clone();
    zero_map.get_mut(&layer(1).gate_map()).expect("W_g").data.iter_mut().for_each(|v| *v = 0.0);
    let flat = ModelConfig { gating_residual: false, ..cfg.clone() };
    let flat_params: ParamStore =
        params.iter().filter(|(k, _)| !k.contains("gate_map")).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(!params.contains_key(&layer(0).gate_map()), "the first layer has no residual");
    for (name, dev) in devices() {
        let opts = RunOptions { router: RouterSpec::top_k(2, true), ..RunOptions::for_config(&cfg) };
        let zeroed = run(&Model::from_params(&cfg, &zero_map, &dev).unwrap(), &toks, &opts);
        let without = run(&Model::from_params(&flat, &flat_params, &dev).unwrap(), &toks, &opts);
        assert!(max_diff(&host(zeroed.logits), &host(without.logits)) < 1e-5, "[{name}] W_g = 0");
        assert_eq!(zeroed.routing.layers[1].idx, without.routing.layers[1].idx, "[{name}]");
        let model = Model::from_params(&cfg, &params, &dev).unwrap();
        let with = run(&model, &toks, &opts);
        assert_ne!(with.routing.layers[1].logits, without.routing.layers[1].logits, "[{name}] W_g acts");
        let dense = RunOptions { dispatch: Dispatch::Dense, ..opts.clone() };
        assert!(max_diff(&host(with.logits), &host(run(&model, &toks, &dense).logits)) < 1e-4, "[{name}] dense");
        let (full, cached, _) = full_and_cached(&model, &toks, &opts);
        for (a, b) in full.routing.layers.iter().zip(&cached.layers) {
            assert_eq!(a.idx, b.idx, "[{name}] cached decode, layer {}", a.layer);
        }
    }
}

/// Both designs export and re-import every parameter under its HF-style name (the two-layer
/// gate as `gate.wg.0` / `gate.wg.2`, `gate.gate_map`, the constant experts' `wg` and
/// `constant`), and the checkpoint keys are exactly the parameter list's.
#[test]
fn free_expert_models_round_trip_their_parameters() {
    for cfg in [adamoe_config(), moepp_config()] {
        let params = init_from_seed(&cfg, 3);
        for (name, dev) in devices() {
            let model = Model::from_params(&cfg, &params, &dev).unwrap();
            let back = futures_lite::future::block_on(model.to_params()).unwrap();
            assert_eq!(back.keys().collect::<Vec<_>>(), params.keys().collect::<Vec<_>>(), "[{name}]");
            for (k, v) in &params {
                assert!(max_diff(&v.data, &back[k].data) < 1e-6, "[{name}] {k}");
            }
        }
    }
    let keys: Vec<String> = init_from_seed(&moepp_config(), 1).into_keys().collect();
    for want in [
        "model.layers.0.block_sparse_moe.gate.wg.0.weight",
        "model.layers.0.block_sparse_moe.gate.wg.2.weight",
        "model.layers.1.block_sparse_moe.gate.gate_map.weight",
        "model.layers.0.block_sparse_moe.experts.4.wg.weight",
        "model.layers.0.block_sparse_moe.experts.5.constant",
    ] {
        assert!(keys.iter().any(|k| k == want), "missing {want}");
    }
    assert!(!keys.iter().any(|k| k.contains("experts.6.") || k.contains("experts.7.")), "copy and zero have none");
}
