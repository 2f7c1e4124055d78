"""Strategy freeze: the embeddings and the bottom ``freeze_layers`` layers stay frozen; optionally the others are
unfrozen gradually (ULMFiT, Howard & Ruder 2018): the top layer first, one more layer down every epoch or every
``unfreeze_steps`` steps."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bertforge.utils import logger


def apply(model: Any, backbone: Any, cfg: Any, tokenizer: Any) -> None:
    L = len(backbone.layers)
    if cfg.freeze_layers >= L:
        raise ValueError(
            f"adapt.freeze_layers {cfg.freeze_layers} freezes every layer of this {L}-layer model; use a number "
            "below it, or strategy head"
        )
    for layer in backbone.layers[cfg.freeze_layers :]:
        layer.requires_grad_(True)
    if backbone.pooler is not None:
        backbone.pooler.requires_grad_(True)


class UnfreezeSchedule:
    """Gradual unfreezing: at step s the top ``1 + s // interval`` trainable layers train (the others' gradients are
    dropped before the update, so they stay bit-identical; requires_grad is never toggled, which keeps DDP's and
    FSDP's parameter sets fixed)."""

    def __init__(self, model: nn.Module, cfg: Any, steps_per_epoch: int):
        backbone: Any = model.bert
        self.layers = list(range(len(backbone.layers) - 1, cfg.freeze_layers - 1, -1))  # top first
        self.interval = steps_per_epoch if cfg.unfreeze == "epoch" else cfg.unfreeze_steps
        self.backbone = backbone
        self.active = 0

    def plan(self) -> list[tuple[int, int]]:
        """(layer index, first step it trains) in unfreezing order."""
        return [(layer, k * self.interval) for k, layer in enumerate(self.layers)]

    def frozen_at(self, step: int) -> list[torch.Tensor]:
        """Parameters that must not change at (0-based) ``step``; logs each unfreezing."""
        n = min(len(self.layers), 1 + step // self.interval)
        if n != self.active:
            newly = self.layers[self.active : n]
            logger.info("step %d: training layer(s) %s (gradual unfreezing)", step, ", ".join(map(str, newly)))
            self.active = n
        return [p for i in self.layers[n:] for p in self.backbone.layers[i].parameters()]

    def describe(self) -> str:
        return ", ".join(f"layer {layer} from step {step}" for layer, step in self.plan())
