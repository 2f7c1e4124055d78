"""Training-step throughput: bertforge BertForPreTraining vs transformers' BertForPreTraining, same run.

Usage: python benchmarks/pretrain_speed.py [--preset mini] [--batch 32] [--seq 128] [--steps 6] [--dtypes fp32,bf16]
       [--compile] [--tune-malloc] [--profile]
Same config, same initial weights (transformers' weights loaded into ours), same batch (15% masking), torch's
fused AdamW for both (bertforge's trainer default, and transformers' Trainer default `adamw_torch_fused` since torch
2.8); steps interleave the two systems so machine noise hits both. bertforge computes the MLM decoder at the masked
positions only (mlm_positions from the collator); transformers computes it everywhere. Reports tokens/s, the ratio,
and MFU against this machine's matrix-product peak (measured before and after the steps, the higher kept; model
FLOPs: 6 x non-embedding params x tokens, the decoder on the predicted tokens only, and attention; the same count
for both systems). --profile adds each system's top operators (share of one step's self CPU time).
Results go to benchmarks/results/pretrain_results_PRESET.json (PRESET_tuned with --tune-malloc).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import machine, matmul_peak, profile_shares  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="mini")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--dtypes", default="fp32")
    ap.add_argument("--compile", action="store_true", help="add bertforge under torch.compile (compile time recorded)")
    ap.add_argument(
        "--tune-malloc", action="store_true", help="call bertforge.utils.tune_malloc() first (as the CLI does)"
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="after timing, profile one more step of each system: top operators' share of the step",
    )
    args = ap.parse_args()
    import transformers

    import bertforge
    from bertforge.utils import tune_malloc

    tuned = tune_malloc() if args.tune_malloc else False

    cfg = bertforge.preset(args.preset, vocab_size=30522, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    torch.manual_seed(0)
    hf = transformers.BertForPreTraining(transformers.BertConfig(**cfg.to_dict())).train()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = bertforge.BertForPreTraining.from_pretrained(d).train()
    B, S = args.batch, args.seq
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (B, S), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    labels = torch.full((B, S), -100)
    chosen = torch.rand(B, S, generator=g) < 0.15
    chosen[:, 0] = chosen[:, -1] = False
    labels[chosen] = ids[chosen]
    masked = ids.masked_fill(chosen, 103)
    batch = dict(
        input_ids=masked,
        attention_mask=torch.ones(B, S, dtype=torch.long),
        token_type_ids=torch.zeros(B, S, dtype=torch.long),
        labels=labels,
        next_sentence_label=torch.randint(0, 2, (B,), generator=g),
    )
    positions = (labels.flatten() != -100).nonzero().flatten()
    systems = {
        "bertforge": (ours, lambda m: m(**batch, mlm_positions=positions).loss),
        "transformers": (hf, lambda m: m(**batch).loss),
    }
    if args.compile:
        with tempfile.TemporaryDirectory() as d:
            hf.save_pretrained(d)
            compiled = torch.compile(bertforge.BertForPreTraining.from_pretrained(d).train())
        systems["bertforge+compile"] = (compiled, lambda m: m(**batch, mlm_positions=positions).loss)
    params = ours.num_parameters()
    L, H, V = cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size
    emb = sum(p.numel() for p in ours.bert.embeddings.parameters())
    # Model FLOPs of the work the step needs (fwd + bwd = 3 x fwd): encoder and heads' matrices on every token, the
    # decoder (H x V) on the predicted tokens, attention scores and context; embedding lookups are not FLOPs.
    flops_per_step = 6 * (params - emb) * B * S + 6 * H * V * len(positions) + 12 * L * B * S * S * H
    results: dict = {
        "machine": machine(peaks=False),  # the peak of the run's dtype is measured around the steps
        "preset": args.preset,
        "batch": B,
        "seq": S,
        "params": params,
        "tune_malloc": tuned,
    }
    for dtype_name in args.dtypes.split(","):
        dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
        peak = matmul_peak(dtype)
        opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for name, (m, _) in systems.items()}
        times: dict[str, list[float]] = {name: [] for name in systems}
        first: dict[str, float] = {}
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if dtype_name == "bf16" else contextlib.nullcontext

        def one_step(model, loss_fn, opt, ctx=ctx):
            with ctx():
                loss = loss_fn(model)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for step in range(args.steps + 1):
            for name, (model, loss_fn) in systems.items():
                start = time.perf_counter()
                one_step(model, loss_fn, opts[name])
                if step:  # the first step warms up allocators and kernels (and compiles)
                    times[name].append(time.perf_counter() - start)
                else:
                    first[name] = time.perf_counter() - start
        peak = max(peak, matmul_peak(dtype))  # again after the steps: the machine's speed drifts; keep the higher
        row = {"matmul_peak_TFLOPs": peak / 1e12}
        for name, ts in times.items():
            best = sorted(ts)[len(ts) // 2]
            row[name] = {
                "tokens_per_s": B * S / best,
                "step_s": best,
                "MFU": flops_per_step / best / peak,
                "first_step_s": first[name],
                "all_steps_s": [round(t, 3) for t in ts],
            }
        row["ratio"] = row["bertforge"]["tokens_per_s"] / row["transformers"]["tokens_per_s"]
        if args.profile:
            row["profile"] = {
                name: profile_shares(functools.partial(one_step, model, loss_fn, opts[name]))
                for name, (model, loss_fn) in systems.items()
            }
        results[dtype_name] = row
        print(
            f"{dtype_name}: peak {peak / 1e12:.2f} TFLOP/s | bertforge {row['bertforge']['tokens_per_s']:,.0f} tok/s "
            f"(MFU {row['bertforge']['MFU']:.0%}) | transformers {row['transformers']['tokens_per_s']:,.0f} tok/s "
            f"(MFU {row['transformers']['MFU']:.0%}) | ratio {row['ratio']:.2f}x"
        )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"pretrain_results_{args.preset}{'_tuned' if tuned else ''}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
