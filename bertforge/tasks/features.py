"""Features (one tokenized window each) -> padded batches -> model outputs, shared by fine-tuning and the pipelines.

A feature is a dict of lists: ``input_ids``, ``token_type_ids`` and whatever labels its task carries (``labels`` as
an int, a float, a list of floats for multi-label, or a per-token list; ``start_positions`` / ``end_positions``).
Batches are padded to their longest member only; prediction sorts features by length so that a batch holds
sequences of similar length (little padding), and returns the results in the input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from bertforge.constants import IGNORE_INDEX
from bertforge.utils import autocast


def collate(
    features: Sequence[dict],
    pad_token_id: int = 0,
    token_label_keys: Sequence[str] = (),
    label_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> dict:
    """Pad ``features`` to the longest one: input_ids / token_type_ids / attention_mask, plus the label keys present
    (per-token label keys in ``token_label_keys`` are padded with -100)."""
    if not features:
        raise ValueError("collate() got no features")
    n = max(len(f["input_ids"]) for f in features)
    b = len(features)
    ids = torch.full((b, n), pad_token_id, dtype=torch.long)
    types = torch.zeros((b, n), dtype=torch.long)
    mask = torch.zeros((b, n), dtype=torch.long)
    for i, f in enumerate(features):
        k = len(f["input_ids"])
        ids[i, :k] = torch.tensor(f["input_ids"])
        types[i, :k] = torch.tensor(f["token_type_ids"])
        mask[i, :k] = 1
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
    for key in ("labels", "start_positions", "end_positions"):
        if key not in features[0]:
            continue
        if key in token_label_keys:
            values = torch.full((b, n), IGNORE_INDEX, dtype=torch.long)
            for i, f in enumerate(features):
                values[i, : len(f[key])] = torch.tensor(f[key])
        else:
            values = torch.tensor([f[key] for f in features], dtype=label_dtype if key == "labels" else torch.long)
        batch[key] = values
    if device is not None:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return batch


def length_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (longest first, so an out-of-memory error comes early)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    features: Sequence[dict],
    batch_size: int,
    outputs: Callable[[object], Sequence[torch.Tensor]],
    *,
    pad_token_id: int = 0,
    bf16: bool = False,
    per_token: bool = False,
    bar=None,
) -> list[list[np.ndarray]]:
    """Run ``model`` over ``features`` in length-sorted batches; ``outputs(model_output)`` picks the tensors to keep.

    Returns, for each feature in input order, one float32 array per picked tensor: its row, trimmed to the feature's
    length when ``per_token`` (token-level and span outputs).
    """
    model.eval()
    device = next(model.parameters()).device
    results: list[list[np.ndarray] | None] = [None] * len(features)
    for idx in length_batches([len(f["input_ids"]) for f in features], batch_size):
        batch = collate([features[i] for i in idx], pad_token_id, device=device)
        batch.pop("labels", None)
        with autocast(device, bf16):
            out = model(
                input_ids=batch["input_ids"],
                token_type_ids=batch["token_type_ids"],
                attention_mask=batch["attention_mask"],
            )
        picked = [t.float().cpu().numpy() for t in outputs(out)]
        for row, i in enumerate(idx):
            n = len(features[i]["input_ids"])
            results[i] = [p[row, :n] if per_token else p[row] for p in picked]
        if bar is not None:
            bar.update(len(idx))
    return results  # type: ignore[return-value]
