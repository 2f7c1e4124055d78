"""The TF-IDF + linear-model baseline on GLUE's dev sets (``bertforge evaluate glue --baseline tfidf`` without the
models), at several training sizes: the floor a fine-tuned or pretrained BERT is measured against.

    python benchmarks/tfidf_baseline.py [--tasks cola,sst2,mrpc,stsb,rte] [--rows 4000,8000,all]

Needs $BERTFORGE_DATA/glue (GLUE's layout) and scikit-learn. Writes results/tfidf_baseline.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, machine, write_result  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="cola,sst2,mrpc,stsb,rte")
    p.add_argument("--rows", default="4000,8000,all", help="training rows per task: numbers or all")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tfidf_baseline.json"))
    args = p.parse_args()
    import sklearn

    from bertforge.evaluation.glue import GLUE_TASKS, baseline_scores

    record: dict = {"machine": machine(peaks=False), "scikit_learn": sklearn.__version__, "scores": {}}
    for rows in args.rows.split(","):
        limit = None if rows == "all" else int(rows)
        scores = {}
        for name in args.tasks.split(","):
            task = GLUE_TASKS[name]
            folder = DATA / "glue" / task.directory
            started = time.perf_counter()
            metrics = baseline_scores("tfidf", task, str(folder / "train.tsv"), str(folder / "dev.tsv"), limit)
            scores[name] = {k: round(100 * v, 1) for k, v in metrics.items()}
            scores[name]["seconds"] = round(time.perf_counter() - started, 1)
            print(rows, name, scores[name], flush=True)
        record["scores"][rows] = scores
    write_result(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
