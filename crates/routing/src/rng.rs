//! The one counter-based, stateless random generator of the playground (spec §0.4).
//!
//! Every random number is a pure function of `(seed, stream, key...)`: SplitMix64's finaliser is
//! applied to the seed and then folded over each key word. Nothing is stateful, so native and
//! wasm, batched and KV-cached runs, and any evaluation order draw exactly the same numbers. This
//! function is frozen as part of spec version 1: changing it changes every shared link.
//!
//! It lives in the routing crate, with no burn in it, so that the analysis (which simulates
//! random routers for its baselines) draws from the same generator as the routers.

/// One constant per purpose (spec §0.4): never reuse a stream for two purposes.
pub mod stream {
    /// Parameter initialisation of a model built from a seed.
    pub const PARAM_INIT: u64 = 1;
    /// Router input jitter (training only).
    pub const JITTER: u64 = 2;
    /// GShard's random second-expert policy.
    pub const GSHARD_2ND: u64 = 3;
    /// THOR: first training pass.
    pub const THOR_FWD1: u64 = 4;
    /// THOR: second training pass.
    pub const THOR_FWD2: u64 = 5;
    /// THOR at inference.
    pub const THOR_INFER: u64 = 6;
    /// SCMoE's random weak-expert mode.
    pub const SCMOE_RANDOM_WEAK: u64 = 7;
    /// SMoE-Dropout's frozen random router.
    pub const ROUTER_INIT: u64 = 8;
    /// Hash-routing table.
    pub const HASH_TABLE: u64 = 9;
    /// Dropout.
    pub const DROPOUT: u64 = 10;
    /// Training data order.
    pub const DATA_ORDER: u64 = 11;
    /// Token sampling during decoding.
    pub const SAMPLING: u64 = 12;
    /// The simulated uniform random router behind the token-ID specialisation baseline.
    pub const SPECIALISATION_BASELINE: u64 = 13;
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit random word for `(seed, stream, key...)`.
pub fn bits(seed: u64, stream: u64, key: &[u64]) -> u64 {
    let mut h = mix(seed.wrapping_add(GOLDEN));
    h = mix(h ^ stream.wrapping_mul(GOLDEN));
    for (i, &k) in key.iter().enumerate() {
        h = mix(h.wrapping_add(GOLDEN.wrapping_mul(i as u64 + 2)) ^ k);
    }
    h
}

/// A uniform draw in `[0, 1)` with 53 random bits.
pub fn u01(seed: u64, stream: u64, key: &[u64]) -> f64 {
    (bits(seed, stream, key) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal draw (Box–Muller on two uniforms; the convention appends the slot word 0
/// and 1 to the key).
pub fn normal(seed: u64, stream: u64, key: &[u64]) -> f64 {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    let u1 = u01(seed, stream, &k);
    if let Some(last) = k.last_mut() {
        *last = 1;
    }
    let u2 = u01(seed, stream, &k);
    // 1 - u1 lies in (0, 1], so the logarithm is finite.
    (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A stable 64-bit id for a name (FNV-1a), used to key per-tensor streams.
pub fn name_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_pure_functions_of_their_key() {
        assert_eq!(bits(7, stream::JITTER, &[1, 2, 3]), bits(7, stream::JITTER, &[1, 2, 3]));
        assert_ne!(bits(7, stream::JITTER, &[1, 2, 3]), bits(8, stream::JITTER, &[1, 2, 3]));
        assert_ne!(bits(7, stream::JITTER, &[1, 2, 3]), bits(7, stream::GSHARD_2ND, &[1, 2, 3]));
        assert_ne!(bits(7, stream::JITTER, &[1, 2, 3]), bits(7, stream::JITTER, &[1, 3, 2]));
        // Frozen value: a change here silently changes every shared link.
        // Values computed independently (Python, same algorithm).
        assert_eq!(bits(0, 0, &[]), 0x4821_8226_ff3c_d4bf);
        assert_eq!(bits(42, 1, &[5, 6]), 0x3bb2_81bf_bc9a_ee62);
    }

    #[test]
    fn uniform_and_normal_have_the_right_moments() {
        let n = 20_000u64;
        let us: Vec<f64> = (0..n).map(|i| u01(1, stream::DROPOUT, &[i])).collect();
        let mean = us.iter().sum::<f64>() / n as f64;
        assert!(us.iter().all(|&u| (0.0..1.0).contains(&u)));
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        let zs: Vec<f64> = (0..n).map(|i| normal(1, stream::PARAM_INIT, &[i])).collect();
        let m = zs.iter().sum::<f64>() / n as f64;
        let v = zs.iter().map(|z| (z - m) * (z - m)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.03 && (v - 1.0).abs() < 0.05, "mean {m} var {v}");
    }
}
