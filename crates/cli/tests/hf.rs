//! Hugging Face folders through the binary: `--checkpoint DIR` runs every command on one, and
//! `export-hf` writes a folder the same loader reads back to the same numbers.

use std::process::Command;

fn switchyard(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(args)
        .output()
        .expect("run switchyard");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

const QWEN2: &str = "crates/model/tests/fixtures/hf/qwen2-moe";

#[test]
fn a_hugging_face_folder_runs_with_any_router() {
    let (info, err, ok) = switchyard(&["info", QWEN2]);
    assert!(ok, "{err}");
    assert!(info.contains("Qwen2MoeForCausalLM (float16"), "{info}");
    let (trace, err, ok) = switchyard(&[
        "trace",
        "--checkpoint",
        QWEN2,
        "--prompt",
        "The router",
        "--router",
        "expert-choice",
        "--generate",
        "3",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&trace).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 2);
    assert_eq!(v["layers"][0]["routing"][0]["probs"].as_array().unwrap().len(), 6);
}

#[test]
fn export_hf_writes_a_folder_that_reads_back_to_the_same_logits() {
    let dir = std::env::temp_dir().join(format!("switchyard-export-{}", std::process::id()));
    let (_, err, ok) = switchyard(&["export-hf", "assets/topk.safetensors", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let ids = "1,17,300,2047,5";
    let (a, err, ok) = switchyard(&["logits", "--checkpoint", "assets/topk.safetensors", "--tokens", ids]);
    assert!(ok, "{err}");
    let (b, err, ok) = switchyard(&["logits", "--checkpoint", dir.to_str().unwrap(), "--tokens", ids]);
    assert!(ok, "{err}");
    assert_eq!(a, b);
    let (_, err, ok) = switchyard(&["export-hf", "assets/deepseek.safetensors", dir.to_str().unwrap()]);
    assert!(!ok && err.contains("a shared expert"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_broken_folder_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("switchyard-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"architectures": ["DeepseekV3ForCausalLM"]}"#).unwrap();
    std::fs::copy(format!("{}/../../{QWEN2}/tokenizer.json", env!("CARGO_MANIFEST_DIR")), dir.join("tokenizer.json"))
        .unwrap();
    let (_, err, ok) = switchyard(&["run", "--checkpoint", dir.to_str().unwrap(), "--prompt", "x"]);
    assert!(!ok && err.contains("`DeepseekV3ForCausalLM`: not supported; supported: MixtralForCausalLM"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
