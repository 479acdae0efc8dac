//! `cargo xtask`: the project's set-up and test tasks, so that README's two commands work on a
//! fresh machine.
//!
//! - `cargo xtask serve`: install the web tool chain if missing, then `trunk serve` the app.
//! - `cargo xtask test`: install everything the tests need if missing, then run every check.
//! - `cargo xtask setup [web|browser]`: only the installation steps.
//! - `cargo xtask train [RECIPE...]`: retrain the tokenizer (if missing) and the shipped checkpoints.
//! - `cargo xtask cards [RECIPE...]`: evaluate the trained checkpoints, copy them into `assets/` and write
//!   their model cards.
//! - `cargo xtask train-samples`: write `assets/train/`, the in-page training samples.
//!
//! Every step says what it does before doing it. Versions are pinned here and in `Trunk.toml`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// trunk version (0.22 needs rustc 1.96).
const TRUNK_VERSION: &str = "0.21.14";
/// Debian packages for the browser and GPU-path tests.
const APT_PACKAGES: &[&str] = &["chromium", "chromium-driver", "mesa-vulkan-drivers", "libvulkan1"];

type Result<T = ()> = std::result::Result<T, String>;

/// The repository root. `cargo run` sets `CARGO_MANIFEST_DIR` at run time too; prefer it to the
/// compile-time value, so that a binary built from another clone sharing the target directory
/// still works on this one.
fn root() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn say(msg: &str) {
    eprintln!("\x1b[1;34m[xtask]\x1b[0m {msg}");
}

/// Runs a command in the repository root, failing on a non-zero exit.
fn run(cmd: &mut Command) -> Result {
    let shown = format!("{cmd:?}").replace('"', "");
    say(&format!("$ {shown}"));
    let status = cmd.current_dir(root()).status().map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("command failed ({status}): {shown}")) }
}

/// The first line a tool prints for `--version`, or `None` if it is not installed.
fn version_of(tool: &str) -> Option<String> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_string())
}

/// The version of `wasm-bindgen` in Cargo.lock: the CLI must match it exactly.
fn locked_wasm_bindgen() -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(v) = lines.next().and_then(|l| l.trim().strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_string());
        }
    }
    Err("Cargo.lock has no wasm-bindgen entry".into())
}

fn cargo() -> Command {
    // Through the rustup proxy, so that rust-toolchain.toml picks the toolchain.
    Command::new("cargo")
}

/// trunk, building into `<target dir>/wasm`: the wasm build keeps its own cargo target directory
/// so that it never waits on (or invalidates) the native build's lock and artifacts.
fn trunk() -> Command {
    let mut cmd = Command::new("trunk");
    cmd.env("CARGO_TARGET_DIR", target_dir().join("wasm"));
    cmd
}

/// `CARGO_TARGET_DIR`, or `target/` in the repository.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

fn ensure_web_tools() -> Result {
    say("checking the wasm target (rust-toolchain.toml pins 1.95.0 + wasm32-unknown-unknown)");
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    let want_trunk = format!("trunk {TRUNK_VERSION}");
    if version_of("trunk").as_deref() == Some(want_trunk.as_str()) {
        say(&format!("{want_trunk} is installed"));
    } else {
        say(&format!("installing {want_trunk} (about 15 minutes on 2 cores)"));
        run(cargo().args(["install", "--locked", "trunk", "--version", TRUNK_VERSION]))?;
    }
    let wb = locked_wasm_bindgen()?;
    let want_wb = format!("wasm-bindgen {wb}");
    if version_of("wasm-bindgen").as_deref() == Some(want_wb.as_str()) {
        say(&format!("wasm-bindgen-cli {wb} is installed (matches Cargo.lock)"));
    } else {
        // Not --locked: its lockfile pins a webpki-roots release the registry no longer serves.
        say(&format!("installing wasm-bindgen-cli {wb} to match Cargo.lock (about 8 minutes)"));
        run(cargo().args(["install", "wasm-bindgen-cli", "--version", &wb]))?;
    }
    Ok(())
}

fn apt_missing() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
        })
        .collect()
}

fn ensure_browser_tools() -> Result {
    let missing = apt_missing();
    if missing.is_empty() {
        say(&format!("Debian packages present: {}", APT_PACKAGES.join(", ")));
    } else {
        say(&format!("installing Debian packages: {}", missing.join(", ")));
        let sudo = |args: &[&str]| {
            let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
            let mut c = if is_root { Command::new(args[0]) } else { Command::new("sudo") };
            c.args(if is_root { &args[1..] } else { args });
            c.env("DEBIAN_FRONTEND", "noninteractive");
            c
        };
        run(&mut sudo(&["apt-get", "update", "-qq"]))?;
        let mut args = vec!["apt-get", "install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&missing);
        run(&mut sudo(&args))?;
    }
    let browser = root().join("tests/browser");
    // Every package the tests import; a tree installed before one was added installs again.
    if ["playwright-core", "axe-core"].iter().all(|p| browser.join("node_modules").join(p).is_dir()) {
        say("npm packages for the browser test are installed");
    } else {
        say("installing the browser test's npm packages from tests/browser/package-lock.json");
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--prefix"]).arg(&browser))?;
    }
    Ok(())
}

fn test() -> Result {
    ensure_web_tools()?;
    ensure_browser_tools()?;
    say("formatting");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    say("lints (clippy, warnings are errors)");
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    say("native unit and integration tests; numeric tests on flex and on wgpu (Vulkan, llvmpipe without a GPU)");
    let backends = std::env::var("SWITCHYARD_TEST_BACKENDS").unwrap_or_else(|_| "flex,wgpu".into());
    // wgpu's window-system probing complains loudly on headless machines without this.
    let xdg =
        std::env::var_os("XDG_RUNTIME_DIR").map_or_else(|| std::env::temp_dir().join("switchyard-xdg"), PathBuf::from);
    std::fs::create_dir_all(&xdg).map_err(|e| format!("creating {}: {e}", xdg.display()))?;
    run(cargo()
        .env("XDG_RUNTIME_DIR", &xdg)
        // The engine modules are wasm entry points with no native tests. The page's crate has
        // some (the palette's contrast, the charts' tables): about 2 minutes more when cold.
        .args(["test", "--release", "--workspace", "--exclude", "xtask"])
        .args([
            "--exclude",
            "switchyard-engine-cpu",
            "--exclude",
            "switchyard-engine-webgpu",
            "--exclude",
            "switchyard-engine-train",
        ])
        .env("SWITCHYARD_TEST_BACKENDS", &backends))?;
    say("wasm build through trunk");
    run(trunk().args(["build", "--release"]))?;
    say("browser test: headless Chromium with WebGPU on (SwiftShader) and off");
    run(Command::new("node").args(["--test", "--test-reporter=spec", "tests/browser/"]))?;
    say("all checks passed");
    Ok(())
}

/// The training corpus (read-only, next to the repository).
const CORPUS: &str = "../shared/corpus";
/// Flags shared by every shipped training run (the rest are `switchyard train`'s defaults).
const TRAIN_FLAGS: &[&str] = &["--seed", "1"];
/// Each shipped recipe: its training steps, its own router for `switchyard eval` and the
/// playground query of its view. THOR gets twice the steps: it trains one expert per layer per
/// pass, so each expert sees about a quarter of the updates (ARCHITECTURE.md, training decisions).
const RECIPES: &[(&str, &str, &[&str], &str)] = &[
    ("topk", "1800", &["--router", "topk"], "v=1&ckpt=topk&router=topk&k=2"),
    ("topk-global", "1800", &["--router", "topk"], "v=1&ckpt=topk-global&router=topk&k=2"),
    ("top-p", "1800", &["--router", "top-p", "--top-p", "0.4"], "v=1&ckpt=top-p&router=top_p&p=0.4"),
    ("lossfree", "1800", &["--router", "sigmoid"], "v=1&ckpt=lossfree&router=sigmoid&k=2&bias=true"),
    (
        "deepseek",
        "1800",
        &["--router", "topk", "--k", "3", "--no-renormalise"],
        "v=1&ckpt=deepseek&router=topk&k=3&norm=false",
    ),
    ("adamoe", "1800", &["--router", "topk", "--k", "4"], "v=1&ckpt=adamoe&router=topk&k=4"),
    ("moepp", "1800", &["--router", "topk", "--k", "2"], "v=1&ckpt=moepp&router=topk&k=2"),
    ("thor", "3600", &["--router", "thor", "--thor-mode", "token"], "v=1&ckpt=thor&router=thor&thor_mode=token"),
    (
        "smoe-dropout",
        "1800",
        &["--router", "smoe-dropout", "--k", "8"],
        "v=1&ckpt=smoe-dropout&router=smoe_dropout&k=8",
    ),
];
/// Other routers each card compares: (recipe, file label, eval flags).
const OTHER_ROUTERS: &[(&str, &str, &[&str])] = &[
    ("topk", "k1", &["--router", "topk", "--k", "1"]),
    ("topk", "thor", &["--router", "thor", "--thor-mode", "token"]),
    ("thor", "mean", &["--router", "thor", "--thor-mode", "mean"]),
    ("smoe-dropout", "k1", &["--router", "smoe-dropout", "--k", "1"]),
    ("smoe-dropout", "k2", &["--router", "smoe-dropout", "--k", "2"]),
    ("smoe-dropout", "k4", &["--router", "smoe-dropout", "--k", "4"]),
    ("topk-global", "k1", &["--router", "topk", "--k", "1"]),
    ("top-p", "k2", &["--router", "topk", "--k", "2"]),
    ("top-p", "p06", &["--router", "top-p", "--top-p", "0.6"]),
    ("lossfree", "nobias", &["--router", "sigmoid", "--no-bias"]),
    ("deepseek", "k2", &["--router", "topk", "--k", "2", "--no-renormalise"]),
    ("adamoe", "k2", &["--router", "topk", "--k", "2"]),
    ("moepp", "k1", &["--router", "topk", "--k", "1"]),
];

fn switchyard() -> Command {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release", "-p", "switchyard-cli", "--"]);
    cmd
}

/// Trains the tokenizer (unless assets/tokenizer.json exists) and the given recipes into runs/.
fn train(recipes: &[&str]) -> Result {
    let tokenizer = root().join("assets/tokenizer.json");
    if !tokenizer.exists() {
        say("training the BPE tokenizer");
        run(switchyard().args(["tokenizer", "--corpus", CORPUS, "--vocab", "4096", "-o"]).arg(&tokenizer))?;
    }
    for (name, steps, _, _) in RECIPES.iter().filter(|(n, ..)| recipes.is_empty() || recipes.contains(n)) {
        say(&format!("training `{name}` into runs/{name} (resumes if a state is there)"));
        let out = root().join("runs").join(name);
        let mut cmd = switchyard();
        cmd.args(["train", "--recipe", name, "--corpus", CORPUS, "--tokenizer"]).arg(&tokenizer).arg("--out").arg(&out);
        cmd.args(["--steps", steps]).args(TRAIN_FLAGS);
        if out.join("state/state.json").exists() {
            cmd.arg("--resume");
        }
        run(&mut cmd)?;
    }
    Ok(())
}

/// Copies each trained checkpoint into assets/, evaluates it with its own router and the others
/// listed, and writes assets/NAME.card.{md,json}.
fn cards(recipes: &[&str]) -> Result {
    for (name, _, own, query) in RECIPES.iter().filter(|(n, ..)| recipes.is_empty() || recipes.contains(n)) {
        let runs = root().join("runs").join(name);
        let ckpt = root().join("assets").join(format!("{name}.safetensors"));
        let card = root().join("assets").join(format!("{name}.card.json"));
        // Without the training run, re-evaluate the shipped checkpoint and keep its card's
        // training part; the reports go to the target directory then.
        let from_card = !runs.exists() && card.exists() && ckpt.exists();
        let reports = if from_card { target_dir().join("cards").join(name) } else { runs.clone() };
        if from_card {
            say(&format!("no runs/{name}: re-evaluating assets/{name}.safetensors, keeping its card's training part"));
            std::fs::create_dir_all(&reports).map_err(|e| format!("{}: {e}", reports.display()))?;
        } else {
            let trained = std::fs::read(runs.join(format!("{name}.safetensors")))
                .map_err(|e| format!("runs/{name}/{name}.safetensors: {e} (run `cargo xtask train` first)"))?;
            if std::fs::read(&ckpt).ok().as_ref() != Some(&trained) {
                std::fs::write(&ckpt, &trained).map_err(|e| format!("{}: {e}", ckpt.display()))?;
            }
        }
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let eval = |label: &str, flags: &[&str]| -> Result<PathBuf> {
            let json = reports.join(format!("eval-{label}.json"));
            // A report newer than the checkpoint is reused (delete it to force a new one).
            if let (Some(report), Some(weights)) = (modified(&json), modified(&ckpt))
                && report > weights
            {
                say(&format!("reusing {}", json.display()));
                return Ok(json);
            }
            say(&format!("evaluating `{name}` with {}", flags.join(" ")));
            run(switchyard()
                .args(["eval", "--corpus", CORPUS, "--checkpoint"])
                .arg(&ckpt)
                .args(flags)
                .arg("--json")
                .arg(&json))?;
            Ok(json)
        };
        let main = eval("own", own)?;
        let mut cmd = switchyard();
        cmd.arg("card");
        if from_card {
            cmd.arg("--from-card").arg(&card);
        } else {
            cmd.arg("--run").arg(&runs);
        }
        cmd.arg("--eval").arg(&main).args(["--query", query]);
        // How the runs shared the machine, for the card's wall-time line.
        if let Ok(note) = std::env::var("SWITCHYARD_CARD_NOTE") {
            cmd.args(["--note", &note]);
        }
        for (_, label, flags) in OTHER_ROUTERS.iter().filter(|(r, _, _)| r == name) {
            cmd.arg("--also").arg(eval(label, flags)?);
        }
        run(cmd.arg("-o").arg(root().join("assets").join(format!("{name}.card"))))?;
    }
    say("README's comparison tables (every shipped card):");
    let mut table = switchyard();
    table.arg("cards-table");
    for (name, ..) in RECIPES {
        let card = root().join("assets").join(format!("{name}.card.json"));
        if card.exists() {
            table.arg(card);
        } else {
            say(&format!("(no assets/{name}.card.json yet: left out of the table)"));
        }
    }
    run(&mut table)
}

fn serve() -> Result {
    ensure_web_tools()?;
    say("serving the playground at http://127.0.0.1:8080/ (Ctrl-C stops)");
    let mut cmd = trunk();
    cmd.args(["serve", "--release"]);
    if std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
        || cfg!(target_os = "macos")
    {
        cmd.arg("--open");
    }
    run(&mut cmd)
}

/// The page benchmark (CPU and WebGPU paths, sizes) next to the native CLI's numbers.
fn bench() -> Result {
    ensure_web_tools()?;
    ensure_browser_tools()?;
    say("building the native CLI (the benchmark compares against its decode speed)");
    run(cargo().args(["build", "--release", "-p", "switchyard-cli"]))?;
    say("wasm build through trunk");
    run(trunk().args(["build", "--release"]))?;
    say("benchmark of the page in headless Chromium (prints numbers; not a test)");
    run(Command::new("node").arg("tests/browser/bench.mjs"))?;
    say("benchmark of the Train view against the native trainer");
    run(Command::new("node").arg("tests/browser/bench-train.mjs"))?;
    say("benchmark of the read-only mode on a large recorded trace (4096 tokens × 48 layers × 64 experts)");
    run(Command::new("node").arg("tests/browser/bench-trace.mjs"))
}

/// Bytes taken from the start of each corpus file for the in-page training samples (12 files:
/// 1.2 MB, under the 1.5 MB the project allows).
const SAMPLE_BYTES: usize = 100_000;

/// Writes `assets/train/`: the first [`SAMPLE_BYTES`] of each corpus file (cut after its last
/// line break; all inside the training split, which is the first ~95 %), the corpus' licence
/// texts and sources, and `SOURCES.md` saying exactly what was taken.
fn train_samples() -> Result {
    let corpus = root().join(CORPUS);
    let out = root().join("assets/train");
    let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    std::fs::create_dir_all(out.join("LICENSES")).map_err(|e| err("assets/train", e))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .map_err(|e| err(CORPUS, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut rows = String::new();
    let mut total = 0;
    for path in &files {
        let bytes = std::fs::read(path).map_err(|e| err(&path.display().to_string(), e))?;
        let train_end = bytes.len() * 95 / 100; // the split starts at the first line after this
        let limit = SAMPLE_BYTES.min(train_end);
        let cut = bytes[..limit].iter().rposition(|&b| b == b'\n').map_or(limit, |i| i + 1);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        std::fs::write(out.join(name), &bytes[..cut]).map_err(|e| err(name, e))?;
        rows.push_str(&format!(
            "| `{name}` | its first {cut} of {} bytes (its training split is at least the first {train_end}) |\n",
            bytes.len()
        ));
        total += cut;
    }
    for entry in std::fs::read_dir(corpus.join("LICENSES")).map_err(|e| err("LICENSES", e))?.flatten() {
        std::fs::copy(entry.path(), out.join("LICENSES").join(entry.file_name())).map_err(|e| err("LICENSES", e))?;
    }
    std::fs::copy(corpus.join("SOURCES.md"), out.join("CORPUS-SOURCES.md")).map_err(|e| err("SOURCES.md", e))?;
    let text = format!(
        "# In-page training samples\n\nWritten by `cargo xtask train-samples` from the shared corpus (`../shared/corpus`). \
         Each file is the first {SAMPLE_BYTES} bytes of the corpus file of the same name, cut after its last line break: \
         text from the start of the file, always inside its training split (the first ~95 %, `CORPUS-SOURCES.md` gives \
         the rule), never its validation split. Nothing else was changed. {total} bytes in all.\n\n\
         | file | what was taken |\n|---|---|\n{rows}\n\
         Sources and licences: `CORPUS-SOURCES.md` is the corpus' own `SOURCES.md` (every source of every file, with its \
         licence), and `LICENSES/` its licence texts, copied whole (index: `LICENSES/README.md`), so each sample carries \
         the notices of every source it can draw on. All are public domain, CC0, MIT, ISC or PSF-2.0.\n"
    );
    std::fs::write(out.join("SOURCES.md"), text).map_err(|e| err("SOURCES.md", e))?;
    say(&format!("wrote {} samples, {total} bytes, into assets/train/", files.len()));
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["test"] => test(),
        ["serve"] => serve(),
        ["setup"] => ensure_web_tools().and_then(|()| ensure_browser_tools()),
        ["setup", "web"] => ensure_web_tools(),
        ["setup", "browser"] => ensure_browser_tools(),
        ["train", recipes @ ..] => train(recipes),
        ["cards", recipes @ ..] => cards(recipes),
        ["bench"] => bench(),
        ["train-samples"] => train_samples(),
        _ => Err(
            "usage: cargo xtask <serve | test | bench | setup [web|browser] | train [RECIPE...] | cards [RECIPE...] | train-samples>"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}
