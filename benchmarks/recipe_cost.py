"""What the two-phase recipes cost on GPUs: an estimate from the recipes' own arithmetic and an MFU.

Usage: python benchmarks/recipe_cost.py [--mfu 0.675 0.35] [--peak-tflops 989.4] [--out results/recipe_cost.json]

For each shipped multi-phase recipe (bert-paper, nvidia-lamb) and each size (BERT-base, BERT-large), the training
FLOPs are summed over the phases -- steps x global batch x sample length x ``flops_per_token`` (6 x weights, attention,
the MLM output layer on the masked share), every sample counted at its full length -- and turned into GPU-hours at
each MFU against one GPU's bf16 peak (H100 SXM: 989.4 dense TFLOP/s), and into wall-clock hours on 8 GPUs (perfect
scaling assumed). The MFUs are inputs: the default pair is the MFU bertforge measured for BERT-base training on a CPU
(``pretrain_results_base_tuned.json``, 0.675 of that machine's matrix-product rate: an upper bound for a GPU, whose
rate is far harder to reach) and half of it. Until ``gpu_check.py`` measures a GPU's MFU, the table is an estimate;
rerun with ``--mfu`` set to the measured value.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_result  # noqa: E402

SIZES = {
    "BERT-base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    "BERT-large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096),
}
RECIPES = ("bert-paper", "nvidia-lamb")
H100_BF16_TFLOPS = 989.4
"""NVIDIA's datasheet figure for the H100 SXM: dense bf16 tensor-core throughput."""


def recipe_flops(recipe: str, size: dict) -> dict:
    """Tokens and training FLOPs of each phase of ``recipe`` at ``size`` (BERT's 30,522-token vocabulary)."""
    from bertforge.config import PretrainConfig
    from bertforge.training.tracking import flops_per_token

    cfg = PretrainConfig().merged_yaml(recipe).merged({"model": {**size, "vocab_size": 30522}})
    phases = []
    for start, end, phase in cfg.phase_runs():
        batch = phase.train.global_batch_size or phase.train.micro_batch_size
        tokens = (end - start) * batch * phase.data.seq_length
        per_token = flops_per_token(phase.model, phase.data.seq_length, phase.data.mask_prob)
        phases.append(
            {
                "steps": end - start,
                "batch": batch,
                "seq": phase.data.seq_length,
                "tokens": tokens,
                "flops": tokens * per_token,
            }
        )
    return {"phases": phases, "flops": sum(p["flops"] for p in phases), "tokens": sum(p["tokens"] for p in phases)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mfu", type=float, nargs="+", default=[0.675, 0.3375])
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_TFLOPS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recipe_cost.json"))
    args = ap.parse_args()
    rows = []
    for recipe in RECIPES:
        for name, size in SIZES.items():
            work = recipe_flops(recipe, size)
            for mfu in args.mfu:
                gpu_hours = work["flops"] / (mfu * args.peak_tflops * 1e12) / 3600
                rows.append(
                    {
                        "recipe": recipe,
                        "model": name,
                        "mfu": mfu,
                        **work,
                        "gpu_hours": round(gpu_hours, 1),
                        "hours_on_8": round(gpu_hours / 8, 1),
                    }
                )
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "estimate": True,
        "peak_tflops": args.peak_tflops,
        "rows": rows,
        "command": "python benchmarks/recipe_cost.py " + " ".join(sys.argv[1:]),
    }
    write_result(args.out, record)
    print("| recipe | model | tokens | training FLOPs | MFU | H100 GPU-hours | hours on 8 H100 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['recipe']} | {r['model']} | {r['tokens'] / 1e9:.1f} B | {r['flops']:.2e} | {r['mfu']:.3f} | "
            f"{r['gpu_hours']:,.0f} | {r['hours_on_8']:,.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
