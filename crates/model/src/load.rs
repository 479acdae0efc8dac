//! Parameters in and out: the network built from host parameters and read back to them. Both
//! directions name and shape every tensor through [`param_specs`] and [`keys`], so a checkpoint
//! key or shape is written in one place.

use std::collections::BTreeMap;

use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;
use switchyard_routing::{ModelConfig, QkNorm};

use crate::host::to_host;
use crate::layers::{Attention, ConstantExpert, DecoderLayer, Expert, MoeTransformer, SparseMoeBlock, param};
use crate::model::{ModelError, transpose};
use crate::params::keys::ExpertProj::{W1, W2, W3};
use crate::params::{HostTensor, ParamStore, keys, param_specs};
use switchyard_routing::record::ExpertKind;

/// Host parameters and the shapes the configuration gives them.
struct Loader<'a> {
    store: &'a ParamStore,
    shapes: BTreeMap<String, Vec<usize>>,
    device: &'a Device,
}

impl Loader<'_> {
    fn get(&self, key: &str) -> Result<(&HostTensor, &[usize]), ModelError> {
        let shape = self.shapes.get(key).ok_or_else(|| ModelError::Param {
            name: key.into(),
            problem: "not a parameter of this configuration".into(),
        })?;
        let t = self.store.get(key).ok_or_else(|| ModelError::Param { name: key.into(), problem: "missing".into() })?;
        if t.shape != *shape || t.data.len() != shape.iter().product::<usize>() {
            return Err(ModelError::Param {
                name: key.into(),
                problem: format!("expected shape {shape:?}, found {:?}", t.shape),
            });
        }
        Ok((t, shape))
    }

    /// An HF `[out, in]` projection as a burn `[in, out]` linear layer without bias.
    fn linear(&self, key: String) -> Result<Linear, ModelError> {
        let (t, shape) = self.get(&key)?;
        let w = Tensor::from_data(
            TensorData::new(transpose(&t.data, shape[0], shape[1]), [shape[1], shape[0]]),
            self.device,
        );
        Ok(Linear { weight: param(&key, w), bias: None })
    }

    /// [`Self::linear`] with the bias `bias` when there is one.
    fn linear_biased(&self, key: String, bias: Option<String>) -> Result<Linear, ModelError> {
        let mut l = self.linear(key)?;
        if let Some(b) = bias {
            l.bias = Some(param(&b, self.vector(&b)?));
        }
        Ok(l)
    }

    fn matrix(&self, key: &str) -> Result<Tensor<2>, ModelError> {
        let (t, shape) = self.get(key)?;
        Ok(Tensor::from_data(TensorData::new(t.data.clone(), [shape[0], shape[1]]), self.device))
    }

    fn vector(&self, key: &str) -> Result<Tensor<1>, ModelError> {
        let (t, shape) = self.get(key)?;
        Ok(Tensor::from_data(TensorData::new(t.data.clone(), [shape[0]]), self.device))
    }

    fn norm(&self, key: String, eps: f64) -> Result<RmsNorm, ModelError> {
        Ok(RmsNorm { gamma: param(&key, self.vector(&key)?), epsilon: eps })
    }

    /// The MoE block of layer `i`: router (one or two layers, with MoE++'s gating residual),
    /// FFN experts, constant experts, shared expert.
    fn moe(&self, c: &ModelConfig, i: usize) -> Result<SparseMoeBlock, ModelError> {
        let l = keys::layer(i);
        let expert = |w1, w2, w3| -> Result<Expert, ModelError> {
            Ok(Expert { w1: self.linear(w1)?, w2: self.linear(w2)?, w3: self.linear(w3)? })
        };
        let experts = (0..c.ffn_experts())
            .map(|j| expert(l.expert(j, W1), l.expert(j, W2), l.expert(j, W3)))
            .collect::<Result<Vec<_>, _>>()?;
        let constants = (c.expert_kinds().into_iter().enumerate())
            .filter(|(_, k)| *k == ExpertKind::Constant)
            .map(|(j, _)| {
                let v = l.constant_vector(j);
                Ok(ConstantExpert { wg: self.linear(l.constant_mix(j))?, constant: param(&v, self.vector(&v)?) })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let shared_expert = match c.shared_d_ff {
            0 => None,
            _ => Some(expert(l.shared_expert(W1), l.shared_expert(W2), l.shared_expert(W3))?),
        };
        let two_layer = c.gate_hidden > 0;
        Ok(SparseMoeBlock {
            gate: self.linear(l.gate(two_layer))?,
            gate_in: if two_layer { Some(self.linear(l.gate_in())?) } else { None },
            gate_map: if c.gating_residual && i > 0 { Some(self.linear(l.gate_map())?) } else { None },
            experts,
            constants,
            free_kinds: c.free_experts.clone(),
            input_scale: c.expert_input_scale,
            shared_expert,
            shared_expert_gate: if c.shared_expert_gate { Some(self.linear(l.shared_expert_gate())?) } else { None },
        })
    }

    fn layer(&self, c: &ModelConfig, i: usize) -> Result<DecoderLayer, ModelError> {
        let l = keys::layer(i);
        let bias = |proj| c.attention_bias.then(|| l.attn_bias(proj));
        let qk_norm = |proj| match c.qk_norm {
            QkNorm::None => Ok(None),
            _ => self.norm(l.qk_norm(proj), c.rms_eps).map(Some),
        };
        Ok(DecoderLayer {
            input_layernorm: self.norm(l.input_norm(), c.rms_eps)?,
            self_attn: Attention {
                q_proj: self.linear_biased(l.attn('q'), bias('q'))?,
                k_proj: self.linear_biased(l.attn('k'), bias('k'))?,
                v_proj: self.linear_biased(l.attn('v'), bias('v'))?,
                o_proj: self.linear(l.attn('o'))?,
                q_norm: qk_norm('q')?,
                k_norm: qk_norm('k')?,
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim(),
                qk_norm_per_head: c.qk_norm == QkNorm::PerHead,
            },
            post_attention_layernorm: self.norm(l.post_norm(), c.rms_eps)?,
            block_sparse_moe: self.moe(c, i)?,
        })
    }
}

/// The network from host parameters, every tensor checked against the configuration's list.
pub(crate) fn network(c: &ModelConfig, store: &ParamStore, device: &Device) -> Result<MoeTransformer, ModelError> {
    let shapes = param_specs(c).into_iter().map(|s| (s.name, s.shape)).collect();
    let ld = Loader { store, shapes, device };
    let layers = (0..c.n_layers).map(|i| ld.layer(c, i)).collect::<Result<Vec<_>, _>>()?;
    Ok(MoeTransformer {
        embed_tokens: Embedding { weight: param(keys::EMBED, ld.matrix(keys::EMBED)?) },
        layers,
        norm: ld.norm(keys::FINAL_NORM.into(), c.rms_eps)?,
        lm_head: if c.tie_embeddings { None } else { Some(ld.linear(keys::LM_HEAD.into())?) },
    })
}

/// Each layer's selection bias from the store, when the configuration has one (else none).
pub(crate) fn selection_bias(c: &ModelConfig, store: &ParamStore) -> Result<Vec<Vec<f32>>, ModelError> {
    if !c.selection_bias {
        return Ok(Vec::new());
    }
    (0..c.n_layers)
        .map(|i| {
            let name = keys::layer(i).selection_bias();
            match store.get(&name) {
                Some(t) if t.shape == [c.n_experts] => Ok(t.data.clone()),
                Some(t) => {
                    Err(ModelError::Param { name, problem: format!("shape {:?}, expected [{}]", t.shape, c.n_experts) })
                }
                None => Err(ModelError::Param { name, problem: "missing".into() }),
            }
        })
        .collect()
}

/// Every parameter of the network with its key; `true` marks burn `[in, out]` projections.
fn named_tensors(net: &MoeTransformer) -> Vec<(String, Tensor<2>, bool)> {
    let mut v: Vec<(String, Tensor<2>, bool)> = vec![(keys::EMBED.into(), net.embed_tokens.weight.val(), false)];
    let mut vectors = Vec::new(); // 1-D parameters other than the norms
    let mut lin = |key: String, l: &Linear| v.push((key, l.weight.val(), true));
    for (i, layer) in net.layers.iter().enumerate() {
        let l = keys::layer(i);
        let a = &layer.self_attn;
        for (proj, linear) in [('q', &a.q_proj), ('k', &a.k_proj), ('v', &a.v_proj), ('o', &a.o_proj)] {
            lin(l.attn(proj), linear);
            if let Some(b) = &linear.bias {
                vectors.push((l.attn_bias(proj), b.val().unsqueeze(), false));
            }
        }
        for (proj, norm) in [('q', &a.q_norm), ('k', &a.k_norm)] {
            if let Some(n) = norm {
                vectors.push((l.qk_norm(proj), n.gamma.val().unsqueeze(), false));
            }
        }
        let moe = &layer.block_sparse_moe;
        lin(l.gate(moe.gate_in.is_some()), &moe.gate);
        if let Some(first) = &moe.gate_in {
            lin(l.gate_in(), first);
        }
        if let Some(map) = &moe.gate_map {
            lin(l.gate_map(), map);
        }
        for (j, e) in moe.experts.iter().enumerate() {
            lin(l.expert(j, W1), &e.w1);
            lin(l.expert(j, W2), &e.w2);
            lin(l.expert(j, W3), &e.w3);
        }
        let constant_slots = moe.free_kinds.iter().enumerate().filter(|(_, k)| **k == ExpertKind::Constant);
        for ((i, _), c) in constant_slots.zip(&moe.constants) {
            let j = moe.experts.len() + i;
            lin(l.constant_mix(j), &c.wg);
            vectors.push((l.constant_vector(j), c.constant.val().unsqueeze(), false));
        }
        if let Some(s) = &layer.block_sparse_moe.shared_expert {
            lin(l.shared_expert(W1), &s.w1);
            lin(l.shared_expert(W2), &s.w2);
            lin(l.shared_expert(W3), &s.w3);
        }
        if let Some(g) = &layer.block_sparse_moe.shared_expert_gate {
            lin(l.shared_expert_gate(), g);
        }
    }
    if let Some(head) = &net.lm_head {
        lin(keys::LM_HEAD.into(), head);
    }
    let norm = |key: String, n: &RmsNorm| (key, n.gamma.val().unsqueeze(), false);
    for (i, layer) in net.layers.iter().enumerate() {
        let l = keys::layer(i);
        v.push(norm(l.input_norm(), &layer.input_layernorm));
        v.push(norm(l.post_norm(), &layer.post_attention_layernorm));
    }
    v.push(norm(keys::FINAL_NORM.into(), &net.norm));
    v.extend(vectors);
    v
}

/// Reads every parameter back to the host, in the HF layout (for checkpoints).
pub(crate) async fn host_params(c: &ModelConfig, net: &MoeTransformer) -> Result<ParamStore, ModelError> {
    let shapes: BTreeMap<String, Vec<usize>> = param_specs(c).into_iter().map(|s| (s.name, s.shape)).collect();
    let mut out = ParamStore::new();
    for (name, tensor, transposed) in named_tensors(net) {
        let data = to_host(tensor).await?;
        let shape = shapes.get(&name).cloned().ok_or_else(|| ModelError::Param {
            name: name.clone(),
            problem: "not in the configuration's parameter list".into(),
        })?;
        // burn stores projections as [in, out] = [shape[1], shape[0]]; the HF layout is [out, in].
        let data = if transposed { transpose(&data, shape[1], shape[0]) } else { data };
        out.insert(name, HostTensor { shape, data });
    }
    Ok(out)
}
