//! `switchyard train`, `eval` and `card` end to end on a small corpus, and the shipped model
//! card checked against a fresh evaluation of the shipped files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn switchyard(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(args).output().expect("run switchyard");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn train_eval_and_card_on_a_small_corpus() {
    let dir = temp("train");
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("code_toy.txt"), "fn f(x: u8) -> u8 { x + 1 }\n".repeat(60)).unwrap();
    std::fs::write(corpus.join("en_prose.txt"), "The cat sat on the mat and slept.\n".repeat(60)).unwrap();
    let out = dir.join("run");
    let (o, c) = (out.to_str().unwrap(), corpus.to_str().unwrap());
    let small = [
        "--d-model",
        "32",
        "--layers",
        "2",
        "--experts",
        "4",
        "--d-ff",
        "32",
        "--context",
        "32",
        "--batch",
        "2",
        "--steps",
        "6",
        "--warmup",
        "2",
        "--eval-every",
        "3",
        "--eval-tokens",
        "40",
    ];
    let mut args = vec!["train", "--recipe", "topk", "--corpus", c, "--out", o];
    args.extend(small);
    let (stdout, err, ok) = switchyard(&args);
    assert!(ok, "{err}");
    assert!(stdout.contains("topk.safetensors"), "{stdout}");
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"kind\":\"step\"")).count(), 6);
    assert_eq!(log.lines().filter(|l| l.contains("\"kind\":\"validation\"")).count(), 2);
    assert_eq!(std::fs::read_to_string(out.join("curve.csv")).unwrap().lines().count(), 7);
    // A second run into the same folder is refused unless it resumes.
    let (_, err, ok) = switchyard(&args);
    assert!(!ok && err.contains("--resume"), "{err}");

    let ckpt = out.join("topk.safetensors");
    let report = dir.join("eval.json");
    let (_, err, ok) = switchyard(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--corpus",
        c,
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["domains"].as_array().unwrap().len(), 2);
    let bpb = v["mean_bits_per_byte"].as_f64().unwrap();
    assert!(bpb > 0.0 && bpb < 8.0, "{bpb}");
    assert_eq!(v["layers"].as_array().unwrap().len(), 2);
    let share = &v["layers"][0]["domain_share"]["code_toy"];
    let total: f64 = share.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "shares of a domain's slots sum to 1, got {total}");

    let card = dir.join("card");
    let (_, err, ok) = switchyard(&[
        "card",
        "--run",
        o,
        "--eval",
        report.to_str().unwrap(),
        "--query",
        "v=1&ckpt=topk",
        "-o",
        card.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let md = std::fs::read_to_string(dir.join("card.md")).unwrap();
    assert!(md.contains("| code_toy |") && md.contains("Bits per byte"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_training_input_is_a_clear_error() {
    let dir = temp("bad");
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let (_, err, ok) = switchyard(&["train", "--recipe", "thor", "--corpus", dir.to_str().unwrap(), "--out", out]);
    assert!(!ok && err.contains("holds no .txt files"), "{err}");
    assert!(!dir.join("out").exists(), "a failed start must not leave a run folder");
    std::fs::write(dir.join("bad.json"), "{ not a tokenizer").unwrap();
    let (_, err, ok) = switchyard(&[
        "train",
        "--recipe",
        "topk",
        "--corpus",
        dir.to_str().unwrap(),
        "--out",
        out,
        "--tokenizer",
        dir.join("bad.json").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("not a valid tokenizer.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every shipped card's headline number is what `switchyard eval` gives on the shipped files:
/// here the smallest domain of the top-k card, recomputed from the checkpoint and tokenizer.
#[test]
fn the_shipped_card_recomputes_from_the_shipped_files() {
    let assets = repo().join("assets");
    let corpus = repo().join("../shared/corpus");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(assets.join("topk.card.json")).expect("assets/topk.card.json"))
            .expect("card JSON");
    let domain = "markup_json";
    let expected = card["eval"]["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == domain)
        .expect("domain in card")["bits_per_byte"]
        .as_f64()
        .unwrap();
    let report = temp("card").join("eval.json");
    let (_, err, ok) = switchyard(&[
        "eval",
        "--checkpoint",
        assets.join("topk.safetensors").to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--domain",
        domain,
        "--no-routing",
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["router"], card["eval"]["router"], "the card was made with the default router");
    assert_eq!(v["content_hash"], card["eval"]["content_hash"]);
    let got = v["domains"][0]["bits_per_byte"].as_f64().unwrap();
    assert!((got - expected).abs() < 1e-4, "card says {expected}, eval gives {got}");
}
