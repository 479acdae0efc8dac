//! Downloads of what the page shows: the routing trace as JSON or CSV (the schema of
//! `switchyard trace`, so a browser trace and a CLI trace of one link compare with a diff tool)
//! and the loaded checkpoint's model card.

use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

use super::Ctl;

/// `new name(...args)` on the global object (Blob, URL helpers) without extra web-sys bindings.
pub(super) fn construct(name: &str, args: &js_sys::Array) -> Result<JsValue, JsValue> {
    let ctor: js_sys::Function = js_sys::Reflect::get(&js_sys::global(), &name.into())?.unchecked_into();
    js_sys::Reflect::construct(&ctor, args)
}

/// Saves `href` as `file` through a temporary `<a download>`.
fn save_href(href: &str, file: &str) -> Result<(), JsValue> {
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let a = document.create_element("a")?;
    a.set_attribute("href", href)?;
    a.set_attribute("download", file)?;
    let click: js_sys::Function = js_sys::Reflect::get(&a, &"click".into())?.unchecked_into();
    click.call0(&a)?;
    Ok(())
}

/// Saves a base64 `data:` URL (a canvas's `toDataURL`) as a file, through a Blob: browsers
/// refuse to download some `data:` links directly.
pub fn save_data_url(url: &str, file: &str) -> Result<(), JsValue> {
    let (head, data) = url.split_once(',').ok_or("not a data URL")?;
    let mime = head.trim_start_matches("data:").trim_end_matches(";base64");
    let atob: js_sys::Function = js_sys::Reflect::get(&js_sys::global(), &"atob".into())?.unchecked_into();
    let binary = atob.call1(&JsValue::NULL, &data.into())?.as_string().unwrap_or_default();
    let bytes: Vec<u8> = binary.chars().map(|c| c as u32 as u8).collect();
    save_bytes(&bytes, mime, file)
}

/// A `blob:` URL for `parts` (strings or byte arrays) of type `mime`.
pub(super) fn object_url(parts: &js_sys::Array, mime: &str) -> Result<String, JsValue> {
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &"type".into(), &mime.into())?;
    let blob = construct("Blob", &js_sys::Array::of2(parts, &options))?;
    let url_class = js_sys::Reflect::get(&js_sys::global(), &"URL".into())?;
    let create: js_sys::Function = js_sys::Reflect::get(&url_class, &"createObjectURL".into())?.unchecked_into();
    Ok(create.call1(&url_class, &blob)?.as_string().unwrap_or_default())
}

/// Saves bytes as a file.
pub(super) fn save_bytes(bytes: &[u8], mime: &str, file: &str) -> Result<(), JsValue> {
    let href = object_url(&js_sys::Array::of1(&js_sys::Uint8Array::from(bytes)), mime)?;
    save_href(&href, file)
}

/// Why a checkpoint has no model card, when it has none.
pub(super) fn no_card(checkpoint: &str) -> Option<&'static str> {
    (checkpoint == switchyard_protocol::SEED_INIT)
        .then_some("seed-init is not a trained checkpoint: it has no model card")
}

/// The export buttons for the latest run.
#[component]
pub fn ExportButtons() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let engine = ctl.engine;
    let (error, set_error) = signal(None::<String>);
    let report = move |r: Result<(), JsValue>| set_error.set(r.err().map(|e| format!("export failed: {e:?}")));
    let json = move |_| {
        let Some(r) = engine.result.get_untracked() else { return };
        match serde_json::to_vec_pretty(&*r.trace) {
            Ok(bytes) => report(save_bytes(&bytes, "application/json", "switchyard-trace.json")),
            Err(e) => set_error.set(Some(e.to_string())),
        }
    };
    let csv = move |_| {
        let Some(r) = engine.result.get_untracked() else { return };
        let mut bytes = Vec::new();
        match switchyard_protocol::trace::write_csv(&r.trace, &mut bytes) {
            Ok(()) => report(save_bytes(&bytes, "text/csv", "switchyard-trace.csv")),
            Err(e) => set_error.set(Some(e.to_string())),
        }
    };
    let card = move |_| {
        let Some(name) = engine.loaded.with_untracked(|l| l.as_ref().map(|l| l.checkpoint.clone())) else { return };
        if let Some(why) = no_card(&name) {
            set_error.set(Some(why.into()));
            return;
        }
        report(save_href(&format!("assets/{name}.card.md"), &format!("{name}.card.md")));
    };
    view! {
        <div class="export" role="group" aria-label="export">
            <span class="hint">"Export:"</span>
            <button class="small" data-testid="export-json" title="the routing trace, schema of switchyard trace" on:click=json>"trace JSON"</button>
            <button class="small" data-testid="export-csv" title="one row per token, layer and slot" on:click=csv>"trace CSV"</button>
            <button class="small" data-testid="export-card" title="the loaded checkpoint's model card" on:click=card>"model card"</button>
            {move || error.get().map(|e| view! { <span class="error">{e}</span> })}
        </div>
    }
}
