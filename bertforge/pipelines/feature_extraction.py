"""feature-extraction / sentence-embedding: one vector per input (mean or [CLS] pooling, optionally L2-normalised),
or every token's vector (``pooling=None``). Long inputs: the windows' mean vectors averaged, weighted by their
tokens."""

from __future__ import annotations

import numpy as np

from bertforge.model import BertModel
from bertforge.pipelines.base import STRIDE, Option, Pipeline, as_list, check_texts

POOLINGS = ("mean", "cls", None)


def similarity(a, b) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with each row of ``b`` (vectors or matrices): (len(a), len(b))."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float32))
    b = np.atleast_2d(np.asarray(b, dtype=np.float32))
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


class FeatureExtractionPipeline(Pipeline):
    task = "feature-extraction"
    model_class = BertModel
    cli_options = (
        Option(
            "--pooling",
            "default (the pipeline's: none; mean for sentence-embedding), mean, cls or none (token vectors)",
            choices=("default", "mean", "cls", "none"),
            value=lambda v: None if v == "none" else v,
        ),
        Option("--normalize", "L2-normalise the vectors", bool, negatable=True),
        STRIDE,
    )

    def __init__(self, *args, pooling: str | None = None, normalize: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not one of {POOLINGS}")
        self.pooling, self.normalize = pooling, normalize

    def __call__(
        self, inputs, *, pooling: str | None = "default", normalize: bool | None = None, stride: int | None = None
    ):
        """A vector (H,) per input with mean/cls pooling, or a (tokens, H) array with ``pooling=None``; a single
        text gives one result, a list gives a list (``np.stack`` makes a matrix)."""
        pooling = self.pooling if pooling == "default" else pooling
        normalize = self.normalize if normalize is None else normalize
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not one of {POOLINGS}")
        texts, single = as_list(inputs)
        check_texts(texts)
        enc, owner = self._windows(texts, stride=0 if pooling is None else stride, specials=pooling is None)
        hidden = self._predict(self._features(enc), lambda out: [out.last_hidden_state], per_token=True)
        pieces: list[list] = [[] for _ in texts]
        for j, i in enumerate(owner):
            h = hidden[j][0]
            if pooling == "mean":
                pieces[i].append((h.mean(0), len(h)))
            elif pooling == "cls":
                pieces[i].append((h[0], 1))
            else:
                pieces[i].append((h, enc["special_tokens_mask"][j]))
        results = []
        for parts in pieces:
            if pooling is None:
                if len(parts) == 1:
                    v = parts[0][0]
                else:  # windows joined: keep the first [CLS], the last [SEP], and no specials in between
                    rows = [
                        h[
                            [
                                k
                                for k, s in enumerate(m)
                                if not s or (w == 0 and k == 0) or (w == len(parts) - 1 and k == len(m) - 1)
                            ]
                        ]
                        for w, (h, m) in enumerate(parts)
                    ]
                    v = np.concatenate(rows)
            elif pooling == "cls":
                v = parts[0][0]  # the first window's [CLS] sees the start of the text
            else:
                weights = np.array([n for _, n in parts], dtype=np.float32)
                v = np.average(np.stack([p for p, _ in parts]), axis=0, weights=weights)
            if normalize:
                v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
            results.append(v.astype(np.float32))
        return results[0] if single else results

    def similarity(self, a, b) -> np.ndarray:
        return similarity(a, b)
