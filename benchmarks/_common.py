"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import time

import torch


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 3, trials: int = 4) -> float:
    """This machine's matrix-product rate in FLOP/s for ``dtype``: the best of ``trials`` timings of ``reps``
    n x n products after a warm-up (the best, not the mean, so that noise cannot push an MFU above 100%)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - start))
    return best
