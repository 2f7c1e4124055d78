"""Megatron-style data arguments: ``--data-path`` blends with weights and ``--split`` train/valid/test ranges.

``--data-path 0.7 a 0.3 b`` mixes the datasets with prefixes a and b so that, at every point of the sample stream,
each dataset's share is as close to its weight as it can be (Megatron-LM's greedy choice of the dataset whose count
lags its target most). ``--split 949,50,1`` cuts each dataset's documents into contiguous train / valid / test ranges
in those proportions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def parse_data_path(values: Sequence[str]) -> list[tuple[float, str]]:
    """``["a"]`` -> [(1.0, "a")]; ``["0.7", "a", "0.3", "b"]`` -> [(0.7, "a"), (0.3, "b")] (weights normalized)."""
    values = list(values)
    if not values:
        raise ValueError("--data-path is empty")
    if len(values) == 1:
        return [(1.0, values[0])]
    if len(values) % 2:
        raise ValueError(f"--data-path takes one prefix, or weight/prefix pairs; got {len(values)} values: {values}")
    pairs = []
    for weight, prefix in zip(values[::2], values[1::2]):
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(
                f"--data-path: {weight!r} should be a weight (a number) before prefix {prefix!r}"
            ) from None
        if w <= 0:
            raise ValueError(f"--data-path: weight {w} for {prefix!r} must be positive")
        pairs.append((w, prefix))
    total = sum(w for w, _ in pairs)
    return [(w / total, p) for w, p in pairs]


def split_ranges(num_documents: int, split: str = "969,30,1") -> list[tuple[int, int]]:
    """Document ranges [start, end) for train, valid and test from a Megatron ``--split`` string."""
    try:
        parts = [float(x) for x in split.replace("/", ",").split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--split {split!r} must be comma-separated numbers, e.g. 949,50,1") from None
    if not parts or len(parts) > 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise ValueError(f"--split {split!r} must be up to three non-negative numbers with a positive sum")
    parts += [0.0] * (3 - len(parts))
    total = sum(parts)
    bounds = [0]
    for p in parts:
        bounds.append(bounds[-1] + int(round(p / total * num_documents)))
    diff = bounds[-1] - num_documents
    bounds = [bounds[0]] + [b - diff for b in bounds[1:]]
    bounds = [min(max(b, 0), num_documents) for b in bounds]
    return [(bounds[i], bounds[i + 1]) for i in range(3)]


def blend_indices(weights: Sequence[float], size: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``size`` draws: which dataset (int16) and which of its samples (int64, counting up per dataset)."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    dataset = np.zeros(size, dtype=np.int16)
    sample = np.zeros(size, dtype=np.int64)
    counts = np.zeros(len(w), dtype=np.int64)
    for i in range(size):
        d = int(np.argmax(w * (i + 1) - counts))
        dataset[i] = d
        sample[i] = counts[d]
        counts[d] += 1
    return dataset, sample
