"""The fine-tuning strategies: one line each, with the facts the rest of bertforge needs about a strategy.

A strategy decides which parameters fine-tuning trains and which small modules it inserts into the encoder. Its code
is one module of this package (``Strategy.module``: ``apply`` and, where it has them, its peft names); its facts are
its line below. Adding a strategy is adding its module and its line. This file imports no torch, so that the config
and the command line can read the registry without loading it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Strategy:
    name: str
    """The name users give (``--strategy NAME``, ``adapt.strategy``)."""
    module: str
    """The module that applies it: ``apply(model, backbone, cfg, tokenizer)``."""
    lr: float
    """Its default peak learning rate (AdamW): the few trained parameters of the efficient strategies want rates
    30-1000x BERT's 3e-5 (LoRA: Hu et al. use 4e-4..5e-4 on RoBERTa-base with more epochs; prompt tuning: Lester et
    al. 0.3 with Adafactor; P-tuning v2: 5e-3..1e-2)."""
    fields: tuple[str, ...]
    """The ``AdaptConfig`` fields it reads."""
    inserts_modules: bool
    """It adds modules (or wrappers) to the encoder, so its artefact is the trained tensors plus a pointer to the
    base, not a whole model."""
    mergeable: bool
    """Its result can be written as an ordinary BERT that transformers loads (LoRA merged into the weights)."""
    peft_type: str | None = None
    """peft's name for it, where peft has it: its artefact is then in peft's layout."""

    def implementation(self) -> ModuleType:
        return importlib.import_module(self.module)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("full", "bertforge.adapt.full", 3e-5, (), inserts_modules=False, mergeable=True),
        Strategy("head", "bertforge.adapt.head", 2e-2, (), inserts_modules=False, mergeable=True),
        Strategy(
            "freeze",
            "bertforge.adapt.freeze",
            5e-5,
            ("freeze_layers", "unfreeze", "unfreeze_steps"),
            inserts_modules=False,
            mergeable=True,
        ),
        Strategy(
            "lora",
            "bertforge.adapt.lora",
            2e-3,
            ("lora_r", "lora_alpha", "lora_dropout", "lora_targets"),
            inserts_modules=True,
            mergeable=True,
            peft_type="LORA",
        ),
        Strategy(
            "adapter",
            "bertforge.adapt.adapter",
            1e-3,
            ("adapter_size", "adapter_placement"),
            inserts_modules=True,
            mergeable=False,
        ),
        Strategy(
            "prompt",
            "bertforge.adapt.prompt",
            3e-2,
            ("prompt_tokens", "prompt_init", "prompt_init_text"),
            inserts_modules=True,
            mergeable=False,
            peft_type="PROMPT_TUNING",
        ),
        Strategy(
            "prefix",
            "bertforge.adapt.prefix",
            1e-2,
            ("prefix_tokens", "prefix_projection"),
            inserts_modules=True,
            mergeable=False,
            peft_type="PREFIX_TUNING",
        ),
    )
}
