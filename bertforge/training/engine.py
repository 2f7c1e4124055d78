"""The training engine: one step and one loop that pretraining and every fine-tuning task run on.

What differs between jobs is passed in as a ``Job``: the model, an ``Objective`` (forward + loss of a micro-batch and
the metrics accumulated from it), a dataset indexed by stream position, a collate function, the batch plan, an
evaluation function and what "best" means. The engine does the rest, once:

- **Step** (``train_step``): precision context, micro-batch accumulation (gradients synchronised on the last
  micro-batch only), clipping, the on-device non-finite skip, optimizer and scheduler step.
- **Loop** (``trainer.fit``): resume from a checkpoint, DDP/FSDP/compile applied from outside the model (``wrap``),
  progress, metrics every ``log_interval`` steps (metrics.jsonl), evaluation, best tracking and early stopping,
  checkpoints (atomic, ``keep_last``), curves.png, ``exit_interval``.

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
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from bertforge.config import OptimConfig, TrackingConfig, TrainConfig
from bertforge.training import distributed as dist_
from bertforge.training.objectives import Objective
from bertforge.utils import (
    autocast,
    logger,
)


class NonFiniteLossError(RuntimeError):
    """Raised on every rank when the loss or gradient became NaN/inf and on_nonfinite is "stop"."""


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
        self.origin = (0, 0)
        """(step, stream position) where this batch size began: a multi-phase run's phase start (endless streams)."""

    @property
    def steps_per_epoch(self) -> int | None:
        return None if self.epoch_size is None else math.ceil(self.epoch_size / self.global_batch)

    def step_range(self, step: int) -> tuple[int, int]:
        if self.epoch_size is None:
            first_step, first_position = self.origin
            start = first_position + (step - first_step) * self.global_batch
            return start, start + self.global_batch
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
    tracking: TrackingConfig | None = None
    """TensorBoard / W&B (``tracking.py``); None or nothing asked for: metrics.jsonl and curves.png only."""
    tags: dict[str, str] = field(default_factory=dict)
    """Log-record field -> tracker tag (Megatron's for pretraining, transformers' for fine-tuning)."""
    megatron_tags: bool = False
    """Evaluations as Megatron's ``<loss> validation`` tags, with ``vs samples`` curves (else ``eval/<metric>``)."""
    flops_per_token: float | None = None
    """Training FLOPs per token, for the tracker's ``throughput`` (TFLOP/s per rank)."""
    stop_step: int | None = None
    """Where this call stops (a phase's end); None: at ``steps``."""
    schedule: Callable[[int], float] | None = None
    """Step -> multiplier of the peak learning rate (a multi-phase run's); None: ``lr_lambda`` over ``steps``."""
    shape: dict[str, int] | None = None
    """What a phase may change (sample length, global batch): a resume that finds other values in its checkpoint
    starts a new phase there -- the stream continues at the samples consumed -- and says what changed."""


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
