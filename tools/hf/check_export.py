"""Checks `switchyard export-hf`: every shipped checkpoint that a Mixtral can express is
exported, loaded with transformers' AutoModelForCausalLM.from_pretrained, and run on fixed
token ids; its logits and router logits must match Switchyard's own (`switchyard logits`)
within 1e-4, and transformers' tokenizer must give the ids ours gives.

    cargo build --release -p switchyard-cli
    pip install -r tools/hf/requirements.txt
    python tools/hf/check_export.py [--switchyard PATH]

Checkpoints a Mixtral cannot express (a shared expert, a selection bias, free experts, ...)
are refused by export-hf with their reasons; the script prints those and goes on.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENS = [1, 17, 300, 2047, 5, 999, 64, 3, 1500, 42, 7, 4000]
TEXT = "The router sends each token to two of eight experts. def f(x): return x"
TOL = 1e-4


def switchyard(binary, *args):
    return subprocess.run([binary, *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def check(binary, ckpt, out):
    try:
        switchyard(binary, "export-hf", str(ckpt), str(out))
    except subprocess.CalledProcessError as e:
        reason = next((l for l in e.stderr.splitlines() if l.startswith("Error")), e.stderr.strip())
        print(f"{ckpt.stem}: not exported: {reason}")
        return None
    ours = json.loads(switchyard(binary, "logits", "--checkpoint", str(ckpt), "--tokens", ",".join(map(str, TOKENS))))
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(torch.tensor([TOKENS]), output_router_logits=True)
    d_logits = (theirs.logits[0] - torch.tensor(ours["logits"])).abs().max().item()
    d_router = max(
        (r.reshape(len(TOKENS), -1) - torch.tensor(o)).abs().max().item()
        for r, o in zip(theirs.router_logits, ours["router_logits"])
    )
    line = f"{ckpt.stem}: logits differ by {d_logits:.2e}, router logits by {d_router:.2e}"
    ok = d_logits < TOL and d_router < TOL
    if (out / "tokenizer.json").exists():
        ids = PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json")).encode(TEXT)
        ours_ids = json.loads(switchyard(binary, "tokenize", "--tokenizer", str(out / "tokenizer.json"), "--text", TEXT))["ids"]
        ok = ok and ids == ours_ids
        line += f", tokenizer {'agrees' if ids == ours_ids else 'DISAGREES'} on {len(ids)} ids"
    print(line + ("" if ok else "  <-- FAIL"))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release/switchyard"
    ap.add_argument("--switchyard", default=str(default))
    args = ap.parse_args()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in sorted((ROOT / "assets").glob("*.safetensors")):
            results.append(check(args.switchyard, ckpt, pathlib.Path(tmp) / ckpt.stem))
    checked = [r for r in results if r is not None]
    print(f"{sum(checked)} of {len(checked)} exported checkpoints match; {len(results) - len(checked)} refused")
    sys.exit(0 if checked and all(checked) else 1)


if __name__ == "__main__":
    main()
