"""Experiment tracking beside ``metrics.jsonl``: TensorBoard and Weights & Biases, as Megatron-LM writes them.

The trainer hands a ``Tracker`` its log records (every ``tensorboard_log_interval`` steps) and its evaluations; the
tracker renames the fields to the job's tags and writes them. Pretraining uses Megatron's tags -- ``lm loss``, ``sop
loss`` (or ``nsp loss``), ``learning-rate``, ``batch-size``, ``grad-norm``, ``iteration-time``, ``throughput``,
``<loss> validation`` and ``<loss> validation ppl`` -- each also ``vs samples`` (consumed samples on the x axis);
fine-tuning uses transformers' (``train/loss``, ``train/learning_rate``, ``eval/<metric>``). The run's arguments are
written as text.

Resuming continues the same curves. TensorBoard: the new writer starts with a purge point at the first step it will
write, so that TensorBoard's reader drops what a killed run wrote after its last checkpoint; the ``vs samples`` curves
live in ``DIR/vs-samples`` (a run of their own, with its purge point in samples), since a purge applies to every tag
of a run at one x value. W&B: the run's id is the training run's, resumed with ``resume="allow"``; W&B keeps the first
value logged at a step (a resumed run recomputes exactly the values it had logged).

Both are optional dependencies, imported only when asked for; a missing one is one line naming it. Only the main
rank creates a tracker.
"""

from __future__ import annotations

import math
import os
from typing import Any

from bertforge.config import TrackingConfig
from bertforge.utils import logger

VS_SAMPLES_DIR = "vs-samples"
"""The subdirectory of --tensorboard-dir that holds the ``<tag> vs samples`` curves."""

FINETUNE_TAGS = {"loss": "train/loss", "lr": "train/learning_rate", "grad_norm": "train/grad_norm"}
"""Fine-tuning's tags (transformers' Trainer); an evaluation's ``eval_x`` is written as ``eval/x``."""


def pretrain_tags(objective: str, binary_head: str) -> dict[str, str]:
    """Megatron's tags for a pretraining record's fields: the LM loss, the sentence-pair head's loss, the rest."""
    lm = "clm_loss" if objective == "clm" else "mlm_loss"  # ELECTRA: the generator's MLM
    return {
        lm: "lm loss",
        "binary_loss": f"{binary_head} loss",
        "rtd_loss": "rtd loss",
        "distill": "distillation loss",
        "lr": "learning-rate",
        "batch_size": "batch-size",
        "grad_norm": "grad-norm",
        "skipped_steps": "skipped-iterations",
    }


def flops_per_token(config: Any, seq_length: int, predicted_share: float = 0.15) -> float:
    """Training FLOPs (forward + backward) per token of a BERT: 6 x the layers' weights, the attention products
    (12 x layers x sequence x hidden) and the output layer over the predicted share of positions (MLM's 15%; 1 for a
    causal LM). Embedding look-ups are free."""
    h, i, n_layers, v = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    layer_weights = 4 * h * h + 2 * h * i
    return 6 * n_layers * layer_weights + 12 * n_layers * seq_length * h + 6 * (h * v + h * h) * predicted_share


def memory_bytes(device: Any) -> dict[str, float]:
    """The accelerator's allocated / reserved / peak bytes, or the process's resident bytes on a CPU."""
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        return {
            "mem-allocated-bytes": float(torch.cuda.memory_allocated(device)),
            "mem-reserved-bytes": float(torch.cuda.memory_reserved(device)),
            "mem-max-allocated-bytes": float(torch.cuda.max_memory_allocated(device)),
        }
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return {"mem-resident-bytes": float(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))}
    except (OSError, ValueError, IndexError):
        import resource

        return {"mem-max-resident-bytes": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}


class MissingTracker(ValueError):
    """A tracker was asked for whose package is not installed (one line naming it)."""


def _require(module: str, flag: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingTracker(f"{flag} needs the {package} package: pip install {package}") from None


def check_installed(cfg: TrackingConfig) -> None:
    """Refuse, before any work, a tracker whose package is missing (one line naming it)."""
    if cfg.tensorboard:
        _require("torch.utils.tensorboard", _flag(cfg, "tensorboard"), "tensorboard")
    if cfg.wandb:
        _require("wandb", _flag(cfg, "wandb"), "wandb")


def _flag(cfg: TrackingConfig, tracker: str) -> str:
    """The flag that asked for a tracker, for its error message."""
    if tracker == "tensorboard":
        return "--tensorboard-dir" if cfg.tensorboard_dir else "--report-to tensorboard"
    return "--wandb-project" if cfg.wandb_project else "--report-to wandb"


class TensorBoardWriter:
    """Scalars by step in DIR, ``vs samples`` scalars in DIR/vs-samples, each writer purging from its first point."""

    def __init__(self, log_dir: str, queue_size: int, start: tuple[int, int], flag: str, by_samples: bool):
        tensorboard = _require("torch.utils.tensorboard", flag, "tensorboard")
        (step, samples), resumed = start, start[0] > 0
        self.steps = tensorboard.SummaryWriter(log_dir, max_queue=queue_size, **_purge(resumed, step))
        self.samples = None
        if by_samples:
            where = os.path.join(log_dir, VS_SAMPLES_DIR)
            self.samples = tensorboard.SummaryWriter(where, max_queue=queue_size, **_purge(resumed, samples))

    def scalars(self, values: dict[str, float], step: int, samples: int | None) -> None:
        for tag, value in values.items():
            self.steps.add_scalar(tag, value, step)
            if self.samples is not None and samples is not None:
                self.samples.add_scalar(f"{tag} vs samples", value, samples)

    def arguments(self, args: dict[str, Any], step: int) -> None:
        for name, value in args.items():
            self.steps.add_text(name, str(value), step)

    def flush(self) -> None:
        for writer in (self.steps, self.samples):
            if writer is not None:
                writer.flush()

    def close(self) -> None:
        for writer in (self.steps, self.samples):
            if writer is not None:
                writer.close()


def _purge(resumed: bool, last: int) -> dict[str, int]:
    """SummaryWriter's purge point for a run resumed after x value ``last``: what a killed run wrote later is
    dropped."""
    return {"purge_step": last + 1} if resumed else {}


class WandbWriter:
    """One W&B run per training run (its id kept across resumes); consumed samples are logged as ``samples``."""

    def __init__(self, project: str, name: str, save_dir: str, entity: str | None, run_id: str, config: dict):
        wandb = _require("wandb", "--wandb-project", "wandb")
        os.makedirs(save_dir, exist_ok=True)
        self.run = wandb.init(
            project=project,
            name=name,
            dir=save_dir,
            entity=entity,
            id=run_id,
            resume="allow",
            config=config,
        )

    def scalars(self, values: dict[str, float], step: int, samples: int | None) -> None:
        self.run.log({**values, **({"samples": samples} if samples is not None else {})}, step=step)

    def arguments(self, args: dict[str, Any], step: int) -> None:
        """Already in the run's config (``wandb.init``)."""

    def flush(self) -> None:
        """W&B writes in its own process."""

    def close(self) -> None:
        self.run.finish()


class Tracker:
    """The writers a run asked for, and the names they get: ``train`` (a log record), ``evaluation`` (a held-out
    result), ``close``. ``tags`` maps a record's fields to tag names (others are left out); ``megatron`` selects
    Megatron's evaluation tags (``<loss> validation``) over transformers' (``eval/<metric>``)."""

    def __init__(
        self,
        cfg: TrackingConfig,
        run_dir: str | None,
        run_id: str,
        start: tuple[int, int],
        args: dict[str, Any],
        tags: dict[str, str],
        megatron: bool,
        flops_per_token: float | None = None,
        device: Any = None,
    ):
        self.cfg, self.tags, self.megatron = cfg, tags, megatron
        self.flops_per_token, self.device = flops_per_token, device
        self.writers: list[Any] = []
        base = run_dir or "."
        if cfg.tensorboard:
            log_dir = cfg.tensorboard_dir or os.path.join(base, "tensorboard")
            flag = _flag(cfg, "tensorboard")
            self.writers.append(TensorBoardWriter(log_dir, cfg.tensorboard_queue_size, start, flag, megatron))
            logger.info("TensorBoard: tensorboard --logdir %s", log_dir)
        if cfg.wandb:
            project = cfg.wandb_project or "bertforge"
            name = cfg.wandb_exp_name or os.path.basename(os.path.abspath(base))
            save_dir = cfg.wandb_save_dir or os.path.join(base, "wandb")
            self.writers.append(WandbWriter(project, name, save_dir, cfg.wandb_entity, run_id, args))
        for writer in self.writers:
            writer.arguments(args, start[0])

    def train(self, record: dict[str, float], samples: int, world_size: int) -> None:
        """A log record (averaged over the steps since the last one) at its step."""
        step = int(record["step"])
        values = {self.tags[k]: float(v) for k, v in record.items() if k in self.tags}
        if self.cfg.log_timers_to_tensorboard:
            values["iteration-time"] = record["seconds_per_step"]
        if self.cfg.log_throughput and self.flops_per_token:
            values["throughput"] = record["tokens_per_second"] * self.flops_per_token / world_size / 1e12
        if self.cfg.log_memory_to_tensorboard:
            values.update(memory_bytes(self.device))
        self._write(values, step, samples)

    def evaluation(self, step: int, scores: dict[str, float], samples: int, seconds: float) -> None:
        """A held-out evaluation: ``lm loss validation`` (and its ppl) for pretraining, ``eval/x`` for fine-tuning."""
        values: dict[str, float] = {}
        for key, value in scores.items():
            if not isinstance(value, (int, float)):
                continue
            name = key.removeprefix("eval_")
            if not self.megatron:
                values[f"eval/{name}"] = float(value)
            elif name.endswith("_loss"):
                tag = self.tags.get(name, name.replace("_", " "))
                values[f"{tag} validation"] = float(value)
                if self.cfg.log_validation_ppl_to_tensorboard:
                    values[f"{tag} validation ppl"] = math.exp(min(float(value), 20.0))
            elif name != "perplexity":
                values[f"{name.replace('_', ' ')} validation"] = float(value)
        if self.cfg.log_timers_to_tensorboard:
            values["evaluation-time"] = seconds
        self._write(values, step, samples)

    def _write(self, values: dict[str, float], step: int, samples: int | None) -> None:
        for writer in self.writers:
            writer.scalars(values, step, samples if self.megatron else None)

    def flush(self) -> None:
        """Everything written so far on disk (at each checkpoint: what a resume will continue from)."""
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers = []
