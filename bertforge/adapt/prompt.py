"""Strategy prompt: ``prompt_tokens`` trained soft tokens in front of every input (prompt tuning, Lester et al. 2021),
started from the embeddings of random vocabulary tokens, of a text's tokens, or at random."""

from __future__ import annotations

from typing import Any

import torch

from bertforge.model.adapters import SoftPrompt


def apply(model: Any, backbone: Any, cfg: Any, tokenizer: Any) -> None:
    backbone.prompt = SoftPrompt(cfg.prompt_tokens, backbone.config.embedding_width, _start(backbone, cfg, tokenizer))


def _start(backbone: Any, cfg: Any, tokenizer: Any) -> torch.Tensor | None:
    """The starting prompt vectors: word embeddings of random vocabulary tokens, or of a text's tokens repeated to the
    prompt length; None (random) for ``prompt_init`` random."""
    table = backbone.embeddings.token.weight.detach()
    P = cfg.prompt_tokens
    if cfg.prompt_init == "random":
        return None
    if cfg.prompt_init == "vocab":
        ids = torch.randint(0, table.shape[0], (P,))
    else:
        if tokenizer is None:
            raise ValueError("adapt.prompt_init text needs the model's tokenizer")
        pieces = tokenizer.encode(cfg.prompt_init_text, add_special_tokens=False)
        if not pieces:
            raise ValueError(f"adapt.prompt_init_text {cfg.prompt_init_text!r} has no tokens")
        ids = torch.tensor((pieces * (P // len(pieces) + 1))[:P])
    return table[ids.to(table.device)].clone()
