use futures_lite::future::block_on;

use super::*;
use crate::corpus::split_text;
use crate::tokenizer::{ByteTokenizer, Tokenizer};

fn tiny() -> ModelConfig {
    ModelConfig {
        vocab_size: 256,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 32,
        n_experts: 4,
        top_k: 2,
        max_seq_len: 32,
        ..ModelConfig::tiny()
    }
}

fn settings(recipe: &str, steps: u64) -> TrainConfig {
    TrainConfig {
        recipe: Recipe::default_named(recipe, &tiny()).expect("recipe"),
        steps,
        batch_size: 4,
        seq_len: 16,
        lr: 1e-2,
        min_lr: 1e-3,
        warmup: 3,
        weight_decay: 0.01,
        beta_2: 0.95,
        grad_clip: 1.0,
        seed: 5,
    }
}

fn corpus() -> TokenizedCorpus {
    let text = "the cat sat on the mat. ".repeat(40);
    let code = "fn add(a: u32) -> u32 { a + 1 }\n".repeat(40);
    TokenizedCorpus::new(&[split_text("prose", &text), split_text("code", &code)], &Tokenizer::Byte(ByteTokenizer))
}

fn run(trainer: &mut Trainer, data: &TokenizedCorpus, steps: u64) -> Vec<StepStats> {
    (0..steps)
        .map(|_| {
            let cfg = trainer.config().clone();
            let batch = data.batch(cfg.seed, trainer.step_index(), cfg.batch_size, cfg.seq_len + 1);
            block_on(trainer.step(&batch)).expect("step")
        })
        .collect()
}

fn gate(params: &ParamStore, layer: usize) -> Vec<f32> {
    params[&crate::params::keys::layer(layer).gate(false)].data.clone()
}

#[test]
fn schedules_follow_the_spec() {
    let cfg = TrainConfig { steps: 100, warmup: 10, ..settings("topk", 100) };
    assert!((lr_at(&cfg, 0) - cfg.lr / 10.0).abs() < 1e-12);
    assert!((lr_at(&cfg, 9) - cfg.lr).abs() < 1e-12);
    assert!((lr_at(&cfg, 100) - cfg.min_lr).abs() < 1e-12);
    assert!(lr_at(&cfg, 50) < lr_at(&cfg, 20) && lr_at(&cfg, 50) > lr_at(&cfg, 90));
    // §3.5.3: k(0) = k_min, k(T) = k_max, monotone, within bounds; half-to-even rounding.
    assert_eq!(smoe_k(0, 1000, 2, 8), 2);
    assert_eq!(smoe_k(1000, 1000, 2, 8), 8);
    let ks: Vec<usize> = (0..=1000).map(|t| smoe_k(t, 1000, 2, 8)).collect();
    assert!(ks.windows(2).all(|w| w[0] <= w[1]) && ks.iter().all(|&k| (2..=8).contains(&k)));
    assert_eq!(smoe_k(1, 4, 1, 3), 1); // 2·1/4 = 0.5 rounds to 0
    assert_eq!(smoe_k(3, 4, 1, 3), 3); // 1.5 rounds to 2
}

#[test]
fn every_recipe_learns_and_repeats_its_curve_exactly() {
    let data = corpus();
    for recipe in ["topk", "topk-global", "top-p", "lossfree", "deepseek", "adamoe", "moepp", "thor", "smoe-dropout"] {
        let mut a = Trainer::new(&tiny(), settings(recipe, 40), "byte", &Device::flex()).expect("trainer");
        let curve = run(&mut a, &data, 40);
        let first = curve[..5].iter().map(|s| s.ce).sum::<f32>() / 5.0;
        let last = curve[35..].iter().map(|s| s.ce).sum::<f32>() / 5.0;
        assert!(last < first * 0.6, "{recipe}: cross-entropy {first} -> {last}");
        assert!(curve.iter().all(|s| s.loss.is_finite()));
        let mut b = Trainer::new(&tiny(), settings(recipe, 40), "byte", &Device::flex()).expect("trainer");
        let again = run(&mut b, &data, 8);
        assert_eq!(again[..], curve[..8], "{recipe}: the same seed must give the same curve");
    }
}

#[test]
fn recipe_specific_terms_behave() {
    let data = corpus();
    // top-k: the LBL is k under perfect balance and >= ... it is E·Σ f·P̄ with Σ f = k; the
    // gate learns (gets gradients).
    let mut t = Trainer::new(&tiny(), settings("topk", 10), "byte", &Device::flex()).expect("trainer");
    let before = block_on(t.params()).expect("params");
    let stats = run(&mut t, &data, 3);
    for s in &stats {
        assert!(s.lbl > 0.5 && s.lbl < 4.0, "lbl {}", s.lbl);
        assert!(s.z >= 0.0 && s.kl == 0.0 && s.k == 2);
        for layer in &s.load {
            assert!((layer.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
    let after = block_on(t.params()).expect("params");
    assert_ne!(gate(&before, 0), gate(&after, 0), "the top-k gate must train");

    // THOR: KL > 0 when the passes draw different experts; the unused gate never changes;
    // every layer sends the whole batch to one expert.
    let mut t = Trainer::new(&tiny(), settings("thor", 10), "byte", &Device::flex()).expect("trainer");
    let before = block_on(t.params()).expect("params");
    let stats = run(&mut t, &data, 6);
    assert!(stats.iter().any(|s| s.kl > 0.0));
    assert!(stats.iter().all(|s| s.load.iter().all(|l| l.iter().filter(|&&f| f == 1.0).count() == 1)));
    let after = block_on(t.params()).expect("params");
    assert_eq!(gate(&before, 1), gate(&after, 1));

    // SMoE-Dropout (§3.5.1): the frozen router is bit-identical after training, it is the
    // seed's random router (f16-rounded), and k rises from k_min to E.
    let cfg = settings("smoe-dropout", 9);
    let mut t = Trainer::new(&tiny(), cfg.clone(), "byte", &Device::flex()).expect("trainer");
    assert!(t.model_config().frozen_gate);
    let before = block_on(t.params()).expect("params");
    let stats = run(&mut t, &data, 9);
    let after = block_on(t.params()).expect("params");
    for layer in 0..2 {
        assert_eq!(gate(&before, layer), gate(&after, layer));
        // HF gate [E, d] at (expert 1, feature 3) is the [d, E] router at (3, 1).
        let (d, e) = (32, 4);
        let w = smoe_router_weights(cfg.seed, layer, d, e, 0.02);
        assert_eq!(gate(&after, layer)[d + 3], half::f16::from_f32(w[3 * e + 1]).to_f32());
    }
    assert_eq!(stats.first().map(|s| s.k), Some(2));
    assert_eq!(stats.last().map(|s| s.k), Some(4));
    assert!(
        after["model.layers.0.block_sparse_moe.experts.0.w1.weight"].data
            != before["model.layers.0.block_sparse_moe.experts.0.w1.weight"].data
    );
}

#[test]
fn top_p_trains_with_the_routers_own_choice_and_its_entropy_loss() {
    let data = corpus();
    let mut t = Trainer::new(&tiny(), settings("top-p", 10), "byte", &Device::flex()).expect("trainer");
    let stats = run(&mut t, &data, 6);
    // f counts the variable sets (Σ f = mean |S_t|) and P̄ ≈ 1/E at initialisation, so the
    // first step's LBL E·Σ f·P̄ is about the mean number of experts (first choice only: ~1).
    assert!((stats[0].lbl - stats[0].active).abs() < 0.15, "lbl {} vs active {}", stats[0].lbl, stats[0].active);
    for s in &stats {
        // 1 <= |S_t| <= E (§5.3.1); at initialisation the router is near uniform (4 experts
        // of 1/4 each: two are needed to pass p = 0.4), so more than one on average.
        assert!(s.active > 1.0 && s.active <= 4.0, "active {}", s.active);
        // The entropy of a distribution over 4 experts lies in [0, ln 4].
        assert!(s.entropy > 0.0 && s.entropy <= 4f32.ln() + 1e-4, "entropy {}", s.entropy);
        for layer in &s.load {
            assert!((layer.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
    // The dynamic loss pushes the entropy down: with a large coefficient the router sharpens and
    // fewer experts are active than without it.
    let sharp = |dyn_coef: f32| {
        let recipe = Recipe::TopP { p: 0.4, lbl_coef: 0.0, z_coef: 0.0, dyn_coef };
        let cfg = TrainConfig { recipe, ..settings("top-p", 30) };
        let mut t = Trainer::new(&tiny(), cfg, "byte", &Device::flex()).expect("trainer");
        run(&mut t, &data, 30).last().map(|s| (s.entropy, s.active)).expect("stats")
    };
    let (h0, a0) = sharp(0.0);
    let (h1, a1) = sharp(1.0);
    assert!(h1 < h0 && a1 <= a0, "entropy {h0} -> {h1}, active {a0} -> {a1}");
}

#[test]
fn training_and_inference_make_the_same_top_p_choice() {
    use switchyard_routing::router::{RouteContext, top_p_choice};
    let logits = [0.3f32, -1.0, 2.0, 0.1, 0.0, 1.2];
    let probs = switchyard_routing::router::softmax_row(&logits);
    let all = [true; 6];
    let seq = [0u32];
    let ctx = RouteContext {
        layer: 0,
        seq_id: &seq,
        pos: &[0],
        token_id: &[7],
        seed: 0,
        step: 0,
        allowed: &all,
        forced: None,
        selection_bias: None,
    };
    for p in [0.0f32, 0.3, 0.4, 0.7, 0.99, 1.0] {
        let rec = RouterSpec::TopP { p }.route(logits.to_vec(), 6, &ctx);
        let inference: Vec<usize> = rec.slots(0).map(|s| s.expert).collect();
        let training: Vec<usize> = top_p_choice(&probs, &all, p).into_iter().map(|(x, _)| x).collect();
        assert_eq!(training, inference, "p = {p}");
    }
}

#[test]
fn lossfree_balances_with_the_bias_alone() {
    let data = corpus();
    let cfg = settings("lossfree", 10);
    let mut t = Trainer::new(&tiny(), cfg, "byte", &Device::flex()).expect("trainer");
    assert!(t.model_config().selection_bias, "the recipe's model has selection biases");
    let before = block_on(t.params()).expect("params");
    let key = crate::params::keys::layer(1).selection_bias();
    assert_eq!(before[&key].data, vec![0.0; 4], "the bias starts at zero");
    let stats = run(&mut t, &data, 6);
    assert!(stats.iter().all(|s| s.k == 2 && (s.active - 2.0).abs() < 1e-6), "top-2 of σ(z) + b");
    let after = block_on(t.params()).expect("params");
    // Each step moves each bias by −γ, 0 or +γ (§8.2): after 6 steps it is a multiple of γ
    // within ±6γ, and the step's imbalance moved some of them.
    let gamma = 1e-3f32;
    for layer in 0..2 {
        let b = &after[&crate::params::keys::layer(layer).selection_bias()].data;
        for &v in b {
            let steps = v / gamma;
            assert!(steps.abs() <= 6.0 + 1e-3 && (steps - steps.round()).abs() < 1e-3, "bias {v}");
        }
    }
    assert!(after[&key].data.iter().any(|&v| v != 0.0), "an unbalanced step moves the bias");
    // The bias takes no gradient: the optimizer never sees it, the gate does.
    assert_ne!(gate(&before, 0), gate(&after, 0), "the sigmoid gate trains");
    // The router a lossfree checkpoint is shown with reads the bias it learned.
    let model = block_on(t.inference_model(&Device::flex())).expect("model");
    assert_eq!(model.selection_bias()[1], after[&key].data);
    // Training chooses with the bias: a large one on expert 3 puts it in every token's pair.
    let cfg = settings("lossfree", 10);
    let model_cfg = recipe_model_config(&tiny(), &cfg.recipe);
    let mut params = initial_params(&model_cfg, &cfg);
    for layer in 0..2 {
        params.get_mut(&crate::params::keys::layer(layer).selection_bias()).expect("bias").data =
            vec![0.0, 0.0, 0.0, 10.0];
    }
    let mut pulled = Trainer::from_parts(&model_cfg, &params, cfg, "byte", 0, &Device::flex()).expect("trainer");
    let stats = run(&mut pulled, &data, 1);
    for layer in &stats[0].load {
        assert!((layer[3] - 0.5).abs() < 1e-6, "expert 3 takes one of each token's two slots: {layer:?}");
    }
}

#[test]
fn deepseek_keeps_top_k_compute_with_fine_and_shared_experts() {
    // tiny(): 4 experts of 32, top-2. Split in 2: 8 fine experts of 16, one shared, 7 routed,
    // 3 per token: 3·16 + 16 = 64 hidden units per token, as top-2 of 32.
    let cfg = settings("deepseek", 10);
    let m = recipe_model_config(&tiny(), &cfg.recipe);
    assert_eq!((m.n_experts, m.d_ff, m.top_k, m.shared_d_ff, m.norm_topk_prob), (7, 16, 3, 16, false));
    assert_eq!(m.top_k * m.d_ff + m.shared_d_ff, tiny().top_k * tiny().d_ff);
    assert_eq!(
        m.param_count() - tiny().param_count(),
        3 * 2 * 32,
        "the same experts' parameters, 3 more router rows per layer"
    );
    let mut t = Trainer::new(&tiny(), cfg, "byte", &Device::flex()).expect("trainer");
    let before = block_on(t.params()).expect("params");
    let stats = run(&mut t, &corpus(), 3);
    assert!(stats.iter().all(|s| s.k == 3 && (s.active - 3.0).abs() < 1e-6));
    let after = block_on(t.params()).expect("params");
    let shared = crate::params::keys::layer(0).shared_expert(crate::params::keys::ExpertProj::W1);
    assert_ne!(before[&shared].data, after[&shared].data, "the shared expert trains");
    let bad = TrainConfig {
        recipe: Recipe::Deepseek { k: 3, segments: 3, shared: 1, lbl_coef: 0.0, z_coef: 0.0 },
        ..settings("deepseek", 5)
    };
    let e = Trainer::new(&tiny(), bad, "byte", &Device::flex()).expect_err("32 is not a multiple of 3");
    assert!(e.to_string().contains("segments"), "{e}");
}

#[test]
fn the_global_lbl_pools_the_last_steps_counts() {
    // By hand: this step f = [2, 0]/2, the prior [0, 6]/6 tokens: pooled f = [2, 6]/8 over the
    // same P̄ = [0.675, 0.325]: 2·(0.25·0.675 + 0.75·0.325) = 0.825 (this step alone: 1.35).
    let probs = || t2(&[&[0.75, 0.25], &[0.6, 0.4]]);
    let alone = value(forward::load_balancing_loss_pooled(probs(), &[2, 0], &[], 0));
    let pooled = value(forward::load_balancing_loss_pooled(probs(), &[2, 0], &[0, 6], 6));
    assert!((alone - 1.35).abs() < 1e-6 && (pooled - 0.825).abs() < 1e-6, "{alone} {pooled}");
    // The trainer keeps the last lbl_window − 1 steps, and a window of 1 is the plain LBL.
    let data = corpus();
    let window = |w: u64| {
        let recipe = Recipe::Topk { k: 2, lbl_coef: 0.01, z_coef: 1e-3, lbl_window: w };
        let mut t = Trainer::new(&tiny(), TrainConfig { recipe, ..settings("topk", 8) }, "byte", &Device::flex())
            .expect("trainer");
        let stats = run(&mut t, &data, 5);
        (stats, t.lbl_buffer.iter().cloned().collect::<Vec<_>>())
    };
    let (plain, kept) = window(1);
    assert_eq!(kept.len(), 0);
    let (global, kept) = window(3);
    // The last two steps' counts, oldest first (top-2 of 4 experts over 4 × 16 tokens: 128 slots).
    let fractions = |counts: &Vec<Vec<u64>>| -> Vec<Vec<f32>> {
        counts.iter().map(|l| l.iter().map(|&n| n as f32 / 128.0).collect()).collect()
    };
    assert_eq!(kept.iter().map(fractions).collect::<Vec<_>>(), vec![global[3].load.clone(), global[4].load.clone()]);
    assert_eq!(plain[0], global[0], "the first step has nothing to pool");
    assert_ne!(plain[1].lbl, global[1].lbl, "from the second step on, f pools the earlier counts");
}

#[test]
fn a_resumed_run_continues_the_same_curve() {
    for recipe in ["topk", "topk-global", "lossfree"] {
        resumes_the_same_curve(recipe);
    }
}

fn resumes_the_same_curve(recipe: &str) {
    let data = corpus();
    let dir = std::env::temp_dir().join(format!("switchyard-resume-{recipe}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = settings(recipe, 6);
    let mut straight = Trainer::new(&tiny(), cfg.clone(), "byte", &Device::flex()).expect("trainer");
    let full = run(&mut straight, &data, 6);
    let mut first = Trainer::new(&tiny(), cfg.clone(), "byte", &Device::flex()).expect("trainer");
    run(&mut first, &data, 3);
    block_on(first.save_state(&dir)).expect("save");
    let saved = block_on(first.params()).expect("params");
    let buffer = first.lbl_buffer.clone();
    drop(first);
    let mut resumed = Trainer::resume(&dir, &cfg, "byte", &Device::flex()).expect("resume");
    assert_eq!(resumed.step_index(), 3);
    // Every parameter (a selection bias included) and the load buffer come back as saved.
    assert_eq!(block_on(resumed.params()).expect("params"), saved, "{recipe}: parameters");
    assert_eq!(resumed.lbl_buffer, buffer, "{recipe}: load buffer");
    let rest = run(&mut resumed, &data, 3);
    assert_eq!(rest[..], full[3..]);
    // Other settings or another tokenizer are refused with a reason.
    let other = TrainConfig { lr: 0.5, ..cfg.clone() };
    let e = Trainer::resume(&dir, &other, "byte", &Device::flex()).expect_err("different settings");
    assert!(e.to_string().contains("other settings"), "{e}");
    let e = Trainer::resume(&dir, &cfg, "bpe:00", &Device::flex()).expect_err("different tokenizer");
    assert!(e.to_string().contains("tokenizer"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_settings_are_named() {
    let bad = TrainConfig { seq_len: 64, ..settings("topk", 5) };
    let e = Trainer::new(&tiny(), bad, "byte", &Device::flex()).expect_err("too long");
    assert!(e.to_string().contains("exceeds the model's context"), "{e}");
    let bad = TrainConfig { recipe: Recipe::SmoeDropout { k_min: 3, k_max: 9, init_std: 0.02 }, ..settings("topk", 5) };
    assert!(Trainer::new(&tiny(), bad, "byte", &Device::flex()).is_err());
}

fn t2(rows: &[&[f32]]) -> Tensor<2> {
    let (r, c) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [r, c]), &Device::flex())
}

fn value(t: Tensor<1>) -> f32 {
    t.into_data().iter::<f32>().next().expect("one value")
}

/// §2.2: THOR's symmetric KL by hand, and 0 when both passes give the same distribution (the
/// same experts drawn and no dropout).
#[test]
fn thor_consistency_term_by_hand() {
    let ln = |p: &[f32]| p.iter().map(|x| x.ln()).collect::<Vec<_>>();
    let (p1, p2) = (ln(&[0.5, 0.5]), ln(&[0.9, 0.1]));
    // ½·[(0.5−0.9)(ln 0.5 − ln 0.9) + (0.5−0.1)(ln 0.5 − ln 0.1)] = 0.439445
    let kl = value(symmetric_kl(t2(&[&p1]), t2(&[&p2])));
    assert!((kl - 0.439_445).abs() < 1e-5, "{kl}");
    // Token mean over two rows: the second row is identical in both passes.
    let kl = value(symmetric_kl(t2(&[&p1, &p2]), t2(&[&p2, &p2])));
    assert!((kl - 0.439_445 / 2.0).abs() < 1e-5, "{kl}");
    assert_eq!(value(symmetric_kl(t2(&[&p1]), t2(&[&p1]))), 0.0);
}

/// §1.5 and §9.1 by hand: z-loss `mean_t lse(Z_t)²`; LBL `E·Σ f·P̄` is 1 for balanced top-1
/// routing and larger when one expert takes every token.
#[test]
fn z_loss_and_load_balancing_loss_by_hand() {
    // Rows [0, ln 3] and [0, 0]: lse = ln 4 and ln 2; mean of squares = 1.201133.
    let z = value(forward::z_loss(t2(&[&[0.0, 3f32.ln()], &[0.0, 0.0]])));
    assert!((z - 1.201_133).abs() < 1e-5, "{z}");
    // Adding c to a row's logits moves its lse by c (§1.5 invariant).
    let shifted = value(forward::z_loss(t2(&[&[5.0, 5.0 + 3f32.ln()]])));
    assert!((shifted - (4f32.ln() + 5.0).powi(2)).abs() < 1e-4, "{shifted}");
    let balanced = value(forward::load_balancing_loss(t2(&[&[0.75, 0.25], &[0.25, 0.75]]), &[1, 1]));
    assert!((balanced - 1.0).abs() < 1e-6, "{balanced}");
    // f = [1, 0], P̄ = [0.675, 0.325]: 2·0.675 = 1.35.
    let skewed = value(forward::load_balancing_loss_pooled(t2(&[&[0.75, 0.25], &[0.6, 0.4]]), &[2, 0], &[], 0));
    assert!((skewed - 1.35).abs() < 1e-6, "{skewed}");
    // Top-2 of 2 experts: Σ f = k = 2 and the loss is k whatever the probabilities.
    let k2 = value(forward::load_balancing_loss(t2(&[&[0.9, 0.1], &[0.3, 0.7]]), &[2, 2]));
    assert!((k2 - 2.0).abs() < 1e-6, "{k2}");
}

/// §6.1's LBL by hand (exp_1 semantics): the null experts' counts are replaced by their mean,
/// `f` is normalised to 1 and the sum is scaled by E + N; only the aggregate null load matters.
#[test]
fn adamoe_lbl_averages_the_null_counts() {
    use switchyard_routing::record::ExpertKind::{Ffn, Null};
    let kinds = [Ffn, Ffn, Null, Null];
    let probs = t2(&[&[0.5, 0.1, 0.3, 0.1], &[0.3, 0.3, 0.1, 0.3]]); // P̄ = [0.4, 0.2, 0.2, 0.2]
    // Counts [2, 1, 1, 0] -> [2, 1, 0.5, 0.5], f = [0.5, 0.25, 0.125, 0.125]:
    // 4·(0.2 + 0.05 + 0.025 + 0.025) = 1.2.
    let l = value(forward::null_mean_lbl(probs.clone(), &[2, 1, 1, 0], &kinds));
    assert!((l - 1.2).abs() < 1e-6, "{l}");
    // Moving load between null experts changes nothing; between FFN experts it does.
    assert_eq!(value(forward::null_mean_lbl(probs.clone(), &[2, 1, 0, 1], &kinds)), l);
    assert_ne!(value(forward::null_mean_lbl(probs, &[1, 2, 1, 0], &kinds)), l);
}

/// §6.2's heterogeneous LBL ([PAPER?]) by hand: `E·Σ η_e·f_e·P̄_e`, η = τ on the free experts.
#[test]
fn moepp_lbl_weighs_the_free_experts_by_tau() {
    use switchyard_routing::record::ExpertKind::{Copy, Ffn, Zero};
    let kinds = [Ffn, Copy, Zero];
    let probs = t2(&[&[0.5, 0.25, 0.25], &[0.5, 0.25, 0.25]]);
    // Two tokens, counts [2, 1, 1] -> f = [1, 0.5, 0.5]; 3·(0.5 + τ·0.125 + τ·0.125).
    let l = value(forward::heterogeneous_lbl(probs.clone(), &[2, 1, 1], &kinds, 0.5));
    assert!((l - 3.0 * (0.5 + 0.125)).abs() < 1e-6, "{l}");
    let plain = value(forward::heterogeneous_lbl(probs.clone(), &[2, 1, 1], &kinds, 1.0));
    assert!((plain - value(forward::load_balancing_loss(probs, &[2, 1, 1]))).abs() < 1e-6, "τ = 1 is the top-k LBL");
}

/// The AdaMoE and MoE++ recipes build their designs: null experts after the FFN ones with
/// router rows copied from them (every FFN expert has N/E twins at init), MoE++'s free experts,
/// two-layer gate, residual and ×2 input; both train with FFN experts per token below k.
#[test]
fn adamoe_and_moepp_recipes_build_their_designs() {
    use switchyard_routing::record::ExpertKind::{Constant, Copy, Null, Zero};
    let cfg = settings("adamoe", 10);
    let m = recipe_model_config(&tiny(), &cfg.recipe);
    assert_eq!((m.n_experts, m.ffn_experts(), m.top_k), (12, 4, 4));
    assert!(m.free_experts.iter().all(|k| *k == Null));
    let params = initial_params(&m, &cfg);
    let g = gate(&params, 1);
    let d = m.d_model;
    for null in 4..12 {
        let src = (null - 4) % 4;
        assert_eq!(g[null * d..(null + 1) * d], g[src * d..(src + 1) * d], "null {null} copies FFN row {src}");
    }
    let mut t = Trainer::new(&tiny(), cfg, "byte", &Device::flex()).expect("trainer");
    let stats = run(&mut t, &corpus(), 3);
    assert!(stats.iter().all(|s| s.k == 4 && s.active <= 4.0 && s.lbl.is_finite()));
    let cfg = settings("moepp", 10);
    let m = recipe_model_config(&tiny(), &cfg.recipe);
    assert_eq!(m.free_experts, vec![Constant, Constant, Copy, Zero]);
    assert_eq!((m.n_experts, m.gate_hidden, m.gating_residual, m.expert_input_scale), (8, 64, true, 2.0));
    let mut t = Trainer::new(&tiny(), cfg, "byte", &Device::flex()).expect("trainer");
    let before = block_on(t.params()).expect("params");
    let stats = run(&mut t, &corpus(), 3);
    assert!(stats.iter().all(|s| s.k == 2 && s.active <= 2.0));
    let after = block_on(t.params()).expect("params");
    for key in [crate::params::keys::layer(1).gate_map(), crate::params::keys::layer(0).constant_vector(5)] {
        assert_ne!(before[&key].data, after[&key].data, "{key} trains");
    }
}
