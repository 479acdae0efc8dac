//! Tokenized training and validation streams, and the seeded choice of training windows.

use crate::corpus::Domain;
use crate::rng::{self, stream};
use crate::tokenizer::Tokenizer;

/// Every domain's training and validation text as token ids.
#[derive(Debug, Clone)]
pub struct TokenizedCorpus {
    /// Domain names, in corpus order.
    pub names: Vec<String>,
    /// Training ids per domain.
    pub train: Vec<Vec<u32>>,
    /// Validation ids per domain.
    pub validation: Vec<Vec<u32>>,
}

impl TokenizedCorpus {
    /// Tokenizes every split (two threads: tokenizing 16 MB is a noticeable wait on one).
    pub fn new(domains: &[Domain], tok: &Tokenizer) -> Self {
        let encode = |texts: Vec<&str>| -> Vec<Vec<u32>> { texts.into_iter().map(|t| tok.encode(t)).collect() };
        let (train, validation) = std::thread::scope(|s| {
            let half = domains.len() / 2;
            let a = s.spawn(move || encode(domains[..half].iter().map(|d| d.train.as_str()).collect()));
            let b = encode(domains[half..].iter().map(|d| d.train.as_str()).collect());
            let mut train = a.join().unwrap_or_default();
            train.extend(b);
            (train, encode(domains.iter().map(|d| d.validation.as_str()).collect()))
        });
        Self { names: domains.iter().map(|d| d.name.clone()).collect(), train, validation }
    }

    /// Training tokens in all.
    pub fn train_tokens(&self) -> usize {
        self.train.iter().map(Vec::len).sum()
    }

    /// `batch` windows of `len` ids for `step`: each row picks a start uniformly among every
    /// window that fits inside one domain's training ids (so domains are sampled in proportion
    /// to their size), from stream `DATA_ORDER` keyed by (step, row).
    pub fn batch(&self, seed: u64, step: u64, batch: usize, len: usize) -> Vec<Vec<u32>> {
        let starts: Vec<usize> = self.train.iter().map(|t| t.len().saturating_sub(len - 1)).collect();
        let total: usize = starts.iter().sum();
        (0..batch)
            .map(|row| {
                if total == 0 {
                    return Vec::new();
                }
                let u = rng::u01(seed, stream::DATA_ORDER, &[step, row as u64]);
                let mut pick = ((u * total as f64) as usize).min(total - 1);
                let mut domain = 0;
                while pick >= starts[domain] {
                    pick -= starts[domain];
                    domain += 1;
                }
                self.train[domain][pick..pick + len].to_vec()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::split_text;
    use crate::tokenizer::ByteTokenizer;

    #[test]
    fn windows_stay_inside_one_domain_and_are_seeded() {
        let domains = [split_text("a", &"a".repeat(400)), split_text("b", &"b".repeat(4000))];
        let c = TokenizedCorpus::new(&domains, &Tokenizer::Byte(ByteTokenizer));
        let rows = c.batch(7, 3, 64, 17);
        assert_eq!(rows.len(), 64);
        for r in &rows {
            assert_eq!(r.len(), 17);
            assert!(r.iter().all(|&t| t == r[0]), "a window mixes domains");
        }
        let a = rows.iter().filter(|r| r[0] == u32::from(b'a')).count();
        assert!(a < 20, "domain a is ~10 % of the windows, got {a}/64");
        assert_eq!(c.batch(7, 3, 64, 17), rows);
        assert_ne!(c.batch(7, 4, 64, 17), rows);
    }
}
