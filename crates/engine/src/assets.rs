//! Files under `assets/`: downloaded with progress, a size cap and a stall timeout, kept in the
//! browser's Cache API after the first visit, checked by the caller before they are cached.
//!
//! The cache is named after the app's version, so a release that ships new checkpoints under
//! the same names starts a fresh cache. A cached copy that fails the caller's check (corrupt, or
//! not the content hash a link pins) is forgotten and downloaded again.

use futures_lite::future;
use gloo_timers::future::TimeoutFuture;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Cache, RequestInit, Response};

use super::scope::{body_bytes, global, js_text, post};
use switchyard_protocol::{Reply, Source};

/// Name of the Cache API cache.
const CACHE: &str = concat!("switchyard-assets-", env!("CARGO_PKG_VERSION"));
/// Send a progress message at most every this many bytes.
const PROGRESS_STEP: u64 = 256 * 1024;
/// A download that receives nothing for this long is stopped with a message (and Retry).
pub const STALL_MS: u32 = 15_000;

/// Why a file could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// A newer load replaced this one; nobody waits for the result.
    Superseded,
    /// For a person.
    Failed(String),
    /// The server answered 404 (for a person; a caller probing for an optional file reads it
    /// as "absent").
    Missing(String),
}

impl From<String> for FetchError {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

/// One file to fetch: its name under `assets/` (or a URL of its own), the most bytes it may
/// have, and the load it belongs to (progress carries it; `current` says whether that load is
/// still wanted).
pub struct Asset<'a> {
    /// File name under `assets/`, or the name progress shows for `url`.
    pub file: &'a str,
    /// A URL elsewhere (a Hugging Face folder's file): downloaded, never cached.
    pub url: Option<&'a str>,
    /// Size cap in bytes.
    pub max_bytes: u64,
    /// The load's id.
    pub load: u64,
    /// Whether the load is still the latest one.
    pub current: &'a dyn Fn() -> bool,
}

fn url(file: &str) -> String {
    super::scope::url(&format!("assets/{file}"))
}

impl Asset<'_> {
    /// Where it is downloaded from, and how messages name it.
    fn location(&self) -> (String, String) {
        match self.url {
            Some(u) => (u.to_string(), u.to_string()),
            None => (url(self.file), format!("assets/{}", self.file)),
        }
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The cache, when this context has one (the Cache API needs a secure context: https or
/// localhost).
async fn cache() -> Option<Cache> {
    // `caches` is undefined outside a secure context and in some embedded (partitioned or
    // opaque-origin) frames; web-sys would call `open` on undefined and kill the worker.
    let caches = global().caches().ok().filter(|c| !c.is_undefined() && !c.is_null())?;
    JsFuture::from(caches.open(CACHE)).await.ok()?.dyn_into().ok()
}

/// `assets/<file>` read by `check`: a downloaded copy that passes is cached for the next visit; a
/// cached copy that fails is forgotten and downloaded again; a downloaded copy that fails is the
/// error.
pub async fn get_checked<T>(
    asset: &Asset<'_>,
    check: impl Fn(&[u8]) -> Result<T, String>,
) -> Result<(T, Source), FetchError> {
    let (bytes, source) = get(asset).await?;
    let bytes = match (check(&bytes), source) {
        (Ok(value), Source::Cache) => return Ok((value, source)),
        (Ok(value), _) => {
            store(asset.file, &bytes).await;
            return Ok((value, source));
        }
        (Err(_), Source::Cache) => {
            forget(asset.file).await;
            download(asset).await?
        }
        (Err(e), _) => return Err(e.into()),
    };
    let value = check(&bytes)?;
    store(asset.file, &bytes).await;
    Ok((value, Source::Network))
}

/// The bytes of a file at its own URL (never cached).
pub async fn download_url(asset: &Asset<'_>) -> Result<Vec<u8>, FetchError> {
    download(asset).await
}

/// The bytes of `assets/<file>`: from the cache when present, otherwise downloaded.
async fn get(asset: &Asset<'_>) -> Result<(Vec<u8>, Source), FetchError> {
    if let Some(cache) = cache().await
        && let Ok(hit) = JsFuture::from(cache.match_with_str(&url(asset.file))).await
        && let Ok(response) = hit.dyn_into::<Response>()
    {
        let bytes = body_bytes(&response).await?;
        let n = bytes.len() as u64;
        post(&Reply::Progress { id: asset.load, file: asset.file.into(), loaded: n, total: Some(n) });
        return Ok((bytes, Source::Cache));
    }
    Ok((download(asset).await?, Source::Network))
}

/// `promise`, or `None` when nothing settles it within [`STALL_MS`].
async fn within_stall(promise: js_sys::Promise) -> Option<Result<JsValue, JsValue>> {
    future::or(async { Some(JsFuture::from(promise).await) }, async {
        TimeoutFuture::new(STALL_MS).await;
        None
    })
    .await
}

/// Downloads with a progress message every [`PROGRESS_STEP`] bytes. Stops (and aborts the
/// request) when the server goes quiet for [`STALL_MS`], when the file outgrows its cap, or when
/// a newer load supersedes this one. Nothing is sized from the server's Content-Length.
async fn download(asset: &Asset<'_>) -> Result<Vec<u8>, FetchError> {
    let (url, file) = asset.location();
    let name = asset.file;
    let controller = AbortController::new().map_err(|e| js_text(&e))?;
    let abort = |e: FetchError| {
        controller.abort();
        e
    };
    let init = RequestInit::new();
    init.set_signal(Some(&controller.signal()));
    let stalled = || {
        FetchError::Failed(format!(
            "{file}: the download stalled (nothing arrived for {} s); press Retry, or pick another checkpoint",
            STALL_MS / 1000
        ))
    };
    let response: Response = match within_stall(global().fetch_with_str_and_init(&url, &init)).await {
        None => return Err(abort(stalled())),
        Some(Err(e)) => return Err(FetchError::Failed(format!("{url}: the download failed ({})", js_text(&e)))),
        Some(Ok(r)) => r.dyn_into().map_err(|e| js_text(&e))?,
    };
    if response.status() == 404 {
        return Err(abort(FetchError::Missing(format!("{url}: the server has no such file (HTTP 404)"))));
    }
    if !response.ok() {
        return Err(abort(FetchError::Failed(format!(
            "{url}: the server answered HTTP {} {}",
            response.status(),
            response.status_text()
        ))));
    }
    // A compressed transfer's length is not the length of the bytes we read: no total then.
    let headers = response.headers();
    let encoded = headers.get("content-encoding").ok().flatten().is_some_and(|e| e != "identity");
    let total =
        if encoded { None } else { headers.get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok()) };
    let too_big = |n: u64| {
        FetchError::Failed(format!(
            "{file} is {} or more, larger than the {} this playground accepts for it",
            mb(n),
            mb(asset.max_bytes)
        ))
    };
    if let Some(t) = total.filter(|&t| t > asset.max_bytes) {
        return Err(abort(too_big(t)));
    }
    let Some(body) = response.body() else {
        let bytes = body_bytes(&response).await?;
        return if bytes.len() as u64 > asset.max_bytes { Err(too_big(bytes.len() as u64)) } else { Ok(bytes) };
    };
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::new();
    let mut last = 0;
    post(&Reply::Progress { id: asset.load, file: name.into(), loaded: 0, total });
    loop {
        let chunk = match within_stall(reader.read()).await {
            None => return Err(abort(stalled())),
            Some(Err(e)) => {
                return Err(abort(FetchError::Failed(format!("{url}: the download broke off ({})", js_text(&e)))));
            }
            Some(Ok(chunk)) => chunk,
        };
        if !(asset.current)() {
            return Err(abort(FetchError::Superseded));
        }
        let done = js_sys::Reflect::get(&chunk, &"done".into()).map(|d| d.is_truthy()).unwrap_or(true);
        if done {
            break;
        }
        let value = js_sys::Reflect::get(&chunk, &"value".into()).map_err(|e| js_text(&e))?;
        let value = js_sys::Uint8Array::new(&value);
        if bytes.len() as u64 + u64::from(value.length()) > asset.max_bytes {
            return Err(abort(too_big(bytes.len() as u64 + u64::from(value.length()))));
        }
        bytes.extend(value.to_vec());
        let loaded = bytes.len() as u64;
        if loaded - last >= PROGRESS_STEP {
            last = loaded;
            post(&Reply::Progress { id: asset.load, file: name.into(), loaded, total });
        }
    }
    post(&Reply::Progress { id: asset.load, file: name.into(), loaded: bytes.len() as u64, total });
    if let Some(t) = total
        && t != bytes.len() as u64
    {
        return Err(FetchError::Failed(format!("{url}: the download stopped at {} of {t} bytes", bytes.len())));
    }
    Ok(bytes)
}

/// Keeps checked bytes for the next visit (best effort: a full or missing cache only costs a
/// download next time).
async fn store(file: &str, bytes: &[u8]) {
    let Some(cache) = cache().await else { return };
    let array = js_sys::Uint8Array::from(bytes);
    let Ok(response) = Response::new_with_opt_buffer_source(Some(&array)) else { return };
    let _ = JsFuture::from(cache.put_with_str(&url(file), &response)).await;
}

/// Forgets a cached file (it was corrupt or the wrong version).
async fn forget(file: &str) {
    if let Some(cache) = cache().await {
        let _: Result<JsValue, JsValue> = JsFuture::from(cache.delete_with_str(&url(file))).await;
    }
}
