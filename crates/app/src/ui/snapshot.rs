//! PNG of a DOM view (the token strip, load bars, tables): the element is serialised with the
//! page's stylesheet into an SVG `<foreignObject>`, drawn on a canvas and saved. Canvas charts
//! have their own PNG button (`canvas.rs`); a canvas inside a DOM view comes out blank, so every
//! view that holds one keeps the chart's own button.

use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::export::{construct, save_data_url};

fn get(target: &JsValue, key: &str) -> Result<JsValue, JsValue> {
    js_sys::Reflect::get(target, &key.into())
}

/// `target.method(args…)`.
fn call(target: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = get(target, method)?.dyn_into()?;
    js_sys::Reflect::apply(&f, target, &args.iter().collect())
}

/// Every rule of the page's stylesheets, as text escaped for XML.
fn page_css(document: &web_sys::Document) -> String {
    let mut css = String::new();
    let Ok(sheets) = get(document, "styleSheets") else { return css };
    let n = get(&sheets, "length").ok().and_then(|v| v.as_f64()).unwrap_or(0.0) as u32;
    for i in 0..n {
        let Ok(sheet) = js_sys::Reflect::get_u32(&sheets, i) else { continue };
        // A cross-origin sheet refuses `cssRules`; ours are same-origin.
        let Ok(rules) = get(&sheet, "cssRules") else { continue };
        let m = get(&rules, "length").ok().and_then(|v| v.as_f64()).unwrap_or(0.0) as u32;
        for j in 0..m {
            if let Some(text) = js_sys::Reflect::get_u32(&rules, j)
                .ok()
                .and_then(|r| get(&r, "cssText").ok())
                .and_then(|t| t.as_string())
            {
                css.push_str(&text);
                css.push('\n');
            }
        }
    }
    css.replace('&', "&amp;").replace('<', "&lt;")
}

/// Renders `el` (without its PNG buttons) to a PNG and saves it as `file`.
pub async fn snapshot(el: &web_sys::Element, file: &str) -> Result<(), JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let document = window.document().ok_or("no document")?;
    let (w, h) = (f64::from(el.scroll_width().max(1)) + 16.0, f64::from(el.scroll_height().max(1)) + 16.0);
    let copy = call(el, "cloneNode", &[JsValue::TRUE])?;
    let buttons = call(&copy, "querySelectorAll", &[".png, .png-error, [data-snapshot-skip]".into()])?;
    let n = get(&buttons, "length")?.as_f64().unwrap_or(0.0) as u32;
    for i in 0..n {
        call(&js_sys::Reflect::get_u32(&buttons, i)?, "remove", &[])?;
    }
    let serializer = construct("XMLSerializer", &js_sys::Array::new())?;
    let xml = call(&serializer, "serializeToString", &[copy])?.as_string().unwrap_or_default();
    let svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"><foreignObject x="0" y="0" width="100%" height="100%"><div xmlns="http://www.w3.org/1999/xhtml" style="font-family:system-ui,sans-serif;font-size:14px;color:#1d2330;background:#fff;padding:8px;width:{w}px;height:{h}px;box-sizing:border-box"><style>{}</style>{xml}</div></foreignObject></svg>"#,
        page_css(&document)
    );
    let image = construct("Image", &js_sys::Array::new())?;
    let src = format!("data:image/svg+xml;charset=utf-8,{}", js_sys::encode_uri_component(&svg));
    js_sys::Reflect::set(&image, &"src".into(), &src.into())?;
    JsFuture::from(js_sys::Promise::from(call(&image, "decode", &[])?)).await?;
    let ratio = window.device_pixel_ratio().max(1.0);
    let canvas: web_sys::HtmlCanvasElement = document.create_element("canvas")?.dyn_into()?;
    canvas.set_width((w * ratio) as u32);
    canvas.set_height((h * ratio) as u32);
    let ctx: web_sys::CanvasRenderingContext2d = canvas.get_context("2d")?.ok_or("no 2d context")?.dyn_into()?;
    ctx.scale(ratio, ratio)?;
    ctx.set_fill_style_str("#ffffff");
    ctx.fill_rect(0.0, 0.0, w, h);
    call(&ctx, "drawImage", &[image, 0.0.into(), 0.0.into(), w.into(), h.into()])?;
    save_data_url(&canvas.to_data_url()?, file)
}

/// A PNG button for the nearest enclosing element marked `data-snapshot`.
#[component]
pub fn PngButton(
    /// File name part and test id (`png-<name>`).
    name: &'static str,
) -> impl IntoView {
    let (error, set_error) = signal(None::<String>);
    let click = move |ev: leptos::ev::MouseEvent| {
        let Some(el) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|t| t.closest("[data-snapshot]").ok().flatten())
        else {
            return;
        };
        leptos::task::spawn_local(async move {
            let result = snapshot(&el, &format!("switchyard-{name}.png")).await;
            set_error.set(
                result.err().map(|e| format!("PNG failed: {}", e.as_string().unwrap_or_else(|| format!("{e:?}")))),
            );
        });
    };
    view! {
        <button class="small png" data-testid=format!("png-{name}") title="download this view as a PNG" on:click=click>"PNG"</button>
        {move || error.get().map(|e| view! { <span class="error png-error">{e}</span> })}
    }
}
