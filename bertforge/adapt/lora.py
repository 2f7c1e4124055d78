"""Strategy lora (Hu et al. 2021): a frozen linear layer plus a trainable low-rank update B A scaled by alpha / r.

``apply_lora(model, r, alpha, dropout, targets)`` wraps the named linear layers of every encoder layer, freezes every
other parameter except the task head, and returns the wrapped modules. ``merge`` folds the update into the frozen
weight (for inference at no extra cost, or to save weights that transformers loads); ``unmerge`` takes it out again;
``merge_lora`` / ``unwrap_lora`` put plain linear layers back in the model.

Target names: ``query``, ``key``, ``value`` (rows of our fused ``qkv_proj``: each gets its own A/B pair), ``qkv``
(the whole fused projection), ``output`` (attention out_proj), ``ffn_in``, ``ffn_out``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.model.dropout import Dropout

TARGETS = ("query", "key", "value", "qkv", "output", "ffn_in", "ffn_out")
_QKV_SLICE = {"query": 0, "key": 1, "value": 2}


class LoRALinear(nn.Module):
    """``base(x) + dropout(x) A^T B^T * scale``, restricted to output rows ``[row0, row1)`` of the base layer."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float, slices: list[tuple[int, int]]):
        super().__init__()
        if r <= 0:
            raise ValueError(f"LoRA rank must be positive, got {r}")
        self.base = base
        self.scale = alpha / r
        self.dropout = Dropout(dropout)
        self.slices = slices
        self.lora_A = nn.ParameterList()
        self.lora_B = nn.ParameterList()
        for row0, row1 in slices:
            a = nn.Parameter(torch.empty(r, base.in_features))
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.lora_A.append(a)
            self.lora_B.append(nn.Parameter(torch.zeros(row1 - row0, r)))  # B = 0: training starts at the base model
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        h = self.dropout(x)
        updates = [F.linear(F.linear(h, a), b) * self.scale for a, b in zip(self.lora_A, self.lora_B)]
        if len(self.slices) == 1 and self.slices[0] == (0, self.base.out_features):
            return out + updates[0]
        pieces, last = [], 0
        for (row0, row1), u in zip(self.slices, updates):
            if row0 > last:
                pieces.append(torch.zeros_like(out[..., last:row0]))
            pieces.append(u)
            last = row1
        if last < self.base.out_features:
            pieces.append(torch.zeros_like(out[..., last:]))
        return out + torch.cat(pieces, dim=-1)

    def delta(self) -> torch.Tensor:
        """The full-size weight update (out, in)."""
        d = torch.zeros_like(self.base.weight)
        for (row0, row1), a, b in zip(self.slices, self.lora_A, self.lora_B):
            d[row0:row1] += (b @ a) * self.scale
        return d

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta()
            self.merged = False


def apply_lora(
    model: Any, r: int = 8, alpha: float = 16.0, dropout: float = 0.0, targets: tuple[str, ...] = ("query", "value")
) -> list[LoRALinear]:
    """Wrap the target projections of every encoder layer; freeze all but LoRA and the task head. Returns wrappers."""
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        raise ValueError(f"unknown LoRA target(s) {bad}; choose from {', '.join(TARGETS)}")
    backbone = model.bert if hasattr(model, "bert") else model
    for p in backbone.parameters():
        p.requires_grad_(False)
    wrapped = []
    H = backbone.config.hidden_size
    for layer in backbone.layers:
        qkv_parts = [t for t in targets if t in _QKV_SLICE]
        if "qkv" in targets:
            qkv_slices = [(0, 3 * H)]
        else:
            parts = sorted(qkv_parts, key=_QKV_SLICE.__getitem__)
            qkv_slices = [(_QKV_SLICE[t] * H, (_QKV_SLICE[t] + 1) * H) for t in parts]
        if qkv_slices:
            layer.attn.qkv_proj = LoRALinear(layer.attn.qkv_proj, r, alpha, dropout, qkv_slices)
            wrapped.append(layer.attn.qkv_proj)
        for name, parent, attr in (
            ("output", layer.attn, "out_proj"),
            ("ffn_in", layer.ffn, "ffn_in"),
            ("ffn_out", layer.ffn, "ffn_out"),
        ):
            if name in targets:
                base = getattr(parent, attr)
                setattr(parent, attr, LoRALinear(base, r, alpha, dropout, [(0, base.out_features)]))
                wrapped.append(getattr(parent, attr))
    return wrapped


def apply(model: Any, backbone: Any, cfg: Any, tokenizer: Any) -> None:
    apply_lora(model, cfg.lora_r or 8, cfg.lora_alpha, cfg.lora_dropout, tuple(cfg.lora_targets))


def merge_lora(model: nn.Module) -> None:
    """Fold every LoRA update into its base weight and replace the wrappers by the plain linear layers, so that the
    model saves (and transformers loads) as an ordinary BERT."""
    unwrap_lora(model, merge=True)


def unwrap_lora(model: nn.Module, merge: bool) -> None:
    """Replace every LoRA wrapper by its base linear layer, with the update folded in (``merge``) or taken out."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                if merge:
                    child.merge()
                else:
                    child.unmerge()
                setattr(module, name, child.base)


def lora_wrappers(backbone: Any):
    """(layer index, LoRA wrapper, the target names of its rows) of every wrapped projection."""
    for i, layer in enumerate(backbone.layers):
        for module, names in (
            (layer.attn.qkv_proj, ("query", "key", "value")),
            (layer.attn.out_proj, ("output",)),
            (layer.ffn.ffn_in, ("ffn_in",)),
            (layer.ffn.ffn_out, ("ffn_out",)),
        ):
            if isinstance(module, LoRALinear):
                yield i, module, names
