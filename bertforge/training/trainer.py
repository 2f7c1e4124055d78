"""The training loop, in torchtitan's shape: ``fit(job)`` runs a ``Trainer`` whose set-up restores, wraps and builds
the optimizer and schedule, and whose loop is a short list of decisions that components own -- the metrics logger's
``should_log`` (``metrics.py``), the ``Evaluator``'s ``should_evaluate`` and ``should_stop`` (best tracking, early
stopping), the checkpoint manager's ``should_save`` (``checkpoint.py``), the time budget -- around the one step of
``engine.py``. ``TrainState`` is what the loop carries through a checkpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml
from torch import nn

from bertforge.training import checkpoint as ckpt
from bertforge.training import distributed as dist_
from bertforge.training.engine import (
    LOSS,
    MICRO,
    N_ENGINE_STATS,
    SKIPPED,
    TOKENS,
    Job,
    TrainResult,
    check_nonfinite,
    loader,
    micro_batch_seed,
    to_device,
    train_step,
    wrap,
)
from bertforge.training.metrics import MetricsLogger
from bertforge.training.objectives import Objective
from bertforge.training.optim import BudgetSchedule, build_optimizer, build_scheduler
from bertforge.training.tracking import Tracker
from bertforge.utils import (
    atomic_write_text,
    logger,
    parse_duration,
    progress,
    warn_if_emulated_bf16,
    warn_if_oversubscribed,
)


def fit(job: Job) -> TrainResult:
    """Run (or resume) ``job``: see the module notes. The run directory is locked for the run's duration."""
    lock = ckpt.RunLock(job.run_dir) if job.run_dir and job.info.is_main else contextlib.nullcontext()
    with lock:
        if job.run_dir and job.info.is_main:
            ckpt.clean_run_dir(job.run_dir)  # what a killed run left: temporary files, a half-replaced checkpoint
        dist_.barrier(job.info)
        return Trainer(job).run()


@dataclass
class TrainState:
    """What the loop carries from step to step and through a checkpoint (the trainer state's ``loop``)."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Which run wrote a checkpoint (pruning removes only this run's own); kept on resume."""
    best: dict[str, float] | None = None
    """The best evaluation so far (with its step and epoch)."""
    stale: int = 0
    """Evaluations since the best one (early stopping)."""
    since_eval: list[float] = field(default_factory=lambda: [0.0, 0])
    """(sum of the step losses, steps) since the last evaluation, as of the last checkpoint."""
    spent_seconds: float = 0.0
    """Wall-clock time of the run so far (a time budget counts it across resumes)."""
    shape: dict[str, int] | None = None
    """The phase's sample length and global batch (``Job.shape``)."""
    origin: list[int] = field(default_factory=lambda: [0, 0])
    """(step, stream position) where the phase began (``BatchPlan.origin``)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any] | None) -> TrainState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (saved or {}).items() if k in known})


class Evaluator:
    """When to evaluate, and what an evaluation decides: the best so far (``on_best``) and early stopping."""

    def __init__(self, job: Job):
        self.job = job

    def should_evaluate(self, step: int, time_up: bool) -> bool:
        job = self.job
        return job.evaluate is not None and (
            bool(job.eval_every and step % job.eval_every == 0) or step in (job.steps, job.stop_step) or time_up
        )

    def run(self, model: nn.Module, record: dict[str, float], state: TrainState) -> dict[str, float]:
        """Evaluate ``model`` (every rank), update the best and the patience count; returns the scores."""
        job = self.job
        assert job.evaluate is not None
        scores = job.evaluate(model)
        model.train()
        if job.info.is_main:
            shown = " ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float))
            logger.info("step %d eval: %s", int(record["step"]), shown)
        if job.best_metric is None:
            return scores
        if job.best_metric not in scores:
            raise ValueError(
                f"metric {job.best_metric.removeprefix('eval_')!r} is not one this task computes "
                f"({', '.join(k.removeprefix('eval_') for k in scores)})"
            )
        value = scores[job.best_metric]
        previous = None if state.best is None else state.best[job.best_metric]
        if previous is None or (value < previous if job.best_lower else value > previous):
            state.best, state.stale = {**record, **scores}, 0
            if job.on_best is not None:
                job.on_best(model, scores)
        else:
            state.stale += 1
        return scores

    def should_stop(self, state: TrainState) -> bool:
        return self.job.patience is not None and state.stale >= self.job.patience


class Trainer:
    """One run of a job, in torchtitan's shape: the set-up (restore, wrap, optimizer, schedule) in ``__init__``, and a
    loop (``run``) of steps, each followed by the decisions the components own: the metrics logger's ``should_log``,
    the evaluator's ``should_evaluate``, the checkpoint manager's ``should_save``, the time budget and early stop."""

    def __init__(self, job: Job):
        t, info = job.train, job.info
        if t.fp16 and info.device.type != "cuda":
            raise ValueError("--fp16 needs a CUDA device (on CPU use --bf16)")
        if t.bf16 and info.is_main:  # asked for in so many words (the default, None, is bf16 only where native)
            warn_if_emulated_bf16(info.device.type, "--bf16")
        self.job, self.t, self.info = job, t, info
        self.checkpoints = ckpt.CheckpointManager(
            job.run_dir, t, info, job.config_yaml, job.write_checkpoint, job.load_checkpoint, job.after_save
        )
        self.metrics = MetricsLogger(job.run_dir, info.is_main, t.log_interval)
        self.evaluator = Evaluator(job)
        checkpoint = self.checkpoints.resume_point()
        saved = self.checkpoints.load_state(checkpoint, job.model) if checkpoint is not None else None
        self.model = job.model
        self.train_model = wrap(job.model, t, info)
        self.optimizer = build_optimizer(job.model, job.optim, fused=not t.fsdp)
        self.budget = parse_duration(t.train_time) if t.train_time else None
        self.timed = BudgetSchedule(self.optimizer, job.optim) if self.budget else None
        self.scheduler = self.timed or build_scheduler(self.optimizer, job.optim, job.steps, job.schedule)
        self.scaler = torch.amp.GradScaler("cuda") if t.fp16 else None
        self.state, self.start_step = TrainState(), 0
        if saved is not None:
            self.start_step = self.checkpoints.restore(
                saved, job.model, self.optimizer, self.scheduler, self.scaler, partial=job.frozen_at is not None
            )
            self.state = TrainState.from_dict(saved.get("loop"))
        self._enter_phase(saved)
        if job.run_dir and info.is_main:
            atomic_write_text(os.path.join(job.run_dir, "run_config.yaml"), job.config_yaml)
        self.metrics.start(self.start_step)
        self.stop_at = min(job.steps, job.stop_step or job.steps)
        if t.exit_interval:
            self.stop_at = min(self.stop_at, (self.start_step // t.exit_interval + 1) * t.exit_interval)
        self.stats = torch.zeros(N_ENGINE_STATS + job.objective.n_stats, device=info.device, dtype=torch.float64)
        self.since_eval = torch.tensor(float(self.state.since_eval[0]), device=info.device, dtype=torch.float64)
        self.steps_since_eval = int(self.state.since_eval[1])
        self.seconds_since_eval = 0.0  # training steps only: evaluation and checkpoints are not in train_seconds
        self.result = TrainResult(self.start_step, job.run_dir, best=self.state.best)
        self.step_losses: list[torch.Tensor] = []
        self.busy_checked = info.device.type != "cpu" or not info.is_main
        self.log_window = _Window(self.stats.numel(), self.start_step)
        self.track_window = _Window(self.stats.numel(), self.start_step)
        self.spent_before, self.session_start = float(self.state.spent_seconds), time.monotonic()
        self.time_up = False
        self.tracker = self._tracker() if info.is_main else None

    def _enter_phase(self, saved: dict[str, Any] | None) -> None:
        """Set the batch plan's origin: the checkpoint's phase when its shape is the job's, else a new phase from
        here, continuing the stream at the samples the checkpoint consumed (and say what changed)."""
        job, state = self.job, self.state
        if job.shape is None:
            return
        if saved is not None and state.shape is not None and state.shape != job.shape:
            state.origin = [self.start_step, int(saved["consumed_samples"])]
            if self.info.is_main:
                changes = ", ".join(
                    f"{k.replace('_', ' ')} {state.shape.get(k)} -> {v}"
                    for k, v in job.shape.items()
                    if state.shape.get(k) != v
                )
                logger.info(
                    "new phase at step %d: %s; the weights, the optimizer state and the step count carry on, the "
                    "samples continue from the %s consumed",
                    self.start_step,
                    changes,
                    f"{state.origin[1]:,}",
                )
        state.shape = dict(job.shape)
        job.plan.origin = (state.origin[0], state.origin[1])

    def run(self) -> TrainResult:
        try:
            return self._run()
        finally:
            if self.tracker is not None:
                self.tracker.close()

    def _run(self) -> TrainResult:
        job = self.job
        batches = iter(loader(job.dataset, job.plan, self.start_step, self.stop_at, job.collate, job.num_workers))
        self.model.train()
        self._announce_budget()
        step = self.start_step
        with progress(
            total=None if self.budget else self.stop_at - self.start_step,
            desc=job.desc,
            unit="step",
            enabled=self.info.is_main and job.desc != "",
            interval=30.0,
        ) as bar:
            while step < self.stop_at:
                step = self._train_step(step, batches)
                bar.update(1)
                logging, tracking = self.metrics.should_log(step, self.stop_at), self._should_track(step)
                if logging or tracking:
                    self._read_stats(step)
                if tracking and self.tracker is not None:
                    self._track(step)
                if logging:
                    bar.set_postfix_str(job.postfix(self._log(step)))
                evaluated = self.evaluator.should_evaluate(step, self.time_up)
                if evaluated:
                    self._evaluate(step)
                stopping = self.evaluator.should_stop(self.state)
                if self.checkpoints.should_save(step, self.stop_at, evaluated, job.save_at_eval, stopping):
                    self._save(step)
                if stopping:
                    logger.info(
                        "early stopping at step %d: %d evaluations without a better %s",
                        step,
                        self.state.stale,
                        job.best_metric,
                    )
                    self.result.stopped_early = True
                    break
        return self._finish(step)

    def _announce_budget(self) -> None:
        """The time budget's state at the start: what is left, and the schedule's position in it."""
        if self.budget is None:
            return
        t = self.t
        if self.info.is_main:
            left = self.budget - self.spent_before
            logger.info(
                "time budget %s: %.0f s left of %.0f (the schedule runs over the time)", t.train_time, left, self.budget
            )
        if self.spent_before >= self.budget:
            logger.info("the time budget (%s) was spent before this checkpoint: nothing left to train", t.train_time)
            self.stop_at = self.start_step
        if self.timed is not None:
            self.timed.progress = self.spent_before / self.budget  # then, after each step, the share spent

    def _train_step(self, step: int, batches: Iterator[dict]) -> int:
        """One optimizer step (the step function's work), then the clock: returns the new step count."""
        job, t, info = self.job, self.t, self.info
        started = time.perf_counter()
        micro = [
            (to_device(next(batches), info.device), weight, micro_batch_seed(t.seed, positions[0]))
            for positions, weight in job.plan.micro_batches(step)
        ]
        frozen = job.frozen_at(step) if job.frozen_at is not None else None
        self.grad_norm, step_loss = train_step(
            self.train_model,
            job.objective,
            micro,
            self.optimizer,
            self.scheduler,
            self.scaler,
            t,
            job.optim.clip_grad,
            self.stats,
            info,
            frozen,
        )
        step += 1
        elapsed = time.perf_counter() - started
        self.result.train_seconds += elapsed
        self.seconds_since_eval += elapsed
        self._tick(step)
        self.step_losses.append(step_loss)
        self.since_eval += step_loss
        self.steps_since_eval += 1
        return step

    def _tick(self, step: int) -> None:
        """The time budget after a step: one clock reading, the same on every rank (the stop and the next lr)."""
        if self.budget is None:
            return
        spent = _agreed(self.spent_before + time.monotonic() - self.session_start, self.info)
        self.state.spent_seconds = spent
        if self.timed is not None:
            self.timed.progress = spent / self.budget
        if spent >= self.budget:  # the last step: log, evaluate, save and export now
            self.time_up, self.stop_at = True, step
            if self.info.is_main:
                logger.info("time budget %s spent at step %d", self.t.train_time, step)

    def _read_stats(self, step: int) -> None:
        """Read the device stats (summed over ranks) into the log's and the tracker's windows, and zero them."""
        check_nonfinite(self.stats, self.t.on_nonfinite, self.log_window.step + 1, step)
        if not self.busy_checked:  # once, while this run's threads are at work
            self.busy_checked = True
            warn_if_oversubscribed(torch.get_num_threads())
        sums = dist_.total(self.stats, self.info).cpu().tolist()
        self.stats.zero_()
        self.log_window.add(sums)
        self.track_window.add(sums)

    def _record(self, window: _Window, step: int) -> dict[str, float]:
        """The record of the steps since ``window`` started (then restarted at ``step``)."""
        seconds, steps = time.perf_counter() - window.time, step - window.step
        lr = float(self.scheduler.get_last_lr()[0])
        record = _log_record(self.job.objective, window.sums, self.info, step, lr, self.grad_norm, seconds, steps)
        record["batch_size"] = self.job.plan.global_batch
        if self.budget is not None:
            record["time_spent"] = round(float(self.state.spent_seconds), 1)
        window.restart(step)
        return record

    def _log(self, step: int) -> dict[str, float]:
        log = self._record(self.log_window, step)
        self.result.last_log = log
        self.metrics.write(log)
        return log

    def _tracker(self) -> Tracker | None:
        """TensorBoard / W&B as the job's tracking config asks (main rank), starting after the resumed step."""
        job, cfg = self.job, self.job.tracking
        if cfg is None or not cfg.enabled:
            return None
        args = {
            f"{section}.{name}": value
            for section, fields in (yaml.safe_load(job.config_yaml) or {}).items()
            if isinstance(fields, dict)
            for name, value in fields.items()
        }
        start = (self.start_step, job.plan.step_range(self.start_step)[0])
        return Tracker(
            cfg,
            job.run_dir,
            self.state.run_id,
            start,
            args,
            job.tags,
            job.megatron_tags,
            job.flops_per_token,
            self.info.device,
        )

    def _should_track(self, step: int) -> bool:
        """A tracking point: decided from the config, the same on every rank (the stats are all-reduced there; only
        the main rank has the writers)."""
        cfg = self.job.tracking
        if cfg is None or not cfg.enabled:
            return False
        return step % cfg.tensorboard_log_interval == 0 or step == self.stop_at

    def _track(self, step: int) -> None:
        assert self.tracker is not None
        record = self._record(self.track_window, step)
        self.tracker.train(record, self.job.plan.step_range(step)[0], self.info.world_size)

    def _evaluate(self, step: int) -> None:
        plan = self.job.plan
        record: dict[str, float] = {"step": step}
        if plan.steps_per_epoch:
            record["epoch"] = step / plan.steps_per_epoch
        record["train_loss"] = float(dist_.mean(self.since_eval, self.info)) / max(self.steps_since_eval, 1)
        record["train_seconds"] = round(self.seconds_since_eval, 3)
        self.seconds_since_eval = 0.0
        self.since_eval.zero_()
        self.steps_since_eval = 0
        started = time.perf_counter()
        scores = self.evaluator.run(self.model, record, self.state)
        if self.tracker is not None:
            samples = self.job.plan.step_range(step)[0]
            self.tracker.evaluation(step, scores, samples, time.perf_counter() - started)
        self.result.eval = scores
        self.metrics.write({**record, **scores})
        if self.job.best_metric is not None:
            self.result.best = self.state.best

    def _save(self, step: int) -> None:
        check_nonfinite(self.stats, self.t.on_nonfinite, self.log_window.step + 1, step)  # never save after a NaN step
        self.state.since_eval = [float(dist_.mean(self.since_eval, self.info)), self.steps_since_eval]
        plot = self.metrics.should_plot(final=step == self.stop_at)
        consumed = self.job.plan.step_range(step)[0]
        loop = self.state.to_dict()
        self.checkpoints.save(step, consumed, self.model, self.optimizer, self.scheduler, self.scaler, loop)
        if plot:
            self.metrics.plot()
        if self.tracker is not None:
            self.tracker.flush()

    def _finish(self, step: int) -> TrainResult:
        result = self.result
        result.step, result.time_up = step, self.time_up
        if self.step_losses:  # read once at the end: no sync inside the loop
            result.losses = dist_.mean(torch.stack(self.step_losses).double(), self.info).cpu().tolist()
        return result


def _agreed(seconds: float, info: dist_.DistInfo) -> float:
    """Rank 0's reading of a clock, on every rank (one small broadcast per step with several ranks), so that a time
    budget's learning rate and last step are the same everywhere."""
    if info.world_size == 1:
        return seconds
    value = torch.tensor([seconds], dtype=torch.float64, device=info.device)
    torch.distributed.broadcast(value, src=0)
    return float(value.item())


class _Window:
    """Device stats summed over ranks since a step (the metrics log's, or the tracker's, last record)."""

    def __init__(self, size: int, step: int):
        self.sums, self.step, self.time = [0.0] * size, step, time.perf_counter()

    def add(self, sums: list[float]) -> None:
        self.sums = [a + b for a, b in zip(self.sums, sums)]

    def restart(self, step: int) -> None:
        self.sums, self.step, self.time = [0.0] * len(self.sums), step, time.perf_counter()


def _log_record(
    objective: Objective,
    s: list[float],
    info: dist_.DistInfo,
    step: int,
    lr: float,
    grad_norm: torch.Tensor,
    seconds: float,
    steps: int,
) -> dict[str, float]:
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
