//! Round trips (property-tested), the problems a person sees, and fuzzing with arbitrary bytes.

use proptest::prelude::*;
use switchyard_model::{
    Capacity, CapacityFormula, Decoding, Interventions, Priority, RouterSpec, SampleConfig, ScmoeConfig, SecondPolicy,
    SmoeDense, ThorMode, WeakMode,
};

use super::*;

fn pos_f32() -> impl Strategy<Value = f32> {
    prop_oneof![0.001f32..1000.0, Just(0.2f32), Just(1.0f32)]
}

fn unit_f32() -> impl Strategy<Value = f32> {
    prop_oneof![0.001f32..=1.0, Just(1.0f32)]
}

fn ranks() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..16, 1..4)
}

fn router() -> impl Strategy<Value = RouterSpec> {
    let cap = (pos_f32(), 0usize..3, 0usize..8, 0usize..3).prop_map(|(factor, f, min_capacity, p)| Capacity {
        factor,
        formula: [CapacityFormula::Mtf, CapacityFormula::Flax, CapacityFormula::KAware][f],
        min_capacity,
        priority: [Priority::Position, Priority::ReversePosition, Priority::Bpr][p],
    });
    prop_oneof![
        (1usize..16, any::<bool>(), prop::option::of(cap)).prop_map(|(k, n, capacity)| RouterSpec::TopK {
            k,
            norm_topk_prob: n,
            capacity
        }),
        (0usize..4, pos_f32(), pos_f32()).prop_map(|(p, threshold, capacity_factor)| RouterSpec::GShard {
            policy: [SecondPolicy::Random, SecondPolicy::All, SecondPolicy::Threshold, SecondPolicy::None][p],
            threshold,
            capacity_factor
        }),
        (0.0f32..2.0).prop_map(|p| RouterSpec::TopP { p }),
        (0usize..4).prop_map(|m| RouterSpec::Thor {
            mode: [ThorMode::Token, ThorMode::Sequence, ThorMode::SequenceRef, ThorMode::Mean][m]
        }),
        (1usize..16, pos_f32(), any::<bool>()).prop_map(|(k, init_std, u)| RouterSpec::SmoeDropout {
            k,
            init_std,
            dense: if u { SmoeDense::Uniform } else { SmoeDense::Softmax }
        }),
        (pos_f32(), 0usize..8)
            .prop_map(|(capacity_factor, min_capacity)| RouterSpec::ExpertChoice { capacity_factor, min_capacity }),
        Just(RouterSpec::Hash),
        ranks().prop_map(|ranks| RouterSpec::Ranks { ranks }),
        Just(RouterSpec::RandomOne),
    ]
}

fn decoding() -> impl Strategy<Value = Decoding> {
    prop_oneof![
        Just(Decoding::Greedy),
        (pos_f32(), 0usize..50, unit_f32()).prop_map(|(temperature, top_k, top_p)| Decoding::Sample(SampleConfig {
            temperature,
            top_k,
            top_p
        })),
        (
            ranks(),
            prop::option::of(ranks()),
            unit_f32(),
            0.0f32..10.0,
            pos_f32(),
            pos_f32(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(strong_ranks, weak, alpha, beta, tau_strong, tau_weak, ban_eos, sample)| {
                Decoding::SelfContrast(ScmoeConfig {
                    strong_ranks,
                    weak: weak.map_or(WeakMode::Random, |ranks| WeakMode::Ranks { ranks }),
                    alpha,
                    beta,
                    tau_strong,
                    tau_weak,
                    ban_eos,
                    eos_id: None,
                    sample,
                })
            }),
    ]
}

fn state() -> impl Strategy<Value = PlaygroundState> {
    let pairs = prop::collection::vec((0usize..8, 0usize..16), 0..3);
    (
        "[a-z0-9-]{1,12}",
        prop::option::of("[0-9a-f]{4,16}"),
        router(),
        (pairs.clone(), pairs),
        decoding(),
        (0usize..200, any::<u64>()),
        any::<String>(),
        (0usize..8, 0usize..PANELS.len(), prop::option::of(0usize..300)),
        (
            prop::option::of(0usize..PANELS.len()),
            prop::sample::subsequence(vec![Control::Prompt, Control::Router, Control::Layers], 0..=3),
        ),
        prop::option::of((router(), decoding())),
        prop::collection::btree_map("[A-Za-z0-9_-]{1,24}", "\\p{L}\\PC{0,30}", 0..=MAX_LABELLED),
    )
        .prop_map(
            |(
                checkpoint,
                checkpoint_hash,
                router,
                (ablate, force),
                decoding,
                (generate, seed),
                prompt,
                (layer, p, token),
                (embed, show),
                compare,
                labelled,
            )| {
                PlaygroundState {
                    checkpoint,
                    checkpoint_hash,
                    router,
                    interventions: Interventions { ablate, force },
                    decoding,
                    generate,
                    seed,
                    prompt,
                    view: View {
                        layer,
                        panel: PANELS[p],
                        token,
                        embed: embed.map(|e| PANELS[e]),
                        show: if embed.is_some() { show } else { Vec::new() },
                    },
                    compare: compare.map(|(router, decoding)| Variant { router, decoding }),
                    labelled: labelled.into_iter().map(|(label, text)| Labelled { label, text }).collect(),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every state survives encode -> decode unchanged, with no problems.
    #[test]
    fn round_trip_is_lossless(s in state()) {
        let q = s.to_query();
        let (back, problems) = PlaygroundState::from_query(&q);
        prop_assert!(problems.is_empty(), "{q}: {problems:?}");
        prop_assert_eq!(back, s);
    }

    /// Arbitrary bytes never panic, and whatever they decode to is a valid state: its canonical
    /// query decodes to itself with no problems.
    #[test]
    fn decoder_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let (s, _) = PlaygroundState::from_query_bytes(&bytes);
        let (again, problems) = PlaygroundState::from_query(&s.to_query());
        prop_assert!(problems.is_empty(), "{problems:?}");
        prop_assert_eq!(again, s);
    }

    /// Near-miss queries (real keys, random values) never panic either.
    #[test]
    fn decoder_survives_malformed_values(
        keys in prop::collection::vec(prop::sample::select(vec![
            "v", "router", "k", "norm", "cf", "cap_formula", "min_cap", "priority", "policy", "theta", "p",
            "thor_mode", "init_std", "dense", "ranks", "ablate", "force", "seed", "decode", "temperature",
            "sample_k", "sample_p", "strong", "weak", "alpha", "beta", "tau_s", "tau_w", "ban_eos", "gen",
            "layer", "panel", "token", "prompt", "ckpt", "ckpt_hash",
        ]), 0..12),
        values in prop::collection::vec(".{0,12}", 12),
    ) {
        let q: Vec<String> = keys.iter().zip(&values).map(|(k, v)| format!("{k}={v}")).collect();
        let (s, _) = PlaygroundState::from_query(&q.join("&"));
        let (again, problems) = PlaygroundState::from_query(&s.to_query());
        prop_assert!(problems.is_empty());
        prop_assert_eq!(again, s);
    }
}

#[test]
fn the_query_reads_like_the_issue_example() {
    let s = PlaygroundState { seed: 7, prompt: "Le chat noir".into(), ..PlaygroundState::default() };
    let q = s.to_query();
    assert_eq!(
        q,
        "v=1&ckpt=seed-init&router=topk&k=2&norm=true&seed=7&decode=greedy&gen=0&layer=0&panel=tokens&prompt=Le+chat+noir"
    );
}

#[test]
fn urls_and_fragments_are_accepted() {
    let (s, p) =
        PlaygroundState::from_query("https://example.org/switchyard/?v=1&router=thor&thor_mode=mean&seed=3#top");
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(s.router, RouterSpec::Thor { mode: ThorMode::Mean });
    assert_eq!(s.seed, 3);
}

#[test]
fn problems_name_the_parameter_and_the_fallback() {
    let (s, p) =
        PlaygroundState::from_query("v=1&router=topk&k=zero&cf=-1&colour=red&thor_mode=token&seed=x&panel=pie");
    let text: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert!(text.contains(&"k: `zero` is not a whole number of experts from 1; using 2".to_string()), "{text:?}");
    assert!(text.contains(&"cf: `-1` is not a positive number; using 2".to_string()), "{text:?}");
    assert!(text.contains(&"colour: not a parameter of this router, decoding mode or version; ignored".to_string()));
    assert!(text.contains(&"thor_mode: not a parameter of this router, decoding mode or version; ignored".to_string()));
    assert!(text.iter().any(|t| t.starts_with("seed: `x`")));
    assert!(text.iter().any(|t| t.starts_with("panel: `pie` is not one of tokens | grid | heatmap | load")));
    assert_eq!(
        s.router,
        RouterSpec::TopK {
            k: 2,
            norm_topk_prob: true,
            capacity: Some(Capacity {
                factor: 2.0,
                formula: CapacityFormula::Mtf,
                min_capacity: 1,
                priority: Priority::Position
            })
        }
    );
    let (_, p) = PlaygroundState::from_query("router=warp");
    assert!(p.iter().any(|x| x.param == "v"));
    assert!(p.iter().any(|x| x.param == "router" && x.message.contains("`warp` is not a router")));
}

#[test]
fn the_state_serialises_to_json() {
    let s = PlaygroundState { decoding: Decoding::SelfContrast(ScmoeConfig::default()), ..PlaygroundState::default() };
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<PlaygroundState>(&json).unwrap(), s);
}

#[test]
fn configuration_b_reads_its_own_keys_and_names_its_problems() {
    let (s, p) = PlaygroundState::from_query(
        "v=1&router=topk&k=2&b.router=thor&b.thor_mode=mean&b.decode=scmoe&b.beta=0.5&b.k=3&prompt=x",
    );
    let b = s.compare.expect("b.router makes a configuration B");
    assert_eq!(b.router, RouterSpec::Thor { mode: ThorMode::Mean });
    assert!(matches!(b.decoding, Decoding::SelfContrast(ref c) if c.beta == 0.5));
    assert_eq!(s.router, RouterSpec::top_k(2, true), "A keeps its own router");
    let text: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(text, vec!["b.k: not a parameter of configuration B's router or decoding; ignored".to_string()]);
    let (s, p) = PlaygroundState::from_query("v=1&b.router=topk&b.k=nine");
    assert_eq!(s.compare.unwrap().router, RouterSpec::top_k(2, true));
    assert_eq!(p[0].param, "b.k");
    assert!(PlaygroundState::from_query("v=1&prompt=x").0.compare.is_none());
    // A stray `b.` key does not make a configuration B.
    let (s, p) = PlaygroundState::from_query("v=1&b.foo=1&b.k=2");
    assert!(s.compare.is_none());
    assert_eq!(p.len(), 2);
    assert!(p[0].message.contains("starts with b.router"));
}

#[test]
fn labelled_prompts_are_checked() {
    let long = "a".repeat(4001);
    let (s, p) = PlaygroundState::from_query(&format!(
        "v=1&add.legal=The+party+of+the+first+part&add.bad%20label=x&add.empty=+&add.long={long}"
    ));
    assert_eq!(s.labelled, vec![Labelled { label: "legal".into(), text: "The party of the first part".into() }]);
    let params: Vec<&str> = p.iter().map(|x| x.param.as_str()).collect();
    assert_eq!(params, vec!["add.bad label", "add.empty", "add.long"]);
    let many: String = (0..10).map(|i| format!("&add.d{i}=text")).collect();
    let (s, p) = PlaygroundState::from_query(&format!("v=1{many}"));
    assert_eq!(s.labelled.len(), MAX_LABELLED);
    assert_eq!(p.len(), 2);
    assert!(p[0].message.contains("at most 8"));
}
