"""Routing traces of Hugging Face MoE models, on your own machine, for Switchyard's page.

Runs any transformers MoE that reports its router (`output_router_logits`) on prompts and
writes a `switchyard-trace/1` JSON file that the playground opens read-only (Open a trace, or
`?trace=URL`): every token's router probabilities, chosen experts and combine weights at every
layer, the prompts' labels, and the model's name and config. Models of any size: this runs
where the model fits, the page only reads the record.

    pip install -r tools/hf/requirements.txt
    python tools/hf/trace.py mistralai/Mixtral-8x7B-v0.1 --prompt code="def f(x):" --prompt prose="Once upon a time" -o t.json
    python tools/hf/trace.py ./my-moe --prompt-file legal=contract.txt --dtype bfloat16 -o t.json

Chosen experts and weights are what the model's router returned when it reports them
(transformers 5's `*TopKRouter` modules return logits, weights and indices); otherwise they
are recomputed as the top-k of the softmax of the router logits (renormalised when the config
says `norm_topk_prob`, as Mixtral always does), which is exact for those routers and an
approximation for others (DeepSeek-V3's grouped sigmoid routing, for one): the file says which.

It also converts llama.cpp's `moe-trace` CSV (`examples/moe-trace`, one `layer,expert` row per
routed activation) with `--llama-cpp-csv FILE --top-k K --experts E`. That CSV carries the
chosen experts only: no token ids or texts, no router probabilities and no weights. The trace
then has placeholder tokens (`#0`, `#1`, …), uniform probabilities (flagged, so the page shows
no confidence or entropy) and equal weights 1/k.
"""

import argparse
import csv
import json
import pathlib
import sys

FORMAT = "switchyard-trace/1"


def token_list(tok, ids, label, sequence, start_index, start_byte):
    """The trace's tokens of one sequence: printable text and byte spans from the decoded pieces."""
    out, at = [], start_byte
    for i, t in enumerate(ids):
        text = tok.decode([t]) if tok is not None else f"#{start_index + i}"
        n = len(text.encode("utf-8"))
        out.append({"index": start_index + i, "id": int(t), "text": text, "bytes": [at, at + n], "kind": "prompt",
                    "label": label, "sequence": sequence})
        at += n
    return out, at


def capture_routers(model):
    """Forward hooks on the modules that return (logits, weights, indices): the true choices."""
    seen = []

    def hook(_module, _inputs, output):
        if isinstance(output, tuple) and len(output) >= 3:
            seen.append((output[1].detach().float(), output[2].detach()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if type(m).__name__.endswith("TopKRouter")]
    return seen, handles


def trace_model(args):
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    config = AutoConfig.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, device_map=args.device_map).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    k = getattr(config, "num_experts_per_tok", None) or getattr(config, "moe_topk", None)
    renorm = bool(getattr(config, "norm_topk_prob", config.model_type == "mixtral"))
    prompts = [p.split("=", 1) if "=" in p else ("prompt", p) for p in args.prompt]
    prompts += [(lab, pathlib.Path(f).read_text(encoding="utf-8")) for lab, f in (p.split("=", 1) for p in args.prompt_file)]
    if not prompts:
        sys.exit("give at least one --prompt LABEL=TEXT or --prompt-file LABEL=FILE")
    tokens, layers, byte_at, sources = [], None, 0, set()
    for seq, (label, text) in enumerate(prompts):
        ids = tok(text, add_special_tokens=False)["input_ids"][: args.max_tokens]
        seen, handles = capture_routers(model)
        with torch.no_grad():
            out = model(torch.tensor([ids], device=model.device), output_router_logits=True)
        for h in handles:
            h.remove()
        logits = [r.float().reshape(len(ids), -1) for r in out.router_logits]
        if layers is None:
            layers = [{"layer": i, "routing": []} for i in range(len(logits))]
        first = len(tokens)
        new, byte_at = token_list(tok, ids, label, seq, first, byte_at)
        tokens += new
        use_seen = len(seen) == len(logits)
        sources.add("the router's own choices" if use_seen else f"top-{k} of the softmax of the router logits"
                    + (", renormalised" if renorm else ""))
        for i, z in enumerate(logits):
            probs = torch.softmax(z, dim=-1)
            if use_seen:
                weights, idx = seen[i][0].reshape(len(ids), -1), seen[i][1].reshape(len(ids), -1)
            else:
                top, idx = torch.topk(probs, k, dim=-1)
                weights = top / top.sum(-1, keepdim=True) if renorm else top
            order = torch.argsort(probs, dim=-1, descending=True)
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order))
            for t in range(len(ids)):
                experts = idx[t].tolist()
                layers[i]["routing"].append({
                    "token": first + t,
                    "experts": experts,
                    "weights": [round(float(w), 6) for w in weights[t]],
                    "ranks": [int(rank[t, e]) for e in experts],
                    "dropped": [False] * len(experts),
                    "probs": [round(float(p), 6) for p in probs[t]],
                })
        print(f"{label}: {len(ids)} tokens", file=sys.stderr)
    name = args.name or str(args.model).rstrip("/").split("/")[-1]
    return {
        "format": FORMAT,
        "checkpoint": name,
        "backend": f"transformers {transformers.__version__}, torch {torch.__version__} ({args.dtype})",
        "recorded": {
            "model": str(args.model),
            "architecture": (config.architectures or [type(model).__name__])[0],
            "config": json.loads(config.to_json_string()),
            "tool": "tools/hf/trace.py",
            "routing": "; ".join(sorted(sources)),
            "probs": "softmax of the router logits",
        },
        "tokens": tokens,
        "layers": layers,
    }


def convert_llama_cpp(args):
    """llama.cpp moe-trace rows (`layer,expert`, in evaluation order) as a trace."""
    runs = []  # (layer, [experts]) for each run of rows of one layer
    with open(args.llama_cpp_csv, newline="") as f:
        for row in csv.reader(f):
            if not row or not row[0].strip().lstrip("-").isdigit():
                continue  # header or comment
            layer, expert = int(row[0]), int(row[1])
            if runs and runs[-1][0] == layer:
                runs[-1][1].append(expert)
            else:
                runs.append((layer, [expert]))
    k, e = args.top_k, args.experts
    n_layers = max(layer for layer, _ in runs) + 1
    per_layer = {layer: [] for layer in range(n_layers)}
    for layer, experts in runs:
        if len(experts) % k:
            sys.exit(f"a run of layer {layer} has {len(experts)} rows, not a multiple of --top-k {k}")
        per_layer[layer] += [experts[i:i + k] for i in range(0, len(experts), k)]
    n_tokens = min(len(v) for v in per_layer.values())
    layers = [{
        "layer": layer,
        "probs_are_uniform": True,
        "routing": [{"token": t, "experts": per_layer[layer][t], "weights": [round(1 / k, 6)] * k,
                     "ranks": list(range(k)), "dropped": [False] * k, "probs": [round(1 / e, 6)] * e}
                    for t in range(n_tokens)],
    } for layer in range(n_layers)]
    tokens, _ = token_list(None, [0] * n_tokens, "prompt", 0, 0, 0)
    return {
        "format": FORMAT,
        "checkpoint": args.name or pathlib.Path(args.llama_cpp_csv).stem,
        "backend": "llama.cpp moe-trace",
        "recorded": {
            "model": args.name or "unknown (llama.cpp moe-trace CSV)",
            "architecture": "unknown",
            "config": {"num_experts_per_tok": k, "num_experts": e, "num_hidden_layers": n_layers},
            "tool": "tools/hf/trace.py --llama-cpp-csv",
            "routing": "the experts llama.cpp chose (ffn_moe_topk)",
            "probs": "none in the CSV: uniform placeholders",
            "lacks": ["token ids and texts", "router probabilities", "combine weights (1/k placeholders)"],
        },
        "tokens": tokens,
        "layers": layers,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="a Hugging Face model id or folder")
    ap.add_argument("--prompt", action="append", default=[], help="LABEL=TEXT (the label names a domain)")
    ap.add_argument("--prompt-file", action="append", default=[], help="LABEL=FILE")
    ap.add_argument("--max-tokens", type=int, default=4096, help="tokens per prompt at most")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--device-map", default=None, help="passed to from_pretrained (e.g. auto)")
    ap.add_argument("--name", help="the name the page shows (default: the model's)")
    ap.add_argument("--llama-cpp-csv", help="convert llama.cpp moe-trace CSV instead of running a model")
    ap.add_argument("--top-k", type=int, help="experts per token (llama.cpp CSV)")
    ap.add_argument("--experts", type=int, help="experts per layer (llama.cpp CSV)")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    if args.llama_cpp_csv:
        if not (args.top_k and args.experts):
            sys.exit("--llama-cpp-csv needs --top-k and --experts (the CSV does not say)")
        trace = convert_llama_cpp(args)
    elif args.model:
        trace = trace_model(args)
    else:
        sys.exit("give a model, or --llama-cpp-csv")
    pathlib.Path(args.out).write_text(json.dumps(trace, separators=(",", ":"), ensure_ascii=False))
    print(f"wrote {args.out}: {len(trace['tokens'])} tokens, {len(trace['layers'])} layers", file=sys.stderr)


if __name__ == "__main__":
    main()
