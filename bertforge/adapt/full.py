"""Strategy full: every weight trains (BERT's own fine-tuning)."""

from __future__ import annotations

from typing import Any


def apply(model: Any, backbone: Any, cfg: Any, tokenizer: Any) -> None:
    """Nothing to insert and nothing to freeze."""
