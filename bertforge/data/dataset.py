"""The pretraining sample stream: position p in an endless stream -> a masked sample, as a pure function of p.

An epoch is one pass over all sample indices of all sources (blended by weight when there are several); each epoch
visits them in a new order drawn from (seed, epoch), and masks them anew from (seed, epoch, source, index). So a run
is reproducible, resumes from a single integer (samples consumed), and shards over any number of ranks by position
without changing what any sample is.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from bertforge.data.blend import blend_indices
from bertforge.data.masking import Masker
from bertforge.data.samples import PretrainingSamples


class PretrainingStream:
    """``stream[p]`` -> dict(input_ids, token_type_ids, labels, binary_label) for any position p >= 0. Without a
    masker (next-token prediction) the labels are the tokens themselves."""

    def __init__(
        self,
        sources: Sequence[PretrainingSamples],
        masker: Masker | None,
        seed: int = 1234,
        weights: Sequence[float] | None = None,
    ):
        if not sources:
            raise ValueError("no data sources")
        self.sources = list(sources)
        self.masker = masker
        self.seed = seed
        self.weights = np.asarray(weights if weights is not None else [len(s) for s in sources], dtype=np.float64)
        self.epoch_size = int(sum(len(s) for s in self.sources))
        self._which, self._kth = blend_indices(self.weights.tolist(), self.epoch_size)

    def __len__(self) -> int:
        """Samples per epoch."""
        return self.epoch_size

    @lru_cache(maxsize=4)
    def _order(self, source: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, source, 3]).permutation(len(self.sources[source]))

    def locate(self, position: int) -> tuple[int, int, int]:
        """(source, sample index, epoch used for the sample's randomness) of stream position ``position``."""
        epoch, j = divmod(int(position), self.epoch_size)
        source = int(self._which[j])
        k = int(self._kth[j])
        n = len(self.sources[source])
        # An over-weighted source wraps around inside an epoch; each wrap is a fresh pass with its own order.
        pass_ = epoch * (1 + (self.epoch_size - 1) // n) + k // n
        return source, int(self._order(source, pass_)[k % n]), pass_

    def __getitem__(self, position: int) -> dict:
        source, index, pass_ = self.locate(position)
        sample = self.sources[source].get(index, pass_)
        rng = np.random.default_rng([self.seed, pass_, source, index, 2])
        if self.masker is None:  # next-token prediction: the tokens are their own labels (the model shifts them)
            sample["labels"] = np.asarray(sample["input_ids"], dtype=np.int64).copy()
            return sample
        sample["input_ids"], sample["labels"] = self.masker(sample["input_ids"], rng)
        return sample
