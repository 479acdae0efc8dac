//! Text shown to a person: characters that would reorder or hide what is around them are
//! written as visible escapes.
//!
//! A token, a prompt quoted in a message or a label can hold bidi overrides (U+202E turns
//! `abc` into `cba` on screen) and zero-width characters; shown raw they make a trace or a
//! banner say something it does not. The playground and the CLI both show such characters as
//! `\u{202e}`.

/// Whether `c` is invisible or changes the direction of the text around it (Unicode format
/// characters: bidi marks, embeddings, overrides and isolates, zero-width spaces and joiners,
/// the byte-order mark, soft hyphen, interlinear annotation marks).
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Appends `c` to `out`, escaped when it is a control character or [`is_invisible`]:
/// `\n`, `\t`, `\x07`, `\u{202e}`.
pub fn push_visible(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if c.is_control() || is_invisible(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        c => out.push(c),
    }
}

/// `s` with every control and invisible character escaped (see [`push_visible`]).
pub fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_visible(&mut out, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_overrides_and_zero_width_characters_become_visible() {
        assert_eq!(visible("abc\u{202E}fed"), "abc\\u{202e}fed");
        assert_eq!(visible("a\u{200B}b\u{FEFF}"), "a\\u{200b}b\\u{feff}");
        assert_eq!(visible("x\ny\u{7}"), "x\\ny\\x07");
        assert_eq!(visible("\u{2067}isolate\u{2069}"), "\\u{2067}isolate\\u{2069}");
        // Ordinary text, right-to-left scripts and emoji are left alone.
        for s in ["Le chat noir", "שלום", "مرحبا", "日本語", "👩‍💻"] {
            assert_eq!(visible(s), s.replace('\u{200D}', "\\u{200d}"));
        }
    }
}
