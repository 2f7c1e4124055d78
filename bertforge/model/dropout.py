"""Dropout with a fast mask generator on the CPU.

PyTorch's CPU dropout draws one Bernoulli sample per element from a serial Mersenne-Twister stream and then divides
and multiplies in extra passes. Here the mask comes from 16 random bits per element drawn with numpy's SFC64
generator (64 bits per call, four elements), compared with a threshold and turned into a {0, 1/keep} mask in the
input's dtype, several times faster (benchmarks/README.md); the backward is one multiply by the saved mask, as before.

- The drop probability is realised to 1/65536 (p = 0.1 drops with probability 6554/65536 = 0.100006) and the scale
  is the exact inverse of the realised keep probability, so the expectation is unchanged.
- The generator is seeded from torch's default CPU generator on every call, so ``torch.manual_seed`` makes runs
  repeatable and a checkpoint's saved torch RNG state resumes the same masks.
- On CUDA, under ``torch.compile`` and in eval mode this is plain ``F.dropout`` (CUDA's fused Philox dropout is
  already fast; inductor generates its own).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16


def keep_mask(shape: tuple[int, ...] | torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor of ``shape``: 0 with probability ~p, else 1 / (realised keep probability), in ``dtype``."""
    n = math.prod(shape)
    dropped = round(p * _LEVELS)  # how many of the 65536 16-bit values drop an element
    seed = int(torch.randint(0, 2**62, (1,)))  # from torch's CPU generator: manual_seed and RNG state apply
    words = np.random.Generator(np.random.SFC64(seed)).bit_generator.random_raw((n + 3) // 4)
    bits = torch.from_numpy(words.view(np.int16)[:n]).view(shape)  # uniform over [-32768, 32767]
    keep = bits >= dropped - _LEVELS // 2
    return keep.to(dtype).mul_(_LEVELS / (_LEVELS - dropped))


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)``, with the fast mask on the CPU (see the module notes)."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    if x.device.type != "cpu" or torch.compiler.is_compiling() or round(p * _LEVELS) == 0:
        return F.dropout(x, p, True)
    return x * keep_mask(x.shape, p, x.dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments, no parameters) running :func:`dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
