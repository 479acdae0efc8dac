//! Interpretability measures over routing records (spec §10): domain distributions,
//! consecutive-token repetition, layer-to-layer affinity, co-activation and token-ID
//! specialisation, each with its random baseline.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_record::LayerRouting;
use switchyard_routing::rng;

/// The experts token `t` kept (dropped slots left out), in slot order.
pub(crate) fn kept(rec: &LayerRouting, t: usize) -> Vec<usize> {
    rec.slots(t).filter(|s| !s.dropped).map(|s| s.expert).collect()
}

/// `r_{D}(e) = #{t ∈ D : e ∈ S_t} / Σ_{t∈D} |S_t|` per domain for one layer (Mixtral fig. 7).
/// `S_t` is token t's kept experts; for fixed-k routers without drops the denominator is the
/// spec's `k·|D|`, and for routers whose k varies per token (top-p, GShard's random second
/// expert, capacity drops) each token counts its own experts, so a domain's shares sum to 1.
/// Input: `(domain, record of that layer)` pairs.
pub fn domain_distribution<'a>(
    items: impl IntoIterator<Item = (&'a str, &'a LayerRouting)>,
) -> BTreeMap<String, Vec<f64>> {
    let mut acc: BTreeMap<String, (Vec<f64>, f64)> = BTreeMap::new();
    for (domain, rec) in items {
        let entry = acc.entry(domain.to_string()).or_insert_with(|| (vec![0.0; rec.num_experts], 0.0));
        for t in 0..rec.num_tokens() {
            let experts = kept(rec, t);
            entry.1 += experts.len() as f64;
            for e in experts {
                entry.0[e] += 1.0;
            }
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

/// Over adjacent positions of the same sequence in one layer's record. The any-overlap
/// baseline is averaged over the pairs with each token's own number of kept experts
/// (`1 − C(E−k_a, k_b)/C(E, k_b)`), which is the spec's formula when k is fixed.
pub fn consecutive_rate(rec: &LayerRouting) -> ConsecutiveRate {
    let e = rec.num_experts;
    let mut order: Vec<usize> = (0..rec.num_tokens()).collect();
    order.sort_by_key(|&t| (rec.seq_id[t], rec.pos[t]));
    let (mut same, mut overlap, mut pairs, mut baseline) = (0usize, 0usize, 0usize, 0.0f64);
    for w in order.windows(2) {
        let (a, b) = (w[0], w[1]);
        if rec.seq_id[a] != rec.seq_id[b] || rec.pos[b] != rec.pos[a] + 1 {
            continue;
        }
        pairs += 1;
        same += usize::from(rec.top_expert(a).is_some() && rec.top_expert(a) == rec.top_expert(b));
        let (sa, sb) = (kept(rec, a), kept(rec, b));
        overlap += usize::from(sa.iter().any(|x| sb.contains(x)));
        let (ka, kb) = (sa.len().min(e), sb.len().min(e));
        baseline += if kb == 0 { 0.0 } else { 1.0 - choose(e - ka, kb) / choose(e, kb) };
    }
    let n = pairs.max(1) as f64;
    ConsecutiveRate {
        first_choice: same as f64 / n,
        first_choice_baseline: 1.0 / e as f64,
        any_overlap: overlap as f64 / n,
        any_overlap_baseline: if pairs == 0 {
            let k = rec.k_max.min(e);
            1.0 - choose(e - k, k) / choose(e, k)
        } else {
            baseline / n
        },
        pairs,
    }
}

/// ExFlow affinity between two layers' records of the same tokens (spec §10.3):
/// `A[i][j] = #{t : i ∈ S_t^l ∧ j ∈ S_t^{l'}} / #{t : i ∈ S_t^l}`; with its summary
/// `mean_i max_j A[i][j]` and the independent-uniform baseline of a cell, `k/E` for fixed k
/// (with per-token k: `Σ_t k_t·k'_t / (E·Σ_t k_t)`).
pub fn expert_affinity(from: &LayerRouting, to: &LayerRouting) -> (Vec<Vec<f64>>, f64, f64) {
    let (e, e2) = (from.num_experts, to.num_experts);
    let mut joint = vec![vec![0.0f64; e2]; e];
    let mut count = vec![0.0f64; e];
    let (mut pairs, mut firsts) = (0.0f64, 0.0f64);
    for t in 0..from.num_tokens().min(to.num_tokens()) {
        let later = kept(to, t);
        let earlier = kept(from, t);
        pairs += (earlier.len() * later.len()) as f64;
        firsts += earlier.len() as f64;
        for i in earlier {
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
    let baseline = if firsts > 0.0 { pairs / (e2 as f64 * firsts) } else { to.k_max.min(e2) as f64 / e2 as f64 };
    (a, summary, baseline)
}

/// Within-layer co-activation `C[i][j] = #{t : i, j ∈ S_t} / #{t : i ∈ S_t}` (i ≠ j), with the
/// independent-uniform baseline `(k−1)/(E−1)` (spec §10.4); with per-token k it is
/// `Σ_t k_t(k_t−1) / ((E−1)·Σ_t k_t)`.
pub fn co_activation(rec: &LayerRouting) -> (Vec<Vec<f64>>, f64) {
    let e = rec.num_experts;
    let mut joint = vec![vec![0.0f64; e]; e];
    let mut count = vec![0.0f64; e];
    let (mut ordered_pairs, mut slots) = (0.0f64, 0.0f64);
    for t in 0..rec.num_tokens() {
        let s = kept(rec, t);
        let k = s.len() as f64;
        ordered_pairs += k * (k - 1.0);
        slots += k;
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
    let base = match (e > 1, slots > 0.0) {
        (false, _) => 0.0,
        (true, true) => ordered_pairs / ((e as f64 - 1.0) * slots),
        (true, false) => (rec.k_max.min(e) as f64 - 1.0) / (e as f64 - 1.0),
    };
    (c, base)
}

/// OpenMoE token-ID specialisation of one layer (spec §10.1).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Specialisation {
    /// Frequency-weighted mean of `spec_v = max_e q_v(e)` over token ids.
    pub score: f64,
    /// The expected score of a uniformly random router with the same numbers of kept experts
    /// per occurrence (simulated, see [`random_router_specialisation`]): a router that ignores
    /// the token scores this, not 1/E (a token seen n times has a most-used expert by chance).
    pub baseline: f64,
    /// Per expert, its most routed token ids `(id, share of that id's occurrences)`, best first.
    pub top_tokens: Vec<Vec<(u32, f64)>>,
}

/// Simulations behind one [`random_router_specialisation`] estimate for a token id seen n
/// times: `clamp(8192 / n, 32, 1024)`. The score of one simulated router has a standard
/// deviation of roughly `0.5/√n`, so the estimate's standard error stays near or below 0.005
/// while the cost (reps · n · k draws) stays bounded.
fn specialisation_reps(n: usize) -> u64 {
    (8192 / n.max(1) as u64).clamp(32, 1024)
}

/// The expected `max_e q(e)` of a token id whose occurrences keep `ks[o]` experts each, under a
/// router that draws each occurrence's experts uniformly (k distinct of E): exact for one
/// occurrence (`1/k`), otherwise the mean of seeded simulations with the
/// playground's seeded generator (stream `SPECIALISATION_BASELINE`, keyed by the sorted `ks`),
/// so the value depends only on the numbers of kept experts and is the same on every run and
/// platform.
pub fn random_router_specialisation(ks: &[usize], e: usize) -> f64 {
    let mut ks: Vec<usize> = ks.iter().map(|&k| k.min(e)).collect();
    ks.sort_unstable();
    let total: usize = ks.iter().sum();
    if total == 0 {
        return 0.0;
    }
    if ks.len() == 1 {
        return 1.0 / total as f64;
    }
    let pattern = ks.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &k| (h ^ k as u64).wrapping_mul(0x100_0000_01b3));
    let reps = specialisation_reps(ks.len());
    let mut sum = 0.0;
    let mut counts = vec![0usize; e];
    let mut experts: Vec<usize> = (0..e).collect();
    for rep in 0..reps {
        counts.iter_mut().for_each(|c| *c = 0);
        for (o, &k) in ks.iter().enumerate() {
            // k distinct experts: a partial Fisher–Yates shuffle.
            for j in 0..k {
                let key = [pattern, rep, o as u64, j as u64];
                let u = rng::u01(0, rng::stream::SPECIALISATION_BASELINE, &key);
                let pick = j + ((u * (e - j) as f64) as usize).min(e - j - 1);
                experts.swap(j, pick);
                counts[experts[j]] += 1;
            }
        }
        sum += *counts.iter().max().unwrap_or(&0) as f64 / total as f64;
    }
    sum / reps as f64
}

/// `q_v(e) = #{o ∈ O_v : e ∈ S_o} / Σ_{o∈O_v} |S_o|` (the spec's `k·|O_v|` when k is fixed and
/// nothing is dropped); `token_ids[t]` is the id of token t.
pub fn token_specialisation(rec: &LayerRouting, token_ids: &[u32], top: usize) -> Specialisation {
    let e = rec.num_experts;
    // Per id: expert counts and the kept-expert count of every occurrence.
    let mut by_id: BTreeMap<u32, (Vec<f64>, Vec<usize>)> = BTreeMap::new();
    for (t, &id) in token_ids.iter().enumerate().take(rec.num_tokens()) {
        let entry = by_id.entry(id).or_insert_with(|| (vec![0.0; e], Vec::new()));
        let experts = kept(rec, t);
        entry.1.push(experts.len());
        for x in experts {
            entry.0[x] += 1.0;
        }
    }
    let total: f64 = by_id.values().map(|(_, ks)| ks.len() as f64).sum();
    let (mut score, mut baseline) = (0.0, 0.0);
    let mut per_expert: Vec<Vec<(u32, f64)>> = vec![Vec::new(); e];
    // Ids seen equally often (with equal kept counts) share one simulated baseline.
    let mut simulated: BTreeMap<Vec<usize>, f64> = BTreeMap::new();
    for (&id, (counts, ks)) in &mut by_id {
        let slots = ks.iter().sum::<usize>() as f64;
        if slots == 0.0 {
            continue;
        }
        let weight = ks.len() as f64 / total;
        let q: Vec<f64> = counts.iter().map(|c| c / slots).collect();
        score += q.iter().copied().fold(0.0, f64::max) * weight;
        ks.sort_unstable();
        let expected = *simulated.entry(ks.clone()).or_insert_with(|| random_router_specialisation(ks, e));
        baseline += expected * weight;
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
            shared_share: Vec::new(),
            expert_kinds: Vec::new(),
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
        assert!(s.baseline > 0.125 && s.baseline < 0.5, "{}", s.baseline);
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

    /// §10.1 control: a uniformly random router (THOR's token mode) scores its baseline. The old
    /// baseline `max(1/E, 1/(k·n))` was a lower bound, so THOR looked specialised (its card said
    /// 0.168 against 0.126).
    #[test]
    fn a_random_router_scores_its_baseline() {
        // Zipf-like ids: a few frequent, many rare; routing ignores the id.
        let ids: Vec<u32> = lcg(6000, 3).into_iter().map(|x| ((x % 1000) as f64).sqrt() as u32).collect();
        for k in [1usize, 2] {
            let draws = lcg(6000 * 2, 11 + k as u64);
            let sets: Vec<Vec<usize>> = draws
                .chunks(2)
                .map(|c| {
                    let a = c[0] % 8;
                    if k == 1 { vec![a] } else { vec![a, (a + 1 + c[1] % 7) % 8] }
                })
                .collect();
            let s = token_specialisation(&record(&sets, 8), &ids, 3);
            assert!((s.score - s.baseline).abs() < 0.01, "k={k}: score {} vs baseline {}", s.score, s.baseline);
            let old: f64 = {
                let mut n = BTreeMap::<u32, f64>::new();
                ids.iter().for_each(|&i| *n.entry(i).or_default() += 1.0);
                n.values().map(|&c| (1.0f64 / 8.0).max(1.0 / (k as f64 * c)) * c / ids.len() as f64).sum()
            };
            assert!(s.score - old > 0.02, "k={k}: the old bound {old} sits well below {}", s.score);
        }
    }

    /// Small cases computed by hand: one occurrence scores 1/k; two top-1 occurrences over 8
    /// experts score 1 with probability 1/8, else 1/2 (mean 0.5625); two top-2 occurrences over
    /// 3 experts always share an expert (0.5).
    #[test]
    fn the_specialisation_baseline_by_hand() {
        assert_eq!(random_router_specialisation(&[2], 8), 0.5);
        assert!((random_router_specialisation(&[1, 1], 8) - 0.5625).abs() < 0.02);
        assert_eq!(random_router_specialisation(&[2, 2], 3), 0.5);
        // Three top-1 occurrences over 2 experts: all three agree with probability 1/4.
        assert!((random_router_specialisation(&[1, 1, 1], 2) - 0.75).abs() < 0.02);
        assert_eq!(random_router_specialisation(&[0, 0], 8), 0.0);
    }

    /// Per-token k (top-p, GShard's random second expert): every share, rate and baseline
    /// counts each token's own kept experts, not K_max.
    #[test]
    fn variable_k_uses_each_tokens_own_experts() {
        // One token with 1 expert, one with 3, K_max = 3, E = 4.
        let rec = record(&[vec![0], vec![1, 2, 3]], 4);
        let d = domain_distribution([("d", &rec)]);
        assert_eq!(d["d"], vec![0.25, 0.25, 0.25, 0.25], "shares sum to 1");
        // Co-activation baseline Σ k(k−1) / ((E−1)·Σ k) = 6 / (3·4) = 0.5; K_max would say 2/3.
        assert!((co_activation(&rec).1 - 0.5).abs() < 1e-12);
        // Any-overlap baseline of the pair (k_a = 1, k_b = 3): 1 − C(3,3)/C(4,3) = 0.75.
        assert!((consecutive_rate(&rec).any_overlap_baseline - 0.75).abs() < 1e-12);
        // Affinity baseline Σ k·k' / (E·Σ k) against itself: (1 + 9) / (4·4).
        assert!((expert_affinity(&rec, &rec).2 - 10.0 / 16.0).abs() < 1e-12);
        // Specialisation: q over 4 slots, not K_max·n = 6.
        let s = token_specialisation(&rec, &[5, 5], 4);
        assert!((s.score - 0.25).abs() < 1e-12, "{}", s.score);
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
