//! Colours: one per expert from the Okabe–Ito palette (distinguishable with the common forms of
//! colour blindness), with a text colour that stays readable on each.

/// `(background, text)` per expert; experts beyond eight reuse the palette (the number is
/// always printed too). Each text colour is the one of black and white with the higher contrast
/// on its background, at least 4.5:1 (WCAG AA; tested).
const OKABE_ITO: [(&str, &str); 8] = [
    ("#E69F00", "#000"),
    ("#56B4E9", "#000"),
    ("#009E73", "#000"),
    ("#F0E442", "#000"),
    ("#0072B2", "#fff"),
    ("#D55E00", "#000"),
    ("#CC79A7", "#000"),
    ("#4D4D4D", "#fff"),
];

/// Background colour of expert `e`.
pub fn expert_bg(e: usize) -> &'static str {
    OKABE_ITO[e % OKABE_ITO.len()].0
}

/// Text colour on expert `e`'s background.
pub fn expert_fg(e: usize) -> &'static str {
    OKABE_ITO[e % OKABE_ITO.len()].1
}

/// Inline style of a chip coloured as expert `e`.
pub fn expert_style(e: usize) -> String {
    format!("background:{};color:{}", expert_bg(e), expert_fg(e))
}

/// Inline style of a cell shaded by `p` in `[0, 1]` on the heatmap's ramp.
pub fn ramp_style(p: f32) -> String {
    let (bg, fg) = prob_colours(p);
    format!("background:{bg};color:{fg}")
}

/// Heatmap `(fill, text)` colours for a probability in `[0, 1]` (one hue, light to dark).
pub fn prob_colours(p: f32) -> (String, &'static str) {
    let p = p.clamp(0.0, 1.0);
    let text = if p > 0.55 { "#fff" } else { "#1a1a1a" };
    // Blend white with rgb(0, 90, 160) (an opaque colour: the canvas has no page behind it).
    let a = 0.04 + 0.96 * f64::from(p);
    let mix = |c: f64| (255.0 - (255.0 - c) * a).round() as u8;
    (format!("rgb({},{},{})", mix(0.0), mix(90.0), mix(160.0)), text)
}

use switchyard_routing::record::ExpertKind;

/// How a free expert (spec §6: null, zero, copy, constant) is drawn: pale stripes and a dashed
/// edge, never one of the FFN experts' solid colours, so it is never read as a numbered expert;
/// grey for the experts that output nothing, blue-grey for copy, sand for constant.
pub fn free_style(kind: ExpertKind) -> String {
    let tint = match kind {
        ExpertKind::Copy => "#c9dcea",
        ExpertKind::Constant => "#e8d9bd",
        _ => "#d9d9d9",
    };
    format!("background:repeating-linear-gradient(45deg,#fff 0 3px,{tint} 3px 6px);color:#222;outline:1px dashed #555")
}

/// Fill of a free expert's bar on a canvas or in a bar chart (the stripes' darker grey).
pub const FREE_BG: &str = "#bdbdbd";

/// The name of entry `e` of a layer's expert list (`kinds` empty: all FFN): `E3` for an FFN
/// expert, the kind for a free one, numbered among its kind when there are several
/// (`null 5`, `const 2`, `copy`).
pub fn expert_name(kinds: &[ExpertKind], e: usize) -> String {
    let kind = ExpertKind::at(kinds, e);
    if kind == ExpertKind::Ffn {
        return format!("E{e}");
    }
    let label = if kind == ExpertKind::Constant { "const" } else { kind.name() };
    let same = kinds.iter().filter(|k| **k == kind).count();
    let nth = kinds[..e].iter().filter(|k| **k == kind).count();
    if same > 1 { format!("{label} {}", nth + 1) } else { label.to_string() }
}

/// Entry `e` in a character or two, written on what its colour fills (a grid cell, a token):
/// the FFN expert's number, or what a free expert is (∅ null, 0 zero, = copy, c constant).
pub fn expert_mark(kinds: &[ExpertKind], e: usize) -> String {
    match ExpertKind::at(kinds, e) {
        ExpertKind::Ffn => e.to_string(),
        ExpertKind::Null => "∅".into(),
        ExpertKind::Zero => "0".into(),
        ExpertKind::Copy => "=".into(),
        ExpertKind::Constant => "c".into(),
    }
}

/// Inline style of entry `e`'s chip: its FFN colour, or the free experts' stripes.
pub fn kind_style(kinds: &[ExpertKind], e: usize) -> String {
    match ExpertKind::at(kinds, e) {
        ExpertKind::Ffn => expert_style(e),
        k => free_style(k),
    }
}

/// Solid fill of entry `e` (bars, canvases).
pub fn kind_bg(kinds: &[ExpertKind], e: usize) -> &'static str {
    match ExpertKind::at(kinds, e) {
        ExpertKind::Ffn => expert_bg(e),
        _ => FREE_BG,
    }
}

/// Text colour on [`kind_bg`].
pub fn kind_fg(kinds: &[ExpertKind], e: usize) -> &'static str {
    match ExpertKind::at(kinds, e) {
        ExpertKind::Ffn => expert_fg(e),
        _ => "#111",
    }
}

/// The load bars' rows and the domain chart's columns: each FFN expert alone, then each kind of
/// free expert as one group of its entries (AdaMoE's 16 null experts are one "skip" choice).
pub fn expert_groups(kinds: &[ExpertKind], n: usize) -> Vec<(ExpertKind, Vec<usize>)> {
    let mut groups: Vec<(ExpertKind, Vec<usize>)> =
        (0..n).filter(|&e| ExpertKind::at(kinds, e) == ExpertKind::Ffn).map(|e| (ExpertKind::Ffn, vec![e])).collect();
    for k in [ExpertKind::Null, ExpertKind::Zero, ExpertKind::Copy, ExpertKind::Constant] {
        let members: Vec<usize> = (0..n).filter(|&e| ExpertKind::at(kinds, e) == k).collect();
        if !members.is_empty() {
            groups.push((k, members));
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    /// WCAG relative luminance of `#rrggbb` or `#rgb`.
    fn luminance(hex: &str) -> f64 {
        let h = hex.trim_start_matches('#');
        let h: String = if h.len() == 3 { h.chars().flat_map(|c| [c, c]).collect() } else { h.to_string() };
        let v = u32::from_str_radix(&h, 16).unwrap();
        let lin = |c: u32| {
            let c = f64::from(c) / 255.0;
            if c <= 0.03928 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * lin(v >> 16 & 255) + 0.7152 * lin(v >> 8 & 255) + 0.0722 * lin(v & 255)
    }

    /// The expert chips' text is readable: white on green and vermillion was 3.4:1 and 3.9:1.
    #[test]
    fn every_expert_colour_has_text_of_at_least_4_5_to_1() {
        for (bg, fg) in super::OKABE_ITO {
            let (a, b) = (luminance(bg), luminance(fg));
            let ratio = (a.max(b) + 0.05) / (a.min(b) + 0.05);
            assert!(ratio >= 4.5, "{fg} on {bg}: {ratio:.2}");
        }
    }
}
