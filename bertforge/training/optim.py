"""Optimizers (AdamW, LAMB) with BERT's parameter groups, and Megatron-style learning-rate schedules.

Weight decay applies to weight matrices and embeddings, not to biases and LayerNorm parameters (BERT's recipe).
AdamW is torch's own, with the fused kernel where the device supports it and the multi-tensor (foreach) path
elsewhere. LAMB (You et al. 2019) is written here in a few lines since torch ships none: Adam's update scaled per
tensor by the trust ratio ||w|| / ||update||.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from bertforge.config import OptimConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed (matrices, embeddings) and not decayed (biases, LayerNorm, 1-D tensors)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if p.ndim < 2 else decay).append(p)  # biases and LayerNorm parameters are the 1-D tensors
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Lamb(torch.optim.Optimizer):
    """LAMB: Adam moments, decoupled weight decay, and a per-tensor trust ratio ||w|| / ||r|| (clamped to [0, 10])."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = state["step"].item()
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                update = (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt_().add_(group["eps"]))
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                trust = torch.where(
                    (w_norm > 0) & (u_norm > 0), (w_norm / u_norm).clamp(max=10.0), torch.ones_like(w_norm)
                )
                p.add_(update * trust, alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, cfg: OptimConfig, fused: bool = True) -> torch.optim.Optimizer:
    """AdamW (fused kernel when ``fused`` and the device has one, else foreach) or LAMB, with BERT's groups."""
    if cfg.lr is None:
        raise ValueError("optim.lr is not set (fine-tuning resolves it with FinetuneConfig.resolved_optim)")
    lr = cfg.lr
    groups = parameter_groups(model, cfg.weight_decay)
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    if cfg.optimizer == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=cfg.adam_eps)
    device = next(model.parameters()).device
    fused = fused and device.type in ("cuda", "cpu") and all(p.is_floating_point() for p in model.parameters())
    if fused:
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=cfg.adam_eps, fused=True)
        except (RuntimeError, TypeError):  # an older torch without the fused kernel for this device
            pass
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=cfg.adam_eps, foreach=True)


def lr_lambda(cfg: OptimConfig, train_iters: int):
    """Multiplier of the peak rate at step s: linear warm-up, then linear / cosine decay to min_lr, or constant."""
    warmup = cfg.warmup_steps(train_iters)
    decay = cfg.lr_decay_iters or train_iters
    floor = cfg.min_lr / cfg.lr if cfg.lr else 0.0

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if cfg.lr_decay_style == "constant":
            return 1.0
        if step >= decay:
            return floor
        progress = (step - warmup) / max(1, decay - warmup)
        if cfg.lr_decay_style == "linear":
            return floor + (1.0 - floor) * (1.0 - progress)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, train_iters: int, schedule=None):
    """The run's schedule: ``lr_lambda`` over the steps, or ``schedule`` (step -> multiplier of the peak) when the job
    brings one (``phased_lambda``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule or lr_lambda(cfg, train_iters))


def phased_lambda(cfg: OptimConfig, total: int, phases: list[tuple[int, int, Any]]):
    """The multiplier of ``cfg.lr`` at step s of a multi-phase run: the run's schedule over all ``total`` steps, except
    in a phase with a schedule of its own (its ``lr`` and ``lr_warmup_fraction``; NVIDIA's phase 2), which warms up
    and decays over the phase's steps (``phases``: (first step, end step, PhaseConfig))."""
    run = lr_lambda(cfg, total)
    pieces = []  # (end step, shape, its first step, multiplier of cfg.lr)
    for start, end, phase in phases:
        if not phase.own_schedule:
            pieces.append((end, run, 0, 1.0))
            continue
        warmup = cfg.lr_warmup_fraction if phase.lr_warmup_fraction is None else phase.lr_warmup_fraction
        lr = cfg.lr if phase.lr is None else phase.lr
        own = dataclasses.replace(cfg, lr=lr, lr_warmup_fraction=warmup, lr_decay_iters=None)
        pieces.append((end, lr_lambda(own, end - start), start, lr / cfg.lr))  # type: ignore[operator]

    def f(step: int) -> float:  # past the last phase's end (the scheduler's final step): the last phase's value
        _, shape, offset, scale = next((p for p in pieces if step < p[0]), pieces[-1])
        return scale * shape(step - offset)

    return f


def get_linear_schedule_with_warmup(
    optimizer: torch.optim.Optimizer, num_warmup_steps: int, num_training_steps: int, last_epoch: int = -1
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to each group's learning rate over ``num_warmup_steps``, then linear decay to 0 at
    ``num_training_steps``: transformers' name and arguments for the schedule bertforge's fine-tuning uses (the
    trainer's own ``lr_lambda``). Call ``scheduler.step()`` after each ``optimizer.step()``.

    One difference from transformers: warm-up step s runs at (s + 1) / warmup of the peak, as Megatron does, so the
    first update is not wasted at a rate of 0."""
    return _schedule(optimizer, "linear", num_warmup_steps, num_training_steps, last_epoch)


def get_cosine_schedule_with_warmup(
    optimizer: torch.optim.Optimizer, num_warmup_steps: int, num_training_steps: int, last_epoch: int = -1
) -> torch.optim.lr_scheduler.LambdaLR:
    """As ``get_linear_schedule_with_warmup``, with a half-cosine decay to 0 (transformers' name, one cycle)."""
    return _schedule(optimizer, "cosine", num_warmup_steps, num_training_steps, last_epoch)


def _schedule(optimizer, style: str, warmup: int, total: int, last_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    if not 0 <= warmup <= total or total < 1:
        raise ValueError(f"the schedule needs 0 <= num_warmup_steps <= num_training_steps, got {warmup} and {total}")
    cfg = OptimConfig(lr=1.0, min_lr=0.0, lr_decay_style=style, lr_warmup_iters=warmup)  # multipliers of the peak
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total), last_epoch)


class BudgetSchedule(torch.optim.lr_scheduler.LambdaLR):
    """The learning-rate schedule of a time budget (``--train-time``): warm-up and decay run over the share of the
    budget spent (``progress``, 0 -> 1, set by the training loop before each step) instead of over the steps; the
    shape (warm-up fraction, linear / cosine / constant decay, min_lr) is the OptimConfig's."""

    TICKS = 100_000
    """The budget's resolution: the schedule is ``lr_lambda`` over this many ticks of time."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig):
        if cfg.lr_warmup_iters and cfg.lr_warmup_fraction is None:
            raise ValueError("with --train-time the warm-up is a share of the time: give --lr-warmup-fraction")
        if cfg.lr_decay_iters is not None:
            raise ValueError("with --train-time the decay runs over the time: --lr-decay-iters does not apply")
        self.progress = 0.0
        shape = lr_lambda(cfg, self.TICKS)
        super().__init__(optimizer, lambda _: shape(min(int(self.progress * self.TICKS), self.TICKS)))
