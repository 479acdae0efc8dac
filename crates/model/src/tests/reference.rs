//! An independent host implementation of the forward pass in f64 with plain loops, written from
//! the Mixtral / HF definitions, not from the burn code.

use crate::ModelConfig;
use crate::params::ParamStore;
use switchyard_routing::router::rank_experts;

fn w<'a>(s: &'a ParamStore, name: &str) -> &'a [f32] {
    &s[name].data
}

/// y = W x for an HF `[out, in]` matrix.
fn matvec(m: &[f32], x: &[f64], out: usize) -> Vec<f64> {
    let inp = x.len();
    (0..out).map(|o| (0..inp).map(|i| f64::from(m[o * inp + i]) * x[i]).sum()).collect()
}

fn rms(x: &[f64], g: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = (ms + eps).sqrt();
    x.iter().zip(g).map(|(v, &g)| v / r * f64::from(g)).collect()
}

fn rope(v: &mut [f64], pos: usize, theta: f64) {
    let hd = v.len();
    let half = hd / 2;
    for i in 0..half {
        let a = pos as f64 * theta.powf(-2.0 * i as f64 / hd as f64);
        let (x1, x2) = (v[i], v[i + half]);
        v[i] = x1 * a.cos() - x2 * a.sin();
        v[i + half] = x2 * a.cos() + x1 * a.sin();
    }
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Logits `[S, V]` (flattened) for one sequence, routing with the config's top-k.
pub fn forward(c: &ModelConfig, s: &ParamStore, toks: &[u32]) -> Vec<f32> {
    let (d, hd, nh, nkv) = (c.d_model, c.head_dim(), c.n_heads, c.n_kv_heads);
    let emb = w(s, "model.embed_tokens.weight");
    let mut h: Vec<Vec<f64>> = toks
        .iter()
        .map(|&t| emb[t as usize * d..(t as usize + 1) * d].iter().map(|&v| f64::from(v)).collect())
        .collect();
    for l in 0..c.n_layers {
        let p = format!("model.layers.{l}");
        let x: Vec<Vec<f64>> =
            h.iter().map(|r| rms(r, w(s, &format!("{p}.input_layernorm.weight")), c.rms_eps)).collect();
        let proj = |name: &str, out: usize, pos_rope: bool| -> Vec<Vec<f64>> {
            x.iter()
                .enumerate()
                .map(|(pos, r)| {
                    let mut y = matvec(w(s, &format!("{p}.self_attn.{name}.weight")), r, out);
                    if pos_rope {
                        for head in y.chunks_mut(hd) {
                            rope(head, pos, c.rope_theta);
                        }
                    }
                    y
                })
                .collect()
        };
        let (q, k, v) = (proj("q_proj", d, true), proj("k_proj", nkv * hd, true), proj("v_proj", nkv * hd, false));
        for (i, hrow) in h.iter_mut().enumerate() {
            let mut att = vec![0.0; d];
            for head in 0..nh {
                let kvh = head / (nh / nkv);
                let qh = &q[i][head * hd..(head + 1) * hd];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| (0..hd).map(|u| qh[u] * k[j][kvh * hd + u]).sum::<f64>() / (hd as f64).sqrt())
                    .collect();
                let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|z| (z - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    for u in 0..hd {
                        att[head * hd + u] += ej / z * v[j][kvh * hd + u];
                    }
                }
            }
            let o = matvec(w(s, &format!("{p}.self_attn.o_proj.weight")), &att, d);
            hrow.iter_mut().zip(o).for_each(|(a, b)| *a += b);
        }
        for hrow in h.iter_mut() {
            let x = rms(hrow, w(s, &format!("{p}.post_attention_layernorm.weight")), c.rms_eps);
            let z = matvec(w(s, &format!("{p}.block_sparse_moe.gate.weight")), &x, c.n_experts);
            let zf: Vec<f32> = z.iter().map(|&v| v as f32).collect();
            let chosen = &rank_experts(&zf)[..c.top_k];
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mass: f64 = chosen.iter().map(|&e| (z[e] - m).exp()).sum();
            for &e in chosen {
                let g = (z[e] - m).exp() / mass;
                let pe = format!("{p}.block_sparse_moe.experts.{e}");
                let a = matvec(w(s, &format!("{pe}.w1.weight")), &x, c.d_ff);
                let b = matvec(w(s, &format!("{pe}.w3.weight")), &x, c.d_ff);
                let inner: Vec<f64> = a.iter().zip(&b).map(|(a, b)| silu(*a) * b).collect();
                let y = matvec(w(s, &format!("{pe}.w2.weight")), &inner, d);
                hrow.iter_mut().zip(y).for_each(|(a, b)| *a += g * b);
            }
        }
    }
    let head = if c.tie_embeddings { "model.embed_tokens.weight" } else { "lm_head.weight" };
    h.iter()
        .flat_map(|r| matvec(w(s, head), &rms(r, w(s, "model.norm.weight"), c.rms_eps), c.vocab_size))
        .map(|v| v as f32)
        .collect()
}
