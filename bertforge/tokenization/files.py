"""What a tokenizer directory holds, read before choosing a tokenizer class: its tokenizer_config.json, and which
kind of vocabulary its files are."""

from __future__ import annotations

import json
import os
from typing import Any


def tokenizer_config(directory: str) -> dict[str, Any]:
    """A directory's tokenizer_config.json ({} without one; one line naming the file when it is not JSON), with
    ``model_max_length`` dropped where it is transformers' "unlimited" placeholder."""
    config_file = os.path.join(directory, "tokenizer_config.json")
    if not os.path.exists(config_file):
        return {}
    with open(config_file, encoding="utf-8") as fh:
        try:
            cfg = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{config_file}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{config_file}: expected a JSON object of tokenizer settings")
    max_len = cfg.pop("model_max_length", None)
    if isinstance(max_len, int) and 0 < max_len < 10**9:
        cfg["model_max_length"] = max_len
    return cfg


def is_bpe_dir(directory: str) -> bool:
    """A byte-level BPE tokenizer's directory (RoBERTa's vocab.json + merges.txt, or a tokenizer.json with a BPE model),
    rather than a WordPiece vocab.txt."""
    if os.path.exists(os.path.join(directory, "vocab.txt")):
        return False
    if os.path.exists(os.path.join(directory, "vocab.json")) and os.path.exists(os.path.join(directory, "merges.txt")):
        return True
    return backend_model_type(directory) == "BPE"


def backend_model_type(directory: str) -> str | None:
    """The model type (WordPiece, BPE, Unigram) of a directory's tokenizer.json; None without a readable one."""
    try:
        with open(os.path.join(directory, "tokenizer.json"), encoding="utf-8") as fh:
            return json.load(fh).get("model", {}).get("type")
    except (OSError, ValueError, AttributeError):
        return None
