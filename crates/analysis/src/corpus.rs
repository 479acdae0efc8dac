//! Interpretability measures over routing records (spec §10): domain distributions,
//! consecutive-token repetition, layer-to-layer affinity, co-activation and token-ID
//! specialisation, each with its random baseline.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_record::LayerRouting;

/// The experts token `t` kept (dropped slots left out), in slot order.
pub(crate) fn kept(rec: &LayerRouting, t: usize) -> Vec<usize> {
    rec.slots(t).filter(|s| !s.dropped).map(|s| s.expert).collect()
}

/// `r_{D}(e) = #{t ∈ D : e ∈ S_t} / (k·|D|)` per domain for one layer (Mixtral fig. 7). Input:
/// `(domain, record of that layer)` pairs; k is the record's slot count.
pub fn domain_distribution<'a>(
    items: impl IntoIterator<Item = (&'a str, &'a LayerRouting)>,
) -> BTreeMap<String, Vec<f64>> {
    let mut acc: BTreeMap<String, (Vec<f64>, f64)> = BTreeMap::new();
    for (domain, rec) in items {
        let entry = acc.entry(domain.to_string()).or_insert_with(|| (vec![0.0; rec.num_experts], 0.0));
        for t in 0..rec.num_tokens() {
            for e in kept(rec, t) {
                entry.0[e] += 1.0;
            }
            entry.1 += rec.k_max as f64;
        }
    }
    acc.into_iter().map(|(d, (c, n))| (d, c.into_iter().map(|x| if n > 0.0 { x / n } else { 0.0 }).collect())).collect()
}

/// Consecutive-token same-expert rates and their random baselines (spec §10.2).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ConsecutiveRate {
    /// `mean 1[e1_t = e1_{t+1}]`.
    pub first_choice: f64,
    /// Baseline `1/E`.
    pub first_choice_baseline: f64,
    /// `mean 1[S_t ∩ S_{t+1} ≠ ∅]`.
    pub any_overlap: f64,
    /// Baseline `1 − C(E−k, k)/C(E, k)`.
    pub any_overlap_baseline: f64,
    /// Adjacent pairs counted.
    pub pairs: usize,
}

fn choose(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Over adjacent positions of the same sequence in one layer's record.
pub fn consecutive_rate(rec: &LayerRouting) -> ConsecutiveRate {
    let (e, k) = (rec.num_experts, rec.k_max.min(rec.num_experts));
    let mut order: Vec<usize> = (0..rec.num_tokens()).collect();
    order.sort_by_key(|&t| (rec.seq_id[t], rec.pos[t]));
    let (mut same, mut overlap, mut pairs) = (0usize, 0usize, 0usize);
    for w in order.windows(2) {
        let (a, b) = (w[0], w[1]);
        if rec.seq_id[a] != rec.seq_id[b] || rec.pos[b] != rec.pos[a] + 1 {
            continue;
        }
        pairs += 1;
        same += usize::from(rec.top_expert(a).is_some() && rec.top_expert(a) == rec.top_expert(b));
        let sb = kept(rec, b);
        overlap += usize::from(kept(rec, a).iter().any(|x| sb.contains(x)));
    }
    let n = pairs.max(1) as f64;
    ConsecutiveRate {
        first_choice: same as f64 / n,
        first_choice_baseline: 1.0 / e as f64,
        any_overlap: overlap as f64 / n,
        any_overlap_baseline: 1.0 - choose(e - k, k) / choose(e, k),
        pairs,
    }
}

/// ExFlow affinity between two layers' records of the same tokens (spec §10.3):
/// `A[i][j] = #{t : i ∈ S_t^l ∧ j ∈ S_t^{l'}} / #{t : i ∈ S_t^l}`; with its summary
/// `mean_i max_j A[i][j]` and the uniform baseline `k/E`.
pub fn expert_affinity(from: &LayerRouting, to: &LayerRouting) -> (Vec<Vec<f64>>, f64, f64) {
    let (e, e2) = (from.num_experts, to.num_experts);
    let mut joint = vec![vec![0.0f64; e2]; e];
    let mut count = vec![0.0f64; e];
    for t in 0..from.num_tokens().min(to.num_tokens()) {
        let later = kept(to, t);
        for i in kept(from, t) {
            count[i] += 1.0;
            for &j in &later {
                joint[i][j] += 1.0;
            }
        }
    }
    let a: Vec<Vec<f64>> = joint
        .into_iter()
        .zip(&count)
        .map(|(row, &c)| row.into_iter().map(|x| if c > 0.0 { x / c } else { 0.0 }).collect())
        .collect();
    let used: Vec<&Vec<f64>> = a.iter().zip(&count).filter(|(_, c)| **c > 0.0).map(|(r, _)| r).collect();
    let summary = used.iter().map(|r| r.iter().copied().fold(0.0, f64::max)).sum::<f64>() / used.len().max(1) as f64;
    (a, summary, to.k_max.min(e2) as f64 / e2 as f64)
}

/// Within-layer co-activation `C[i][j] = #{t : i, j ∈ S_t} / #{t : i ∈ S_t}` (i ≠ j), with the
/// independent-uniform baseline `(k−1)/(E−1)` (spec §10.4).
pub fn co_activation(rec: &LayerRouting) -> (Vec<Vec<f64>>, f64) {
    let e = rec.num_experts;
    let mut joint = vec![vec![0.0f64; e]; e];
    let mut count = vec![0.0f64; e];
    for t in 0..rec.num_tokens() {
        let s = kept(rec, t);
        for &i in &s {
            count[i] += 1.0;
            for &j in &s {
                if i != j {
                    joint[i][j] += 1.0;
                }
            }
        }
    }
    let c = joint
        .into_iter()
        .zip(&count)
        .map(|(row, &n)| row.into_iter().map(|x| if n > 0.0 { x / n } else { 0.0 }).collect())
        .collect();
    let base = if e > 1 { (rec.k_max.min(e) as f64 - 1.0) / (e as f64 - 1.0) } else { 0.0 };
    (c, base)
}

/// OpenMoE token-ID specialisation of one layer (spec §10.1).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Specialisation {
    /// Frequency-weighted mean of `spec_v = max_e q_v(e)` over token ids.
    pub score: f64,
    /// The same for a uniform random router: `1/E` in expectation for frequent tokens (the
    /// exact baseline here is `max(1/E, 1/(k·|O_v|))`, frequency-weighted).
    pub baseline: f64,
    /// Per expert, its most routed token ids `(id, share of that id's occurrences)`, best first.
    pub top_tokens: Vec<Vec<(u32, f64)>>,
}

/// `q_v(e) = #{o ∈ O_v : e ∈ S_o} / (k·|O_v|)`; `token_ids[t]` is the id of token t.
pub fn token_specialisation(rec: &LayerRouting, token_ids: &[u32], top: usize) -> Specialisation {
    let (e, k) = (rec.num_experts, rec.k_max.max(1) as f64);
    let mut by_id: BTreeMap<u32, (Vec<f64>, f64)> = BTreeMap::new();
    for (t, &id) in token_ids.iter().enumerate().take(rec.num_tokens()) {
        let entry = by_id.entry(id).or_insert_with(|| (vec![0.0; e], 0.0));
        for x in kept(rec, t) {
            entry.0[x] += 1.0;
        }
        entry.1 += 1.0;
    }
    let total: f64 = by_id.values().map(|(_, n)| n).sum();
    let (mut score, mut baseline) = (0.0, 0.0);
    let mut per_expert: Vec<Vec<(u32, f64)>> = vec![Vec::new(); e];
    for (&id, (counts, n)) in &by_id {
        let q: Vec<f64> = counts.iter().map(|c| c / (k * n)).collect();
        score += q.iter().copied().fold(0.0, f64::max) * n / total.max(1.0);
        baseline += (1.0 / e as f64).max(1.0 / (k * n)) * n / total.max(1.0);
        for (x, &qx) in q.iter().enumerate() {
            if qx > 0.0 {
                per_expert[x].push((id, qx));
            }
        }
    }
    for list in &mut per_expert {
        list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        list.truncate(top);
    }
    Specialisation { score, baseline, top_tokens: per_expert }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record where token t goes to `sets[t]` (equal weights), E experts, K = max set size.
    fn record(sets: &[Vec<usize>], e: usize) -> LayerRouting {
        let k = sets.iter().map(Vec::len).max().unwrap_or(1);
        let t = sets.len();
        let mut r = LayerRouting {
            layer: 0,
            num_experts: e,
            k_max: k,
            logits: vec![0.0; t * e],
            probs: vec![1.0 / e as f32; t * e],
            probs_are_uniform: true,
            idx: vec![0; t * k],
            weight: vec![0.0; t * k],
            valid: vec![false; t * k],
            rank: vec![0; t * k],
            dropped: vec![false; t * k],
            aux: BTreeMap::new(),
            seq_id: vec![0; t],
            pos: (0..t as u32).collect(),
        };
        for (ti, s) in sets.iter().enumerate() {
            for (j, &x) in s.iter().enumerate() {
                r.idx[ti * k + j] = x as u32;
                r.valid[ti * k + j] = true;
                r.weight[ti * k + j] = 1.0 / s.len() as f32;
            }
        }
        r
    }

    fn lcg(n: usize, seed: u64) -> Vec<usize> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 33) as usize
            })
            .collect()
    }

    /// §10.1 control: hash routing (expert = function of the id) has specialisation 1.
    #[test]
    fn hash_routing_is_maximally_specialised() {
        let ids: Vec<u32> = lcg(500, 1).into_iter().map(|x| (x % 40) as u32).collect();
        let rec = record(&ids.iter().map(|&v| vec![(v as usize * 7) % 8]).collect::<Vec<_>>(), 8);
        let s = token_specialisation(&rec, &ids, 3);
        assert!((s.score - 1.0).abs() < 1e-12);
        assert!(s.baseline < 0.2);
        let (id, share) = s.top_tokens[(ids[0] as usize * 7) % 8][0];
        assert_eq!(share, 1.0);
        assert_eq!((id as usize * 7) % 8, (ids[0] as usize * 7) % 8);
    }

    /// §10.2 invariant: a uniform random top-2 router matches both baselines within sampling
    /// error; the any-overlap baseline for E = 8, k = 2 is 0.464.
    #[test]
    fn random_routing_matches_the_consecutive_baselines() {
        let r = lcg(40_000, 7);
        let sets: Vec<Vec<usize>> = r
            .chunks(2)
            .map(|c| {
                let a = c[0] % 8;
                let b = (a + 1 + c[1] % 7) % 8;
                vec![a, b]
            })
            .collect();
        let c = consecutive_rate(&record(&sets, 8));
        assert!((c.any_overlap_baseline - 0.4643).abs() < 1e-3);
        assert!((c.first_choice - c.first_choice_baseline).abs() < 0.01, "{c:?}");
        assert!((c.any_overlap - c.any_overlap_baseline).abs() < 0.015, "{c:?}");
        let same = consecutive_rate(&record(&vec![vec![3, 4]; 50], 8));
        assert_eq!((same.first_choice, same.any_overlap, same.pairs), (1.0, 1.0, 49));
    }

    /// §10.3: with top-1 every used row of the affinity is a distribution; identical layers give
    /// summary 1; §10.4: co-activation of a fixed pair is 1, baseline (k−1)/(E−1).
    #[test]
    fn affinity_rows_are_distributions_and_coactivation_counts_pairs() {
        let l0 = record(&lcg(200, 3).iter().map(|x| vec![x % 4]).collect::<Vec<_>>(), 4);
        let l1 = record(&lcg(200, 4).iter().map(|x| vec![x % 4]).collect::<Vec<_>>(), 4);
        let (a, summary, base) = expert_affinity(&l0, &l1);
        for row in &a {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        assert!(summary >= base && base == 0.25);
        assert_eq!(expert_affinity(&l0, &l0).1, 1.0);
        let (c, b) = co_activation(&record(&vec![vec![1, 2]; 10], 4));
        assert_eq!((c[1][2], c[2][1], c[0][1], b), (1.0, 1.0, 0.0, 1.0 / 3.0));
    }

    #[test]
    fn domain_distribution_sums_to_one_per_domain() {
        let code = record(&[vec![0, 1], vec![0, 2]], 4);
        let prose = record(&[vec![3, 2]], 4);
        let d = domain_distribution([("code", &code), ("prose", &prose), ("code", &code)]);
        assert_eq!(d["code"], vec![0.5, 0.25, 0.25, 0.0]);
        assert_eq!(d["prose"], vec![0.0, 0.0, 0.5, 0.5]);
    }
}
