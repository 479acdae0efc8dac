//! DeepSeek-V3 routing with auxiliary-loss-free balancing (spec §8.2): sigmoid affinities, a
//! per-expert selection bias that only chooses, weights from the unbiased affinities
//! normalised over the chosen experts, and the bias update that replaces the balancing loss.

use switchyard_record::LayerRouting;

use super::{Choice, RecordBuilder, RouteContext, rank_experts};

/// `σ(z)` in f64 (the record must not depend on the backend's rounding).
fn sigmoid(z: f32) -> f64 {
    1.0 / (1.0 + (-f64::from(z)).exp())
}

/// One token's choice (shared by inference and training): the affinities `s = σ(z)`, and the
/// `k` allowed experts with the highest `s + b` as (expert, rank by `s + b` among all experts).
/// `bias` is the layer's selection bias, absent when the model has none or the link turns it off.
pub fn sigmoid_choice(
    logits: &[f32],
    bias: Option<&[f32]>,
    allowed: &[bool],
    k: usize,
) -> (Vec<f32>, Vec<(usize, usize)>) {
    let s: Vec<f32> = logits.iter().map(|&z| sigmoid(z) as f32).collect();
    let selection: Vec<f32> = match bias {
        Some(b) => s.iter().zip(b).map(|(s, b)| s + b).collect(),
        None => s.clone(),
    };
    let chosen = rank_experts(&selection).into_iter().enumerate().filter(|(_, x)| allowed[*x]).take(k);
    (s, chosen.map(|(rank, x)| (x, rank)).collect())
}

/// Sigmoid top-k (spec §8.2): `S = TopK(σ(z) + b)`, `w = σ(z)[S] / Σ σ(z)[S]` (route_scale 1).
/// The record's probabilities are the affinities normalised over the allowed experts
/// (`s_e / Σ_j s_j`, the form V3's sequence-wise loss uses), so the views that read a
/// distribution see one.
pub(super) fn sigmoid_top_k(
    logits: Vec<f32>,
    e: usize,
    k: usize,
    use_bias: bool,
    ctx: &RouteContext<'_>,
) -> LayerRouting {
    let rows: Vec<Vec<f32>> = logits.chunks(e).map(<[f32]>::to_vec).collect();
    let bias = ctx.selection_bias.filter(|b| use_bias && b.len() == e);
    let mut b = RecordBuilder::new(e, k, logits, false, ctx);
    for row in &rows {
        let (s, chosen) = sigmoid_choice(row, bias, ctx.allowed, k);
        let mass: f64 = chosen.iter().map(|&(x, _)| f64::from(s[x])).sum();
        let choices: Vec<Choice> = chosen
            .iter()
            .map(|&(x, rank)| Choice { expert: x, weight: (f64::from(s[x]) / mass) as f32, rank })
            .collect();
        let total: f64 = s.iter().zip(ctx.allowed).filter(|(_, a)| **a).map(|(v, _)| f64::from(*v)).sum();
        let probs: Vec<f32> =
            s.iter().zip(ctx.allowed).map(|(&v, &a)| if a { (f64::from(v) / total) as f32 } else { 0.0 }).collect();
        b.push(&probs, &choices);
    }
    b.finish()
}

/// The auxiliary-loss-free update (spec §8.2) after a training step whose slots went `counts`
/// to the experts: `b_e ← b_e + γ·sign(c̄ − c_e)`, so an overloaded expert's bias falls by γ,
/// an underloaded one's rises by γ, and one exactly at the mean stays.
pub fn update_selection_bias(bias: &mut [f32], counts: &[u64], gamma: f32) {
    let mean = counts.iter().sum::<u64>() as f64 / counts.len().max(1) as f64;
    for (b, &c) in bias.iter_mut().zip(counts) {
        let c = c as f64;
        if c > mean {
            *b -= gamma;
        } else if c < mean {
            *b += gamma;
        }
    }
}
