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
    /// How often each domain is drawn, relative (the in-page data mix); empty: in proportion to
    /// its size.
    pub weights: Vec<f64>,
}

impl TokenizedCorpus {
    /// Tokenizes every split (natively on two threads: tokenizing 16 MB is a noticeable wait
    /// on one; a wasm worker has one).
    pub fn new(domains: &[Domain], tok: &Tokenizer) -> Self {
        let encode = |texts: Vec<&str>| -> Vec<Vec<u32>> { texts.into_iter().map(|t| tok.encode(t)).collect() };
        #[cfg(target_arch = "wasm32")]
        let (train, validation) = (
            encode(domains.iter().map(|d| d.train.as_str()).collect()),
            encode(domains.iter().map(|d| d.validation.as_str()).collect()),
        );
        #[cfg(not(target_arch = "wasm32"))]
        let (train, validation) = std::thread::scope(|s| {
            let half = domains.len() / 2;
            let a = s.spawn(move || encode(domains[..half].iter().map(|d| d.train.as_str()).collect()));
            let b = encode(domains[half..].iter().map(|d| d.train.as_str()).collect());
            let mut train = a.join().unwrap_or_default();
            train.extend(b);
            (train, encode(domains.iter().map(|d| d.validation.as_str()).collect()))
        });
        Self { names: domains.iter().map(|d| d.name.clone()).collect(), train, validation, weights: Vec::new() }
    }

    /// This corpus drawn with the relative `weights` per domain (domains weighted 0, or with
    /// no window of the length asked, are never drawn).
    pub fn with_weights(self, weights: Vec<f64>) -> Self {
        Self { weights, ..self }
    }

    /// Training tokens in all.
    pub fn train_tokens(&self) -> usize {
        self.train.iter().map(Vec::len).sum()
    }

    /// `batch` windows of `len` ids for `step`: each row picks a start uniformly among every
    /// window that fits inside one domain's training ids (so domains are sampled in proportion
    /// to their size), from stream `DATA_ORDER` keyed by (step, row). With weights, a row first
    /// draws its domain by weight, then its start in that domain, from the same draw.
    pub fn batch(&self, seed: u64, step: u64, batch: usize, len: usize) -> Vec<Vec<u32>> {
        let starts: Vec<usize> = self.train.iter().map(|t| t.len().saturating_sub(len - 1)).collect();
        if !self.weights.is_empty() {
            return self.weighted_batch(&starts, seed, step, batch, len);
        }
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

impl TokenizedCorpus {
    fn weighted_batch(&self, starts: &[usize], seed: u64, step: u64, batch: usize, len: usize) -> Vec<Vec<u32>> {
        let w: Vec<f64> = starts
            .iter()
            .enumerate()
            .map(|(d, &n)| if n == 0 { 0.0 } else { self.weights.get(d).copied().unwrap_or(0.0).max(0.0) })
            .collect();
        let total: f64 = w.iter().sum();
        (0..batch)
            .map(|row| {
                if !(total > 0.0 && total.is_finite()) {
                    return Vec::new();
                }
                let u = rng::u01(seed, stream::DATA_ORDER, &[step, row as u64]) * total;
                let (mut acc, mut domain) = (0.0, 0);
                while domain + 1 < w.len() && acc + w[domain] <= u {
                    acc += w[domain];
                    domain += 1;
                }
                // The draw's position inside its domain's share picks the start.
                let frac = if w[domain] > 0.0 { ((u - acc) / w[domain]).clamp(0.0, 1.0) } else { 0.0 };
                let start = ((frac * starts[domain] as f64) as usize).min(starts[domain].saturating_sub(1));
                self.train[domain][start..start + len].to_vec()
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
        // Weighted: domain a half the time whatever its size; weight 0 never.
        let even = c.clone().with_weights(vec![1.0, 1.0]).batch(7, 3, 400, 17);
        let a = even.iter().filter(|r| r[0] == u32::from(b'a')).count();
        assert!((150..250).contains(&a), "{a}/400");
        assert!(even.iter().all(|r| r.len() == 17 && r.iter().all(|&t| t == r[0])));
        let only_b = c.with_weights(vec![0.0, 3.0]).batch(7, 3, 64, 17);
        assert!(only_b.iter().all(|r| r[0] == u32::from(b'b')));
    }
}
