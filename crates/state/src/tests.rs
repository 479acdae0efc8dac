//! Round trips (property-tested), the problems a person sees, and fuzzing with arbitrary bytes.

use proptest::prelude::*;
use switchyard_routing::{
    Bounds, Capacity, CapacityFormula, Decoding, Interventions, Priority, RouterSpec, SampleConfig, ScmoeConfig,
    SecondPolicy, SmoeDense, ThorMode, WeakMode, bounds,
};

use super::*;

/// Values inside `b`, its ends included.
fn within(b: Bounds) -> impl Strategy<Value = f32> {
    prop_oneof![b.lo..=b.hi, Just(b.lo), Just(b.hi)]
}

fn unit_f32() -> impl Strategy<Value = f32> {
    prop_oneof![0.001f32..=1.0, Just(1.0f32)]
}

/// 1 to 3 distinct ranks in any order.
fn ranks() -> impl Strategy<Value = Vec<usize>> {
    prop::sample::subsequence((0usize..16).collect::<Vec<_>>(), 1..4).prop_shuffle()
}

fn router() -> impl Strategy<Value = RouterSpec> {
    let cf = || within(bounds::CAPACITY_FACTOR);
    let cap = (cf(), 0usize..3, 0usize..8, 0usize..3).prop_map(|(factor, f, min_capacity, p)| Capacity {
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
        (0usize..4, within(bounds::GSHARD_THRESHOLD), cf()).prop_map(|(p, threshold, capacity_factor)| {
            RouterSpec::GShard {
                policy: [SecondPolicy::Random, SecondPolicy::All, SecondPolicy::Threshold, SecondPolicy::None][p],
                threshold,
                capacity_factor,
            }
        }),
        within(bounds::TOP_P).prop_map(|p| RouterSpec::TopP { p }),
        (0usize..4).prop_map(|m| RouterSpec::Thor {
            mode: [ThorMode::Token, ThorMode::Sequence, ThorMode::SequenceRef, ThorMode::Mean][m]
        }),
        (1usize..16, within(bounds::INIT_STD), any::<bool>()).prop_map(|(k, init_std, u)| RouterSpec::SmoeDropout {
            k,
            init_std,
            dense: if u { SmoeDense::Uniform } else { SmoeDense::Softmax }
        }),
        (cf(), 0usize..8)
            .prop_map(|(capacity_factor, min_capacity)| RouterSpec::ExpertChoice { capacity_factor, min_capacity }),
        Just(RouterSpec::Hash),
        ranks().prop_map(|ranks| RouterSpec::Ranks { ranks }),
        Just(RouterSpec::RandomOne),
        (1usize..16, any::<bool>()).prop_map(|(k, bias)| RouterSpec::Sigmoid { k, bias }),
    ]
}

fn decoding() -> impl Strategy<Value = Decoding> {
    prop_oneof![
        Just(Decoding::Greedy),
        (within(bounds::TEMPERATURE), 0usize..50, unit_f32())
            .prop_map(|(temperature, top_k, top_p)| Decoding::Sample(SampleConfig { temperature, top_k, top_p })),
        (
            ranks(),
            prop::option::of(ranks()),
            unit_f32(),
            within(bounds::BETA),
            within(bounds::TEMPERATURE),
            within(bounds::TEMPERATURE),
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

fn train() -> impl Strategy<Value = crate::TrainSettings> {
    use crate::TrainRecipe::*;
    (
        (2usize..=16, 1usize..=2, 4usize..=16, 1usize..=4),
        prop::sample::select(vec![Topk, Switch, Thor, SmoeDropout, Lossfree]),
        (prop::sample::select(vec![0.0f32, 0.01, 0.25, 1.0]), prop::sample::select(vec![0.0f32, 0.001, 0.1])),
        (prop::sample::select(vec![0.003f64, 1e-5, 0.1, 0.0042]), any::<u64>(), 1u64..=100_000),
        prop::collection::vec(("[a-z_]{1,12}", prop::sample::select(vec![0.0f32, 0.5, 2.0, 100.0])), 0..4),
    )
        .prop_map(|((experts, k, w8, layers), recipe, (lbl, z), (lr, seed, steps), mix)| crate::TrainSettings {
            experts,
            k,
            width: w8 * 8,
            layers,
            recipe,
            lbl,
            z,
            lr,
            seed,
            steps,
            mix,
        })
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
        (0usize..8, 0usize..PANELS.len(), prop::option::of(0usize..300), prop::option::of(1usize..=TOUR_STEPS)),
        (
            prop::option::of(0usize..PANELS.len()),
            prop::sample::subsequence(vec![Control::Prompt, Control::Router, Control::Layers], 0..=3),
            prop::option::of("https?://[a-z0-9]{1,10}(\\.[a-z]{2,5})?(:[1-9][0-9]{0,3})?"),
        ),
        prop::option::of((router(), decoding())),
        (
            prop::collection::btree_map("[A-Za-z0-9_-]{1,24}", "\\p{L}\\PC{0,30}", 0..=MAX_LABELLED),
            prop::sample::select(vec![Backend::Auto, Backend::Cpu, Backend::Webgpu]),
            prop::sample::select(vec![Shade::Expert, Shade::Compute, Shade::ComputeAll, Shade::Shared]),
            train(),
            prop::option::of("https://[a-z0-9]{1,10}\\.[a-z]{2,5}(/[A-Za-z0-9._~%-]{1,12}){0,3}/?"),
            prop::option::of("https://[a-z0-9]{1,10}\\.[a-z]{2,5}(/[A-Za-z0-9._~%-]{1,12}){1,3}\\.json"),
        ),
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
                (layer, p, token, tour),
                (embed, show, origin),
                compare,
                (labelled, backend, shade, train, hf, trace),
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
                        origin: if embed.is_some() { origin } else { None },
                        shade,
                        tour,
                    },
                    compare: compare.map(|(router, decoding)| Variant { router, decoding }),
                    labelled: labelled.into_iter().map(|(label, text)| Labelled { label, text }).collect(),
                    backend,
                    train,
                    hf,
                    trace,
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
    assert!(
        text.contains(&"k: `zero` is not a whole number of experts from 1 to 256; using 2".to_string()),
        "{text:?}"
    );
    assert!(text.contains(&"cf: `-1` is not a number from 0.01 to 256; using 2".to_string()), "{text:?}");
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

/// A `?` inside a value is legal in a query. `?v=1&ckpt=topk&prompt=Why?` used to be read as
/// a URL prefix `v=1&ckpt=topk&prompt=Why` and an empty query: the seed-init model, no prompt.
#[test]
fn a_question_mark_or_hash_inside_a_value_is_kept() {
    let (s, p) = PlaygroundState::from_query("v=1&ckpt=topk&prompt=Why?");
    assert!(p.is_empty(), "{p:?}");
    assert_eq!((s.checkpoint.as_str(), s.prompt.as_str()), ("topk", "Why?"));
    let (s, p) = PlaygroundState::from_query("?v=1&ckpt=topk&prompt=Why?+and+how?");
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(s.prompt, "Why? and how?");
    // A bare query (the postMessage API's) keeps a raw `#`; a URL's `#` starts its fragment.
    assert_eq!(PlaygroundState::from_query("v=1&prompt=C#").0.prompt, "C#");
    assert_eq!(PlaygroundState::from_query("https://x.org/s/?v=1&prompt=C%23?#top").0.prompt, "C#?");
    assert_eq!(PlaygroundState::from_query("./index.html?v=1&prompt=a?b").0.prompt, "a?b");
    // A URL without a query is the default state.
    let (s, p) = PlaygroundState::from_query("https://x.org/switchyard/#top");
    assert_eq!(s, PlaygroundState::default());
    assert_eq!(p.len(), 1, "{p:?}");
    // Every state with ? and # in its prompt survives its own query, and its URL.
    let s = PlaygroundState { prompt: "a?b#c&d=e?".into(), ..PlaygroundState::default() };
    assert_eq!(PlaygroundState::from_query(&s.to_query()).0, s);
    assert_eq!(PlaygroundState::from_query(&format!("https://h/p/?{}#f", s.to_query())).0, s);
}

/// A newer version and unknown keys are reported, never silently dropped.
#[test]
fn newer_versions_and_unknown_keys_are_reported() {
    let (s, p) = PlaygroundState::from_query("v=2&router=topk&k=1&warp=9&prompt=x");
    assert_eq!((s.router.clone(), s.prompt.as_str()), (RouterSpec::top_k(1, true), "x"));
    let params: Vec<&str> = p.iter().map(|x| x.param.as_str()).collect();
    assert_eq!(params, vec!["v", "warp"]);
    assert!(p[0].message.contains("format version `2`"), "{}", p[0]);
}

/// Numbers beyond the range where the arithmetic stays finite are refused, naming the range.
#[test]
fn extreme_numbers_are_refused_with_their_range() {
    let (s, p) = PlaygroundState::from_query(
        "v=1&decode=sample&temperature=1e-38&sample_p=0&seed=18446744073709551615&layer=64&token=40000&gen=99999",
    );
    let text: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert!(text.contains(&"temperature: `1e-38` is not a number from 0.01 to 100; using 1".into()), "{text:?}");
    assert!(text.iter().any(|t| t.starts_with("sample_p: `0` is not a number above 0")), "{text:?}");
    assert!(text.iter().any(|t| t.starts_with("layer: `64` is not a layer number below 64")));
    assert!(text.iter().any(|t| t.starts_with("token:")) && text.iter().any(|t| t.starts_with("gen:")));
    assert_eq!(s.seed, u64::MAX, "every seed is usable");
    for q in [
        "router=gshard&theta=0",
        "router=gshard&theta=1e30",
        "router=top_p&p=1.5",
        "router=smoe_dropout&init_std=1e30",
        "router=expert_choice&cf=inf",
        "router=topk&cf=NaN",
        "decode=scmoe&beta=1e38",
        "decode=scmoe&tau_w=0",
        "decode=scmoe&alpha=0",
        "router=topk&k=257",
        "ablate=64:0,0:256",
    ] {
        let (s, p) = PlaygroundState::from_query(&format!("v=1&{q}"));
        assert_eq!(p.len(), 1 + q.matches(',').count(), "{q}: {p:?}");
        let rerun = PlaygroundState::from_query(&s.to_query());
        assert!(rerun.1.is_empty(), "{q}: the state it gives is valid");
    }
}

/// `ranks=0,0` used to reach the model and send each token to one expert twice.
#[test]
fn repeated_ranks_are_used_once_with_a_problem() {
    let (s, p) = PlaygroundState::from_query("v=1&router=ranks&ranks=0,0,2,0");
    assert_eq!(s.router, RouterSpec::Ranks { ranks: vec![0, 2] });
    assert_eq!(p[0].to_string(), "ranks: `0,0,2,0` names a rank twice; using 0,2 (each rank once)");
    let (s, p) = PlaygroundState::from_query("v=1&decode=scmoe&strong=1,1&weak=3,3");
    let Decoding::SelfContrast(c) = s.decoding else { panic!("scmoe") };
    assert_eq!((c.strong_ranks, c.weak), (vec![1], WeakMode::Ranks { ranks: vec![3] }));
    assert_eq!(p.len(), 2);
}

/// Nothing but `[A-Za-z0-9_-]{1,64}` names a checkpoint (the name becomes a download path).
#[test]
fn checkpoint_names_cannot_reach_other_paths() {
    for bad in ["../../etc/passwd", "a/b", "topk.safetensors", "x%00", " ", &"a".repeat(65), "https:%2F%2Fevil"] {
        let (s, p) = PlaygroundState::from_query(&format!("v=1&ckpt={bad}"));
        assert_eq!(s.checkpoint, "seed-init", "{bad}");
        assert_eq!(p[0].param, "ckpt", "{bad}");
    }
    assert_eq!(PlaygroundState::from_query("v=1&ckpt=smoe-dropout_2").0.checkpoint, "smoe-dropout_2");
}

/// A prompt over the cap is refused by the link reader as labelled prompts are.
#[test]
fn an_over_long_prompt_is_refused() {
    let long = "ab".repeat(MAX_PROMPT_CHARS / 2 + 1);
    let (s, p) = PlaygroundState::from_query(&format!("v=1&prompt={long}"));
    assert_eq!(s.prompt, "");
    assert!(p[0].message.contains("at most 8000"), "{}", p[0]);
    let fits = "é".repeat(MAX_PROMPT_CHARS);
    assert_eq!(PlaygroundState::from_query(&format!("v=1&prompt={fits}")).0.prompt, fits);
}

/// `origin=` pins the embedding page that hears the reports; only with embed mode.
#[test]
fn the_embed_origin_is_checked() {
    let (s, p) = PlaygroundState::from_query("v=1&embed=grid&origin=https://tutorial.example.org/");
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(s.view.origin.as_deref(), Some("https://tutorial.example.org"));
    assert!(s.to_query().contains("origin=https%3A%2F%2Ftutorial.example.org"));
    for bad in ["javascript:alert(1)", "https://a.org/path", "*", "https://", "ftp://a.org", "https://a.org:99999"] {
        let (s, p) = PlaygroundState::from_query(&format!("v=1&embed=grid&origin={bad}"));
        assert!(s.view.origin.is_none() && p.len() == 1, "{bad}: {p:?}");
    }
    let (s, p) = PlaygroundState::from_query("v=1&origin=https://a.org");
    assert!(s.view.origin.is_none() && p[0].message.contains("only used with embed"));
    assert!(valid_origin("http://127.0.0.1:8080") && valid_origin("https://localhost"));
}

/// A folder address is http(s) with a host and nothing that could leave the attribute or the
/// URL; anything else is a problem and no address.
#[test]
fn folder_addresses_are_http_with_a_host() {
    let (s, problems) = PlaygroundState::from_query("v=1&ckpt=hf-url&hf=https://example.org/models/tiny-mixtral/");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(s.hf.as_deref(), Some("https://example.org/models/tiny-mixtral/"));
    for bad in [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "https://",
        "https://exa mple.org/",
        "https://example.org/\"onload=\"x",
        "//example.org/m",
        "data:text/html,hi",
    ] {
        let q = format!("v=1&hf={}", form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>());
        let (s, problems) = PlaygroundState::from_query(&q);
        assert_eq!(s.hf, None, "{bad}");
        assert!(problems.iter().any(|p| p.param == "hf"), "{bad}");
    }
    let long = format!("v=1&hf=https://example.org/{}", "a".repeat(MAX_FOLDER_URL));
    assert_eq!(PlaygroundState::from_query(&long).0.hf, None);
    let (s, problems) = PlaygroundState::from_query("v=1&trace=javascript%3Aalert(1)");
    assert!(s.trace.is_none() && problems.iter().any(|p| p.param == "trace"));
}

#[test]
fn a_tour_step_is_in_the_link() {
    let (s, problems) = PlaygroundState::from_query("v=1&tour=5");
    assert!(problems.is_empty() && s.view.tour == Some(5));
    assert!(s.to_query().contains("tour=5"));
    let past_the_end = format!("tour={}", TOUR_STEPS + 1);
    for bad in ["tour=0", past_the_end.as_str(), "tour=x", "tour="] {
        let (s, problems) = PlaygroundState::from_query(&format!("v=1&{bad}"));
        assert!(problems.iter().any(|p| p.param == "tour"), "{bad}");
        assert_ne!(s.view.tour, Some(0));
    }
}
