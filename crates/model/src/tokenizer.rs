//! Tokenization. Two kinds behind one type:
//! - [`Tokenizer::Byte`]: token id = byte value (vocabulary 256), for seeded test models;
//! - [`Tokenizer::Bpe`]: the shipped byte-level BPE, a Hugging Face `tokenizers` `tokenizer.json`
//!   loaded the same way natively and in the browser (both use the `fancy-regex` engine).
//!
//! Both are byte-level, so any text round-trips and every token maps to a definite byte string
//! (which may be part of a UTF-8 character): bits per byte are counted from those bytes.

use sha2::{Digest, Sha256};

/// What can go wrong loading a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file could not be read.
    #[error("cannot read tokenizer {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The JSON is not a tokenizer the `tokenizers` library can load.
    #[error("not a valid tokenizer.json: {0}")]
    Format(String),
    /// It loads, but is not byte-level BPE (the only kind whose tokens are byte strings).
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
}

/// The byte-level tokenizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// Vocabulary size it needs.
    pub const VOCAB: usize = 256;
}

/// A byte-level BPE tokenizer from a `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct BpeTokenizer {
    inner: Box<tokenizers::Tokenizer>,
    /// Bytes of every token id (from the GPT-2 byte-to-character table).
    bytes: Vec<Vec<u8>>,
    /// SHA-256 of the JSON file, hex.
    hash: String,
}

/// A tokenizer: byte-level or BPE.
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// Token id = byte.
    Byte(ByteTokenizer),
    /// Subword BPE over bytes.
    Bpe(BpeTokenizer),
}

/// GPT-2's reversible map from bytes to printable characters, as its inverse: char -> byte.
fn unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    let mut map = std::collections::HashMap::new();
    for b in 0..=255u32 {
        let c = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        map.insert(char::from_u32(c).unwrap_or('?'), b as u8);
    }
    map
}

impl BpeTokenizer {
    /// Parses a `tokenizer.json`: a byte-level BPE (GPT-2, Qwen, OLMoE and ours), or a
    /// SentencePiece-style BPE with byte fallback (Mixtral's: `▁` for a space, `<0x0A>` for a
    /// byte).
    pub fn from_json(json: &[u8]) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| TokenizerError::Format(e.to_string()))?;
        let byte_level = is_byte_level(json);
        let table = unicode_to_byte();
        let n = inner.get_vocab_size(true);
        let mut bytes = Vec::with_capacity(n);
        for id in 0..n as u32 {
            let piece = inner
                .id_to_token(id)
                .ok_or_else(|| TokenizerError::Unsupported(format!("token id {id} has no entry")))?;
            let b = if byte_level {
                let b: Option<Vec<u8>> = piece.chars().map(|c| table.get(&c).copied()).collect();
                b.ok_or_else(|| TokenizerError::Unsupported(format!("token {id} `{piece}` is not a byte-level token")))?
            } else {
                sentencepiece_bytes(&piece)
            };
            bytes.push(b);
        }
        let hash = hex::encode(Sha256::digest(json));
        Ok(Self { inner: Box::new(inner), bytes, hash })
    }
}

/// True when the tokenizer's decoder or pre-tokenizer is GPT-2's byte-level one.
fn is_byte_level(json: &[u8]) -> bool {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    ["decoder", "pre_tokenizer"].iter().any(|k| v.get(k).is_some_and(|p| p.to_string().contains("\"ByteLevel\"")))
}

/// A SentencePiece piece's bytes: `<0xNN>` is the byte NN, `▁` a space, anything else its UTF-8.
fn sentencepiece_bytes(piece: &str) -> Vec<u8> {
    let byte = piece.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')).filter(|h| h.len() == 2);
    match byte.and_then(|h| u8::from_str_radix(h, 16).ok()) {
        Some(b) => vec![b],
        None => piece.replace('\u{2581}', " ").into_bytes(),
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json` from disk.
    pub fn load(path: &std::path::Path) -> Result<Self, TokenizerError> {
        let json =
            std::fs::read(path).map_err(|source| TokenizerError::Io { path: path.display().to_string(), source })?;
        Ok(Self::Bpe(BpeTokenizer::from_json(&json)?))
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Byte(_) => ByteTokenizer::VOCAB,
            Self::Bpe(t) => t.bytes.len(),
        }
    }

    /// The identity a checkpoint records: `byte`, or `bpe:` + the SHA-256 of the JSON file.
    pub fn id(&self) -> String {
        match self {
            Self::Byte(_) => "byte".into(),
            Self::Bpe(t) => format!("bpe:{}", t.hash),
        }
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Self::Byte(_) => text.bytes().map(u32::from).collect(),
            // Byte-level BPE cannot fail on valid UTF-8; fall back to nothing rather than panic.
            Self::Bpe(t) => t.inner.encode_fast(text, false).map(|e| e.get_ids().to_vec()).unwrap_or_default(),
        }
    }

    /// The bytes of one token (empty for ids outside the vocabulary).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        const BYTES: [u8; 256] = {
            let mut b = [0u8; 256];
            let mut i = 0;
            while i < 256 {
                b[i] = i as u8;
                i += 1;
            }
            b
        };
        match self {
            Self::Byte(_) => u8::try_from(id).map(|b| std::slice::from_ref(&BYTES[b as usize])).unwrap_or(&[]),
            Self::Bpe(t) => t.bytes.get(id as usize).map_or(&[], Vec::as_slice),
        }
    }

    /// A printable form of one token: its text with `\n`, `\t`, control bytes and characters
    /// that hide or reorder text (bidi overrides, zero-width spaces: `\u{202e}`) escaped, and
    /// bytes that are only part of a UTF-8 character shown as `\xNN`.
    pub fn display(&self, id: u32) -> String {
        if id as usize >= self.vocab_size() {
            return format!("<{id}>");
        }
        let mut out = String::new();
        for chunk in self.token_bytes(id).utf8_chunks() {
            for c in chunk.valid().chars() {
                switchyard_record::text::push_visible(&mut out, c);
            }
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        out
    }

    /// The text of a token sequence (invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.token_bytes(id).iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Trains a byte-level BPE tokenizer of `vocab_size` ids on `texts` and returns its JSON.
#[cfg(feature = "train")]
pub fn train_bpe<I, S>(texts: I, vocab_size: usize) -> Result<String, TokenizerError>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper};
    let fail = |e: tokenizers::Error| TokenizerError::Format(e.to_string());
    // No prefix space: the text round-trips byte for byte.
    let byte_level = ByteLevel::default().add_prefix_space(false);
    let mut trainer: tokenizers::models::TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tok: tokenizers::TokenizerImpl<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = tokenizers::TokenizerImpl::new(ModelWrapper::BPE(BPE::default()));
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(byte_level)));
    tok.with_decoder(Some(DecoderWrapper::ByteLevel(byte_level)));
    tok.train(&mut trainer, texts).map_err(fail)?;
    let tok: tokenizers::Tokenizer = tok.into();
    tok.to_string(true).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tokens_round_trip_and_display_readably() {
        let t = Tokenizer::Byte(ByteTokenizer);
        let text = "fn main() {}\n// été ✓";
        assert_eq!(t.decode(&t.encode(text)), text);
        assert_eq!(t.display(u32::from(b'a')), "a");
        assert_eq!(t.display(10), "\\n");
        assert_eq!(t.display(0xc3), "\\xc3");
        assert_eq!(t.display(300), "<300>");
        assert_eq!(t.id(), "byte");
    }

    #[test]
    fn the_byte_table_is_a_bijection() {
        let m = unicode_to_byte();
        assert_eq!(m.len(), 256);
        let mut seen: Vec<u8> = m.values().copied().collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert_eq!(m[&'Ġ'], b' ');
        assert_eq!(m[&'Ċ'], b'\n');
        assert_eq!(m[&'a'], b'a');
    }

    /// Mixtral's tokenizer is SentencePiece-style (`▁` for a space, `<0x0A>` byte fallback),
    /// not byte-level: its pieces are read as what they print (the byte-level table refused
    /// `▁` before).
    #[test]
    fn a_sentencepiece_tokenizer_reads_as_its_text() {
        let json = r#"{
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
            "pre_tokenizer": null, "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]},
            "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "▁": 4, "h": 5, "i": 6, "▁h": 7, "▁hi": 8, "é": 9},
                "merges": [["▁", "h"], ["▁h", "i"]]}
        }"#;
        let t = Tokenizer::Bpe(BpeTokenizer::from_json(json.as_bytes()).unwrap());
        let ids = t.encode("hi\né");
        assert_eq!(ids, [8, 3, 9]);
        assert_eq!(t.token_bytes(8), b" hi");
        assert_eq!(t.display(3), "\\n");
        assert_eq!(t.decode(&ids), " hi\né");
        assert_eq!(sentencepiece_bytes("<0xFF>"), [0xff]);
    }

    #[test]
    fn malformed_json_is_a_named_error() {
        let e = BpeTokenizer::from_json(b"{ not json").unwrap_err();
        assert!(matches!(e, TokenizerError::Format(_)), "{e}");
    }

    #[cfg(feature = "train")]
    #[test]
    fn a_trained_bpe_round_trips_any_text_and_merges_frequent_pieces() {
        let corpus = ["the cat sat on the mat. the cat ate the rat.", "fn main() { println!(\"the cat\"); }"];
        let json = train_bpe(corpus.iter().cycle().take(50), 300).unwrap();
        let t = Tokenizer::Bpe(BpeTokenizer::from_json(json.as_bytes()).unwrap());
        assert!(t.vocab_size() > 256 && t.vocab_size() <= 300, "{}", t.vocab_size());
        for text in ["the cat", "  indented\n\tcode ✓ été 日本", "", "\u{0}\u{7f}"] {
            let ids = t.encode(text);
            assert_eq!(t.decode(&ids), text);
            let n: usize = ids.iter().map(|&id| t.token_bytes(id).len()).sum();
            assert_eq!(n, text.len(), "token bytes must add up to the text's bytes");
        }
        assert!(t.encode("the cat").len() < "the cat".len(), "frequent words merge");
        assert!(t.id().starts_with("bpe:"));
    }
}
