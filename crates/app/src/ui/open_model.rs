//! Opening what is not shipped: a Hugging Face model (a folder or its files, picked or dropped,
//! or a folder's address on a static host) and a recorded trace (a file, or `trace=` in the
//! link), with the read-only mode's banner. Files go to the engine as they are (`File`
//! handles: nothing is read on the page, nothing leaves the machine); the engine checks and
//! opens them, and says why not.

use leptos::prelude::*;
use switchyard_protocol::{HF_FILES, HF_URL};
use switchyard_state::valid_folder_url;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::client::Want;
use super::{Change, Ctl, params};

/// The files of a model folder the engine reads; the rest of a picked folder stays behind.
fn wanted(name: &str) -> bool {
    name == "config.json" || name == "tokenizer.json" || name.ends_with(".safetensors") || name.ends_with(".index.json")
}

/// The panel's part under the checkpoint picker.
#[component]
pub fn OpenModel() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let message = RwSignal::new(None::<String>);
    let url = RwSignal::new(ctl.state.with_untracked(|s| s.hf.clone().unwrap_or_default()));
    // Set when this panel opened a model: its own router (top-k, k and renormalisation from its
    // config) replaces the playground's once it is loaded.
    let adopt_router = StoredValue::new(false);
    Effect::new(move || {
        let Some(hf) = ctl.engine.loaded.with(|l| l.as_ref().and_then(|l| l.hf.clone())) else { return };
        if std::mem::replace(&mut *adopt_router.write_value(), false) {
            ctl.edit(|s| s.router = params::router_from(&hf.router), Change::Outside);
        }
    });
    let open_files = move |files: Vec<web_sys::File>| {
        let files: Vec<web_sys::File> = files.into_iter().filter(|f| wanted(&f.name())).collect();
        if !files.iter().any(|f| f.name() == "config.json") {
            message.set(Some(
                "No config.json there: pick the model's folder, or its config.json, weights and tokenizer.json together."
                    .into(),
            ));
            return;
        }
        message.set(None);
        ctl.engine.adopt_files(files.iter().collect());
        adopt_router.set_value(true);
        let again = ctl.state.with_untracked(|s| s.checkpoint == HF_FILES);
        ctl.edit(
            |s| {
                s.checkpoint = HF_FILES.into();
                s.checkpoint_hash = None;
                s.hf = None;
                s.interventions = Default::default();
            },
            Change::Deliberate,
        );
        if again {
            ctl.engine.load(&ctl.state.with_untracked(Want::of));
        }
    };
    let open_url = move || {
        let u = url.get_untracked().trim().to_string();
        if !valid_folder_url(&u) {
            message.set(Some(format!("`{u}` is not an http(s) address of a folder.")));
            return;
        }
        message.set(None);
        adopt_router.set_value(true);
        ctl.edit(
            |s| {
                s.checkpoint = HF_URL.into();
                s.checkpoint_hash = None;
                s.hf = Some(u);
                s.interventions = Default::default();
            },
            Change::Deliberate,
        );
    };
    let folder = NodeRef::<leptos::html::Input>::new();
    Effect::new(move || {
        // Not an attribute Leptos knows: set on the element.
        if let Some(input) = folder.get() {
            let _ = input.set_attribute("webkitdirectory", "");
        }
    });
    let from_input = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        open_files(file_list(input.files()));
        input.set_value("");
    };
    view! {
        <details class="open-model" data-testid="open-model">
            <summary>"Open a Hugging Face model…"</summary>
            <p class="hint">"Mixtral, Qwen2-MoE, Qwen3-MoE or OLMoE: a folder with config.json, the weights (model.safetensors, or shards with model.safetensors.index.json) and tokenizer.json. The files stay on this machine."</p>
            <div class="drop" data-testid="hf-drop"
                on:dragover=move |ev: leptos::ev::DragEvent| ev.prevent_default()
                on:drop=move |ev: leptos::ev::DragEvent| {
                    ev.prevent_default();
                    if let Some(dt) = ev.data_transfer() {
                        let entries = drop_entries(&dt);
                        leptos::task::spawn_local(async move { open_files(dropped_files(entries, &dt).await) });
                    }
                }>
                "Drop the folder or its files here, or "
                <label class="pick">"pick a folder"<input type="file" multiple node_ref=folder data-testid="hf-folder" on:change=from_input /></label>
                " or "
                <label class="pick">"files"<input type="file" multiple data-testid="hf-files" on:change=from_input /></label>
            </div>
            <form class="hf-url" on:submit=move |ev| { ev.prevent_default(); open_url() }>
                <input type="url" placeholder="https://host/models/my-moe/" aria-label="address of a model folder" data-testid="hf-url"
                    prop:value=move || url.get() on:input=move |ev| url.set(event_target_value(&ev)) />
                <button type="submit" data-testid="hf-open-url">"Open"</button>
            </form>
            <p class="hint">"An address must be a static host that lets this page read it (CORS); the link then opens the same model."</p>
            {move || message.get().map(|m| view! { <p class="hint warn" role="alert" data-testid="hf-message">{m}</p> })}
        </details>
    }
}

/// "Open a trace…": a recorded trace file (from `tools/hf/trace.py`, or one this page exported)
/// opens read-only.
#[component]
pub fn OpenTrace() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let open = move |file: Option<web_sys::File>| {
        let Some(file) = file else { return };
        // A link's trace= gives way to the file (the link cannot carry a file).
        if ctl.state.with_untracked(|s| s.trace.is_some()) {
            ctl.edit(|s| s.trace = None, Change::Deliberate);
        }
        ctl.engine.open_trace_file(file);
    };
    view! {
        <details class="open-model" data-testid="open-trace">
            <summary>"Open a routing trace…"</summary>
            <p class="hint">"A trace of a model too big for a browser (tools/hf/trace.py writes one on your machine, and converts llama.cpp's moe-trace CSV), or one this page exported. It opens read-only: every view of the routing works; the prompt and the model's routers need the model."</p>
            <div class="drop" data-testid="trace-drop"
                on:dragover=move |ev: leptos::ev::DragEvent| ev.prevent_default()
                on:drop=move |ev: leptos::ev::DragEvent| {
                    ev.prevent_default();
                    open(ev.data_transfer().and_then(|dt| file_list(dt.files()).into_iter().next()));
                }>
                "Drop a trace (.json) here, or "
                <label class="pick">"pick one"<input type="file" accept=".json,application/json" data-testid="trace-file"
                    on:change=move |ev| {
                        let input: web_sys::HtmlInputElement = event_target(&ev);
                        open(file_list(input.files()).into_iter().next());
                        input.set_value("");
                    } /></label>
            </div>
        </details>
    }
}

/// The read-only mode's banner: what the trace is, what it lacks, and the way back.
#[component]
pub fn ReadOnly() -> impl IntoView {
    let ctl = expect_context::<Ctl>();
    let close = move |_| {
        ctl.engine.recorded.set(None);
        ctl.edit(|s| s.trace = None, Change::Deliberate);
        // Back to the live model: run the state as it is (the checkpoint loads first if it
        // must; the engine holds the run until then).
        ctl.engine.load(&ctl.state.with_untracked(Want::of));
        ctl.engine.run(ctl.state.with_untracked(super::run_query));
    };
    move || {
        let r = ctl.engine.recorded.get()?;
        let name = ctl.engine.result.with(|res| res.as_ref().map(|x| x.trace.checkpoint.clone())).unwrap_or_default();
        let model = if r.architecture.is_empty() { name.clone() } else { format!("{name} ({})", r.architecture) };
        Some(view! {
            <section class="panel banner recorded" role="status" data-testid="read-only">
                <h2>"Reading a recorded trace"</h2>
                <p>{format!("{model}. ")}{(!r.routing.is_empty()).then(|| format!("Experts: {}. ", r.routing))}{(!r.probs.is_empty()).then(|| format!("Probabilities: {}.", r.probs))}</p>
                {(!r.lacks.is_empty()).then(|| view! { <p class="hint warn" data-testid="read-only-lacks">{format!("The file lacks {}: views that need them show placeholders.", r.lacks.join(", "))}</p> })}
                <p class="hint">"Every view of the routing works. The prompt, the decoding and every router but top-k need the model, so they are off; top-k's k, renormalisation, capacity and the experts' off/only buttons re-route the recorded probabilities layer by layer (later layers keep their recorded inputs)."</p>
                <button data-testid="close-trace" on:click=close>"Close the trace"</button>
            </section>
        })
    }
}

fn file_list(list: Option<web_sys::FileList>) -> Vec<web_sys::File> {
    list.map(|l| (0..l.length()).filter_map(|i| l.get(i)).collect()).unwrap_or_default()
}

/// The dropped items as file-system entries (`webkitGetAsEntry`, every browser's name for it).
/// Taken in the drop handler itself: the list is emptied once the handler returns.
fn drop_entries(dt: &web_sys::DataTransfer) -> Vec<JsValue> {
    let items = dt.items();
    (0..items.length())
        .filter_map(|i| items.get(i))
        .filter_map(|item| call(&item, "webkitGetAsEntry", &[]).ok())
        .filter(|e| !e.is_null() && !e.is_undefined())
        .collect()
}

/// The files of the dropped entries: files as they are, a folder's files one level down.
async fn dropped_files(entries: Vec<JsValue>, dt: &web_sys::DataTransfer) -> Vec<web_sys::File> {
    if entries.is_empty() {
        return file_list(dt.files());
    }
    let mut out = Vec::new();
    for entry in entries {
        if is_true(&entry, "isDirectory") {
            for child in folder_entries(&entry).await {
                if is_true(&child, "isFile")
                    && let Some(f) = entry_file(&child).await
                {
                    out.push(f);
                }
            }
        } else if let Some(f) = entry_file(&entry).await {
            out.push(f);
        }
    }
    out
}

fn call(target: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = js_sys::Reflect::get(target, &method.into())?.dyn_into()?;
    f.apply(target, &args.iter().collect())
}

fn is_true(target: &JsValue, prop: &str) -> bool {
    js_sys::Reflect::get(target, &prop.into()).is_ok_and(|v| v.is_truthy())
}

/// Calls a callback-style entry method (`file(ok, err)`, `readEntries(ok, err)`) as a promise.
async fn callback(target: &JsValue, method: &str) -> Option<JsValue> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        if call(target, method, &[resolve.into(), reject.clone().into()]).is_err() {
            let _ = reject.call0(&JsValue::NULL);
        }
    });
    JsFuture::from(promise).await.ok()
}

async fn entry_file(entry: &JsValue) -> Option<web_sys::File> {
    callback(entry, "file").await?.dyn_into().ok()
}

/// Every entry of a folder (`readEntries` answers in batches until an empty one).
async fn folder_entries(folder: &JsValue) -> Vec<JsValue> {
    let Ok(reader) = call(folder, "createReader", &[]) else { return Vec::new() };
    let mut out = Vec::new();
    while let Some(batch) = callback(&reader, "readEntries").await {
        let batch = js_sys::Array::from(&batch);
        if batch.length() == 0 || out.len() > 10_000 {
            break;
        }
        out.extend(batch.iter());
    }
    out
}
