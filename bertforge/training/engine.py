"""The training engine: one step and one loop that pretraining and every fine-tuning task run on.

What differs between jobs is passed in as a ``Job``: the model, an ``Objective`` (forward + loss of a micro-batch and
the metrics accumulated from it), a dataset indexed by stream position, a collate function, the batch plan, an
evaluation function and what "best" means. The engine does the rest, once:

- **Step** (``train_step``): precision context, micro-batch accumulation (gradients synchronised on the last
  micro-batch only), clipping, the on-device non-finite skip, optimizer and scheduler step.
- **Loop** (``fit``): resume from a checkpoint, DDP/FSDP/compile applied from outside the model, progress, metrics
  every ``log_interval`` steps (metrics.jsonl), evaluation, best tracking and early stopping, checkpoints (atomic,
  ``keep_last``), curves.png, ``exit_interval``.

Batch arithmetic (``BatchPlan``): step s reads the stream positions [start_s, end_s); pretraining's stream is endless
(start_s = s x G), fine-tuning's has epochs of N samples, each cut into ceil(N / G) steps (the last one shorter).
Micro-batch k = rank x accumulation + j of a step reads positions [start + k x micro, ...), the same for any number
of ranks; its loss is weighted by its share of the step's samples, so N processes compute the update of one.
A micro-batch with no samples left (end of an epoch) reads one sample with weight 0: every rank stays in step.

Randomness: dropout is seeded per micro-batch from (seed, first stream position), so it is the same whatever the
number of ranks, and a resumed run draws what the uninterrupted one drew.

Host syncs: at log intervals, evaluations and checkpoints only; within a step none with torch's fused AdamW (a NaN/inf
sets a device flag that makes the kernel skip the update), one flag per step with other optimizers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from bertforge.config import OptimConfig, TrainConfig
from bertforge.training import checkpoint as ckpt
from bertforge.training import distributed as dist_
from bertforge.training.objectives import Objective
from bertforge.training.optim import BudgetSchedule, build_optimizer, build_scheduler
from bertforge.training.plot import plot_metrics, read_metrics
from bertforge.utils import (
    atomic_write_text,
    autocast,
    logger,
    parse_duration,
    progress,
    warn_if_emulated_bf16,
    warn_if_oversubscribed,
)


class NonFiniteLossError(RuntimeError):
    """Raised on every rank when the loss or gradient became NaN/inf and on_nonfinite is "stop"."""


PLOT_INTERVAL = 30.0
"""Seconds between redraws of curves.png at checkpoints (always redrawn at the last one): matplotlib costs ~0.2 s."""

# Engine slots of the device stats tensor; an objective's own slots follow.
LOSS, MICRO, TOKENS, SKIPPED = range(4)
N_ENGINE_STATS = 4


class BatchPlan:
    """Which stream positions each of this rank's micro-batches reads, and its weight (see the module notes)."""

    def __init__(
        self,
        global_batch: int,
        micro: int,
        accumulation: int,
        rank: int = 0,
        world_size: int = 1,
        epoch_size: int | None = None,
    ):
        if epoch_size is not None and epoch_size <= 0:
            raise ValueError("no training examples")
        self.global_batch, self.micro, self.accumulation = global_batch, micro, accumulation
        self.rank, self.world_size, self.epoch_size = rank, world_size, epoch_size

    @property
    def steps_per_epoch(self) -> int | None:
        return None if self.epoch_size is None else math.ceil(self.epoch_size / self.global_batch)

    def step_range(self, step: int) -> tuple[int, int]:
        if self.epoch_size is None:
            return step * self.global_batch, (step + 1) * self.global_batch
        epoch, b = divmod(step, math.ceil(self.epoch_size / self.global_batch))
        start = epoch * self.epoch_size + b * self.global_batch
        return start, min(start + self.global_batch, (epoch + 1) * self.epoch_size)

    def micro_batches(self, step: int) -> list[tuple[list[int], float]]:
        """(positions, loss weight) of this rank's micro-batches of ``step``; weights over all ranks average to 1."""
        start, end = self.step_range(step)
        out = []
        for j in range(self.accumulation):
            k = self.rank * self.accumulation + j
            a = start + k * self.micro
            b = min(a + self.micro, end)
            out.append((list(range(a, b)), (b - a) * self.world_size / (end - start)) if b > a else ([start], 0.0))
        return out


class _Sampler:
    """DataLoader batch sampler: the positions of this rank's micro-batches for steps [first, stop)."""

    def __init__(self, plan: BatchPlan, first: int, stop: int):
        self.plan, self.first, self.stop = plan, first, stop

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.first, self.stop):
            for positions, _ in self.plan.micro_batches(step):
                yield positions

    def __len__(self) -> int:
        return (self.stop - self.first) * self.plan.accumulation


def loader(dataset, plan: BatchPlan, first: int, stop: int, collate: Callable, workers: int = 0) -> DataLoader:
    """This rank's micro-batches of steps [first, stop) in order. The loader gets a generator of its own, so that
    creating it draws nothing from the global torch RNG."""
    return DataLoader(
        dataset,
        batch_sampler=_Sampler(plan, first, stop),
        num_workers=workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
        prefetch_factor=4 if workers else None,
    )


def micro_batch_seed(seed: int, position: int) -> int:
    """The dropout seed of the micro-batch starting at stream ``position``: a pure function of (seed, position)."""
    return int(np.random.SeedSequence([seed, position, 0xD70]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def train_step(
    model: nn.Module,
    objective: Objective,
    micro_batches: list[tuple[dict, float, int]],
    optimizer,
    scheduler,
    scaler,
    train: TrainConfig,
    clip_grad: float,
    stats: torch.Tensor,
    info: dist_.DistInfo,
    frozen: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over this rank's micro-batches, each (batch on the device, loss weight, dropout seed):
    forward, weighted loss, backward (gradients synchronised on the last micro-batch only), clip, step, schedule,
    zero-grad. Accumulates metrics into ``stats`` on the device. ``frozen``: parameters whose gradients are dropped
    before the update (a schedule's not-yet-trained layers): the optimizer skips them, so they stay bit-identical.

    A step whose loss or gradient is NaN/inf applies no update; it is counted in ``stats[SKIPPED]`` (decided on the
    device for fused AdamW, so there is no host sync; on the host for other optimizers; under fp16 the GradScaler skips
    overflowing steps itself, uncounted, as loss scaling expects). Returns (grad norm, this rank's weighted loss),
    both left on the device.
    """
    n = len(micro_batches)
    step_loss = torch.zeros((), device=info.device)
    for j, (batch, weight, seed) in enumerate(micro_batches):
        sync = j == n - 1 or not hasattr(model, "no_sync")
        torch.manual_seed(seed)  # dropout: a function of (seed, sample position), whatever the number of ranks
        with contextlib.nullcontext() if sync else model.no_sync():  # type: ignore[operator]
            with autocast(info.device, train.use_bf16, train.fp16):
                out = objective.forward(model, batch)
            loss = out.loss * weight
            (scaler.scale(loss) if scaler is not None else loss).backward()
        step_loss += loss.detach()
        if weight > 0:
            with torch.no_grad():
                stats[MICRO] += 1
                stats[TOKENS] += objective.tokens(batch)
                objective.accumulate(stats[N_ENGINE_STATS:], out, batch)
    for p in frozen or ():
        p.grad = None
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_grad if clip_grad > 0 else float("inf"))
    if scaler is not None:
        scaler.step(optimizer)  # skips the update itself when the scaled gradients overflowed
        scaler.update()
    elif skips_on_device(optimizer):
        # No host sync: the flag stays on the device, the fused kernel leaves weights, moments and its step count
        # untouched where it is 1, and the loop reads the count at log intervals.
        bad = (~torch.isfinite(grad_norm) | ~torch.isfinite(step_loss)).float()
        bad = dist_.total(bad, info).clamp(max=1.0)  # every rank skips together
        optimizer.found_inf = bad
        optimizer.step()
        del optimizer.found_inf
        stats[SKIPPED] += bad
    else:  # LAMB, or foreach AdamW (FSDP): these cannot skip on the device, so decide on the host every step
        finite = bool(torch.isfinite(grad_norm).item()) and bool(torch.isfinite(step_loss).item())
        if not dist_.any_true(not finite, info):
            optimizer.step()
        else:
            stats[SKIPPED] += 1
            check_nonfinite(stats, train.on_nonfinite, None, None)
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    stats[LOSS] += step_loss
    return grad_norm.detach(), step_loss


def skips_on_device(optimizer) -> bool:
    """True for torch's fused Adam/AdamW, whose kernel skips an update by a device flag (``found_inf``)."""
    return isinstance(optimizer, torch.optim.Adam) and all(g.get("fused") for g in optimizer.param_groups)


def check_nonfinite(stats: torch.Tensor, on_nonfinite: str, first: int | None, last: int | None) -> None:
    """Under on_nonfinite "stop", raise when any step since the last check had a NaN/inf loss or gradient (reads one
    number from the device). Those steps' updates were not applied, so the weights are the last finite ones."""
    if on_nonfinite != "stop":
        return
    skipped = int(stats[SKIPPED].item())
    if skipped:
        where = f" between steps {first} and {last}" if first is not None else ""
        raise NonFiniteLossError(
            f"non-finite loss or gradient in {skipped} step(s){where} (their updates were not "
            "applied); stopping on every rank (use --on-nonfinite skip to skip such steps, or "
            "lower the learning rate)"
        )


@dataclass
class Job:
    """Everything a training run is made of; ``fit`` runs it."""

    model: nn.Module
    """Built and on its device, not wrapped (the engine applies DDP / FSDP / compile)."""
    objective: Objective
    dataset: Any
    """Stream position -> sample (pure function of the position)."""
    collate: Callable[[list], dict]
    plan: BatchPlan
    steps: int
    """Optimizer steps of the whole run (the schedule's length)."""
    optim: OptimConfig
    train: TrainConfig
    info: dist_.DistInfo
    run_dir: str | None
    config_yaml: str
    write_checkpoint: Callable[[str, dict], None]
    """(directory, full model state dict) -> write the checkpoint's weights and tokenizer (rank 0)."""
    load_checkpoint: Callable[[str, nn.Module], None]
    """(checkpoint directory, model) -> load its weights into the unwrapped model before wrapping."""
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None
    """Called on every rank with the unwrapped model; returns metrics named eval_*."""
    eval_every: int | None = None
    """Steps between evaluations (and at the last step); None: only at the end."""
    best_metric: str | None = None
    """Key of evaluate's result that picks the best evaluation."""
    best_lower: bool = False
    """Smaller is better for ``best_metric`` (an error such as MSE); else larger is better."""
    on_best: Callable[[nn.Module, dict[str, float]], None] | None = None
    """Called on every rank when an evaluation is the best so far (saving it may gather FSDP shards)."""
    patience: int | None = None
    """Stop after this many evaluations without a new best."""
    save_at_eval: bool = False
    """Write a checkpoint after every evaluation (fine-tuning: each epoch can be resumed)."""
    num_workers: int = 0
    desc: str = "train"
    postfix: Callable[[dict], str] = lambda r: f"loss {r['loss']:.4f} lr {r['lr']:.2e}"
    """The progress bar's text from a log record."""
    after_save: Callable[[str], None] | None = None
    """Called on rank 0 after each checkpoint with the run directory (e.g. to write the HF export)."""
    frozen_at: Callable[[int], list[torch.Tensor]] | None = None
    """Step (0-based) -> parameters that must not change in it (gradual unfreezing); a function of the step alone, so
    a resumed run freezes what the uninterrupted one did."""


@dataclass
class TrainResult:
    step: int
    run_dir: str | None
    losses: list[float] = field(default_factory=list)
    """Loss of every step run by this call (mean over the global batch), for tests and golden curves."""
    last_log: dict[str, float] = field(default_factory=dict)
    eval: dict[str, float] = field(default_factory=dict)
    """The last evaluation."""
    best: dict[str, float] | None = None
    """The best evaluation (with its step and epoch) when the job names a best metric."""
    train_seconds: float = 0.0
    """Seconds spent in training steps (not evaluation or saving) by this call."""
    stopped_early: bool = False
    time_up: bool = False
    """The run stopped because its time budget (``train_time``) was spent."""


def wrap(model: nn.Module, train: TrainConfig, info: dist_.DistInfo) -> nn.Module:
    """The model as training runs it: FSDP shards each encoder layer and the whole model in place; DDP wraps a
    finished model; compile last."""
    wrapped: Any = model
    if train.fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in model.bert.layers:  # type: ignore[union-attr]
            fully_shard(layer)
        fully_shard(model)
    elif info.enabled:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    if train.compile:
        wrapped = torch.compile(wrapped)
        logger.info("torch.compile: the first step includes compilation")
    return wrapped


def fit(job: Job) -> TrainResult:
    """Run (or resume) ``job``: see the module notes. The run directory is locked for the run's duration."""
    lock = ckpt.RunLock(job.run_dir) if job.run_dir and job.info.is_main else contextlib.nullcontext()
    with lock:
        if job.run_dir and job.info.is_main:
            ckpt.clean_run_dir(job.run_dir)  # what a killed run left: temporary files, a half-replaced checkpoint
        dist_.barrier(job.info)
        return _fit(job, _checkpoint_to_resume(job))


def _checkpoint_to_resume(job: Job) -> str | None:
    """The checkpoint this run resumes from, or None for a fresh start; refuses, before anything is written, a
    ``--load`` that holds no checkpoint (unless it is the run's own directory: Megatron's ``--save X --load X`` starts
    fresh) and a fresh start in a directory that holds another run's checkpoints (unless ``overwrite``)."""
    t, run_dir = job.train, job.run_dir
    if t.load and ckpt.has_checkpoint(t.load):
        return ckpt.resolve_checkpoint(t.load)
    if t.load and not (run_dir and os.path.abspath(t.load) == os.path.abspath(run_dir)):
        what = "does not exist" if not os.path.exists(t.load) else "holds no checkpoint"
        raise ValueError(
            f"--load {t.load} {what}: give a checkpoint directory (with {ckpt.STATE_FILE}) or a run directory (with "
            f"checkpoints/{ckpt.LATEST})"
        )
    if run_dir and ckpt.has_checkpoint(run_dir) and not t.overwrite:
        existing = ckpt.checkpoints(run_dir)
        newest = os.path.basename(existing[-1]) if existing else ckpt.LATEST
        raise ValueError(
            f"{run_dir} holds the checkpoints of an earlier run (newest {newest}); resume it (pretrain: --load "
            f"{run_dir}; finetune: --resume), choose another directory, or pass --overwrite to start a new run there "
            "(the earlier checkpoints are kept)"
        )
    if t.load:
        logger.warning("--load %s: no checkpoint there yet; starting from step 0", t.load)
    return None


def _fit(job: Job, checkpoint: str | None) -> TrainResult:
    t, info, model, plan = job.train, job.info, job.model, job.plan
    if t.fp16 and info.device.type != "cuda":
        raise ValueError("--fp16 needs a CUDA device (on CPU use --bf16)")
    if t.bf16 and info.is_main:  # asked for in so many words (the default, None, is bf16 only where native)
        warn_if_emulated_bf16(info.device.type, "--bf16")
    state = None
    if checkpoint is not None:
        state = ckpt.load_trainer_state(checkpoint)  # first: a refused file loads nothing
        job.load_checkpoint(checkpoint, model)
        state["path"] = checkpoint
    train_model = wrap(model, t, info)
    optimizer = build_optimizer(model, job.optim, fused=not t.fsdp)
    budget = parse_duration(t.train_time) if t.train_time else None
    timed = BudgetSchedule(optimizer, job.optim) if budget else None
    scheduler = timed or build_scheduler(optimizer, job.optim, job.steps)
    scaler = torch.amp.GradScaler("cuda") if t.fp16 else None
    loop: dict[str, Any] = {
        "best": None,
        "stale": 0,
        "since_eval": [0.0, 0],
        "run_id": uuid.uuid4().hex,
        "spent_seconds": 0.0,  # wall-clock time of the run so far (a time budget counts it across resumes)
    }
    start_step = 0
    if state is not None:
        start_step = _restore(state, model, optimizer, scheduler, scaler, info, partial=job.frozen_at is not None)
        loop.update(state.get("loop") or {})
    run_dir = job.run_dir
    metrics_path = os.path.join(run_dir, "metrics.jsonl") if run_dir else None
    if run_dir and info.is_main:
        atomic_write_text(os.path.join(run_dir, "run_config.yaml"), job.config_yaml)
        if metrics_path and os.path.exists(metrics_path):
            _continue_record(metrics_path, start_step)
    stop_at = job.steps
    if t.exit_interval:
        stop_at = min(stop_at, (start_step // t.exit_interval + 1) * t.exit_interval)
    batches = iter(loader(job.dataset, plan, start_step, stop_at, job.collate, job.num_workers))
    stats = torch.zeros(N_ENGINE_STATS + job.objective.n_stats, device=info.device, dtype=torch.float64)
    since_eval = torch.tensor(float(loop["since_eval"][0]), device=info.device, dtype=torch.float64)
    steps_since_eval = int(loop["since_eval"][1])
    result = TrainResult(start_step, run_dir, best=loop["best"])
    model.train()
    step_losses: list[torch.Tensor] = []
    seconds_since_eval = 0.0  # training steps only: evaluation and checkpoints are not in an epoch's train_seconds
    busy_checked = info.device.type != "cpu" or not info.is_main
    last_log_time = time.perf_counter()
    last_log_step = step = start_step
    last_plot = time.monotonic()
    spent_before, session_start = float(loop["spent_seconds"]), time.monotonic()
    time_up = False
    if budget is not None and info.is_main:
        logger.info(
            "time budget %s: %.0f s left of %.0f (the schedule runs over the time)",
            t.train_time,
            budget - spent_before,
            budget,
        )
    with progress(
        total=None if budget else stop_at - start_step,
        desc=job.desc,
        unit="step",
        enabled=info.is_main and job.desc != "",
        interval=30.0,
    ) as bar:
        if budget is not None and spent_before >= budget:
            logger.info("the time budget (%s) was spent before this checkpoint: nothing left to train", t.train_time)
            stop_at = start_step
        if timed is not None and budget is not None:
            timed.progress = spent_before / budget  # then, after each step, the share spent (rank 0's clock)
        while step < stop_at:
            started = time.perf_counter()
            micro = [
                (to_device(next(batches), info.device), weight, micro_batch_seed(t.seed, positions[0]))
                for positions, weight in plan.micro_batches(step)
            ]
            grad_norm, step_loss = train_step(
                train_model,
                job.objective,
                micro,
                optimizer,
                scheduler,
                scaler,
                t,
                job.optim.clip_grad,
                stats,
                info,
                job.frozen_at(step) if job.frozen_at is not None else None,
            )
            step += 1
            result.train_seconds += time.perf_counter() - started
            seconds_since_eval += time.perf_counter() - started
            if budget is not None:  # one clock reading per step, the same on every rank: the stop and the next lr
                loop["spent_seconds"] = _agreed(spent_before + time.monotonic() - session_start, info)
                if timed is not None:
                    timed.progress = loop["spent_seconds"] / budget
                if loop["spent_seconds"] >= budget:  # the last step: log, evaluate, save and export now
                    time_up, stop_at = True, step
                    if info.is_main:
                        logger.info("time budget %s spent at step %d", t.train_time, step)
            step_losses.append(step_loss)
            since_eval += step_loss
            steps_since_eval += 1
            bar.update(1)
            if step % t.log_interval == 0 or step == stop_at:
                check_nonfinite(stats, t.on_nonfinite, last_log_step + 1, step)
                if not busy_checked:  # once, while this run's threads are at work
                    busy_checked = True
                    warn_if_oversubscribed(torch.get_num_threads())
                now = time.perf_counter()
                log = _log_record(
                    job.objective,
                    stats,
                    info,
                    step,
                    float(scheduler.get_last_lr()[0]),
                    grad_norm,
                    now - last_log_time,
                    step - last_log_step,
                )
                if budget is not None:
                    log["time_spent"] = round(float(loop["spent_seconds"]), 1)
                stats.zero_()
                last_log_time, last_log_step = now, step
                result.last_log = log
                bar.set_postfix_str(job.postfix(log))
                if metrics_path and info.is_main:
                    _append(metrics_path, log)
            evaluated = False
            if job.evaluate is not None and (
                (job.eval_every and step % job.eval_every == 0) or step == job.steps or time_up
            ):
                evaluated = True
                record: dict[str, float] = {"step": step}
                if plan.steps_per_epoch:
                    record["epoch"] = step / plan.steps_per_epoch
                record["train_loss"] = float(dist_.mean(since_eval, info)) / max(steps_since_eval, 1)
                record["train_seconds"] = round(seconds_since_eval, 3)
                seconds_since_eval = 0.0
                since_eval.zero_()
                steps_since_eval = 0
                scores = job.evaluate(model)
                model.train()
                result.eval = scores
                if info.is_main:
                    logger.info(
                        "step %d eval: %s",
                        step,
                        " ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float)),
                    )
                    if metrics_path:
                        _append(metrics_path, {**record, **scores})
                if job.best_metric is not None:
                    if job.best_metric not in scores:
                        raise ValueError(
                            f"metric {job.best_metric.removeprefix('eval_')!r} is not one this task "
                            f"computes ({', '.join(k.removeprefix('eval_') for k in scores)})"
                        )
                    best = loop["best"]
                    value, previous = scores[job.best_metric], best and best[job.best_metric]
                    if best is None or (value < previous if job.best_lower else value > previous):
                        loop["best"], loop["stale"] = {**record, **scores}, 0
                        if job.on_best is not None:
                            job.on_best(model, scores)
                    else:
                        loop["stale"] += 1
                    result.best = loop["best"]
            stop_early = job.patience is not None and loop["stale"] >= job.patience
            if run_dir and (
                (t.save_interval and step % t.save_interval == 0)
                or step == stop_at
                or (evaluated and job.save_at_eval)
                or stop_early
            ):
                check_nonfinite(stats, t.on_nonfinite, last_log_step + 1, step)  # never save after a NaN step
                loop["since_eval"] = [float(dist_.mean(since_eval, info)), steps_since_eval]
                plot = step == stop_at or time.monotonic() - last_plot >= PLOT_INTERVAL
                _save(job, step, model, optimizer, scheduler, scaler, loop, info, plot)
                last_plot = time.monotonic() if plot else last_plot
            if stop_early:
                logger.info(
                    "early stopping at step %d: %d evaluations without a better %s",
                    step,
                    loop["stale"],
                    job.best_metric,
                )
                result.stopped_early = True
                break
    result.step = step
    result.time_up = time_up
    if step_losses:  # read once at the end: no sync inside the loop
        result.losses = dist_.mean(torch.stack(step_losses).double(), info).cpu().tolist()
    return result


def _agreed(seconds: float, info: dist_.DistInfo) -> float:
    """Rank 0's reading of a clock, on every rank (one small broadcast per step with several ranks), so that a time
    budget's learning rate and last step are the same everywhere."""
    if info.world_size == 1:
        return seconds
    value = torch.tensor([seconds], dtype=torch.float64, device=info.device)
    torch.distributed.broadcast(value, src=0)
    return float(value.item())


def _log_record(
    objective: Objective,
    stats: torch.Tensor,
    info: dist_.DistInfo,
    step: int,
    lr: float,
    grad_norm: torch.Tensor,
    seconds: float,
    steps: int,
) -> dict[str, float]:
    s = dist_.total(stats, info).cpu().tolist()
    record: dict[str, float] = {
        "step": step,
        "loss": s[LOSS] / info.world_size / max(steps, 1),
        **objective.summarize(s[N_ENGINE_STATS:], max(s[MICRO], 1.0)),
        "lr": lr,
        "grad_norm": float(grad_norm),
        "tokens_per_second": s[TOKENS] / max(seconds, 1e-9),
        "seconds_per_step": seconds / max(steps, 1),
    }
    if s[SKIPPED] > 0:
        record["skipped_steps"] = s[SKIPPED] / info.world_size
    return record


def _continue_record(path: str, start_step: int) -> None:
    """Prepare ``metrics.jsonl`` for a run starting at ``start_step``: a fresh run (0) moves an earlier run's record
    aside (metrics.<time>.jsonl; nothing another run wrote is deleted); a resumed run keeps the records up to its
    step, so that steps redone after a crash are logged once, and drops a line torn by a kill."""
    if start_step == 0:
        aside = path.removesuffix(".jsonl") + time.strftime(".%Y%m%d-%H%M%S.jsonl")
        os.replace(path, aside)
        logger.info("an earlier run's %s was moved to %s", os.path.basename(path), aside)
        return
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= start_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _append(path: str, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def full_state(model: nn.Module, optimizer=None) -> tuple[dict, dict | None]:
    """Unsharded model (and optimizer) state dicts, gathered to the CPU (under FSDP every rank must call this).

    The optimizer state is keyed by parameter names, so a checkpoint resumes with or without FSDP and on any number
    of ranks."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    return model_state, (get_optimizer_state_dict(model, optimizer, options=options) if optimizer else None)


def _save(
    job: Job, step: int, model, optimizer, scheduler, scaler, loop: dict, info: dist_.DistInfo, plot: bool = True
) -> None:
    model_state, optim_state = full_state(model, optimizer)
    states: list[Any] = [None] * info.world_size
    if info.enabled:
        torch.distributed.all_gather_object(states, ckpt.rng_state())
    else:
        states = [ckpt.rng_state()]
    if info.is_main and job.run_dir:
        state = {
            "run_id": loop["run_id"],
            "step": step,
            "consumed_samples": job.plan.step_range(step)[0],
            "optimizer": optim_state,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler else None,
            "rng": states,
            "world_size": info.world_size,
            "loop": loop,
        }
        path = ckpt.save_checkpoint(
            job.run_dir,
            step,
            lambda d: job.write_checkpoint(d, model_state),
            state,
            job.config_yaml,
            job.train.keep_last,
            run_id=loop["run_id"],
        )
        if job.after_save is not None:
            job.after_save(path)
        metrics = os.path.join(job.run_dir, "metrics.jsonl")
        if plot and os.path.exists(metrics):
            try:
                plot_metrics(metrics, os.path.join(job.run_dir, "curves.png"))
            except Exception as e:  # a plot is never worth stopping a run for
                logger.warning("could not redraw %s/curves.png: %s", job.run_dir, e)
        logger.info("step %d: checkpoint %s", step, path)
    dist_.barrier(info)


def _restore(
    state: dict[str, Any], model, optimizer, scheduler, scaler, info: dist_.DistInfo, partial: bool = False
) -> int:
    """Optimizer, schedule, scaler and RNG from a trainer state (after any FSDP sharding). ``partial``: parameters a
    schedule has not trained yet have no optimizer state, which is then expected."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False, strict=not partial)
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=options)
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
    logger.info(
        "resumed from %s at step %d (%d samples consumed)", state["path"], state["step"], state["consumed_samples"]
    )
    return int(state["step"])
