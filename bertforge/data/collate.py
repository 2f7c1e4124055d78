"""Batches for the model: padded (B, S) tensors, or packed tokens with cumulative sequence lengths.

Padded batch: ``input_ids``, ``token_type_ids``, ``attention_mask`` (1 = real token), ``labels`` (-100 = not
predicted), ``mlm_positions`` (flat indices of the predicted positions, computed here on the CPU so that the model can
run its MLM head on them alone without a device sync), ``next_sentence_label`` (B,), padded on the right to the
longest sample (or to ``pad_to``, rounded up to ``pad_to_multiple_of``).

Packed batch (for padding-free execution): the samples' tokens back to back as one row, ``cu_seqlens`` (B + 1,) int32
with the start of each sample and the total at the end, ``max_seqlen``, and ``position_ids`` that restart at 0 for each
sample. No padding token is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bertforge.constants import IGNORE_INDEX


def collate_padded(
    samples: Sequence[dict], pad_id: int, pad_to: int | None = None, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Stack samples (dicts with input_ids, token_type_ids, labels, binary_label) into a padded batch."""
    lengths = [len(s["input_ids"]) for s in samples]
    width = max(lengths) if pad_to is None else pad_to
    if max(lengths) > width:
        raise ValueError(f"a sample has {max(lengths)} tokens, more than pad_to={width}")
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    B = len(samples)
    input_ids = np.full((B, width), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((B, width), dtype=np.int64)
    attention_mask = np.zeros((B, width), dtype=np.int64)
    labels = np.full((B, width), IGNORE_INDEX, dtype=np.int64)
    for i, (s, n) in enumerate(zip(samples, lengths)):
        input_ids[i, :n] = s["input_ids"]
        token_type_ids[i, :n] = s["token_type_ids"]
        attention_mask[i, :n] = 1
        if "labels" in s:
            labels[i, :n] = s["labels"]
    batch = {
        "input_ids": torch.from_numpy(input_ids),
        "token_type_ids": torch.from_numpy(token_type_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "labels": torch.from_numpy(labels),
        "mlm_positions": torch.from_numpy(np.flatnonzero(labels.reshape(-1) != IGNORE_INDEX)),
    }
    if "binary_label" in samples[0]:
        batch["next_sentence_label"] = torch.tensor([int(s["binary_label"]) for s in samples], dtype=torch.long)
    return batch


def collate_packed(samples: Sequence[dict]) -> dict[str, Any]:
    """Concatenate samples into one packed row: (T,) tensors plus cu_seqlens (B + 1,) and max_seqlen."""
    lengths = np.array([len(s["input_ids"]) for s in samples], dtype=np.int32)
    cu = np.zeros(len(samples) + 1, dtype=np.int32)
    np.cumsum(lengths, out=cu[1:])
    batch = {
        "input_ids": torch.from_numpy(np.concatenate([s["input_ids"] for s in samples]).astype(np.int64)),
        "token_type_ids": torch.from_numpy(np.concatenate([s["token_type_ids"] for s in samples]).astype(np.int64)),
        "position_ids": torch.from_numpy(np.concatenate([np.arange(n) for n in lengths]).astype(np.int64)),
        "cu_seqlens": torch.from_numpy(cu),
        "max_seqlen": int(lengths.max()),
    }
    if "labels" in samples[0]:
        labels = np.concatenate([s["labels"] for s in samples]).astype(np.int64)
        batch["labels"] = torch.from_numpy(labels)
        batch["mlm_positions"] = torch.from_numpy(np.flatnonzero(labels != IGNORE_INDEX))
    if "binary_label" in samples[0]:
        batch["next_sentence_label"] = torch.tensor([int(s["binary_label"]) for s in samples], dtype=torch.long)
    return batch
