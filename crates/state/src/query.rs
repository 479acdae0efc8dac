//! Encoding the state as a query string and decoding it back, with problems instead of panics.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use switchyard_routing::limits::{MAX_CONTEXT, MAX_EXPERTS, MAX_LAYERS, MAX_VOCAB};
use switchyard_routing::{
    Bounds, Capacity, CapacityFormula, Decoding, Interventions, Priority, RouterSpec, SampleConfig, ScmoeConfig,
    SecondPolicy, SmoeDense, ThorMode, WeakMode, bounds,
};

use crate::names::Named;
use crate::{
    Backend, Control, Labelled, LabelledRefusal, MAX_LABELLED, MAX_LABELLED_CHARS, MAX_PROMPT_CHARS, Panel,
    PlaygroundState, Shade, TOUR_STEPS, TrainSettings, VERSION, Variant, View, valid_checkpoint_name, valid_folder_url,
    valid_origin,
};

/// Most interventions a link carries.
const MAX_INTERVENTIONS: usize = 1024;

/// Something in a query string that could not be used as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The parameter (query key).
    pub param: String,
    /// What was wrong and what was used instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.param, self.message)
    }
}

// ---------- encoding ----------

/// Prefix of configuration B's keys (router A/B).
const B: &str = "b.";
/// Prefix of a labelled prompt's key (`add.<label>=<text>`).
const ADD: &str = "add.";

fn list(v: &[usize]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn pairs(v: &[(usize, usize)]) -> String {
    v.iter().map(|(l, e)| format!("{l}:{e}")).collect::<Vec<_>>().join(",")
}

fn router_pairs(r: &RouterSpec, out: &mut Vec<(&'static str, String)>) {
    let mut put = |k: &'static str, v: String| out.push((k, v));
    match r {
        RouterSpec::TopK { k, norm_topk_prob, capacity } => {
            put("router", "topk".into());
            put("k", k.to_string());
            put("norm", norm_topk_prob.to_string());
            if let Some(c) = capacity {
                put("cf", c.factor.to_string());
                put("cap_formula", c.formula.name().into());
                put("min_cap", c.min_capacity.to_string());
                put("priority", c.priority.name().into());
            }
        }
        RouterSpec::GShard { policy, threshold, capacity_factor } => {
            put("router", "gshard".into());
            put("policy", policy.name().into());
            put("theta", threshold.to_string());
            put("cf", capacity_factor.to_string());
        }
        RouterSpec::TopP { p } => {
            put("router", "top_p".into());
            put("p", p.to_string());
        }
        RouterSpec::Thor { mode } => {
            put("router", "thor".into());
            put("thor_mode", mode.name().into());
        }
        RouterSpec::SmoeDropout { k, init_std, dense } => {
            put("router", "smoe_dropout".into());
            put("k", k.to_string());
            put("init_std", init_std.to_string());
            put("dense", dense.name().into());
        }
        RouterSpec::ExpertChoice { capacity_factor, min_capacity } => {
            put("router", "expert_choice".into());
            put("cf", capacity_factor.to_string());
            put("min_cap", min_capacity.to_string());
        }
        RouterSpec::Hash => put("router", "hash".into()),
        RouterSpec::Ranks { ranks } => {
            put("router", "ranks".into());
            put("ranks", list(ranks));
        }
        RouterSpec::RandomOne => put("router", "random_one".into()),
        RouterSpec::Sigmoid { k, bias } => {
            put("router", "sigmoid".into());
            put("k", k.to_string());
            put("bias", bias.to_string());
        }
    }
}

fn decoding_pairs(d: &Decoding, out: &mut Vec<(&'static str, String)>) {
    let mut put = |k: &'static str, v: String| out.push((k, v));
    match d {
        Decoding::Greedy => put("decode", "greedy".into()),
        Decoding::Sample(c) => {
            put("decode", "sample".into());
            put("temperature", c.temperature.to_string());
            put("sample_k", c.top_k.to_string());
            put("sample_p", c.top_p.to_string());
        }
        Decoding::SelfContrast(c) => {
            put("decode", "scmoe".into());
            put("strong", list(&c.strong_ranks));
            put(
                "weak",
                match &c.weak {
                    WeakMode::Ranks { ranks } => list(ranks),
                    WeakMode::Random => "random".into(),
                },
            );
            put("alpha", c.alpha.to_string());
            put("beta", c.beta.to_string());
            put("tau_s", c.tau_strong.to_string());
            put("tau_w", c.tau_weak.to_string());
            put("ban_eos", c.ban_eos.to_string());
            put("scmoe_sample", c.sample.to_string());
        }
    }
}

/// The query keys of a router and decoding (configuration A's or B's, without prefix).
pub(crate) fn variant_query(v: &Variant) -> String {
    let mut kv = Vec::new();
    router_pairs(&v.router, &mut kv);
    decoding_pairs(&v.decoding, &mut kv);
    form_urlencoded::Serializer::new(String::new()).extend_pairs(kv).finish()
}

/// The canonical query string.
pub(crate) fn encode(s: &PlaygroundState) -> String {
    let mut kv: Vec<(&'static str, String)> = vec![("v", VERSION.to_string()), ("ckpt", s.checkpoint.clone())];
    if let Some(h) = &s.checkpoint_hash {
        kv.push(("ckpt_hash", h.clone()));
    }
    if let Some(url) = &s.hf {
        kv.push(("hf", url.clone()));
    }
    if let Some(url) = &s.trace {
        kv.push(("trace", url.clone()));
    }
    router_pairs(&s.router, &mut kv);
    if !s.interventions.ablate.is_empty() {
        kv.push(("ablate", pairs(&s.interventions.ablate)));
    }
    if !s.interventions.force.is_empty() {
        kv.push(("force", pairs(&s.interventions.force)));
    }
    kv.push(("seed", s.seed.to_string()));
    decoding_pairs(&s.decoding, &mut kv);
    kv.push(("gen", s.generate.to_string()));
    // Written only when forced: where the model runs is not part of what a link shows.
    if s.backend != Backend::Auto {
        kv.push(("backend", s.backend.name().into()));
    }
    let mut b = Vec::new();
    if let Some(v) = &s.compare {
        router_pairs(&v.router, &mut b);
        decoding_pairs(&v.decoding, &mut b);
    }
    let mut view = vec![("layer", s.view.layer.to_string()), ("panel", s.view.panel.name().into())];
    if let Some(t) = s.view.token {
        view.push(("token", t.to_string()));
    }
    if s.view.shade != Shade::Expert {
        view.push(("shade", s.view.shade.name().into()));
    }
    if let Some(step) = s.view.tour {
        view.push(("tour", step.to_string()));
    }
    if let Some(e) = s.view.embed {
        view.push(("embed", e.name().into()));
        if !s.view.show.is_empty() {
            view.push(("show", s.view.show.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")));
        }
        if let Some(origin) = &s.view.origin {
            view.push(("origin", origin.clone()));
        }
    }
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &kv {
        ser.append_pair(k, v);
    }
    for (k, v) in &b {
        ser.append_pair(&format!("{B}{k}"), v);
    }
    for (k, v) in &view {
        ser.append_pair(k, v);
    }
    for l in &s.labelled {
        ser.append_pair(&format!("{ADD}{}", l.label), &l.text);
    }
    for (k, v) in train_pairs(&s.train) {
        ser.append_pair(&format!("{TRAIN}{k}"), &v);
    }
    ser.append_pair("prompt", &s.prompt);
    ser.finish()
}

/// Prefix of the Train view's keys.
const TRAIN: &str = "train.";

/// The training settings that differ from the defaults, as `(key, value)` (without `train.`).
fn train_pairs(t: &TrainSettings) -> Vec<(&'static str, String)> {
    let d = TrainSettings::default();
    let mut kv = Vec::new();
    let mut put = |k: &'static str, changed: bool, v: String| {
        if changed {
            kv.push((k, v));
        }
    };
    put("e", t.experts != d.experts, t.experts.to_string());
    put("k", t.k != d.k, t.k.to_string());
    put("d", t.width != d.width, t.width.to_string());
    put("layers", t.layers != d.layers, t.layers.to_string());
    put("recipe", t.recipe != d.recipe, t.recipe.name().into());
    put("lbl", t.lbl != d.lbl, t.lbl.to_string());
    put("z", t.z != d.z, t.z.to_string());
    put("lr", t.lr != d.lr, t.lr.to_string());
    put("seed", t.seed != d.seed, t.seed.to_string());
    put("steps", t.steps != d.steps, t.steps.to_string());
    let mix: Vec<String> = t.mix.iter().filter(|(_, w)| *w != 1.0).map(|(n, w)| format!("{n}:{w}")).collect();
    put("mix", !mix.is_empty(), mix.join(","));
    kv
}

/// The `train.*` keys, each checked against its range (a bad one is the default, with a problem).
fn read_train(r: &mut Reader) -> TrainSettings {
    let d = TrainSettings::default();
    let experts = r.num("train.e", d.experts, "a number of experts from 2 to 16", |v| (2..=16).contains(v));
    let k = r.num("train.k", d.k.min(experts), "a number of experts per token, at most train.e", |v| {
        (1..=experts).contains(v)
    });
    let mut mix = Vec::new();
    if let Some(raw) = r.raw("train.mix") {
        for item in raw.split(',').filter(|x| !x.trim().is_empty()).take(32) {
            let pair =
                item.split_once(':').and_then(|(n, w)| Some((n.trim().to_string(), w.trim().parse::<f32>().ok()?)));
            match pair {
                Some((n, w)) if valid_checkpoint_name(&n) && (0.0..=100.0).contains(&w) => mix.push((n, w)),
                _ => r.problem(
                    "train.mix",
                    format!("`{}` is not domain:weight (a weight from 0 to 100); ignored", clip(item)),
                ),
            }
        }
    }
    TrainSettings {
        experts,
        k,
        width: r.num("train.d", d.width, "a width from 32 to 128, a multiple of 8", |v| {
            (32..=128).contains(v) && v % 8 == 0
        }),
        layers: r.num("train.layers", d.layers, "a number of layers from 1 to 4", |v| (1..=4).contains(v)),
        recipe: r.named("train.recipe", d.recipe),
        lbl: r.num("train.lbl", d.lbl, "a coefficient from 0 to 1", |v: &f32| (0.0..=1.0).contains(v)),
        z: r.num("train.z", d.z, "a coefficient from 0 to 0.1", |v: &f32| (0.0..=0.1).contains(v)),
        lr: r.num("train.lr", d.lr, "a learning rate from 0.00001 to 0.1", |v: &f64| (1e-5..=0.1).contains(v)),
        seed: r.num("train.seed", d.seed, "a whole number from 0 to 18446744073709551615", |_| true),
        steps: r.num("train.steps", d.steps, "a number of steps from 1 to 100000", |v| (1..=100_000).contains(v)),
        mix,
    }
}

// ---------- decoding ----------

/// The parameters of one query, consumed as they are read; what is left is reported.
struct Reader {
    map: BTreeMap<String, String>,
    problems: Vec<Problem>,
}

impl Reader {
    fn problem(&mut self, param: &str, message: String) {
        // Keys come from the link too: shortened and escaped like values.
        self.problems.push(Problem { param: clip(param), message });
    }

    fn raw(&mut self, key: &str) -> Option<String> {
        self.map.remove(key)
    }

    /// A value parsed with `parse`, accepted by `ok`, or `default` with a problem.
    fn value<T: fmt::Display + Clone>(
        &mut self,
        key: &str,
        default: T,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
        ok: impl Fn(&T) -> bool,
    ) -> T {
        match self.raw(key) {
            None => default,
            Some(raw) => match parse(raw.trim()) {
                Some(v) if ok(&v) => v,
                _ => {
                    self.problem(key, format!("`{}` is not {what}; using {default}", clip(&raw)));
                    default
                }
            },
        }
    }

    fn num<T: FromStr + fmt::Display + Clone>(
        &mut self,
        key: &str,
        default: T,
        what: &str,
        ok: impl Fn(&T) -> bool,
    ) -> T {
        self.value(key, default, what, |s| s.parse().ok(), ok)
    }

    /// A real value inside `b` (the model crate's table, shared with `validate`).
    fn bounded(&mut self, key: &str, default: f32, b: Bounds) -> f32 {
        self.num(key, default, b.text, |v: &f32| b.contains(*v))
    }

    fn flag(&mut self, key: &str, default: bool) -> bool {
        self.value(key, default, "true or false", |s| s.parse().ok(), |_| true)
    }

    fn named<T: Named + PartialEq + fmt::Debug>(&mut self, key: &str, default: T) -> T {
        match self.raw(key) {
            None => default,
            Some(raw) => T::parse(raw.trim()).unwrap_or_else(|| {
                self.problem(key, format!("`{}` is not one of {}; using {}", clip(&raw), T::choices(), default.name()));
                default
            }),
        }
    }

    /// A rank list: 1 to 256 ranks below 256, each once (a repeated rank is used once, with a
    /// problem: it would send a token to one expert twice).
    fn ranks(&mut self, key: &str, default: Vec<usize>) -> Vec<usize> {
        let shown = list(&default);
        let Some(raw) = self.raw(key) else { return default };
        let parsed: Option<Vec<usize>> = raw.split(',').map(|x| x.trim().parse().ok()).collect();
        match parsed {
            Some(v) if !v.is_empty() && v.len() <= MAX_EXPERTS && v.iter().all(|&r| r < MAX_EXPERTS) => {
                let mut once = Vec::with_capacity(v.len());
                for r in v {
                    if !once.contains(&r) {
                        once.push(r);
                    }
                }
                if once.len() < raw.split(',').count() {
                    self.problem(
                        key,
                        format!("`{}` names a rank twice; using {} (each rank once)", clip(&raw), list(&once)),
                    );
                }
                once
            }
            _ => {
                self.problem(
                    key,
                    format!(
                        "`{}` is not a comma-separated list of ranks below {MAX_EXPERTS}; using {shown}",
                        clip(&raw)
                    ),
                );
                default
            }
        }
    }

    fn pairs(&mut self, key: &str) -> Vec<(usize, usize)> {
        let Some(raw) = self.raw(key) else { return Vec::new() };
        let mut out = Vec::new();
        for item in raw.split(',').filter(|x| !x.trim().is_empty()) {
            let pair: Option<(usize, usize)> =
                item.split_once(':').and_then(|(l, e)| Some((l.trim().parse().ok()?, e.trim().parse().ok()?)));
            match pair {
                Some((l, e)) if l < MAX_LAYERS && e < MAX_EXPERTS && out.len() < MAX_INTERVENTIONS => out.push((l, e)),
                Some(_) if out.len() >= MAX_INTERVENTIONS => {
                    self.problem(key, format!("at most {MAX_INTERVENTIONS} interventions; `{}` ignored", clip(item)))
                }
                _ => self.problem(
                    key,
                    format!(
                        "`{}` is not LAYER:EXPERT (a layer below {MAX_LAYERS}, an expert below {MAX_EXPERTS}); ignored",
                        clip(item)
                    ),
                ),
            }
        }
        out
    }
}

/// A value shortened for a message, with invisible and direction-changing characters escaped
/// (a hostile link must not make the banner say something else).
fn clip(s: &str) -> String {
    let short: String = s.chars().take(40).collect();
    let mut c = switchyard_routing::record::text::visible(&short);
    if s.chars().count() > 40 {
        c.push('…');
    }
    c
}

fn read_router(r: &mut Reader) -> RouterSpec {
    let kind = r.raw("router").unwrap_or_else(|| "topk".into());
    let k = |r: &mut Reader, d: usize| {
        r.num("k", d, "a whole number of experts from 1 to 256", |v: &usize| (1..=MAX_EXPERTS).contains(v))
    };
    let min_cap = |r: &mut Reader| r.num("min_cap", 1, "a whole number up to 32768", |v: &usize| *v <= MAX_CONTEXT);
    match kind.trim() {
        "topk" => {
            let k = k(r, 2);
            let norm = r.flag("norm", true);
            let capacity = r.map.contains_key("cf").then(|| Capacity {
                factor: r.bounded("cf", 2.0, bounds::CAPACITY_FACTOR),
                formula: r.named("cap_formula", CapacityFormula::Mtf),
                min_capacity: min_cap(r),
                priority: r.named("priority", Priority::Position),
            });
            RouterSpec::TopK { k, norm_topk_prob: norm, capacity }
        }
        "switch" => RouterSpec::switch(),
        "gshard" => RouterSpec::GShard {
            policy: r.named("policy", SecondPolicy::Random),
            threshold: r.bounded("theta", 0.2, bounds::GSHARD_THRESHOLD),
            capacity_factor: r.bounded("cf", 2.0, bounds::CAPACITY_FACTOR),
        },
        "top_p" => RouterSpec::TopP { p: r.bounded("p", 0.4, bounds::TOP_P) },
        "thor" => RouterSpec::Thor { mode: r.named("thor_mode", ThorMode::Token) },
        "smoe_dropout" => RouterSpec::SmoeDropout {
            k: k(r, 2),
            init_std: r.bounded("init_std", 0.02, bounds::INIT_STD),
            dense: r.named("dense", SmoeDense::Softmax),
        },
        "expert_choice" => RouterSpec::ExpertChoice {
            capacity_factor: r.bounded("cf", 2.0, bounds::CAPACITY_FACTOR),
            min_capacity: min_cap(r),
        },
        "hash" => RouterSpec::Hash,
        "ranks" => RouterSpec::Ranks { ranks: r.ranks("ranks", vec![0, 1]) },
        "random_one" => RouterSpec::RandomOne,
        "sigmoid" => RouterSpec::Sigmoid { k: k(r, 2), bias: r.flag("bias", true) },
        other => {
            r.problem(
                "router",
                format!(
                    "`{}` is not a router (topk | switch | gshard | top_p | thor | smoe_dropout | expert_choice | hash | ranks | random_one | sigmoid); using topk",
                    clip(other)
                ),
            );
            RouterSpec::TopK { k: k(r, 2), norm_topk_prob: r.flag("norm", true), capacity: None }
        }
    }
}

fn read_decoding(r: &mut Reader) -> Decoding {
    let mode = r.raw("decode").unwrap_or_else(|| "greedy".into());
    match mode.trim() {
        "greedy" => Decoding::Greedy,
        "sample" => Decoding::Sample(SampleConfig {
            temperature: r.bounded("temperature", 1.0, bounds::TEMPERATURE),
            top_k: r.num("sample_k", 0, "a whole number up to 262144", |v: &usize| *v <= MAX_VOCAB),
            top_p: r.bounded("sample_p", 1.0, bounds::SAMPLE_P),
        }),
        "scmoe" => {
            let d = ScmoeConfig::default();
            let weak = match r.map.get("weak").map(|w| w.trim() == "random") {
                Some(true) => {
                    r.raw("weak");
                    WeakMode::Random
                }
                _ => WeakMode::Ranks { ranks: r.ranks("weak", vec![0]) },
            };
            Decoding::SelfContrast(ScmoeConfig {
                strong_ranks: r.ranks("strong", d.strong_ranks),
                weak,
                alpha: r.bounded("alpha", d.alpha, bounds::ALPHA),
                beta: r.bounded("beta", d.beta, bounds::BETA),
                tau_strong: r.bounded("tau_s", d.tau_strong, bounds::TEMPERATURE),
                tau_weak: r.bounded("tau_w", d.tau_weak, bounds::TEMPERATURE),
                ban_eos: r.flag("ban_eos", d.ban_eos),
                eos_id: None,
                sample: r.flag("scmoe_sample", d.sample),
            })
        }
        other => {
            r.problem("decode", format!("`{}` is not one of greedy | sample | scmoe; using greedy", clip(other)));
            Decoding::Greedy
        }
    }
}

/// Configuration B from the `b.` keys (absent when there are none).
fn read_variant(r: &mut Reader) -> Option<Variant> {
    let keys: Vec<String> = r.map.keys().filter(|k| k.starts_with(B)).cloned().collect();
    if keys.is_empty() {
        return None;
    }
    if !r.map.contains_key("b.router") && !r.map.contains_key("b.decode") {
        for key in keys {
            r.map.remove(&key);
            r.problem(&key, "configuration B starts with b.router or b.decode; ignored".into());
        }
        return None;
    }
    let map =
        keys.into_iter().filter_map(|k| r.map.remove_entry(&k)).map(|(k, v)| (k[B.len()..].to_string(), v)).collect();
    let mut sub = Reader { map, problems: Vec::new() };
    let variant = Variant { router: read_router(&mut sub), decoding: read_decoding(&mut sub) };
    let leftover: Vec<String> = std::mem::take(&mut sub.map).into_keys().collect();
    for key in leftover {
        sub.problem(&key, "not a parameter of configuration B's router or decoding; ignored".into());
    }
    r.problems.extend(sub.problems.into_iter().map(|p| Problem { param: format!("{B}{}", p.param), ..p }));
    Some(variant)
}

/// The labelled prompts of the domain view (`add.<label>=<text>`), in label order.
fn read_labelled(r: &mut Reader) -> Vec<Labelled> {
    let keys: Vec<String> = r.map.keys().filter(|k| k.starts_with(ADD)).cloned().collect();
    let mut out = Vec::new();
    for key in keys {
        let text = r.raw(&key).unwrap_or_default();
        let label = &key[ADD.len()..];
        let message = match Labelled::check(label, &text, out.len()) {
            Ok(()) => {
                out.push(Labelled { label: label.to_string(), text });
                continue;
            }
            Err(LabelledRefusal::Label) => "a label is 1 to 24 letters, digits, `_` or `-`; prompt ignored".into(),
            Err(LabelledRefusal::Empty) => "the prompt is empty; ignored".into(),
            Err(LabelledRefusal::TooLong) => {
                format!("the prompt is longer than {MAX_LABELLED_CHARS} characters; ignored")
            }
            Err(LabelledRefusal::TooMany) => format!("at most {MAX_LABELLED} labelled prompts; ignored"),
        };
        r.problem(&key, message);
    }
    out
}

/// The query of `text`: after the first `?` and before `#` when `text` is a URL (something
/// before the `?` that holds no `=` or `&`, such as `https://host/path/`), the text after a
/// leading `?`, or the text itself. So `prompt=Why?` and `prompt=C#` keep their `?` and `#`.
fn query_part(text: &str) -> &str {
    if let Some(q) = text.strip_prefix('?') {
        return q;
    }
    match text.split_once('?') {
        Some((prefix, rest)) if !prefix.contains('=') && !prefix.contains('&') => {
            rest.split('#').next().unwrap_or_default()
        }
        // A URL without a query: nothing to read.
        None if text.split('=').next().is_some_and(|head| head.contains("://")) => "",
        _ => text,
    }
}

/// Reads a query (or a URL holding one) into a valid state and its problems.
pub(crate) fn decode(input: &[u8]) -> (PlaygroundState, Vec<Problem>) {
    let text = String::from_utf8_lossy(input);
    let query = query_part(&text);
    let mut r = Reader { map: BTreeMap::new(), problems: Vec::new() };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k.is_empty() && v.is_empty() {
            continue;
        }
        if r.map.insert(k.to_string(), v.to_string()).is_some() {
            r.problem(&k, "given more than once; the last value is used".into());
        }
    }
    let d = PlaygroundState::default();
    match r.raw("v") {
        None => r.problem("v", format!("no format version; reading as version {VERSION}")),
        Some(v) if v.trim() == VERSION.to_string() => {}
        Some(v) => r.problem(
            "v",
            format!(
                "this link is format version `{}`; this Switchyard reads version {VERSION}, so settings it does not know are listed here and left out",
                clip(&v)
            ),
        ),
    }
    let checkpoint = match r.raw("ckpt") {
        Some(c) if valid_checkpoint_name(c.trim()) => c.trim().to_string(),
        Some(c) => {
            r.problem(
                "ckpt",
                format!("`{}` is not a checkpoint name (1 to 64 of A-Z a-z 0-9 _ -); using {}", clip(&c), d.checkpoint),
            );
            d.checkpoint.clone()
        }
        None => d.checkpoint.clone(),
    };
    let checkpoint_hash = r.value(
        "ckpt_hash",
        String::new(),
        "a hexadecimal hash prefix",
        |s| Some(s.to_ascii_lowercase()),
        |s| (4..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit()),
    );
    let hf = address(&mut r, "hf", "a model folder");
    let trace = address(&mut r, "trace", "a trace file");
    let router = read_router(&mut r);
    let compare = read_variant(&mut r);
    let labelled = read_labelled(&mut r);
    let interventions = Interventions { ablate: r.pairs("ablate"), force: r.pairs("force") };
    let seed = r.num("seed", 0u64, "a whole number from 0 to 18446744073709551615", |_| true);
    let decoding = read_decoding(&mut r);
    let generate = r.num("gen", 0usize, "a whole number of tokens up to 32768", |v| *v <= MAX_CONTEXT);
    let backend = r.named("backend", Backend::Auto);
    let view = read_view(&mut r);
    let train = read_train(&mut r);
    let prompt = match r.raw("prompt") {
        Some(p) if p.chars().count() > MAX_PROMPT_CHARS => {
            r.problem(
                "prompt",
                format!(
                    "the prompt is {} characters long; the playground takes at most {MAX_PROMPT_CHARS}, so it was not used",
                    p.chars().count()
                ),
            );
            String::new()
        }
        p => p.unwrap_or_default(),
    };
    let leftover: Vec<String> = std::mem::take(&mut r.map).into_keys().collect();
    for key in leftover {
        r.problem(&key, "not a parameter of this router, decoding mode or version; ignored".into());
    }
    let state = PlaygroundState {
        checkpoint,
        checkpoint_hash: (!checkpoint_hash.is_empty()).then_some(checkpoint_hash),
        router,
        interventions,
        decoding,
        generate,
        seed,
        prompt,
        view,
        compare,
        labelled,
        backend,
        train,
        hf,
        trace,
    };
    (state, r.problems)
}

/// An http(s) address (`hf=`, `trace=`), or none.
fn address(r: &mut Reader, key: &str, what: &str) -> Option<String> {
    let what = format!("the http(s) address of {what} (at most 2000 characters, no spaces or quotes)");
    let url = r.value(key, String::new(), &what, |s| Some(s.to_string()), |s| valid_folder_url(s));
    (!url.is_empty()).then_some(url)
}

/// The view keys: layer, panel, token, and embed mode with its controls and origin.
fn read_view(r: &mut Reader) -> View {
    let mut view = View {
        layer: r.num("layer", 0usize, "a layer number below 64", |v| *v < MAX_LAYERS),
        panel: r.named("panel", Panel::Tokens),
        token: r
            .map
            .contains_key("token")
            .then(|| r.num("token", 0usize, "a token position below 32768", |v| *v < MAX_CONTEXT)),
        embed: r.map.contains_key("embed").then(|| r.named("embed", Panel::Tokens)),
        show: Vec::new(),
        origin: None,
        shade: r.named("shade", Shade::Expert),
        tour: r.map.contains_key("tour").then(|| {
            r.num("tour", 1usize, &format!("a tour step from 1 to {TOUR_STEPS}"), |v| (1..=TOUR_STEPS).contains(v))
        }),
    };
    if let Some(list) = r.raw("show") {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match Control::parse(name) {
                Some(c) if !view.show.contains(&c) => view.show.push(c),
                Some(_) => {}
                None => r.problem("show", format!("`{}` is not one of {}; ignored", clip(name), Control::choices())),
            }
        }
        view.show.sort();
        if view.embed.is_none() {
            r.problem("show", "only used with embed=<view>; ignored".into());
            view.show.clear();
        }
    }
    if let Some(origin) = r.raw("origin") {
        let origin = origin.trim().trim_end_matches('/').to_string();
        if view.embed.is_none() {
            r.problem("origin", "only used with embed=<view>; ignored".into());
        } else if valid_origin(&origin) {
            view.origin = Some(origin);
        } else {
            r.problem(
                "origin",
                format!(
                    "`{}` is not an origin such as https://example.org; routing reports go to any page",
                    clip(&origin)
                ),
            );
        }
    }
    view
}
