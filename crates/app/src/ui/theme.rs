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

/// The theme in force, as signals the canvases read (context): the person's choice, and
/// whether the system is dark (what "auto" follows; it changes while the page is open).
#[derive(Debug, Clone, Copy)]
pub struct ThemeSignal {
    choice: RwSignal<Theme>,
    system_dark: RwSignal<bool>,
}

impl ThemeSignal {
    /// Subscribes the running effect to every change of the colours: a choice in the header,
    /// or the system's scheme changing under "auto".
    pub fn track(&self) {
        self.choice.track();
        self.system_dark.track();
    }
}

/// The query list of `prefers-color-scheme: dark`: whether it matches now, and its changes.
fn system_scheme() -> Option<web_sys::MediaQueryList> {
    web_sys::window()?.match_media("(prefers-color-scheme: dark)").ok()?
}

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
    let query = system_scheme();
    let system_dark = RwSignal::new(query.as_ref().is_some_and(web_sys::MediaQueryList::matches));
    if let Some(query) = query {
        // For the page's life (a listener of the document, like the page itself).
        let target = query.clone();
        gloo_events::EventListener::new(&target, "change", move |_| system_dark.set(query.matches())).forget();
    }
    provide_context(ThemeSignal { choice: RwSignal::new(theme), system_dark });
}

/// The header's choice of theme.
#[component]
pub fn ThemeChoice() -> impl IntoView {
    let theme = expect_context::<ThemeSignal>().choice;
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
