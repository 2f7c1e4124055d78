"""Generation speed with and without the key/value cache (tokens per second, greedy, one prompt).

Usage: python benchmarks/generation_speed.py [--new-tokens 128] [--prompt 16] [--rounds 3]
       [--out benchmarks/results/generation_speed.json]

A causal model of all-MiniLM-L6-v2's shape (6 layers, hidden 384, vocabulary 30522) and of bert-base's shape with
random weights (speed does not depend on the values); ``max_position_embeddings`` 512. Both paths produce the same
tokens (checked here too); the cache runs one token per step against the kept keys and values, the other recomputes
the whole sequence every step. Best of ``--rounds``, the two paths interleaved, in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "generation_speed.json"))
    args = p.parse_args()
    import torch

    from benchmarks._common import machine, write_result
    from bertforge.generation import generate
    from bertforge.model import BertConfig, BertLMHeadModel

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    shapes = {
        "minilm (6 x 384)": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
        "bert-base (12 x 768)": dict(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
        ),
    }
    record: dict = {"machine": machine(), "new_tokens": args.new_tokens, "prompt_tokens": args.prompt, "results": {}}
    for name, shape in shapes.items():
        torch.manual_seed(0)
        model = BertLMHeadModel(BertConfig(is_decoder=True, **shape)).eval()
        prompt = [2] + list(range(1000, 1000 + args.prompt - 1))
        best = {"cache": 0.0, "no_cache": 0.0}
        tokens = {}
        for _ in range(args.rounds):
            for label, use in (("cache", True), ("no_cache", False)):
                start = time.perf_counter()
                out = generate(model, prompt, max_new_tokens=args.new_tokens, use_cache=use)
                best[label] = max(best[label], len(out) / (time.perf_counter() - start))
                tokens[label] = out
        assert tokens["cache"] == tokens["no_cache"], "the cache changed the tokens"
        record["results"][name] = {
            "tokens_per_second_cache": round(best["cache"], 1),
            "tokens_per_second_no_cache": round(best["no_cache"], 1),
            "speedup": round(best["cache"] / best["no_cache"], 2),
        }
        print(name, json.dumps(record["results"][name]), flush=True)
    write_result(args.out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
