//! Byte-level tokenization: token id = byte value (vocabulary 256). Any text round-trips. The
//! trained subword tokenizer replaces it in a later step behind the same methods.

/// The byte-level tokenizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// Vocabulary size it needs.
    pub const VOCAB: usize = 256;

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }

    /// The bytes of one token (empty for ids outside the byte range).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        u8::try_from(id).map(|b| vec![b]).unwrap_or_default()
    }

    /// A printable form of one token: the character for printable ASCII, `\n`, `\t`, or `\xNN`.
    pub fn display(&self, id: u32) -> String {
        match u8::try_from(id) {
            Ok(b'\n') => "\\n".into(),
            Ok(b'\t') => "\\t".into(),
            Ok(b) if b == b' ' || b.is_ascii_graphic() => (b as char).to_string(),
            Ok(b) => format!("\\x{b:02x}"),
            Err(_) => format!("<{id}>"),
        }
    }

    /// The text of a token sequence (invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&ids.iter().flat_map(|&id| self.token_bytes(id)).collect::<Vec<_>>()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_text_round_trips_and_displays_readably() {
        let t = ByteTokenizer;
        let text = "fn main() {}\n// été ✓";
        assert_eq!(t.decode(&t.encode(text)), text);
        assert_eq!(t.display(u32::from(b'a')), "a");
        assert_eq!(t.display(10), "\\n");
        assert_eq!(t.display(0xc3), "\\xc3");
        assert_eq!(t.display(300), "<300>");
    }
}
