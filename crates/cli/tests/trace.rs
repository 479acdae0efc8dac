//! The `switchyard` binary end to end: a link replays to the same trace, bad links warn.

use std::process::Command;

fn switchyard(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(args).output().expect("run switchyard");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

const LINK: &str = "https://example.org/?v=1&ckpt=seed-init&router=thor&thor_mode=sequence_ref&seed=7&decode=sample&temperature=0.8&sample_k=20&sample_p=0.9&gen=6&prompt=Le+chat";

#[test]
fn the_same_link_gives_the_same_trace() {
    let (a, err, ok) = switchyard(&["trace", "--url", LINK]);
    assert!(ok, "{err}");
    let (b, _, _) = switchyard(&["trace", "--url", LINK]);
    assert_eq!(a, b);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["format"], "switchyard-trace/1");
    assert_eq!(v["tokens"].as_array().unwrap().len(), 7 + 6);
    assert_eq!(v["layers"].as_array().unwrap().len(), 4);
    assert_eq!(v["layers"][0]["routing"].as_array().unwrap().len(), 12);
    // The trace's own query replays to the same trace.
    let query = format!("?{}", v["query"].as_str().unwrap());
    let (c, _, _) = switchyard(&["trace", "--url", &query]);
    assert_eq!(a, c);
    // Another seed, another routing.
    let (d, _, _) = switchyard(&["trace", "--url", &LINK.replace("seed=7", "seed=8")]);
    assert_ne!(a, d);
}

#[test]
fn flags_and_links_describe_the_same_run() {
    let (a, err, ok) =
        switchyard(&["trace", "--prompt", "abc", "--router", "gshard", "--seed", "3", "--generate", "2"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    let (b, _, _) = switchyard(&["trace", "--url", v["query"].as_str().unwrap()]);
    assert_eq!(a, b);
}

#[test]
fn malformed_links_warn_and_still_run() {
    let (out, err, ok) = switchyard(&["trace", "--url", "?v=1&router=topk&k=nine&colour=red&prompt=hi"]);
    assert!(ok, "{err}");
    assert!(err.contains("k: `nine` is not a whole number of experts from 1 to 256; using 2"), "{err}");
    assert!(err.contains("colour"), "{err}");
    assert!(out.contains("switchyard-trace/1"));
    let (_, err, ok) = switchyard(&["trace", "--url", "?v=1&router=topk&k=99&prompt=hi"]);
    assert!(!ok);
    assert!(err.contains("k must be between 1 and the number of experts (8), got 99"), "{err}");
    let (_, err, ok) = switchyard(&["trace", "--url", "?v=1&ckpt_hash=abcdef12&prompt=hi"]);
    assert!(!ok);
    assert!(err.contains("pins checkpoint hash abcdef12"), "{err}");
}

#[test]
fn csv_has_one_row_per_token_layer_and_slot() {
    let (out, err, ok) = switchyard(&["trace", "--prompt", "abcd", "--csv"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "token,position,kind,token_id,token_text,layer,slot,expert,weight,rank,dropped,prob,expert_kind,shared_share"
    );
    assert_eq!(lines.len(), 1 + 4 * 4 * 2);
    assert!(lines[1..].iter().all(|l| l.ends_with(",ffn,")), "a plain model: FFN experts, no shared expert");
}

/// The free experts in the exports (docs/trace.md): the JSON names every entry's kind, the CSV
/// names each slot's, and a null slot has weight 0.
#[test]
fn a_free_expert_checkpoint_exports_its_kinds() {
    let ckpt = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/adamoe.safetensors");
    let (out, err, ok) = switchyard(&["trace", "--checkpoint", ckpt, "--prompt", "The cat sat.", "--k", "4"]);
    assert!(ok, "{err}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds = t["layers"][0]["expert_kinds"].as_array().expect("expert_kinds");
    assert_eq!(kinds.len(), 24);
    assert_eq!((kinds[7].as_str(), kinds[8].as_str()), (Some("ffn"), Some("null")));
    let (csv, err, ok) = switchyard(&["trace", "--checkpoint", ckpt, "--prompt", "The cat sat.", "--k", "4", "--csv"]);
    assert!(ok, "{err}");
    let nulls: Vec<&str> = csv.lines().filter(|l| l.contains(",null,")).collect();
    assert!(!nulls.is_empty(), "some slots go to null experts");
    for row in nulls {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols[cols.len() - 6], "0", "a null slot has weight 0: {row}");
    }
}
