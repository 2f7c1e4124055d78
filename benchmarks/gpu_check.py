"""The GPU check: the CUDA paths that only run on a GPU, checked in one script, in a few minutes.

Usage: python benchmarks/gpu_check.py [--device cuda] [--out gpu_check.json] [--quick]
       (``--device cpu --quick`` runs the same checks on the CPU, to try the script itself anywhere)

Each check writes its result (pass / fail with the error, and its numbers) to the JSON file as it finishes, so a
run cut short still reports what it did:
1. ``parity_bf16``: padded vs padding-free (FlashAttention's varlen kernel on CUDA in bf16) and pre-packed
   (cu_seqlens) outputs of a bf16 bert-base-shaped model agree (max difference of the real tokens' states).
2. ``parity_fp32_transformers``: fp32 outputs against transformers' BertModel with the same weights (1e-4).
3. ``pretrain_resume``: a short bf16 pretraining run on a generated corpus: the loss falls; stopped half-way and
   resumed, it gives the same losses as the uninterrupted run (fused AdamW, the bf16 autocast path).
4. ``inference_speed`` / ``train_step_speed``: tokens/s of bertforge and transformers in bf16 on bert-base shapes
   (a variable-length batch and a full one; one training step of the mini preset), interleaved, best of 3.
5. ``paper_recipe``: the first 200 steps of ``--config bert-paper`` (BERT-base, 128 tokens, batch 256, bf16, with
   --tensorboard-dir) on a generated corpus: tokens/s, MFU against the bf16 matrix-product rate measured here, the
   TensorBoard tags written.
6. ``transformers_loop``: transformers' BertForPreTraining in a plain loop on the same batches: tokens/s and MFU.

It prints a one-screen summary at the end. On a GPU it is meant to take under 8 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_result  # noqa: E402

WORDS = "river stone light winter music village market morning quiet bright old small green road".split()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch(vocab: int, batch: int, seq: int, device, varied: bool = True, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    if varied:
        for row in range(batch):
            mask[row, int(torch.randint(seq // 4, seq + 1, (1,), generator=g)) :] = 0
    ids = ids.masked_fill(mask == 0, 0)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "token_type_ids": torch.zeros_like(ids).to(device),
    }


def parity_bf16(device, quick: bool) -> dict:
    import bertforge

    torch.manual_seed(0)
    config = bertforge.preset("mini" if quick else "base", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = bertforge.BertModel(config).to(device, torch.bfloat16).eval()
    b = _batch(config.vocab_size, 8, 128, device)
    real = b["attention_mask"].bool()
    with torch.no_grad():
        free = model(**b).last_hidden_state[real].float()
        model.padding_free = False
        padded = model(**b).last_hidden_state[real].float()
        model.padding_free = True
        lengths = real.sum(1)
        cu = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)]).to(torch.int32)
        packed = model(
            input_ids=b["input_ids"][real], cu_seqlens=cu, max_seqlen=int(lengths.max())
        ).last_hidden_state.float()
    d1, d2 = float((free - padded).abs().max()), float((packed - padded).abs().max())
    scale = float(padded.abs().max())
    ok = d1 <= 0.05 * scale and d2 <= 0.05 * scale
    return {"pass": ok, "padding_free_vs_padded": d1, "packed_vs_padded": d2, "scale": scale}


def parity_fp32_transformers(device, quick: bool) -> dict:
    import transformers

    import bertforge

    torch.manual_seed(0)
    config = bertforge.preset("mini", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ours = bertforge.BertModel(config)
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        ref = transformers.BertModel.from_pretrained(d).to(device).eval()
    ours = ours.to(device).eval()
    b = _batch(config.vocab_size, 4, 64, device, seed=1)
    real = b["attention_mask"].bool()
    with torch.no_grad():
        diff = float((ours(**b).last_hidden_state[real] - ref(**b).last_hidden_state[real]).abs().max())
    return {"pass": diff < 1e-4, "max_difference": diff}


def pretrain_resume(device, quick: bool) -> dict:
    from bertforge.config import DataConfig, OptimConfig, PretrainConfig, TrainConfig
    from bertforge.data.preprocess import preprocess
    from bertforge.model import preset
    from bertforge.tokenization import train_vocab
    from bertforge.training.pretrain import pretrain

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    rng = random.Random(0)
    docs = [
        " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))).capitalize() + "." for _ in range(6))
        for _ in range(400)
    ]
    (work / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    train_vocab(texts=docs, vocab_size=200, output=work / "tok", show_progress=False)
    preprocess([str(work / "docs.jsonl")], str(work / "c"), str(work / "tok" / "vocab.txt"), show_progress=False)
    steps = 20 if quick else 60

    def cfg(save: str, iters: int, load: str | None = None) -> PretrainConfig:
        return PretrainConfig(
            model=preset("tiny", vocab_size=200, max_position_embeddings=128),
            data=DataConfig(
                data_path=[str(work / "c_text_sentence")],
                vocab_file=str(work / "tok" / "vocab.txt"),
                seq_length=64,
                split="95,5,0",
                num_workers=0,
            ),
            optim=OptimConfig(lr=2e-3, lr_warmup_iters=5, lr_decay_iters=steps),
            train=TrainConfig(
                micro_batch_size=16,
                train_iters=iters,
                log_interval=1,
                eval_interval=10**6,
                eval_iters=2,
                save=save,
                load=load,
                bf16=device.type == "cuda" or torch.cpu._is_avx512_bf16_supported(),
                device=str(device),
            ),
        )

    whole = pretrain(cfg(str(work / "a"), steps), show_progress=False).losses
    pretrain(cfg(str(work / "b"), steps // 2), show_progress=False)
    rest = pretrain(cfg(str(work / "b"), steps, load=str(work / "b")), show_progress=False).losses
    diff = max(abs(a - b) for a, b in zip(whole[steps // 2 :], rest))
    falls = sum(whole[-5:]) / 5 < sum(whole[:5]) / 5
    return {
        "pass": falls and diff < 1e-5,
        "first_losses": whole[:3],
        "last_losses": whole[-3:],
        "resume_max_diff": diff,
    }


def _dtype(device) -> torch.dtype:
    """bf16 where the device runs it natively (a GPU; an AMX or AVX512-BF16 CPU), else fp32: the speed checks'
    precision (``--device cpu`` on an AVX2 CPU would emulate bf16 at a tenth of fp32's speed)."""
    from bertforge.utils import fast_bf16

    return torch.bfloat16 if fast_bf16(device.type) else torch.float32


def _speed(fn, tokens: int, device, reps: int = 3) -> float:
    fn()
    _sync(device)
    best = 0.0
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = max(best, tokens / (time.perf_counter() - start))
    return best


def inference_speed(device, quick: bool) -> dict:
    import transformers

    import bertforge

    torch.manual_seed(0)
    config = bertforge.preset("mini" if quick else "base")
    ours = bertforge.BertModel(config)
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        ref = transformers.BertModel.from_pretrained(d, attn_implementation="sdpa")
    dtype = _dtype(device)
    ours, ref = ours.to(device, dtype).eval(), ref.to(device, dtype).eval()
    out = {}
    for name, varied in (("variable 32x128", True), ("full 32x128", False)):
        b = _batch(config.vocab_size, 32, 128, device, varied)
        tokens = int(b["attention_mask"].sum())
        with torch.inference_mode():
            a = _speed(lambda b=b: ours(**b), tokens, device)
            r = _speed(lambda b=b: ref(**b), tokens, device)
        out[name] = {
            "bertforge_tokens_per_s": round(a),
            "transformers_tokens_per_s": round(r),
            "ratio": round(a / r, 2),
        }
    return {"pass": True, "dtype": str(dtype).removeprefix("torch."), **out}


def train_step_speed(device, quick: bool) -> dict:
    import transformers

    import bertforge

    torch.manual_seed(0)
    config = bertforge.preset("mini")
    ours = bertforge.BertForMaskedLM(config)
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        ref = transformers.BertForMaskedLM.from_pretrained(d, attn_implementation="sdpa")
    ours, ref = ours.to(device).train(), ref.to(device).train()
    rows, seq = (8, 64) if quick else (32, 128)
    b = _batch(config.vocab_size, rows, seq, device, varied=False)
    labels = b["input_ids"].masked_fill(torch.rand(b["input_ids"].shape, device=device) > 0.15, -100)
    bf16 = _dtype(device) == torch.bfloat16
    opt_a = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=device.type == "cuda")
    opt_b = torch.optim.AdamW(ref.parameters(), lr=1e-4, fused=device.type == "cuda")

    def step(model, opt):
        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(**b, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return run

    tokens = rows * seq
    a, r = _speed(step(ours, opt_a), tokens, device), _speed(step(ref, opt_b), tokens, device)
    return {
        "pass": True,
        "dtype": "bf16" if bf16 else "fp32",
        "bertforge_tokens_per_s": round(a),
        "transformers_tokens_per_s": round(r),
        "ratio": round(a / r, 2),
    }


def _peak(device, dtype=torch.bfloat16) -> float:
    """The device's measured matrix-product rate (FLOP/s) in ``dtype``: the best of a few n x n products, timed here
    (an MFU is against what this device does, not a datasheet)."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    return _speed(lambda: a @ b, 2 * n**3, device, reps=5)


def _corpus(work: Path, vocab_size: int) -> tuple[str, str]:
    """A generated corpus preprocessed with a WordPiece vocabulary of ``vocab_size`` entries (the trained words, then
    unused fillers: BERT-base's 30,522 rows, so the model has its true shape)."""
    from bertforge.data.preprocess import preprocess
    from bertforge.tokenization import train_vocab

    rng = random.Random(0)
    words = WORDS + [f"{w}{k}" for w in WORDS for k in range(40)]
    docs = [
        " ".join(" ".join(rng.choice(words) for _ in range(rng.randint(8, 20))).capitalize() + "." for _ in range(12))
        for _ in range(3000)
    ]
    (work / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    train_vocab(texts=docs, vocab_size=1000, output=work / "tok", show_progress=False)
    vocab = (work / "tok" / "vocab.txt").read_text().split("\n")
    vocab = [v for v in vocab if v]
    vocab += [f"[unused{k}]" for k in range(vocab_size - len(vocab))]
    (work / "tok" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    preprocess([str(work / "docs.jsonl")], str(work / "c"), str(work / "tok" / "vocab.txt"), show_progress=False)
    return str(work / "c_text_sentence"), str(work / "tok" / "vocab.txt")


PAPER_STEPS = 200


def _paper_config(device, quick: bool, work: Path):
    """The bert-paper recipe as its launch line gives it, here: BERT-base, phase 1 (128 tokens, batch 256), bf16,
    TensorBoard; --quick: a 2-layer model, 64 tokens, batch 16."""
    from bertforge.cli.main import build_parser
    from bertforge.cli.pretrain import build_config

    prefix, vocab = _corpus(work, 30522)
    precision = "--bf16" if _dtype(device) == torch.bfloat16 else "--fp32"
    line = ["pretrain", "--config", "bert-paper", "--data-path", prefix, "--vocab-file", vocab, precision]
    line += ["--save", str(work / "run"), "--tensorboard-dir", str(work / "tb"), "--log-throughput"]
    line += ["--log-interval", "50" if not quick else "5", "--eval-interval", "1000000", "--device", str(device)]
    line += ["--exit-interval", str(PAPER_STEPS if not quick else 10), "--no-demo", "--split", "98,2,0"]
    line += ["--num-workers", "2" if device.type == "cuda" else "0"]
    if quick:
        line += ["--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "2", "--global-batch-size", "16"]
    cfg, _ = build_config(build_parser().parse_args(line))
    if quick:
        small = [dataclasses.replace(p, seq_length=min(p.seq_length, 64), micro_batch_size=8) for p in cfg.phases]
        cfg = dataclasses.replace(cfg, phases=tuple(small))
    return cfg


def paper_recipe(device, quick: bool) -> dict:
    """The first 200 steps of the bert-paper recipe (BERT-base, 128 tokens, batch 256, bf16): tokens/s, MFU against
    the measured bf16 peak, and the TensorBoard files it wrote."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bertforge.training.pretrain import pretrain
    from bertforge.training.tracking import flops_per_token

    work = Path(tempfile.mkdtemp(prefix="gpu-check-paper-"))
    cfg = _paper_config(device, quick, work)
    result = pretrain(cfg, show_progress=True)
    phase = cfg.phase_runs()[0][2]
    per_token = flops_per_token(cfg.model.replace(vocab_size=30522), phase.data.seq_length, phase.data.mask_prob)
    tokens_per_s = result.last_log["tokens_per_second"]
    peak = _peak(device, _dtype(device))
    events = EventAccumulator(str(work / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    losses = result.losses
    return {
        "pass": {"lm loss", "learning-rate", "throughput"} <= tags and sum(losses[-5:]) < sum(losses[:5]),
        "steps": result.step,
        "tokens_per_s": round(tokens_per_s),
        "mfu": round(tokens_per_s * per_token / peak, 4),
        "dtype": str(_dtype(device)).removeprefix("torch."),
        "peak_tflops": round(peak / 1e12, 1),
        "first_losses": [round(x, 3) for x in losses[:3]],
        "last_losses": [round(x, 3) for x in losses[-3:]],
        "tensorboard_tags": sorted(tags)[:12],
        "work_dir": str(work),
    }


def transformers_loop(device, quick: bool) -> dict:
    """transformers' BertForPreTraining in a plain loop on the same batches (bertforge's data pipeline, padded): bf16
    autocast, fused AdamW, the same accumulation; tokens/s (real tokens) and MFU as for the recipe."""
    import transformers

    from bertforge.data.collate import collate_padded
    from bertforge.training.engine import BatchPlan, loader
    from bertforge.training.pretrain import build_data
    from bertforge.training.tracking import flops_per_token

    work = Path(tempfile.mkdtemp(prefix="gpu-check-hf-"))
    phase = _paper_config(device, quick, work).phase_runs()[0][2]
    data = build_data(phase)
    c = phase.model
    config = transformers.BertConfig(
        vocab_size=data.tokenizer.vocab_size,
        hidden_size=c.hidden_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        intermediate_size=c.intermediate_size,
        max_position_embeddings=c.max_position_embeddings,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device.type in ("cuda", "cpu"))
    t = phase.train
    accumulation = t.global_batch_size // t.micro_batch_size
    steps = PAPER_STEPS if not quick else 10
    plan = BatchPlan(t.global_batch_size, t.micro_batch_size, accumulation)
    batches = iter(
        loader(data.train, plan, 0, steps, lambda s: collate_padded(s, pad_id=0), 2 if device.type == "cuda" else 0)
    )
    measured_from, tokens, losses = steps // 4, 0, []
    for step in range(steps):
        if step == measured_from:
            _sync(device)
            start = time.perf_counter()
        for _ in range(accumulation):
            cpu_batch = next(batches)
            if step >= measured_from:
                tokens += int(cpu_batch["attention_mask"].sum())  # counted on the host: no device sync
            b = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items() if k != "mlm_positions"}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=_dtype(device) == torch.bfloat16):
                out = model(**b)
            (out.loss / accumulation).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.detach())
    _sync(device)
    tokens_per_s = tokens / (time.perf_counter() - start)
    losses = [float(x) for x in losses]
    per_token = flops_per_token(phase.model.replace(vocab_size=config.vocab_size), phase.data.seq_length, 0.15)
    peak = _peak(device, _dtype(device))
    return {
        "pass": sum(losses[-3:]) < sum(losses[:3]),
        "steps": steps,
        "tokens_per_s": round(tokens_per_s),
        "mfu": round(tokens_per_s * per_token / peak, 4),
        "first_losses": [round(x, 3) for x in losses[:3]],
        "last_losses": [round(x, 3) for x in losses[-3:]],
    }


CHECKS = [
    parity_bf16,
    parity_fp32_transformers,
    pretrain_resume,
    inference_speed,
    train_step_speed,
    paper_recipe,
    transformers_loop,
]


def summary(record: dict) -> str:
    """One screen: each check's verdict and its headline numbers."""
    lines = [f"{record['device']} · torch {record['torch']} · {record['total_seconds']} s"]
    for name, r in record["checks"].items():
        numbers = {k: v for k, v in r.items() if isinstance(v, (int, float)) and k not in ("pass",)}
        shown = ", ".join(f"{k} {v}" for k, v in list(numbers.items())[:6])
        lines.append(f"  {'pass' if r['pass'] else 'FAIL'}  {name:28s} {shown}")
        if "error" in r:
            lines.append(f"        {r['error'][:150]}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--quick", action="store_true", help="smaller shapes and fewer steps")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --device cpu --quick to try the script itself", file=sys.stderr)
        return 2
    record: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "checks": {},
    }
    started = time.perf_counter()
    for check in CHECKS:
        t0 = time.perf_counter()
        try:
            result = check(device, args.quick)
        except Exception as e:  # a failing check is reported with its error; the next one still runs
            result = {"pass": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        result["seconds"] = round(time.perf_counter() - t0, 1)
        record["checks"][check.__name__] = result
        record["total_seconds"] = round(time.perf_counter() - started, 1)
        write_result(args.out, record)
        print(f"{check.__name__}: {'pass' if result['pass'] else 'FAIL'} ({result['seconds']} s)", flush=True)
    print(summary(record))
    return 0 if all(r["pass"] for r in record["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
