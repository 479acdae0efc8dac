//! The A/B comparison and the domain shares on a seed-initialised tiny model.

use futures_lite::future::block_on;
use switchyard_model::{ByteTokenizer, Decoding, Model, ModelConfig, RouterSpec, ScmoeConfig, Tokenizer};
use switchyard_state::{PlaygroundState, Variant};

use super::*;

fn model() -> Model {
    Model::from_seed(&ModelConfig::tiny(), 5, &switchyard_model::devices::cpu()).unwrap()
}

fn state(query: &str) -> PlaygroundState {
    let (s, p) = PlaygroundState::from_query(query);
    assert!(p.is_empty(), "{p:?}");
    s
}

#[test]
fn a_against_itself_changes_nothing() {
    let m = model();
    let tok = Tokenizer::Byte(ByteTokenizer);
    let mut s = state("v=1&router=topk&k=2&seed=3&gen=4&prompt=The+cat+sat");
    s.compare = Some(s.variant());
    let t = block_on(trace(&m, &tok, &s, "h", "cpu", (None, None), async |_| true)).unwrap();
    let ids: Vec<u32> = t.tokens.iter().map(|x| x.id).collect();
    let c = block_on(compare(&m, &s, &ids)).unwrap().expect("configuration B is set");
    assert_eq!(c.layers.len(), 4);
    assert_eq!(c.next_js.len(), ids.len());
    for l in &c.layers {
        assert_eq!((l.changed_rate, l.mean_js), (0.0, 0.0), "layer {}", l.layer);
    }
    assert!(c.next_js.iter().all(|&d| d == 0.0));
    // A's teacher-forced routing is the generation's routing (the trace covers all but the last token).
    for (x, y) in c.a.layers.iter().zip(&t.layers) {
        for (rx, ry) in x.routing.iter().zip(&y.routing) {
            assert_eq!(rx.experts, ry.experts);
            for (p, q) in rx.probs.iter().zip(&ry.probs) {
                assert!((p - q).abs() < 1e-5);
            }
        }
    }
    // Greedy: A's most likely next token after each prompt position is what it generated.
    let prompt_len = t.tokens.iter().filter(|x| x.kind == "prompt").count();
    for i in prompt_len - 1..ids.len() - 1 {
        assert_eq!(c.a.next[i][0].0, ids[i + 1], "position {i}");
    }
    assert!(block_on(compare(&m, &state("v=1&prompt=x"), &ids)).unwrap().is_none());
}

#[test]
fn another_router_changes_experts_and_scmoe_changes_the_next_token_distribution() {
    let m = model();
    let mut s = state("v=1&router=topk&k=2&seed=3&prompt=x");
    let ids: Vec<u32> = b"Le chat est sur le tapis.".iter().map(|&b| u32::from(b)).collect();
    s.compare = Some(Variant {
        router: RouterSpec::Thor { mode: switchyard_model::ThorMode::Token },
        decoding: Decoding::Greedy,
    });
    let c = block_on(compare(&m, &s, &ids)).unwrap().unwrap();
    assert!(
        c.layers.iter().all(|l| l.changed_rate > 0.3),
        "{:?}",
        c.layers.iter().map(|l| l.changed_rate).collect::<Vec<_>>()
    );
    assert!(c.layers.iter().all(|l| !l.js_comparable && l.mean_js == 0.0), "THOR has no router probabilities");
    assert!(c.b.query.starts_with("router=thor"));
    let smoe = RouterSpec::SmoeDropout { k: 2, init_std: 0.02, dense: switchyard_model::SmoeDense::Softmax };
    s.compare = Some(Variant { router: smoe, decoding: Decoding::Greedy });
    let c = block_on(compare(&m, &s, &ids)).unwrap().unwrap();
    assert!(
        c.layers.iter().all(|l| l.js_comparable && l.mean_js > 0.0),
        "learned rows against the frozen random router's"
    );
    s.compare = Some(Variant { router: s.router.clone(), decoding: Decoding::SelfContrast(ScmoeConfig::default()) });
    let c = block_on(compare(&m, &s, &ids)).unwrap().unwrap();
    // A seed-initialised model is nearly uniform, so the contrast moves it only a little.
    assert!(c.next_js.iter().all(|&d| d > 0.0), "the contrast reshapes the next-token distribution");
    for row in &c.b.next {
        let mass: f32 = row.iter().map(|x| x.1).sum();
        assert!(mass <= 1.0 + 1e-4 && row.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    s.compare = Some(Variant { router: RouterSpec::top_k(99, true), decoding: Decoding::Greedy });
    assert!(matches!(block_on(compare(&m, &s, &ids)), Err(TraceError::Router(_))));
}

#[test]
fn domain_shares_pool_labels_and_sum_to_one() {
    let m = model();
    let tok = Tokenizer::Byte(ByteTokenizer);
    let s = state("v=1&router=topk&k=2&prompt=x");
    let texts = [
        ("code".to_string(), "fn main() {}".to_string()),
        ("prose".to_string(), "It was a dark night.".to_string()),
        ("code".to_string(), "let x = 1;".to_string()),
        ("empty".to_string(), String::new()),
    ];
    let d = block_on(domain_shares(&m, &tok, &s, &texts)).unwrap();
    let labels: Vec<(&str, usize)> = d.domains.iter().map(|x| (x.label.as_str(), x.tokens)).collect();
    assert_eq!(labels, vec![("code", 12 + 10), ("prose", 20)]);
    assert_eq!(d.shares.len(), 4);
    for layer in &d.shares {
        for row in layer {
            assert_eq!(row.len(), 8);
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9, "no drops: every slot lands somewhere");
        }
    }
    let forced = state("v=1&router=topk&k=2&force=0:3&prompt=x");
    let d = block_on(domain_shares(&m, &tok, &forced, &texts)).unwrap();
    // Forcing leaves each token one expert: every share of a domain is expert 3's (the shares
    // count each token's own experts; over k_max = 2 slots they used to say 0.5).
    assert!(d.shares[0].iter().all(|row| row[3] == 1.0 && row.iter().sum::<f64>() == 1.0), "{:?}", d.shares[0]);
}

/// CSV token texts a spreadsheet would run as formulas are neutralised; the JSON keeps them.
#[test]
fn csv_token_text_cannot_be_a_formula() {
    let m = model();
    let tok = Tokenizer::Byte(ByteTokenizer);
    let s = state("v=1&prompt=%3D1%2B2");
    let t = block_on(trace(&m, &tok, &s, "h", "cpu", (None, None), async |_| true)).unwrap();
    assert_eq!(t.tokens[0].text, "=");
    let mut csv = Vec::new();
    write_csv(&t, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let first = csv.lines().nth(1).unwrap();
    assert!(first.contains(",'=,"), "{first}");
    assert!(!csv.lines().skip(1).any(|l| l.split(',').nth(4).is_some_and(|c| c.starts_with(['=', '+', '-', '@']))));
    assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
    assert_eq!(spreadsheet_safe("fn"), "fn");
}

/// A cached top-p decode joins one record per step: the trace's mean active experts is over
/// every routed token (it used to be the prompt's alone).
#[test]
fn a_cached_decode_keeps_its_aux_over_every_token() {
    let m = model();
    let tok = Tokenizer::Byte(ByteTokenizer);
    let s = state("v=1&router=top_p&p=0.6&gen=12&prompt=The+cat");
    let t = block_on(trace(&m, &tok, &s, "h", "cpu", (None, None), async |_| true)).unwrap();
    for l in &t.layers {
        let mean = l.routing.iter().map(|r| r.experts.len() as f32).sum::<f32>() / l.routing.len() as f32;
        assert!(
            (l.aux["mean_active_experts"] - mean).abs() < 1e-5,
            "layer {}: {} vs {mean}",
            l.layer,
            l.aux["mean_active_experts"]
        );
    }
}

/// Every router and decoding the codec can express gives a trace that JSON carries (no NaN,
/// which JSON writes as null and the page cannot read back), on short and one-token prompts.
#[test]
fn every_router_gives_a_trace_json_can_carry() {
    let m = model();
    let tok = Tokenizer::Byte(ByteTokenizer);
    for router in [
        "topk&k=2",
        "topk&k=1&cf=0.01",
        "topk&k=8&cf=256&cap_formula=flax&min_cap=0&priority=bpr",
        "switch",
        "gshard&policy=random&theta=0.001&cf=0.01",
        "top_p&p=0",
        "top_p&p=1",
        "thor&thor_mode=mean",
        "smoe_dropout&k=8&init_std=10&dense=uniform",
        "smoe_dropout&k=1&init_std=0.0001",
        "expert_choice&cf=0.01&min_cap=0",
        "hash",
        "ranks&ranks=7",
        "random_one",
    ] {
        for decode in
            ["greedy", "sample&temperature=0.01&sample_p=1e-30", "scmoe&alpha=1e-30&beta=100&tau_s=0.01&tau_w=100"]
        {
            for prompt in ["a", "The cat sat on the mat."] {
                let q = format!("v=1&router={router}&decode={decode}&gen=3&prompt={prompt}");
                let (s, p) = PlaygroundState::from_query(&q);
                assert!(p.is_empty(), "{q}: {p:?}");
                let t = block_on(trace(&m, &tok, &s, "h", "cpu", (None, None), async |_| true))
                    .unwrap_or_else(|e| panic!("{q}: {e}"));
                let json = serde_json::to_string(&t).unwrap();
                let back: Trace = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{q}: {e}"));
                assert_eq!(back.tokens.len(), t.tokens.len());
            }
        }
    }
}
