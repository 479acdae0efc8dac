//! The words the query string uses for enum values.

use switchyard_routing::{CapacityFormula, Priority, SecondPolicy, SmoeDense, ThorMode};

use crate::{Backend, Control, Panel, Shade};

/// An enum with a fixed name for each value.
pub trait Named: Sized + Copy + 'static {
    /// Every value with its name.
    const ALL: &'static [(Self, &'static str)];

    /// The name of `self`.
    fn name(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::ALL.iter().find(|(v, _)| *v == self).map_or("?", |(_, n)| n)
    }

    /// The value called `s`.
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(v, _)| *v)
    }

    /// The names, for messages.
    fn choices() -> String {
        Self::ALL.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(" | ")
    }
}

macro_rules! named {
    ($t:ty { $($v:expr => $n:literal),* $(,)? }) => {
        impl Named for $t {
            const ALL: &'static [(Self, &'static str)] = &[$(($v, $n)),*];
        }
    };
}

named!(CapacityFormula { CapacityFormula::Mtf => "mtf", CapacityFormula::Flax => "flax", CapacityFormula::KAware => "k_aware" });
named!(Priority { Priority::Position => "position", Priority::ReversePosition => "reverse_position", Priority::Bpr => "bpr" });
named!(SecondPolicy { SecondPolicy::Random => "random", SecondPolicy::All => "all", SecondPolicy::Threshold => "threshold", SecondPolicy::None => "none" });
named!(ThorMode { ThorMode::Token => "token", ThorMode::Sequence => "sequence", ThorMode::SequenceRef => "sequence_ref", ThorMode::Mean => "mean" });
named!(SmoeDense { SmoeDense::Softmax => "softmax", SmoeDense::Uniform => "uniform" });
named!(Panel { Panel::Tokens => "tokens", Panel::Grid => "grid", Panel::Heatmap => "heatmap", Panel::Load => "load", Panel::Capacity => "capacity", Panel::Experts => "experts", Panel::Domains => "domains", Panel::Compare => "compare", Panel::Train => "train" });
named!(Control { Control::Prompt => "prompt", Control::Router => "router", Control::Layers => "layers" });
named!(Shade { Shade::Expert => "expert", Shade::Compute => "compute", Shade::ComputeAll => "compute_all", Shade::Shared => "shared" });
named!(crate::TrainRecipe { crate::TrainRecipe::Topk => "topk", crate::TrainRecipe::Switch => "switch", crate::TrainRecipe::Thor => "thor", crate::TrainRecipe::SmoeDropout => "smoe_dropout", crate::TrainRecipe::Lossfree => "lossfree" });
named!(Backend { Backend::Auto => "auto", Backend::Cpu => "cpu", Backend::Webgpu => "webgpu" });
