//! The routing record (spec `routers.md` §0.2): what every router returns for one MoE layer and
//! one forward call, as plain host data.
//!
//! It lives in its own crate, with no burn and no web in it, so that the model (which produces
//! it), the analysis (which measures it) and the app and CLI (which show it) share one type
//! without the analysis depending on burn.
//!
//! Arrays are flat and row-major: a `[T, E]` matrix stores token `t`, expert `e` at `t * E + e`;
//! a `[T, K]` matrix stores token `t`, slot `j` at `t * K + j`. Tokens are flattened
//! batch-major (`t = b * S + s`).

pub mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What an entry of a layer's expert list is (spec §6). The router chooses among all of them
/// alike; only FFN experts cost an expert's compute. The free experts sit after the FFN ones
/// (AdaMoE's null experts follow the true ones; MoE++ ends its list with constant, copy, zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpertKind {
    /// A SwiGLU expert.
    #[default]
    Ffn,
    /// AdaMoE's null expert (§6.1): outputs 0, and its slot's weight goes to the token's other
    /// experts.
    Null,
    /// MoE++'s zero expert (§6.2): outputs 0; its gate is set to 0 before renormalising.
    Zero,
    /// MoE++'s copy expert: outputs its input.
    Copy,
    /// MoE++'s constant expert: `a₁·x + a₂·v` with `(a₁, a₂) = softmax(W_c·x)`.
    Constant,
}

impl ExpertKind {
    /// The kind of entry `e` of a list of kinds (FFN when the list names none: a plain model).
    pub fn at(kinds: &[ExpertKind], e: usize) -> ExpertKind {
        kinds.get(e).copied().unwrap_or_default()
    }

    /// True for the experts whose output is 0 (null, zero): their slots take weight 0.
    pub fn outputs_nothing(self) -> bool {
        matches!(self, Self::Null | Self::Zero)
    }

    /// The name views and exports use (`ffn`, `null`, `zero`, `copy`, `constant`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ffn => "ffn",
            Self::Null => "null",
            Self::Zero => "zero",
            Self::Copy => "copy",
            Self::Constant => "constant",
        }
    }
}

/// The routing of one MoE layer in one forward call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerRouting {
    /// Index of the MoE layer (0-based).
    pub layer: usize,
    /// Number of routed experts `E`.
    pub num_experts: usize,
    /// Slots per token `K_max`: `k` for fixed-k routers, `E` for variable-k routers.
    pub k_max: usize,
    /// Router logits `Z`, `[T, E]`.
    pub logits: Vec<f32>,
    /// Router probabilities `P = softmax(Z)`, `[T, E]`.
    pub probs: Vec<f32>,
    /// True when the router has no logits (hash, THOR, random) and `probs` is uniform.
    pub probs_are_uniform: bool,
    /// Chosen expert per slot, `[T, K]`; rank order (slot 0 is the highest score).
    pub idx: Vec<u32>,
    /// Combine weight per slot, `[T, K]`; 0 for dropped or invalid slots.
    pub weight: Vec<f32>,
    /// Whether the slot holds a chosen expert, `[T, K]`.
    pub valid: Vec<bool>,
    /// Rank of the chosen expert in the score ordering, `[T, K]`.
    pub rank: Vec<u32>,
    /// The slot was assigned but removed by capacity, `[T, K]`.
    pub dropped: Vec<bool>,
    /// Auxiliary quantities (`lbl`, `z_loss`, ...) before any coefficient.
    pub aux: BTreeMap<String, f32>,
    /// Stable sequence id of every token, `[T]`.
    pub seq_id: Vec<u32>,
    /// Absolute position of every token in its sequence, `[T]`.
    pub pos: Vec<u32>,
    /// With a shared expert (spec §8.1): its share of each token's MoE output,
    /// `‖shared‖ / (‖shared‖ + ‖routed‖)`, `[T]`; empty without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_share: Vec<f32>,
    /// The kind of every entry of the expert list, `[E]`; empty when all are FFN experts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expert_kinds: Vec<ExpertKind>,
}

/// One routing slot of one token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    /// The chosen expert.
    pub expert: usize,
    /// Its combine weight (0 when dropped).
    pub weight: f32,
    /// Its rank in the router's score ordering.
    pub rank: usize,
    /// Whether capacity dropped it.
    pub dropped: bool,
}

impl LayerRouting {
    /// Number of routed tokens `T`.
    pub fn num_tokens(&self) -> usize {
        self.seq_id.len()
    }

    /// The probability row of token `t`, length `E`.
    pub fn probs_row(&self, t: usize) -> &[f32] {
        &self.probs[t * self.num_experts..(t + 1) * self.num_experts]
    }

    /// The logit row of token `t`, length `E`.
    pub fn logits_row(&self, t: usize) -> &[f32] {
        &self.logits[t * self.num_experts..(t + 1) * self.num_experts]
    }

    /// The valid slots of token `t`, in slot order.
    pub fn slots(&self, t: usize) -> impl Iterator<Item = Slot> + '_ {
        let base = t * self.k_max;
        (base..base + self.k_max).filter(|&i| self.valid[i]).map(|i| Slot {
            expert: self.idx[i] as usize,
            weight: self.weight[i],
            rank: self.rank[i] as usize,
            dropped: self.dropped[i],
        })
    }

    /// The kind of expert `e` (FFN when the record names no kinds).
    pub fn kind(&self, e: usize) -> ExpertKind {
        ExpertKind::at(&self.expert_kinds, e)
    }

    /// Number of FFN experts (the list's first entries; the free experts follow).
    pub fn ffn_experts(&self) -> usize {
        if self.expert_kinds.is_empty() {
            return self.num_experts;
        }
        self.expert_kinds.iter().filter(|k| **k == ExpertKind::Ffn).count()
    }

    /// The first-choice (rank 0 slot) expert of token `t`, if it has one.
    pub fn top_expert(&self, t: usize) -> Option<usize> {
        self.slots(t).next().map(|s| s.expert)
    }

    /// Checks that every array has the length its shape implies.
    pub fn check_shapes(&self) -> Result<(), String> {
        let t = self.num_tokens();
        let te = t * self.num_experts;
        let tk = t * self.k_max;
        let checks = [
            ("logits", self.logits.len(), te),
            ("probs", self.probs.len(), te),
            ("idx", self.idx.len(), tk),
            ("weight", self.weight.len(), tk),
            ("valid", self.valid.len(), tk),
            ("rank", self.rank.len(), tk),
            ("dropped", self.dropped.len(), tk),
            ("pos", self.pos.len(), t),
        ];
        for (name, got, want) in checks {
            if got != want {
                return Err(format!("routing record field `{name}` has {got} entries, expected {want}"));
            }
        }
        if !self.expert_kinds.is_empty() && self.expert_kinds.len() != self.num_experts {
            return Err(format!(
                "routing record field `expert_kinds` has {} entries, expected {}",
                self.expert_kinds.len(),
                self.num_experts
            ));
        }
        if !self.shared_share.is_empty() && self.shared_share.len() != t {
            return Err(format!(
                "routing record field `shared_share` has {} entries, expected {t}",
                self.shared_share.len()
            ));
        }
        Ok(())
    }

    /// Slot drop rate `Σ dropped / Σ assigned` (the `drop_rate` aux value).
    pub fn drop_rate(&self) -> f32 {
        let assigned = self.valid.iter().filter(|v| **v).count();
        let dropped = self.valid.iter().zip(&self.dropped).filter(|(v, d)| **v && **d).count();
        if assigned == 0 { 0.0 } else { dropped as f32 / assigned as f32 }
    }

    /// Mean number of kept FFN experts per token (the `mean_active_experts` aux value): free
    /// experts (null, zero, copy, constant) are not counted.
    pub fn mean_active_experts(&self) -> f32 {
        let kept = (0..self.idx.len())
            .filter(|&i| self.valid[i] && !self.dropped[i] && self.kind(self.idx[i] as usize) == ExpertKind::Ffn)
            .count();
        kept as f32 / self.num_tokens().max(1) as f32
    }

    /// Appends the tokens of `other` (same layer and shape) after this record's tokens. Used to
    /// join the records of successive KV-cached decoding steps into one trace. Aux values that
    /// summarise the tokens (`drop_rate`, `mean_active_experts`) are recomputed over all of them;
    /// flags (`non_causal`, `forced_expert`) are kept from either side.
    pub fn extend(&mut self, other: &LayerRouting) {
        for (key, value) in &other.aux {
            self.aux.entry(key.clone()).or_insert(*value);
        }
        self.logits.extend_from_slice(&other.logits);
        self.probs.extend_from_slice(&other.probs);
        self.idx.extend_from_slice(&other.idx);
        self.weight.extend_from_slice(&other.weight);
        self.valid.extend_from_slice(&other.valid);
        self.rank.extend_from_slice(&other.rank);
        self.dropped.extend_from_slice(&other.dropped);
        self.seq_id.extend_from_slice(&other.seq_id);
        self.pos.extend_from_slice(&other.pos);
        self.shared_share.extend_from_slice(&other.shared_share);
        if self.aux.contains_key("drop_rate") {
            self.aux.insert("drop_rate".into(), self.drop_rate());
        }
        if self.aux.contains_key("mean_active_experts") {
            self.aux.insert("mean_active_experts".into(), self.mean_active_experts());
        }
    }
}

/// The routing of every MoE layer of one forward call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingRecord {
    /// One entry per MoE layer, in layer order.
    pub layers: Vec<LayerRouting>,
}

impl RoutingRecord {
    /// Appends a later call's tokens layer by layer (see [`LayerRouting::extend`]).
    pub fn extend(&mut self, other: &RoutingRecord) {
        if self.layers.is_empty() {
            self.layers = other.layers.clone();
            return;
        }
        for (mine, theirs) in self.layers.iter_mut().zip(&other.layers) {
            mine.extend(theirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_token_record() -> LayerRouting {
        LayerRouting {
            layer: 0,
            num_experts: 3,
            k_max: 2,
            logits: vec![0.0, 1.0, 2.0, 2.0, 0.0, 1.0],
            probs: vec![0.1, 0.2, 0.7, 0.7, 0.1, 0.2],
            probs_are_uniform: false,
            idx: vec![2, 1, 0, 2],
            weight: vec![0.78, 0.22, 0.78, 0.0],
            valid: vec![true, true, true, true],
            rank: vec![0, 1, 0, 1],
            dropped: vec![false, false, false, true],
            aux: BTreeMap::new(),
            seq_id: vec![0, 0],
            pos: vec![0, 1],
            shared_share: Vec::new(),
            expert_kinds: Vec::new(),
        }
    }

    #[test]
    fn slots_follow_rank_order_and_report_drops() {
        let r = two_token_record();
        assert_eq!(r.top_expert(0), Some(2));
        let slots: Vec<Slot> = r.slots(1).collect();
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0].expert, 0);
        assert!(slots[1].dropped);
        assert_eq!(r.probs_row(1), &[0.7, 0.1, 0.2]);
        assert!(r.check_shapes().is_ok());
    }

    #[test]
    fn shape_check_names_the_bad_field() {
        let mut r = two_token_record();
        r.weight.pop();
        let err = r.check_shapes().unwrap_err();
        assert!(err.contains("weight"), "{err}");
    }

    /// A cached decode joins one record per step: the summaries must describe every token, not
    /// the prompt's record alone (they used to be dropped from the appended records).
    #[test]
    fn extend_merges_the_aux_summaries() {
        let mut prompt = two_token_record();
        prompt.aux.insert("mean_active_experts".into(), prompt.mean_active_experts());
        prompt.aux.insert("drop_rate".into(), prompt.drop_rate());
        assert_eq!((prompt.aux["mean_active_experts"], prompt.aux["drop_rate"]), (1.5, 0.25));
        // One generated token with a single kept expert, nothing dropped.
        let mut step = two_token_record();
        for v in [&mut step.probs, &mut step.logits] {
            v.truncate(3);
        }
        step.weight.truncate(2);
        step.idx.truncate(2);
        step.rank.truncate(2);
        step.valid = vec![true, false];
        step.dropped = vec![false, false];
        step.seq_id = vec![0];
        step.pos = vec![2];
        step.aux = BTreeMap::from([("mean_active_experts".into(), 1.0), ("drop_rate".into(), 0.0)]);
        step.aux.insert("non_causal".into(), 1.0);
        prompt.extend(&step);
        prompt.check_shapes().unwrap();
        assert!((prompt.aux["mean_active_experts"] - 4.0 / 3.0).abs() < 1e-6, "{:?}", prompt.aux);
        assert!((prompt.aux["drop_rate"] - 0.2).abs() < 1e-6);
        assert_eq!(prompt.aux["non_causal"], 1.0);
    }

    #[test]
    fn extend_appends_tokens_and_round_trips_through_json() {
        let mut a = RoutingRecord { layers: vec![two_token_record()] };
        let b = a.clone();
        a.extend(&b);
        assert_eq!(a.layers[0].num_tokens(), 4);
        assert!(a.layers[0].check_shapes().is_ok());
        let json = serde_json::to_string(&a).unwrap();
        let back: RoutingRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
    }
}
