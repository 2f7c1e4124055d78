"""Where pretraining pays as labels get scarce: ``evaluate glue`` a pretrained model against the same
architecture from random weights at several numbers of labelled training rows, one curve per system and task.

Usage: python benchmarks/label_efficiency.py MODEL [--rows 500,2000,8000] [--tasks sst2,stsb,mrpc,rte] [--seeds 1]
       [--lr X,Y] [--min-steps 300] [--work DIR] [--out benchmarks/results/label_efficiency.json]

- Each row count N runs ``evaluate_glue(MODEL, scratch=True)`` on the first N training rows of each task, with the
  one recipe of ``evaluate glue`` (AdamW, batch 32, 128 tokens, each system's best rate of the grid per task) except
  the number of epochs: max(3, ceil(min_steps x 32 / N)), the same for both systems, so that 500 rows get as many
  optimizer steps as a small task needs to train at all (3 epochs of 500 rows are 48 steps) and 8,000 rows keep the
  standard 3.
- ``WORK/rows<N>`` is ``evaluate glue``'s output directory: the runs of an earlier evaluation there with the same
  model and settings are kept and only missing ones made (more ``--seeds`` later add to it; copy a run made by hand
  with ``bertforge evaluate glue`` there to reuse it).
- Results: per row count the summary of ``evaluate glue`` (score per task and system, the rate chosen), the machine,
  and a plot of score against rows (``--out`` with .png).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, machine, write_result  # noqa: E402


def epochs_for(rows: int, min_steps: int, batch_size: int = 32) -> int:
    """evaluate glue's 3 epochs, or more where 3 passes over ``rows`` give fewer than ``min_steps`` steps."""
    return max(3, math.ceil(min_steps * batch_size / rows))


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = record["points"]
    tasks = list(points[0]["summary"]["pretrained"]["tasks"])  # in --tasks order
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False)
    xs = [p["rows"] for p in points]
    for ax, task in zip(axes[0], tasks):
        for system, style in (("pretrained", "o-"), ("scratch", "s--")):
            ys = [100 * p["summary"][system]["tasks"][task]["score"] for p in points]
            ax.plot(xs, ys, style, label=system)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(xs, [f"{x:,}" for x in xs])
        ax.set_title(task)
        ax.set_xlabel("labelled training rows")
    axes[0][0].set_ylabel("dev score (x100)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a pretrained checkpoint (Hugging Face layout), e.g. a run's hf/")
    p.add_argument("--rows", default="500,2000,8000")
    p.add_argument("--tasks", default="sst2,stsb,mrpc,rte")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--lr", default=None, help="learning rates, comma list (default: evaluate glue's grid)")
    p.add_argument("--min-steps", type=int, default=300)
    p.add_argument("--work", default=str(ROOT.parent / "label_efficiency"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "label_efficiency.json"))
    args = p.parse_args()
    if not (DATA / "glue").is_dir():
        print(f"no GLUE data under {DATA / 'glue'} (set BERTFORGE_DATA)")
        return 1
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")  # evaluate_glue's runs
    from bertforge.evaluation import GlueSettings, default_lrs, evaluate_glue
    from bertforge.hub import resolve_model
    from bertforge.model import BertConfig

    model = resolve_model(args.model)
    tasks = args.tasks.split(",")
    lrs = (
        tuple(float(x) for x in args.lr.split(","))
        if args.lr
        else default_lrs(BertConfig.from_pretrained(model).hidden_size)
    )
    record: dict = {"machine": machine(peaks=False), "model": model, "min_steps": args.min_steps, "points": []}
    for n in sorted(int(x) for x in args.rows.split(",")):
        settings = GlueSettings(epochs=epochs_for(n, args.min_steps), lrs=lrs, max_train_examples=n, seeds=args.seeds)
        print(f"rows {n}: {settings.epochs} epochs", flush=True)  # runs already in WORK/rows<N> are kept, not redone
        out = str(Path(args.work) / f"rows{n}")
        glue = evaluate_glue(model, str(DATA / "glue"), out, tuple(tasks), settings, scratch=True)
        summary = {  # over --tasks only: WORK/rows<N> may also hold tasks of an earlier evaluation
            system: {
                "average": sum(glue["summary"][system]["tasks"][t]["score"] for t in tasks) / len(tasks),
                "tasks": {t: glue["summary"][system]["tasks"][t] for t in tasks},
            }
            for system in ("pretrained", "scratch")
        }
        record["points"].append({"rows": n, "epochs": settings.epochs, "summary": summary})
        scores = {s: round(100 * summary[s]["average"], 1) for s in summary}
        print(f"rows {n}: average {scores}", flush=True)
    write_result(args.out, record)
    plot(record, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
