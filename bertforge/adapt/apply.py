"""Putting a strategy on a task model (``BertFor*``) and taking it off again.

``apply_strategy(model, cfg)`` freezes the encoder (all of it but for strategy full), lets the strategy's module
insert what it trains and unfreeze what it trains, and keeps the task head (every parameter outside ``model.bert``)
trainable. ``remove_strategy(model)`` takes every inserted module out (LoRA unmerged first): the base encoder again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from bertforge.adapt.registry import STRATEGIES

if TYPE_CHECKING:
    from bertforge.config import AdaptConfig


def head_parameter_names(model: nn.Module) -> list[str]:
    """The task head's parameters: everything outside the encoder ``model.bert``."""
    return [n for n, _ in model.named_parameters() if not n.startswith("bert.")]


def apply_strategy(model: nn.Module, cfg: AdaptConfig, tokenizer: Any = None) -> int:
    """Insert the strategy's modules and freeze what it does not train; returns the number of trainable parameters.

    ``tokenizer`` is needed only for a prompt started from a text (``prompt_init`` text)."""
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"adapt.strategy {cfg.strategy!r} is not one of {', '.join(STRATEGIES)}")
    backbone: Any = model.bert
    if cfg.strategy != "full":
        for p in backbone.parameters():
            p.requires_grad_(False)
    STRATEGIES[cfg.strategy].implementation().apply(model, backbone, cfg, tokenizer)
    for name in head_parameter_names(model):
        model.get_parameter(name).requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def remove_strategy(model: nn.Module) -> None:
    """Take every inserted module out of ``model`` (LoRA unmerged first): the base encoder again."""
    from bertforge.adapt.lora import unwrap_lora

    unwrap_lora(model, merge=False)
    backbone: Any = model.bert
    backbone.prompt = backbone.prefix = None
    for layer in backbone.layers:
        layer.adapter_attn = layer.adapter_ffn = None


def trained_state(model: nn.Module) -> dict:
    """The trainable tensors of ``model`` under bertforge's names."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
