//! Light and dark: the page follows `prefers-color-scheme` unless the person picks one in the
//! header, which this browser remembers (local storage). The colours are CSS custom properties
//! (`www/style.css`); the canvas charts read the same properties when they draw, and draw again
//! when the theme changes.

use gloo_storage::{LocalStorage, Storage};
use leptos::prelude::*;

/// Local-storage key of the person's choice.
const KEY: &str = "switchyard-theme";

/// The person's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    /// Follow the system (`prefers-color-scheme`).
    Auto,
    /// Always light.
    Light,
    /// Always dark.
    Dark,
}

impl Theme {
    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "light" => Self::Light,
            "dark" => Self::Dark,
            _ => Self::Auto,
        }
    }

    /// Sets the page's `data-theme` (none for auto: the media query decides).
    fn apply(self) {
        let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) else {
            return;
        };
        let _ = match self {
            Self::Auto => root.remove_attribute("data-theme"),
            t => root.set_attribute("data-theme", t.name()),
        };
    }
}

/// The theme in force, as a signal the canvases read (context).
#[derive(Debug, Clone, Copy)]
pub struct ThemeSignal(pub RwSignal<Theme>);

/// Whether this document has local storage: gloo's `LocalStorage` panics without it, and a
/// frame whose storage the browser blocks (an embed in a sandboxed or partitioned page) has none.
fn has_storage() -> bool {
    web_sys::window().is_some_and(|w| w.local_storage().ok().flatten().is_some())
}

/// Reads the stored choice, applies it and provides the signal.
pub fn install() {
    let stored = if has_storage() { LocalStorage::get::<String>(KEY).unwrap_or_default() } else { String::new() };
    let theme = Theme::parse(&stored);
    theme.apply();
    provide_context(ThemeSignal(RwSignal::new(theme)));
}

/// The header's choice of theme.
#[component]
pub fn ThemeChoice() -> impl IntoView {
    let ThemeSignal(theme) = expect_context::<ThemeSignal>();
    let choose = move |name: String| {
        let t = Theme::parse(&name);
        t.apply();
        // A browser without storage (private mode, some frames) keeps the choice for this visit.
        if has_storage() {
            let _ = LocalStorage::set(KEY, t.name());
        }
        theme.set(t);
    };
    view! {
        <select class="share" data-testid="theme" aria-label="colour theme" title="colour theme"
            prop:value=move || theme.get().name() on:change=move |ev| choose(event_target_value(&ev))>
            <option value="auto">"theme: system"</option>
            <option value="light">"light"</option>
            <option value="dark">"dark"</option>
        </select>
    }
}

/// A CSS custom property's value on `el` (what a canvas draws with), or `fallback`.
pub fn css_var(el: &web_sys::Element, name: &str, fallback: &str) -> String {
    web_sys::window()
        .and_then(|w| w.get_computed_style(el).ok().flatten())
        .and_then(|s| s.get_property_value(name).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| fallback.to_string())
}
