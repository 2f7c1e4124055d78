"""What a pretrained encoder's features carry before any fine-tuning: for each model and the
same architecture from random weights, mean-pooled last-layer features (and mean word embeddings) scored two ways
that train no encoder weight:
- SST-2: a logistic regression on the features of the first N training sentences (standardized, L2 1e-3, L-BFGS),
  accuracy on dev;
- STS-B: the cosine of the two sentences' features against the gold scores on dev (Pearson; no training at all).
Random weights score above chance too (mean-pooled random embeddings still tell words apart), so the pretrained
model is read against its own random twin.

Usage: python benchmarks/frozen_probe.py MODEL [MODEL ...] [--rows 8000] [--out benchmarks/results/frozen_probe.json]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, machine, write_result  # noqa: E402


def rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def features(pipe, texts: list[str], kind: str) -> np.ndarray:
    """(N, H): the mean of the last layer over each text's tokens, or the mean of its word embeddings."""
    if kind == "encoder":
        return np.stack(pipe(texts, pooling="mean"))
    table = pipe.model.embeddings.token.weight.detach().float().numpy()
    return np.stack([table[pipe.tokenizer(t)["input_ids"][1:-1]].mean(0) for t in texts])


def logistic_accuracy(x: np.ndarray, y: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray) -> float:
    mean, std = x.mean(0), x.std(0) + 1e-6
    a = torch.tensor((x - mean) / std, dtype=torch.float64)
    b = torch.tensor((x_dev - mean) / std, dtype=torch.float64)
    w = torch.zeros(a.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    target = torch.tensor(y, dtype=torch.float64)
    opt = torch.optim.LBFGS([w, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a @ w + bias, target) + 1e-3 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ w + bias > 0).numpy() == y_dev).mean())


def glue_rows(n_rows: int) -> dict[str, list[dict]]:
    """The probes' data, read once for all models: SST-2's first ``n_rows`` training rows and dev, STS-B dev."""
    return {
        "sst_train": rows(DATA / "glue/SST-2/train.tsv")[:n_rows],
        "sst_dev": rows(DATA / "glue/SST-2/dev.tsv"),
        "sts": rows(DATA / "glue/STS-B/dev.tsv"),
    }


def probe(model: str, data: dict[str, list[dict]]) -> dict:
    from bertforge.pipelines import pipeline

    pipe = pipeline("feature-extraction", model=model)
    sst_train, sst_dev, sts = data["sst_train"], data["sst_dev"], data["sts"]
    gold = np.array([float(r["score"]) for r in sts])
    out = {}
    for kind in ("encoder", "embeddings"):
        x = features(pipe, [r["sentence"] for r in sst_train], kind)
        x_dev = features(pipe, [r["sentence"] for r in sst_dev], kind)
        acc = logistic_accuracy(
            x, np.array([int(r["label"]) for r in sst_train]), x_dev, np.array([int(r["label"]) for r in sst_dev])
        )
        a = features(pipe, [r["sentence1"] for r in sts], kind)
        b = features(pipe, [r["sentence2"] for r in sts], kind)
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        out[kind] = {
            "sst2_probe_accuracy": round(100 * acc, 1),
            "stsb_cosine_pearson": round(100 * float(np.corrcoef(cosine, gold)[0, 1]), 1),
        }
        print(f"{model} {kind}: {out[kind]}", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--rows", type=int, default=8000, help="SST-2 training rows for the probe")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "frozen_probe.json"))
    args = p.parse_args()
    if not (DATA / "glue" / "SST-2" / "dev.tsv").exists():
        print(f"no GLUE data under {DATA / 'glue'} (set BERTFORGE_DATA)")
        return 1
    from bertforge.evaluation import scratch_copy

    record: dict = {"machine": machine(peaks=False), "rows": args.rows, "models": {}}
    data = glue_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        for i, model in enumerate(args.models):
            twin = scratch_copy(model, str(Path(tmp) / f"scratch{i}"))
            record["models"][model] = {"pretrained": probe(model, data), "random_weights": probe(twin, data)}
    write_result(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
