"""Tiny random Hugging Face MoE checkpoints and transformers' numbers on them.

For each architecture Switchyard opens, this makes a small random model with transformers,
saves it as a Hugging Face folder (config.json, safetensors, tokenizer.json), runs it on fixed
token ids and writes what transformers computed to reference.json: the logits, every layer's
router logits, and a greedy continuation. Switchyard's parity test
(crates/model/tests/hf_parity.rs) loads the same folders and must match within 1e-4, so CI
checks parity without torch.

    pip install -r tools/hf/requirements.txt
    python tools/hf/make_fixtures.py            # rewrites crates/model/tests/fixtures/hf

The fixtures are small (about 60 KB each): hidden size 32, 2 layers, 4 experts (6 for one),
a 300-token byte-level BPE vocabulary. Weights are drawn wider than transformers' 0.02 default
and the norm gains and biases are randomised, so the router is decisive and every tensor's
mapping matters.
"""

import argparse
import json
import pathlib

import safetensors.torch
import tokenizers
import torch
import transformers
from transformers import AutoModelForCausalLM, MixtralConfig, OlmoeConfig, Qwen2MoeConfig, Qwen3MoeConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/model/tests/fixtures/hf"
VOCAB = 300
TOKENS = [5, 77, 123, 9, 250, 31, 64, 199, 12, 288, 3, 140]
GREEDY_NEW = 8

TEXT = [
    "A mixture of experts sends every token to a few experts.",
    "The router scores each expert; the top k are chosen.",
    "def route(x): return softmax(x @ w).topk(k)",
    "Les experts apprennent des domaines différents.",
    "1 2 3 4 5 6 7 8 9 10, load balance, capacity factor 1.25",
]


def tokenizer():
    """A byte-level BPE of VOCAB ids (what Qwen and OLMoE use, at toy size)."""
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=VOCAB, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(TEXT * 20, trainer)
    return tok


COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    initializer_range=0.15,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)

# name -> (config, dtype, layout, shards): layout "hub" is save_pretrained's per-expert layout;
# "fused" writes transformers 5's in-memory layout (mlp.experts.gate_up_proj / down_proj) as it is.
FIXTURES = {
    "mixtral": (MixtralConfig(intermediate_size=16, num_local_experts=4, num_experts_per_tok=2, **COMMON),
                torch.float16, "hub", 1),
    "mixtral-fused": (MixtralConfig(intermediate_size=16, num_local_experts=4, num_experts_per_tok=2,
                                    tie_word_embeddings=True, rope_theta=1e6, **COMMON),
                      torch.bfloat16, "fused", 1),
    "qwen2-moe": (Qwen2MoeConfig(intermediate_size=64, moe_intermediate_size=16, shared_expert_intermediate_size=24,
                                 num_experts=6, num_experts_per_tok=2, norm_topk_prob=False, **COMMON),
                  torch.float16, "hub", 2),
    "qwen3-moe": (Qwen3MoeConfig(moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2, head_dim=12,
                                 norm_topk_prob=True, **COMMON),
                  torch.bfloat16, "hub", 1),
    "olmoe": (OlmoeConfig(intermediate_size=16, num_experts=4, num_experts_per_tok=2, norm_topk_prob=False,
                          tie_word_embeddings=True, **COMMON),
              torch.float32, "hub", 1),
}


def randomise_vectors(model, gen):
    """Norm gains around 1 and biases around 0, instead of exactly 1 and 0."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if name.endswith("norm.weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))


def save(model, folder, layout, shards):
    model.config.architectures = [type(model).__name__]
    if layout == "hub":
        # Any size that splits the file in two is enough to exercise the index.
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        model.save_pretrained(folder, max_shard_size=(size // shards + 1) if shards > 1 else "5GB")
    else:
        model.config.save_pretrained(folder)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        safetensors.torch.save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def rounded(t):
    """Rows of 7 significant digits: what f32 holds, at half the JSON of Python's repr."""
    return [[float(f"{v:.7g}") for v in row] for row in t.tolist()]


def reference(folder):
    """transformers' numbers for the saved folder, computed in f32."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor([TOKENS])
    with torch.no_grad():
        out = model(ids, output_router_logits=True)
        greedy = model.generate(ids, max_new_tokens=GREEDY_NEW, do_sample=False, eos_token_id=None,
                                pad_token_id=0)
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "architecture": model.config.architectures[0],
        "tokens": TOKENS,
        "logits": rounded(out.logits[0]),
        "router_logits": [rounded(r.reshape(len(TOKENS), -1)) for r in out.router_logits],
        "greedy": greedy[0, len(TOKENS):].tolist(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args()
    tok = tokenizer()
    for i, (name, (config, dtype, layout, shards)) in enumerate(FIXTURES.items()):
        gen = torch.Generator().manual_seed(1000 + i)
        torch.manual_seed(1000 + i)
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.safetensors*"):
            old.unlink()
        model = AutoModelForCausalLM.from_config(config)
        randomise_vectors(model, gen)
        model = model.to(dtype)
        save(model, folder, layout, shards)
        tok.save(str(folder / "tokenizer.json"))
        ref = reference(folder)
        (folder / "reference.json").write_text(json.dumps(ref, separators=(",", ":")) + "\n")
        files = sorted(p.name for p in folder.iterdir())
        print(f"{name}: {ref['architecture']} {dtype} {layout}, greedy {ref['greedy']}, files {files}")


if __name__ == "__main__":
    main()
