//! Files under `assets/`: downloaded with progress, kept in the browser's Cache API after the
//! first visit, checked by the caller before they are cached.
//!
//! The cache is named after the app's version, so a release that ships new checkpoints under
//! the same names starts a fresh cache; a link that pins a checkpoint hash also bypasses a cached
//! file with another hash (the caller deletes it and asks again).

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Response};

use super::scope::{body_bytes, fetch, global, js_text, post};
use crate::protocol::{Reply, Source};

/// Name of the Cache API cache.
const CACHE: &str = concat!("switchyard-assets-", env!("CARGO_PKG_VERSION"));
/// Send a progress message at most every this many bytes.
const PROGRESS_STEP: u64 = 256 * 1024;

fn url(file: &str) -> String {
    super::scope::url(&format!("assets/{file}"))
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
pub async fn get_checked<T>(file: &str, check: impl Fn(&[u8]) -> Result<T, String>) -> Result<(T, Source), String> {
    let (bytes, source) = get(file).await?;
    let bytes = match (check(&bytes), source) {
        (Ok(value), Source::Cache) => return Ok((value, source)),
        (Ok(value), _) => {
            store(file, &bytes).await;
            return Ok((value, source));
        }
        (Err(_), Source::Cache) => {
            forget(file).await;
            download(file, &url(file)).await?
        }
        (Err(e), _) => return Err(e),
    };
    let value = check(&bytes)?;
    store(file, &bytes).await;
    Ok((value, Source::Network))
}

/// The bytes of `assets/<file>`: from the cache when present, otherwise downloaded with
/// progress messages.
async fn get(file: &str) -> Result<(Vec<u8>, Source), String> {
    let url = url(file);
    if let Some(cache) = cache().await
        && let Ok(hit) = JsFuture::from(cache.match_with_str(&url)).await
        && let Ok(response) = hit.dyn_into::<Response>()
    {
        let bytes = body_bytes(&response).await?;
        post(&Reply::Progress { file: file.into(), loaded: bytes.len() as u64, total: Some(bytes.len() as u64) });
        return Ok((bytes, Source::Cache));
    }
    Ok((download(file, &url).await?, Source::Network))
}

/// Downloads with a progress message every [`PROGRESS_STEP`] bytes.
async fn download(file: &str, url: &str) -> Result<Vec<u8>, String> {
    let response = fetch(url).await?;
    // A compressed transfer's length is not the length of the bytes we read: no total then.
    let headers = response.headers();
    let encoded = headers.get("content-encoding").ok().flatten().is_some_and(|e| e != "identity");
    let total =
        if encoded { None } else { headers.get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok()) };
    let Some(body) = response.body() else {
        return body_bytes(&response).await;
    };
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut last = 0;
    post(&Reply::Progress { file: file.into(), loaded: 0, total });
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("{url}: the download broke off ({})", js_text(&e)))?;
        let done = js_sys::Reflect::get(&chunk, &"done".into()).map(|d| d.is_truthy()).unwrap_or(true);
        if done {
            break;
        }
        let value = js_sys::Reflect::get(&chunk, &"value".into()).map_err(|e| js_text(&e))?;
        bytes.extend(js_sys::Uint8Array::new(&value).to_vec());
        let loaded = bytes.len() as u64;
        if loaded - last >= PROGRESS_STEP {
            last = loaded;
            post(&Reply::Progress { file: file.into(), loaded, total });
        }
    }
    post(&Reply::Progress { file: file.into(), loaded: bytes.len() as u64, total });
    if let Some(t) = total
        && t != bytes.len() as u64
    {
        return Err(format!("{url}: the download stopped at {} of {t} bytes", bytes.len()));
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
