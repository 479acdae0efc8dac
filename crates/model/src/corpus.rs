//! A training corpus: a folder of UTF-8 `.txt` files, one per domain (the file stem is the
//! domain label), each split into training and validation text by the rule of the corpus's
//! `SOURCES.md`: validation starts at the first line after 95 % of the file's bytes.

use std::path::Path;

/// One domain's text, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The file stem (`en_prose`, `code_rust`, ...).
    pub name: String,
    /// Bytes `[0, cut)`.
    pub train: String,
    /// Bytes `[cut, n)`.
    pub validation: String,
}

/// What can go wrong reading a corpus.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The folder or a file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not UTF-8.
    #[error("{path} is not UTF-8 text: {source}")]
    Utf8 {
        /// The path.
        path: String,
        /// Where it fails.
        source: std::string::FromUtf8Error,
    },
    /// No `.txt` file in the folder.
    #[error("{0} holds no .txt files")]
    Empty(String),
}

/// The byte index where validation starts: the first byte after the first `\n` at or after
/// `floor(n * 95 / 100)` (`n` if there is none).
pub fn split_point(bytes: &[u8]) -> usize {
    let start = bytes.len() * 95 / 100;
    bytes[start..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| start + i + 1)
}

/// Splits one file's text.
pub fn split_text(name: &str, text: &str) -> Domain {
    // The cut follows a '\n', so it is a character boundary.
    let cut = split_point(text.as_bytes());
    Domain { name: name.to_string(), train: text[..cut].to_string(), validation: text[cut..].to_string() }
}

/// Reads every `.txt` file of `dir` (sorted by name) and splits it.
pub fn load_corpus(dir: &Path) -> Result<Vec<Domain>, CorpusError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CorpusError::Io { path, source }
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CorpusError::Empty(dir.display().to_string()));
    }
    files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(io(p))?;
            let text = String::from_utf8(bytes)
                .map_err(|source| CorpusError::Utf8 { path: p.display().to_string(), source })?;
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(split_text(&name, &text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_starts_on_the_line_after_95_percent() {
        // 20 lines of 10 bytes: 95 % is byte 190, inside the last line; its '\n' is at 199.
        let text: String = (0..20).map(|i| format!("line {i:03}.\n")).collect();
        assert_eq!(text.len(), 200);
        let d = split_text("x", &text);
        assert_eq!(d.validation, "");
        let text = format!("{text}tail without newline");
        let d = split_text("x", &text);
        // n = 220, start = 209 falls in the unterminated tail: no '\n', so validation is empty.
        assert_eq!((d.train.len(), d.validation.len()), (220, 0));
        let text: String = (0..100).map(|i| format!("{i:04}\n")).collect();
        let d = split_text("x", &text);
        // n = 500, start = 475 is the first byte of line 95: its '\n' is at 479.
        assert_eq!(d.train.len(), 480);
        assert_eq!(d.validation, "0096\n0097\n0098\n0099\n");
    }

    #[test]
    fn the_shared_corpus_splits_as_its_sources_file_says() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
        let corpus = load_corpus(&dir).expect("corpus");
        assert_eq!(corpus.len(), 12);
        // Numbers from SOURCES.md.
        let en = corpus.iter().find(|d| d.name == "en_prose").expect("en_prose");
        assert_eq!((en.train.len(), en.validation.len()), (1_891_130, 98_985));
        let total: usize = corpus.iter().map(|d| d.validation.len()).sum();
        assert_eq!(total, 827_736);
    }
}
