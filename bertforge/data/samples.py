"""Sentence-pair pretraining samples, built like Google's create_pretraining_data.py and Megatron-LM's BertDataset.

A sample index is built once per (dataset, document range, sequence length, short-sequence probability, binary head,
seed) and cached beside the data as ``.npy``: each row is (document, first sentence, end sentence, target length), a
run of consecutive sentences of one document filled up to the target length. The target is ``max_seq_length`` minus the
special tokens, or, with probability ``short_seq_prob``, a shorter random length (so the model also sees short inputs).

Turning a row into tokens (``PretrainingSamples.get``) is a pure function of (seed, epoch, sample index):
- a random pivot splits the sentences into A and B;
- ``nsp``: half the time B is replaced by sentences from another, randomly chosen document; label 1 means "B is
  random", 0 "B is the real continuation" (BERT's convention);
- ``sop``: half the time A and B are swapped; label 1 means "swapped" (ALBERT's sentence order prediction, which
  Megatron-LM's BERT uses);
- ``none``: one segment, no label (-100);
- the pair is truncated to fit, one token at a time from the longer side, each time from its front or back at random;
- the output is ``[CLS] A [SEP] B [SEP]`` with segment ids 0 for ``[CLS] A [SEP]`` and 1 for ``B [SEP]``.

``full_sentences`` (RoBERTa's FULL-SENTENCES, binary head none): a row is a run of consecutive sentences of the
split's documents in order, filled to ``max_seq_length`` (specials and the separators included) and running on into
the next document, with a ``[SEP]`` (RoBERTa's ``</s>``) between documents; the last sentence is cut at the length.
Nothing is padded and nothing is short, except the split's last sample.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertforge.data.indexed import IndexedDataset
from bertforge.utils import atomic_path, logger

BINARY_HEADS = ("nsp", "sop", "none")


@dataclass(frozen=True)
class SpecialIds:
    """The token ids a sample builder needs."""

    cls: int
    sep: int
    pad: int
    mask: int

    @classmethod
    def from_tokenizer(cls, tok) -> SpecialIds:
        return cls(tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.mask_token_id)


def build_full_sentence_index(ds: IndexedDataset, documents: np.ndarray, max_seq_length: int) -> np.ndarray:
    """Rows (first document, first sentence, end sentence, target length) of ``full_sentences`` samples: runs of
    sentences across the (contiguous) ``documents``, each filled to ``max_seq_length`` - 2 tokens counting one
    separator per document boundary inside it."""
    max_tokens = max_seq_length - 2
    if max_tokens < 2:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for text after 2 special tokens")
    if len(documents) == 0:
        return np.zeros((0, 4), dtype=np.int64)
    doc_index = ds.document_indices
    first_doc, last_doc = int(documents[0]), int(documents[-1])
    start, end = int(doc_index[first_doc]), int(doc_index[last_doc + 1])
    lengths = ds.sequence_lengths[start:end].astype(np.int64)
    boundary = np.zeros(end - start, dtype=bool)  # a sentence that starts a document (not the split's first)
    boundary[np.asarray(doc_index[first_doc + 1 : last_doc + 1], dtype=np.int64) - start] = True
    rows: list[tuple[int, int, int, int]] = []
    doc, first, size = first_doc, start, 0
    for i in range(start, end):
        if i > first and boundary[i - start]:
            size += 1  # the separator between two documents
        size += int(lengths[i - start])
        if size >= max_tokens:
            rows.append((doc, first, i + 1, max_tokens))
            first, size = i + 1, 0
            doc = int(np.searchsorted(doc_index, i + 1, side="right")) - 1
    if first < end:
        rows.append((doc, first, end, max_tokens))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def build_sample_index(
    ds: IndexedDataset, documents: np.ndarray, max_seq_length: int, short_seq_prob: float, binary_head: str, seed: int
) -> np.ndarray:
    """Rows (document, first sentence, end sentence, target length) covering ``documents`` once, in document order.

    With a binary head a sample needs two sentences, so single-sentence documents (and a lone last sentence) are
    skipped, as in Megatron-LM. ``binary_head="full"``: ``build_full_sentence_index``.
    """
    if binary_head == "full":
        return build_full_sentence_index(ds, documents, max_seq_length)
    specials = 3 if binary_head != "none" else 2
    max_tokens = max_seq_length - specials
    if max_tokens < 2:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for text after {specials} special tokens")
    min_sentences = 2 if binary_head != "none" else 1
    rng = np.random.default_rng([seed, 0x5A3])
    lengths = ds.sequence_lengths
    doc_index = ds.document_indices
    rows: list[tuple[int, int, int, int]] = []

    def draw_target() -> int:
        return int(rng.integers(2, max_tokens + 1)) if rng.random() < short_seq_prob else max_tokens

    for doc in documents.tolist():
        start, end = int(doc_index[doc]), int(doc_index[doc + 1])
        if end - start < min_sentences:
            continue
        target = draw_target()
        first, size = start, 0
        for i in range(start, end):
            size += int(lengths[i])
            if size >= target or i == end - 1:
                if i + 1 - first >= min_sentences:
                    rows.append((doc, first, i + 1, target))
                    first, size = i + 1, 0
                    target = draw_target()
                elif i == end - 1:
                    break
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def cached_sample_index(
    ds: IndexedDataset,
    documents: np.ndarray,
    max_seq_length: int,
    short_seq_prob: float,
    binary_head: str,
    seed: int,
    cache_dir: str | None = None,
) -> np.ndarray:
    """``build_sample_index``, cached as ``{prefix}_samples_{hash}.npy`` (or under ``cache_dir``), written
    atomically."""
    key = hashlib.sha1(
        repr(
            (
                len(ds),
                ds.num_documents,
                ds.num_tokens,
                int(documents[0]) if len(documents) else -1,
                int(documents[-1]) if len(documents) else -1,
                len(documents),
                max_seq_length,
                short_seq_prob,
                binary_head,
                seed,
            )
        ).encode()
    ).hexdigest()[:16]
    base = ds.prefix if cache_dir is None else os.path.join(cache_dir, os.path.basename(ds.prefix))
    path = f"{base}_samples_{key}.npy"
    if os.path.exists(path):
        try:
            rows = np.load(path)
            if rows.ndim == 2 and rows.shape[1] == 4:
                return rows
        except (OSError, ValueError):
            pass
        logger.warning("sample index cache %s is unreadable; rebuilding it", path)
    rows = build_sample_index(ds, documents, max_seq_length, short_seq_prob, binary_head, seed)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, rows)
    except OSError as e:  # a read-only data directory: keep the index in memory
        logger.warning("could not cache the sample index at %s (%s)", path, e)
    return rows


def truncate_pair(a: list, b: list, max_tokens: int, rng: np.random.Generator) -> None:
    """Trim the longer of ``a`` / ``b`` one token at a time, from its front or back at random, until both fit."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


class PretrainingSamples:
    """Samples ``[CLS] A [SEP] B [SEP]`` (or one segment) from an indexed dataset; see the module docstring."""

    def __init__(
        self,
        ds: IndexedDataset,
        specials: SpecialIds,
        *,
        documents: np.ndarray | None = None,
        max_seq_length: int = 512,
        short_seq_prob: float = 0.1,
        binary_head: str = "nsp",
        seed: int = 1234,
        cache_dir: str | None = None,
        full_sentences: bool = False,
    ):
        if binary_head not in BINARY_HEADS:
            raise ValueError(f"binary_head {binary_head!r} must be one of {BINARY_HEADS}")
        if full_sentences and binary_head != "none":
            raise ValueError("full_sentences samples run across documents: they need binary_head 'none'")
        self.full_sentences = full_sentences
        if not 0.0 <= short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
        self.ds = ds
        self.specials = specials
        self.documents = np.arange(ds.num_documents) if documents is None else np.asarray(documents)
        self.max_seq_length = max_seq_length
        self.binary_head = binary_head
        self.seed = seed
        if full_sentences and len(self.documents) and np.any(np.diff(self.documents) != 1):
            raise ValueError("full_sentences needs a contiguous range of documents")
        self.index = cached_sample_index(
            ds,
            self.documents,
            max_seq_length,
            short_seq_prob,
            "full" if full_sentences else binary_head,
            seed,
            cache_dir,
        )
        if len(self.index) == 0:
            need = "two sentences" if binary_head != "none" else "one sentence"
            raise ValueError(
                f"{ds.prefix}: no document in this split has {need}, so no sample can be built"
                + (
                    "; sentence-pair heads need documents of several sentences (preprocess with "
                    "sentence splitting, or use --binary-head none)"
                    if binary_head != "none"
                    else ""
                )
            )
        if binary_head == "nsp" and len(self.documents) < 2:
            raise ValueError(f"{ds.prefix}: NSP needs at least two documents to draw random next sentences from")

    def __len__(self) -> int:
        return len(self.index)

    def get(self, index: int, epoch: int = 0) -> dict[str, Any]:
        """Sample ``index`` of ``epoch``: input ids (with specials), segment ids and the binary label (-100 if none)."""
        doc, first, end, target = (int(x) for x in self.index[index])
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        sentences = [self.ds[i] for i in range(first, end)]
        s = self.specials
        if self.full_sentences:
            starts = self.ds.document_indices
            tokens: list[int] = []
            for i, sentence in zip(range(first, end), sentences):
                if i > first and starts[np.searchsorted(starts, i, side="right") - 1] == i:
                    tokens.append(s.sep)  # a new document begins
                tokens.extend(sentence.tolist())
            ids = [s.cls, *tokens[: self.max_seq_length - 2], s.sep]
            return {
                "input_ids": np.asarray(ids, dtype=np.int64),
                "token_type_ids": np.zeros(len(ids), dtype=np.int64),
                "binary_label": -100,
            }
        if self.binary_head == "none":
            tokens = np.concatenate(sentences).tolist()[: self.max_seq_length - 2]
            ids = [s.cls, *tokens, s.sep]
            return {
                "input_ids": np.asarray(ids, dtype=np.int64),
                "token_type_ids": np.zeros(len(ids), dtype=np.int64),
                "binary_label": -100,
            }
        pivot = int(rng.integers(1, len(sentences)))  # sentences in A: 1 .. n-1
        a = np.concatenate(sentences[:pivot]).tolist()
        label = 0
        if self.binary_head == "nsp" and rng.random() < 0.5:
            label = 1
            b = self._random_continuation(doc, max(1, target - len(a)), rng)
        else:
            b = np.concatenate(sentences[pivot:]).tolist()
            if self.binary_head == "sop" and rng.random() < 0.5:
                a, b = b, a
                label = 1
        truncate_pair(a, b, self.max_seq_length - 3, rng)
        ids = [s.cls, *a, s.sep, *b, s.sep]
        types = np.zeros(len(ids), dtype=np.int64)
        types[len(a) + 2 :] = 1
        return {"input_ids": np.asarray(ids, dtype=np.int64), "token_type_ids": types, "binary_label": label}

    def _random_continuation(self, doc: int, length: int, rng: np.random.Generator) -> list[int]:
        """Tokens of consecutive sentences of a random other document, from a random sentence, about ``length``."""
        while True:
            other = int(self.documents[rng.integers(len(self.documents))])
            if other != doc:
                break
        start, end = self.ds.document_range(other)
        out: list[int] = []
        for i in range(int(rng.integers(start, end)), end):
            out.extend(self.ds[i].tolist())
            if len(out) >= length:
                break
        return out
