"""Strategy head: the encoder (pooler included) stays frozen and only the task head trains (a linear probe when the
head is one layer)."""

from __future__ import annotations

from typing import Any


def apply(model: Any, backbone: Any, cfg: Any, tokenizer: Any) -> None:
    """The encoder is already frozen by ``apply_strategy``; the head trains."""
