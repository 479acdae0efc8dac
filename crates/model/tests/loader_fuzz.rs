//! The checkpoint loader and the configuration reader on hostile input: truncated files,
//! oversized and inconsistent safetensors headers, configurations that declare absurd sizes,
//! and thousands of seeded random mutations of a real file. Every one must be a named error,
//! and none may allocate more than the file's own size (plus a small constant for the header's
//! parsed form): a header that declares 4·10⁹ layers must not make the loader try.
//!
//! This test is its own binary so that its counting allocator sees nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use switchyard_model::{Checkpoint, CheckpointError, ModelConfig, init_from_seed};

/// The system allocator, counting the bytes live and the peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Tests in this binary run one at a time: the counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

/// Room for the header's parsed form (tensor table, metadata strings) beyond the file's bytes.
const SLACK: usize = 64 * 1024;

/// Loads `bytes`, which must fail; returns the error and the bytes allocated at the peak.
fn refused(bytes: &[u8]) -> (CheckpointError, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t0 = Instant::now();
    let result = Checkpoint::from_bytes(bytes);
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let elapsed = t0.elapsed();
    let err = match result {
        Ok(_) => panic!("a hostile file of {} bytes was accepted", bytes.len()),
        Err(e) => e,
    };
    assert!(
        peak <= bytes.len() + SLACK,
        "{err}: allocated {peak} bytes for a {}-byte file (limit {})",
        bytes.len(),
        bytes.len() + SLACK
    );
    assert!(elapsed.as_millis() < 500, "{err}: took {elapsed:?}");
    assert!(!err.to_string().is_empty());
    (err, peak)
}

fn small_config() -> ModelConfig {
    ModelConfig {
        vocab_size: 64,
        d_model: 16,
        n_layers: 2,
        n_heads: 2,
        n_kv_heads: 1,
        d_ff: 8,
        n_experts: 2,
        top_k: 1,
        max_seq_len: 32,
        ..ModelConfig::tiny()
    }
}

fn valid() -> Vec<u8> {
    let config = small_config();
    let ckpt = Checkpoint { name: "t".into(), params: init_from_seed(&config, 1), config, tokenizer: "byte".into() };
    ckpt.to_bytes().expect("bytes")
}

/// A safetensors file with this header JSON and `data_len` bytes of data.
fn file(header: &serde_json::Value, data_len: usize) -> Vec<u8> {
    let json = header.to_string();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.resize(out.len() + data_len, 0);
    out
}

/// The valid file's header, as JSON.
fn header_of(bytes: &[u8]) -> (serde_json::Value, usize) {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).expect("json"), bytes.len() - 8 - n)
}

/// A header whose metadata carries `config` (every tensor of the valid file kept).
fn with_config(config: serde_json::Value) -> Vec<u8> {
    let bytes = valid();
    let (mut header, data) = header_of(&bytes);
    header["__metadata__"]["config"] = serde_json::Value::String(config.to_string());
    let mut out = file(&header, 0);
    out.extend_from_slice(&bytes[bytes.len() - data..]);
    out
}

#[test]
fn every_truncation_is_a_named_error() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = valid();
    assert!(Checkpoint::from_bytes(&bytes).is_ok());
    let mut n = 0;
    for len in (0..bytes.len()).step_by(7) {
        let (err, _) = refused(&bytes[..len]);
        assert!(matches!(err, CheckpointError::Format(_) | CheckpointError::Size { .. }), "{len}: {err}");
        n += 1;
    }
    println!("{n} truncations of a {}-byte checkpoint: all refused", bytes.len());
}

#[test]
fn oversized_and_inconsistent_headers_are_named_errors() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = valid();
    let (header, data) = header_of(&bytes);
    let tail = || bytes[bytes.len() - data..].to_vec();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Header lengths beyond the file, or absurd.
    for claimed in [u64::MAX, 1 << 40, bytes.len() as u64, 100_000_001] {
        let mut b = bytes.clone();
        b[..8].copy_from_slice(&claimed.to_le_bytes());
        cases.push(("header length", b));
    }
    cases.push(("not JSON", [&8u64.to_le_bytes()[..], b"{not json"].concat()));
    cases.push(("empty", Vec::new()));
    // A tensor whose offsets run past the data.
    let mut h = header.clone();
    let first = h.as_object().and_then(|o| o.keys().find(|k| *k != "__metadata__").cloned()).expect("a tensor");
    h[&first]["data_offsets"] = serde_json::json!([0, 1u64 << 50]);
    cases.push(("offsets past the end", [file(&h, 0), tail()].concat()));
    // A shape that does not match its byte range.
    let mut h = header.clone();
    h[&first]["shape"] = serde_json::json!([4_000_000_000u64, 4_000_000_000u64]);
    cases.push(("shape against offsets", [file(&h, 0), tail()].concat()));
    // The wrong dtype.
    let mut h = header.clone();
    h[&first]["dtype"] = serde_json::json!("F32");
    cases.push(("dtype", [file(&h, 0), tail()].concat()));
    // Metadata: no format, another format, no config, a config that is not JSON.
    for (key, value) in
        [("format", None), ("format", Some("switchyard-checkpoint/9")), ("config", None), ("config", Some("{{{"))]
    {
        let mut h = header.clone();
        match value {
            Some(v) => h["__metadata__"][key] = serde_json::json!(v),
            None => {
                h["__metadata__"].as_object_mut().expect("metadata").remove(key);
            }
        }
        cases.push(("metadata", [file(&h, 0), tail()].concat()));
    }
    // Configurations that declare absurd or inconsistent sizes, with the real tensors.
    let base = serde_json::to_value(small_config()).expect("config");
    let config = |field: &str, value: serde_json::Value| {
        let mut c = base.clone();
        c[field] = value;
        with_config(c)
    };
    for (field, value) in [
        ("n_layers", serde_json::json!(4_000_000_000u64)),
        ("max_seq_len", serde_json::json!(100_000_000)),
        ("n_experts", serde_json::json!(1u64 << 40)),
        ("d_model", serde_json::json!(1u64 << 33)),
        ("vocab_size", serde_json::json!(u64::MAX)),
        ("d_ff", serde_json::json!(10_000_000)),
        ("n_layers", serde_json::json!(-1)),
        ("n_layers", serde_json::json!(2.5)),
        ("n_layers", serde_json::json!(0)),
        ("n_heads", serde_json::json!(3)),
        ("rope_theta", serde_json::json!(-1.0)),
        ("top_k", serde_json::json!(99)),
        ("n_layers", serde_json::json!(3)),
        ("d_model", serde_json::json!(32)),
    ] {
        cases.push(("config", config(field, value)));
    }
    for (what, case) in &cases {
        let (err, peak) = refused(case);
        println!("{what}: {err} (peak {peak} bytes)");
    }
    // The size check names both numbers.
    let (err, _) = refused(&config("n_layers", serde_json::json!(3)));
    assert!(matches!(err, CheckpointError::Size { .. }), "{err}");
    let (err, _) = refused(&config("n_layers", serde_json::json!(4_000_000_000u64)));
    assert!(err.to_string().contains("`n_layers` is 4000000000, more than the 64"), "{err}");
    let (err, _) = refused(&config("max_seq_len", serde_json::json!(100_000_000)));
    assert!(err.to_string().contains("max_seq_len"), "{err}");
}

/// Thousands of seeded random edits of a real file: one to eight bytes overwritten, a span cut
/// out, or bytes inserted. Each is refused by name (an edit inside the tensor data fails the
/// content hash) without allocating more than the file.
#[test]
fn random_mutations_are_refused_without_large_allocations() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = valid();
    let mut x = 0x5eed_u64;
    let mut next = |n: usize| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((x >> 33) as usize) % n.max(1)
    };
    let (mut kinds, mut max_peak) = (std::collections::BTreeMap::<String, usize>::new(), 0);
    for i in 0..3000 {
        let mut b = bytes.clone();
        match i % 3 {
            0 => {
                for _ in 0..1 + next(8) {
                    let at = next(b.len());
                    b[at] = next(256) as u8;
                }
            }
            1 => {
                let at = next(b.len());
                let len = 1 + next(64);
                b.drain(at..(at + len).min(b.len()));
            }
            _ => {
                let at = next(b.len());
                let junk: Vec<u8> = (0..1 + next(64)).map(|_| next(256) as u8).collect();
                b.splice(at..at, junk);
            }
        }
        if b == bytes {
            continue;
        }
        if Checkpoint::from_bytes(&b).is_ok() {
            // A byte changed to itself's twin in the JSON's insignificant whitespace, say.
            continue;
        }
        let (err, peak) = refused(&b);
        max_peak = max_peak.max(peak);
        let kind = format!("{err:?}").split(['(', ' ', '{']).next().unwrap_or_default().to_string();
        *kinds.entry(kind).or_default() += 1;
    }
    println!("3000 mutations: {kinds:?}; largest allocation {max_peak} bytes for a {}-byte file", bytes.len());
    assert!(kinds.len() >= 3, "mutations should reach several checks: {kinds:?}");
}

/// The configuration reader alone, on JSON a hostile checkpoint or a hand-written file holds.
#[test]
fn configurations_are_checked_before_use() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ok = serde_json::to_string(&small_config()).expect("json");
    assert!(ModelConfig::from_json(&ok).is_ok());
    for bad in [
        String::new(),
        "[]".into(),
        "null".into(),
        ok[..ok.len() / 2].to_string(),
        ok.replace("\"n_layers\":2", "\"n_layers\":4000000000"),
        ok.replace("\"max_seq_len\":32", "\"max_seq_len\":100000000"),
        ok.replace("\"d_model\":16", "\"d_model\":1e9"),
        ok.replace("\"rms_eps\":0.00001", "\"rms_eps\":0"),
        ok.replace('}', ",\"extra\":1}"),
    ] {
        let err = ModelConfig::from_json(&bad).expect_err(&bad);
        assert!(!err.to_string().is_empty());
    }
}
