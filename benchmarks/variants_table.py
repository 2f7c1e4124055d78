"""The variants table measured: parameters, embedding parameters and inference speed relative to bert-base of each
family's best-known checkpoint at its true shape (bert-base-uncased, roberta-base, distilbert-base-uncased,
electra-base-discriminator, albert-base-v2; random weights, nothing downloaded), in fp32 and bf16, beside the
figures the variants table prints.

Usage: python benchmarks/variants_table.py [--batch-size 8] [--seq-length 128] [--rounds 5]
                                           [--out benchmarks/results/variants_table.json]

One process; every (model, dtype) pair takes its turn in every round, the order rotating between rounds; each time is
the median over the rounds. The machine's fp32 and bf16 matrix-product rates are measured in the same run: where
bf16 is emulated (no AVX512-BF16 or AMX) its speeds say how the emulation copes, not what the models cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, write_result  # noqa: E402
from bertforge.evaluation.variants import TABLE_FIGURES, base_configs, format_table, measure  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-length", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "variants_table.json"))
    args = p.parse_args()
    info = machine()
    print(json.dumps(info))
    dtypes = (torch.float32, torch.bfloat16)
    results = measure(
        base_configs(), dtypes, args.batch_size, args.seq_length, args.rounds, lambda m: print(m, flush=True)
    )
    for dtype in dtypes:
        print(format_table(results[dtype], dtype))
    out = {
        "date": date.today().isoformat(),
        "command": "python benchmarks/variants_table.py " + " ".join(sys.argv[1:]),
        "machine": info,
        "batch_size": args.batch_size,
        "seq_length": args.seq_length,
        "rounds": args.rounds,
        "table_figures": {k: {"parameters": v[0], "speed": v[1]} for k, v in TABLE_FIGURES.items()},
        "results": {str(d).split(".")[-1]: [dataclasses.asdict(v) for v in results[d]] for d in dtypes},
    }
    write_result(args.out, out, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
