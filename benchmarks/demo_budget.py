"""What the main job (``make demo``: ``bertforge pretrain`` with no data arguments) learns in its few minutes, and which
settings make it learn more (held-out MLM accuracy of at least 25% on the embedded corpus).

Usage: python benchmarks/demo_budget.py [--variants shipped,init05,...] [--work DIR]
       [--out benchmarks/results/demo_budget.json]

Each variant is the main job as a user runs it, with command-line flags that fix the settings compared (``bertforge
pretrain --no-demo --eval-interval 500 FLAGS``: sample length, initialisation std, peak lr, batch, time budget), in a
subprocess, one after the other: the budget is wall-clock time, so run nothing else meanwhile. The score is the run's
own final held-out evaluation (the embedded corpus's validation split at the run's sample length, 20% masking, 20
batches of 32). A run directory that already holds a final
evaluation is read, not rerun, and a row already in the results file is kept as measured (an interrupted benchmark
picks up where it stopped).

The plateau: a small BERT first learns word frequencies (about 12% accuracy here: it predicts "the", "a", ".") and
stays there until its attention learns to look at the neighbouring words; with BERT's initialisation (std 0.02),
128-token samples and lr 2e-3 that took longer than a 5-minute budget on this corpus.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import chosen_variants, machine, write_result  # noqa: E402


def settings(seq: int = 128, std: float = 0.02, lr: float = 2e-3, batch: int = 32, minutes: int = 3) -> list[str]:
    """The flags that fix every setting the variants change, so that a row means the same whatever the main job's
    defaults are now (the defaults here are the main job before 2026-12-02: the crammed recipe, lr 2e-3, 3 minutes)."""
    return [
        *("--seq-length", str(seq), "--init-method-std", str(std), "--lr", str(lr)),
        *("--micro-batch-size", str(batch), "--train-time", f"{minutes}m"),
    ]


VARIANTS: dict[str, tuple[str, list[str]]] = {
    "shipped": ("the main job before 2026-12-02 (the crammed recipe at lr 2e-3)", settings()),
    "init05": ("initialisation std 0.05 (BERT: 0.02)", settings(std=0.05)),
    "batch16": ("batch 16 (the recipe: 32)", settings(batch=16)),
    "init05_batch16": ("std 0.05, batch 16", settings(std=0.05, batch=16)),
    "init10_batch16": ("std 0.1, batch 16", settings(std=0.1, batch=16)),
    "init05_batch16_lr4": ("std 0.05, batch 16, peak lr 4e-3", settings(std=0.05, batch=16, lr=4e-3)),
    "init05_batch16_lr6": ("std 0.05, batch 16, peak lr 6e-3", settings(std=0.05, batch=16, lr=6e-3)),
    "shipped_5m": ("the main job before, 5 minutes", settings(minutes=5)),
    "init05_batch16_lr4_5m": (
        "std 0.05, batch 16, peak lr 4e-3, 5 minutes",
        settings(std=0.05, batch=16, lr=4e-3, minutes=5),
    ),
    "init05_seq64_lr4": ("std 0.05, 64-token samples, peak lr 4e-3", settings(seq=64, std=0.05, lr=4e-3)),
    "init05_seq64_lr4_5m": (
        "std 0.05, 64-token samples, peak lr 4e-3, 5 minutes: the main job now",
        settings(seq=64, std=0.05, lr=4e-3, minutes=5),
    ),
}

DEFAULT_RUN = (
    "shipped,init05,init05_batch16,init05_batch16_lr4,shipped_5m,init05_batch16_lr4_5m,init05_seq64_lr4,"
    "init05_seq64_lr4_5m"
)
"""The variants run without --variants (the README's table); the others are there to try."""


def final_eval(run_dir: Path) -> dict | None:
    """The last evaluation record of a finished run (steps, time spent, held-out loss and accuracy), or None."""
    path = run_dir / "metrics.jsonl"
    if not (run_dir / "hf").is_dir() or not path.exists():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evals = [r for r in records if "eval_mlm_accuracy" in r]
    steps = [r for r in records if "time_spent" in r]
    if not evals or not steps:
        return None
    last = evals[-1]
    return {
        "steps": last["step"],
        "train_seconds": steps[-1]["time_spent"],
        "eval_mlm_loss": round(last["eval_mlm_loss"], 4),
        "eval_mlm_accuracy": round(last["eval_mlm_accuracy"], 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=DEFAULT_RUN, help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--work", default="demo-budget", help="where the corpus and the runs are written")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demo_budget.json"))
    args = p.parse_args()
    names = chosen_variants(p, args.variants, VARIANTS)
    work = Path(args.work)
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {"variants": {}}
    result["machine"] = machine()
    for name in names:
        what, flags = VARIANTS[name]
        run_dir = work / name
        command = [sys.executable, "-m", "bertforge", "pretrain", "--no-demo", "--eval-interval", "500"]
        command += ["--work-dir", str(work / "corpus"), "--save", str(run_dir), *flags]
        if name in result["variants"] and final_eval(run_dir) is not None:  # measured before: keep its row
            print(name, "measured before:", json.dumps(result["variants"][name]), flush=True)
            continue
        started = time.perf_counter()
        if final_eval(run_dir) is None:
            subprocess.run(command, check=True, cwd=ROOT)
        row = final_eval(run_dir)
        assert row is not None, f"{run_dir} has no final evaluation"
        row = {"what": what, "flags": " ".join(flags), **row, "wall_seconds": round(time.perf_counter() - started)}
        result["variants"][name] = row
        print(name, json.dumps(row), flush=True)
        write_result(out, result, WORK=work)
    print("\n| variant | steps | held-out MLM loss | MLM accuracy |\n|---|---|---|---|")
    for name, row in result["variants"].items():
        print(
            f"| {name}: {row['what']} | {row['steps']:,} | {row['eval_mlm_loss']:.3f} | "
            f"{100 * row['eval_mlm_accuracy']:.1f}% |"
        )


if __name__ == "__main__":
    main()
