//! Recorded traces in the engine (the read-only mode): the file the page handed over, or one
//! at a URL, read and analysed here, off the page's thread (a large trace is hundreds of
//! megabytes of JSON), and answered as a run. What-ifs re-route its probabilities.

use std::rc::Rc;

use gloo_file::futures::read_as_bytes;
use switchyard_protocol::Reply;
use switchyard_protocol::recorded::{self, Opened};
use switchyard_state::PlaygroundState;
use wasm_bindgen::JsCast;

use crate::assets::{self, Asset, FetchError};
use crate::scope::{now_ms, post};
use crate::{post_checked, with};

/// Largest trace file accepted (a 64-expert, 48-layer trace of 4096 tokens is about 120 MB).
const MAX_TRACE_BYTES: u64 = 512 << 20;

fn is_latest(id: u64) -> bool {
    with(|e| e.latest_run == id)
}

async fn bytes(id: u64, url: Option<&str>) -> Result<Vec<u8>, String> {
    match url {
        Some(u) => {
            let current = move || is_latest(id);
            let asset = Asset { file: "trace", url: Some(u), max_bytes: MAX_TRACE_BYTES, load: 0, current: &current };
            assets::download_url(&asset).await.map_err(|e| match e {
                FetchError::Failed(m) | FetchError::Missing(m) => m,
                FetchError::Superseded => "superseded".into(),
            })
        }
        None => {
            let file = with(|e| e.trace_file.clone()).ok_or("no trace file was given")?;
            if file.size() > MAX_TRACE_BYTES as f64 {
                return Err(format!("{} is larger than the {} MB a trace may be", file.name(), MAX_TRACE_BYTES >> 20));
            }
            read_as_bytes(&gloo_file::Blob::from(file.clone().unchecked_into::<web_sys::Blob>()))
                .await
                .map_err(|e| format!("{}: the browser could not read the file ({e})", file.name()))
        }
    }
}

/// The answer of a recorded trace, like a run's.
fn reply(
    id: u64,
    opened: &Opened,
    layers: Option<Vec<switchyard_protocol::trace::TraceLayer>>,
    domains: Option<switchyard_protocol::trace::DomainShares>,
    t0: f64,
) -> Reply {
    let mut trace = opened.trace.clone();
    if let Some(l) = layers {
        trace.layers = l;
    }
    Reply::Traced {
        id,
        trace: Box::new(trace),
        run_ms: now_ms() - t0,
        tokens_per_s: None,
        read_backs: 0,
        candidate_text: Vec::new(),
        comparison: None,
        domains: Some(domains.ok_or_else(|| {
            "the trace labels no domains (tools/hf/trace.py --prompt LABEL=TEXT labels them)".to_string()
        })),
        recorded: Some(opened.recorded.clone()),
    }
}

/// Opens the posted file or `url` and answers with its trace.
pub async fn open(id: u64, url: Option<String>) {
    let t0 = now_ms();
    let opened = match bytes(id, url.as_deref()).await.and_then(|b| recorded::open(&b)) {
        Ok(o) => Rc::new(o),
        Err(message) => return post(&Reply::RunFailed { id, message: format!("Could not open the trace: {message}") }),
    };
    with(|e| e.recorded = Some(opened.clone()));
    if is_latest(id) {
        post_checked(id, &reply(id, &opened, None, opened.domains.clone(), t0));
    }
}

/// The open trace re-routed by the state's router and interventions.
pub fn reroute(id: u64, query: &str) {
    let t0 = now_ms();
    let Some(opened) = with(|e| e.recorded.clone()) else {
        return post(&Reply::RunFailed { id, message: "no recorded trace is open".into() });
    };
    let (state, _) = PlaygroundState::from_query(query);
    match recorded::reroute(&opened, &state.router, &state.interventions, state.seed) {
        Ok((layers, domains)) => post_checked(id, &reply(id, &opened, Some(layers), domains, t0)),
        Err(message) => post(&Reply::RunFailed { id, message }),
    }
}
