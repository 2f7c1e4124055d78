"""Pretraining: build data, model and optimizer from a ``RunConfig``, then loop ``train_step`` with logging,
evaluation, checkpoints and exact resume.

Batch arithmetic: a step consumes ``global_batch_size`` samples = micro x ranks x accumulation. Step s reads stream
positions [s x G, (s + 1) x G); micro-batch k of that range (k = rank x accumulation + j) goes to rank ``rank`` as its
j-th micro-batch. So one process and N processes see the same micro-batches and, with the loss averaged over them,
compute the same update.

Host syncs: the loop reads values from the device only at log intervals, except for one flag per step that says
whether the gradient norm is finite (so that every rank stops or skips together).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bertforge.config import RunConfig
from bertforge.data.blend import parse_data_path, split_ranges
from bertforge.data.collate import collate_packed, collate_padded
from bertforge.data.dataset import PretrainingStream
from bertforge.data.indexed import IndexedDataset
from bertforge.data.masking import Masker
from bertforge.data.samples import PretrainingSamples, SpecialIds
from bertforge.model import BertForMaskedLM, BertForPreTraining
from bertforge.tokenization import BertTokenizer
from bertforge.training import checkpoint as ckpt
from bertforge.training import distributed as dist_
from bertforge.training.optim import build_optimizer, build_scheduler
from bertforge.training.plot import plot_metrics
from bertforge.utils import logger, progress, warn_if_emulated_bf16


class NonFiniteLossError(RuntimeError):
    """Raised on every rank when the loss or gradient became NaN/inf and on_nonfinite is "stop"."""


@dataclass
class Data:
    tokenizer: BertTokenizer
    train: PretrainingStream
    valid: PretrainingStream | None


@dataclass
class TrainResult:
    step: int
    run_dir: str | None
    losses: list[float] = field(default_factory=list)
    """Loss of every step (mean over the global batch), for tests and golden curves."""
    last_log: dict[str, float] = field(default_factory=dict)
    eval: dict[str, float] = field(default_factory=dict)


def build_data(cfg: RunConfig) -> Data:
    d = cfg.data
    if not d.data_path:
        raise ValueError("no --data-path; give a preprocessed prefix (bertforge preprocess), or run without data "
                         "arguments for the embedded default corpus")
    if not d.vocab_file:
        raise ValueError("--vocab-file is required with --data-path")
    tok = BertTokenizer.from_megatron(d.tokenizer_type, d.vocab_file)
    masker = Masker.from_tokenizer(tok, mask_prob=d.mask_prob, mask_token_prob=d.mask_token_prob,
                                   random_token_prob=d.random_token_prob, whole_word_mask=d.whole_word_mask,
                                   max_ngram=d.max_ngram)
    specials = SpecialIds.from_tokenizer(tok)
    train, valid, weights, valid_weights = [], [], [], []
    for weight, prefix in parse_data_path(d.data_path):
        ds = IndexedDataset(prefix)
        if ds.dtype.kind in "iu" and tok.vocab_size > np.iinfo(ds.dtype).max + 1:
            raise ValueError(f"{prefix}: {ds.dtype} tokens cannot hold the {tok.vocab_size}-token vocabulary of "
                             f"{d.vocab_file}; was it preprocessed with another vocabulary?")
        (t0, t1), (v0, v1), _ = split_ranges(ds.num_documents, d.split)
        common = dict(max_seq_length=d.seq_length, short_seq_prob=d.short_seq_prob, binary_head=d.binary_head,
                      seed=cfg.train.seed)
        train.append(PretrainingSamples(ds, specials, documents=np.arange(t0, t1), **common))
        weights.append(weight)
        if v1 - v0 >= (2 if d.binary_head == "nsp" else 1):
            try:
                valid.append(PretrainingSamples(ds, specials, documents=np.arange(v0, v1), **common))
                valid_weights.append(weight)
            except ValueError as e:
                logger.warning("no validation samples from %s: %s", prefix, e)
    return Data(tok, PretrainingStream(train, masker, cfg.train.seed, weights),
                PretrainingStream(valid, masker, cfg.train.seed + 1, valid_weights) if valid else None)


def build_model(cfg: RunConfig, vocab_size: int):
    config = cfg.model.replace(vocab_size=vocab_size)
    cls = BertForMaskedLM if cfg.data.binary_head == "none" else BertForPreTraining
    model = cls(config)
    model.bert.gradient_checkpointing = cfg.train.recompute_activations
    return model


class _Positions:
    """Batch sampler: the stream positions of each of this rank's micro-batches, from a given step on."""

    def __init__(self, start_step: int, steps: int, global_batch: int, micro: int, accumulation: int, rank: int):
        self.start_step, self.steps = start_step, steps
        self.global_batch, self.micro, self.accumulation, self.rank = global_batch, micro, accumulation, rank

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.steps):
            base = step * self.global_batch
            for j in range(self.accumulation):
                k = self.rank * self.accumulation + j
                yield list(range(base + k * self.micro, base + (k + 1) * self.micro))

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.accumulation


def _loader(stream, sampler, pad_id: int, workers: int, packed: bool = False) -> DataLoader:
    # Samples are pure functions of their position; the loader gets a generator of its own so that creating it does
    # not draw from the global torch RNG (whose state is checkpointed for dropout and must resume exactly).
    return DataLoader(stream, batch_sampler=sampler, num_workers=workers,
                      collate_fn=collate_packed if packed else functools.partial(collate_padded, pad_id=pad_id),
                      generator=torch.Generator().manual_seed(0), prefetch_factor=4 if workers else None)


def _autocast(cfg: RunConfig, device: torch.device):
    if cfg.train.bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if cfg.train.fp16:
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _inputs(batch: dict) -> dict:
    """The model's keyword arguments for a padded or a packed (cu_seqlens) batch."""
    if "cu_seqlens" in batch:
        return {"input_ids": batch["input_ids"], "token_type_ids": batch["token_type_ids"],
                "position_ids": batch["position_ids"], "cu_seqlens": batch["cu_seqlens"],
                "max_seqlen": batch["max_seqlen"], "mlm_positions": batch["mlm_positions"]}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "token_type_ids": batch["token_type_ids"], "mlm_positions": batch["mlm_positions"]}


def _tokens(batch: dict) -> torch.Tensor | int:
    return batch["input_ids"].numel() if "cu_seqlens" in batch else batch["attention_mask"].sum()


def _mlm_logits_labels(out, batch):
    logits = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits
    labels = batch["labels"].flatten().index_select(0, batch["mlm_positions"])
    return logits, labels


def train_step(model, micro_batches: list[dict], optimizer, scheduler, scaler, cfg: RunConfig,
               device: torch.device, stats: torch.Tensor, info: dist_.DistInfo
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over this rank's micro-batches: forward, scaled loss, backward (gradients synchronised on
    the last micro-batch only), clip, step, schedule, zero-grad. Accumulates metrics into ``stats`` on the device.

    A step whose loss or gradient is NaN/inf applies no update; it is counted in ``stats[9]`` (decided on the device
    for fused AdamW, so there is no host sync; on the host for other optimizers; under fp16 the GradScaler skips
    overflowing steps itself, uncounted, as loss scaling expects). Returns (grad norm, this rank's loss
    for the step), both left on the device.
    """
    n = len(micro_batches)
    step_loss = torch.zeros((), device=device)
    for j, batch in enumerate(micro_batches):
        sync = j == n - 1 or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if sync else model.no_sync():
            with _autocast(cfg, device):
                out = model(**_inputs(batch), labels=batch["labels"],
                            **({"next_sentence_label": batch["next_sentence_label"]}
                               if "next_sentence_label" in batch and cfg.data.binary_head != "none" else {}))
            loss = out.loss / n
            (scaler.scale(loss) if scaler is not None else loss).backward()
        step_loss += loss.detach()
        _accumulate(stats, out, batch)
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.grad is not None]
    clip = cfg.optim.clip_grad if cfg.optim.clip_grad > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    if scaler is not None:
        scaler.step(optimizer)  # skips the update itself when the scaled gradients overflowed
        scaler.update()
    elif skips_on_device(optimizer):
        # No host sync: the flag stays on the device, the fused kernel leaves weights, moments and its step count
        # untouched where it is 1, and the trainer reads the count at log intervals (stats[9]).
        bad = (~torch.isfinite(grad_norm) | ~torch.isfinite(step_loss)).float()
        bad = dist_.total(bad, info).clamp(max=1.0)  # every rank skips together
        optimizer.found_inf = bad
        optimizer.step()
        del optimizer.found_inf
        stats[9] += bad
    else:  # LAMB, or foreach AdamW (FSDP): these cannot skip on the device, so decide on the host every step
        finite = bool(torch.isfinite(grad_norm).item()) and bool(torch.isfinite(step_loss).item())
        if not dist_.any_true(not finite, info):
            optimizer.step()
        else:
            stats[9] += 1
            _check_nonfinite(stats, cfg, None, None)
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    stats[0] += step_loss
    return grad_norm.detach(), step_loss


def skips_on_device(optimizer) -> bool:
    """True for torch's fused Adam/AdamW, whose kernel skips an update by a device flag (``found_inf``)."""
    return isinstance(optimizer, torch.optim.Adam) and all(g.get("fused") for g in optimizer.param_groups)


def _check_nonfinite(stats: torch.Tensor, cfg: RunConfig, first: int | None, last: int | None) -> None:
    """Under --on-nonfinite stop, raise when any step since the last check had a NaN/inf loss or gradient (reads one
    number from the device). Those steps' updates were not applied, so the weights are the last finite ones."""
    if cfg.train.on_nonfinite != "stop":
        return
    skipped = int(stats[9].item())
    if skipped:
        where = f" between steps {first} and {last}" if first is not None else ""
        raise NonFiniteLossError(f"non-finite loss or gradient in {skipped} step(s){where} (their updates were not "
                                 "applied); stopping on every rank (use --on-nonfinite skip to skip such steps, or "
                                 "lower the learning rate)")


# stats layout (device tensor, summed between log intervals):
# 0 loss, 1 mlm loss x micro, 2 binary loss x micro, 3 micro-batches, 4 mlm correct, 5 mlm count,
# 6 binary correct, 7 binary count, 8 tokens, 9 steps skipped as non-finite
N_STATS = 10


def _accumulate(stats: torch.Tensor, out, batch: dict) -> None:
    with torch.no_grad():
        logits, labels = _mlm_logits_labels(out, batch)
        mlm_loss = out.mlm_loss if hasattr(out, "mlm_loss") else out.loss
        stats[1] += mlm_loss.detach().float()
        stats[3] += 1
        stats[4] += (logits.argmax(-1) == labels).sum()
        stats[5] += labels.numel()
        if getattr(out, "binary_loss", None) is not None:
            stats[2] += out.binary_loss.detach().float()
            stats[6] += (out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum()
            stats[7] += batch["next_sentence_label"].numel()
        stats[8] += _tokens(batch)


@torch.no_grad()
def evaluate(model, stream: PretrainingStream, cfg: RunConfig, info: dist_.DistInfo, pad_id: int) -> dict[str, float]:
    """MLM loss / accuracy / perplexity (and binary-head accuracy) on ``eval_iters`` micro-batches per rank of the
    validation stream, always the same positions so evaluations are comparable."""
    was_training = model.training
    model.eval()
    micro = cfg.train.micro_batch_size
    iters = cfg.train.eval_iters
    sampler = _Positions(0, 1, micro * iters * info.world_size, micro, iters, info.rank)
    sums = torch.zeros(4, device=info.device, dtype=torch.float64)  # mlm loss sum, mlm correct, mlm count, binary ok
    n_pairs = torch.zeros(1, device=info.device, dtype=torch.float64)
    for batch in _loader(stream, sampler, pad_id, 0, cfg.data.pack_sequences):
        batch = _to(batch, info.device)
        with _autocast(cfg, info.device):
            out = model(**_inputs(batch))
        logits, labels = _mlm_logits_labels(out, batch)
        sums[0] += F.cross_entropy(logits.float(), labels, reduction="sum")
        sums[1] += (logits.argmax(-1) == labels).sum()
        sums[2] += labels.numel()
        if hasattr(out, "seq_relationship_logits") and "next_sentence_label" in batch:
            sums[3] += (out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum()
            n_pairs += batch["next_sentence_label"].numel()
    sums = dist_.total(sums, info)
    n_pairs = dist_.total(n_pairs, info)
    model.train(was_training)
    loss = (sums[0] / sums[2].clamp(min=1)).item()
    result = {"eval_mlm_loss": loss, "eval_mlm_accuracy": (sums[1] / sums[2].clamp(min=1)).item(),
              "eval_perplexity": math.exp(min(loss, 50.0))}
    if n_pairs.item() > 0:
        result["eval_binary_accuracy"] = (sums[3] / n_pairs).item()
    return result


def pretrain(cfg: RunConfig, data: Data | None = None, exit_interval: int | None = None,
             show_progress: bool = True) -> TrainResult:
    """Run (or resume) pretraining as ``cfg`` says. Returns the per-step losses and the last metrics."""
    t = cfg.train
    info = dist_.init(t.device, t.distributed_backend)
    try:
        return _pretrain(cfg, info, data, exit_interval, show_progress)
    finally:
        dist_.shutdown()


def _pretrain(cfg: RunConfig, info: dist_.DistInfo, data: Data | None, exit_interval: int | None,
              show_progress: bool) -> TrainResult:
    t = cfg.train
    device = info.device
    if t.fp16 and device.type != "cuda":
        raise ValueError("--fp16 needs a CUDA device (on CPU use --bf16)")
    if t.bf16 and info.is_main:
        warn_if_emulated_bf16(device.type, "--bf16")
    accumulation = cfg.gradient_accumulation(info.world_size)
    global_batch = t.micro_batch_size * info.world_size * accumulation
    data = data or build_data(cfg)
    tok = data.tokenizer
    torch.manual_seed(t.seed)  # the same initial weights on every rank
    model = build_model(cfg, tok.vocab_size).to(device)
    cfg = RunConfig(model=model.config, data=cfg.data, optim=cfg.optim, train=cfg.train)
    state = None
    if t.load and ckpt.has_checkpoint(t.load):
        state = _load_weights(t.load, model)
    elif t.load:  # Megatron's behaviour for the common --save X --load X launch line: a first run starts fresh
        logger.warning("--load %s: no checkpoint there yet; starting from step 0", t.load)
    # Wrap from outside: FSDP shards each layer and the whole model in place; DDP wraps a finished model.
    train_model = model
    if t.fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in model.bert.layers:
            fully_shard(layer)
        fully_shard(model)
    elif info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        train_model = torch.compile(train_model)
        logger.info("torch.compile: the first step includes compilation")
    optimizer = build_optimizer(model, cfg.optim, fused=not t.fsdp)
    scheduler = build_scheduler(optimizer, cfg.optim, t.train_iters)
    scaler = torch.amp.GradScaler("cuda") if t.fp16 else None
    start_step = 0
    if state is not None:
        start_step = _restore(state, model, optimizer, scheduler, scaler, info)
    else:
        torch.manual_seed(t.seed + 7919 * info.rank)  # dropout differs per rank, as each rank sees other data
    run_dir = t.save
    if run_dir and info.is_main:
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "run_config.yaml"), "w", encoding="utf-8") as fh:
            fh.write(cfg.to_yaml())
    metrics_path = os.path.join(run_dir, "metrics.jsonl") if run_dir else None
    if metrics_path and info.is_main and start_step == 0 and os.path.exists(metrics_path):
        os.remove(metrics_path)  # a fresh run in an old directory starts a fresh record
    sampler = _Positions(start_step, t.train_iters, global_batch, t.micro_batch_size, accumulation, info.rank)
    loader = iter(_loader(data.train, sampler, tok.pad_token_id, cfg.data.num_workers, cfg.data.pack_sequences))
    stats = torch.zeros(N_STATS, device=device, dtype=torch.float64)
    result = TrainResult(start_step, run_dir)
    model.train()
    if info.is_main:
        logger.info("pretraining %s (%s parameters) for %d steps from step %d: global batch %d = micro %d x %d "
                    "rank(s) x %d accumulation, seq %d, %s", type(model).__name__, f"{model.num_parameters():,}",
                    t.train_iters, start_step, global_batch, t.micro_batch_size, info.world_size, accumulation,
                    cfg.data.seq_length, "bf16" if t.bf16 else "fp16" if t.fp16 else "fp32")
    step_losses: list[torch.Tensor] = []
    last_log_time = time.perf_counter()
    last_log_step = start_step
    step = start_step
    stop_at = t.train_iters
    if exit_interval:
        stop_at = min(stop_at, (start_step // exit_interval + 1) * exit_interval)
    with progress(total=stop_at - start_step, desc="pretrain", unit="step", enabled=show_progress and info.is_main,
                  interval=30.0) as bar:
        while step < stop_at:
            micro = [_to(next(loader), device) for _ in range(accumulation)]
            grad_norm, step_loss = train_step(train_model, micro, optimizer, scheduler, scaler, cfg, device,
                                                 stats, info)
            step += 1
            step_losses.append(step_loss)
            bar.update(1)
            if step % t.log_interval == 0 or step == stop_at:
                _check_nonfinite(stats, cfg, last_log_step + 1, step)
                now = time.perf_counter()
                record = _log_record(stats, info, step, scheduler.get_last_lr()[0], grad_norm, now - last_log_time,
                                     step - last_log_step)
                stats.zero_()
                last_log_time, last_log_step = now, step
                result.last_log = record
                bar.set_postfix_str(f"loss {record['loss']:.3f} mlm_acc {record['mlm_accuracy']:.3f}"
                                    + (f" bin_acc {record['binary_accuracy']:.3f}" if "binary_accuracy" in record
                                       else "")
                                    + f" lr {record['lr']:.2e} gnorm {record['grad_norm']:.2f} "
                                      f"{record['tokens_per_second']:,.0f} tok/s")
                if metrics_path and info.is_main:
                    _append(metrics_path, record)
            if data.valid is not None and (step % t.eval_interval == 0 or step == t.train_iters):
                result.eval = evaluate(model, data.valid, cfg, info, tok.pad_token_id)
                if info.is_main:
                    logger.info("step %d eval: %s", step, _fmt(result.eval))
                    if metrics_path:
                        _append(metrics_path, {"step": step, **result.eval})
            if run_dir and ((t.save_interval and step % t.save_interval == 0) or step == stop_at):
                _check_nonfinite(stats, cfg, last_log_step + 1, step)  # never save after an unreported NaN step
                _save(run_dir, step, model, tok, optimizer, scheduler, scaler, global_batch, cfg, info)
    result.step = step
    if step_losses:  # read once at the end: no sync inside the loop
        result.losses = dist_.mean(torch.stack(step_losses).double(), info).cpu().tolist()
    return result


def _log_record(stats: torch.Tensor, info, step: int, lr: float, grad_norm: torch.Tensor, seconds: float,
                steps: int) -> dict[str, float]:
    s = dist_.total(stats, info).cpu().tolist()
    micro = max(s[3], 1.0)
    record = {"step": step, "loss": s[0] / info.world_size / max(steps, 1), "mlm_loss": s[1] / micro,
              "mlm_accuracy": s[4] / max(s[5], 1.0), "lr": lr, "grad_norm": float(grad_norm),
              "tokens_per_second": s[8] / max(seconds, 1e-9), "seconds_per_step": seconds / max(steps, 1)}
    if s[9] > 0:
        record["skipped_steps"] = s[9] / info.world_size
    if s[7] > 0:
        record["binary_loss"] = s[2] / micro
        record["binary_accuracy"] = s[6] / s[7]
    return record


def _fmt(d: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in d.items())


def _append(path: str, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _full_state(model, optimizer) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts (gathered on rank 0 under FSDP; every rank must call this).

    The optimizer state is keyed by parameter names, so a checkpoint resumes with or without FSDP and on any number
    of ranks."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def _save(run_dir, step, model, tok, optimizer, scheduler, scaler, global_batch, cfg, info) -> None:
    model_state, optim_state = _full_state(model, optimizer)
    states = [None] * info.world_size
    if info.enabled:
        torch.distributed.all_gather_object(states, ckpt.rng_state())
    else:
        states = [ckpt.rng_state()]
    if info.is_main:
        state = {"step": step, "consumed_samples": step * global_batch, "optimizer": optim_state,
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                 "rng": states, "world_size": info.world_size}
        path = ckpt.save_checkpoint(run_dir, step, model, tok, state, cfg.to_yaml(), cfg.train.keep_last,
                                    model_state=model_state)
        if cfg.train.export_hf:
            from bertforge.utils import atomic_directory

            with atomic_directory(os.path.join(run_dir, "hf")) as tmp:
                model.save_pretrained(tmp, state_dict=model_state)
                tok.save_pretrained(tmp)
        metrics = os.path.join(run_dir, "metrics.jsonl")
        if os.path.exists(metrics):
            plot_metrics(metrics, os.path.join(run_dir, "curves.png"))
        logger.info("step %d: checkpoint %s", step, path)
    dist_.barrier(info)


def _load_weights(path: str, model) -> dict[str, Any]:
    """Load a checkpoint's weights into the (unwrapped) model; return its trainer state for ``_restore``."""
    from bertforge.model.pretrained import load_state_dict

    checkpoint = ckpt.resolve_checkpoint(path)
    report = model.load_hf_state_dict(load_state_dict(checkpoint), source=checkpoint)
    if report.missing:
        raise ValueError(f"{checkpoint} lacks weights this model needs: {report.missing}")
    state = ckpt.load_trainer_state(checkpoint)
    state["path"] = checkpoint
    return state


def _restore(state: dict[str, Any], model, optimizer, scheduler, scaler, info) -> int:
    """Optimizer, schedule, scaler and RNG from a trainer state (after any FSDP sharding)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state["optimizer"],
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))
    for group in optimizer.param_groups:  # the saved groups carry the saving run's kernel choice: keep this run's
        for key in ("fused", "foreach"):
            if key in optimizer.defaults:
                group[key] = optimizer.defaults[key]
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    if info.rank < len(rngs):
        ckpt.set_rng_state(rngs[info.rank])
    else:  # resumed on more ranks than saved: new ranks get fresh, distinct streams
        torch.manual_seed(int(state["step"]) * 1000003 + info.rank)
    logger.info("resumed from %s at step %d (%d samples consumed)", state["path"], state["step"],
                state["consumed_samples"])
    return int(state["step"])
