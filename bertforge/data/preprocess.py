"""``bertforge preprocess``: raw text or JSON lines -> Megatron MMIDIDX indexed datasets, streaming, in parallel.

Documents are read lazily, split into sentences (``sentences.py``), tokenized by worker processes in chunks, and
appended to an ``IndexedDatasetBuilder`` in input order. At most ``4 x workers`` chunks are in flight, so memory stays
flat however large the corpus (the builder itself streams to disk). Output is written under temporary names and renamed
at the end; a failure leaves nothing that looks complete.

Inputs:
- JSON lines (``.jsonl`` / ``.json``): one document per line, text under ``--json-keys`` (Megatron's
  tools/preprocess_data.py format). A line that is not JSON, or lacks a key, is an error naming file and line.
- Plain text: one document per blank-line-separated block (default), or one per file (``document_per_file``).

Bytes that are not UTF-8 are an error naming file, line and byte offset (``errors="strict"``) or become U+FFFD
(``errors="replace"``). Empty documents are skipped and counted; an input with no text at all is an error.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from bertforge.data.indexed import IndexedDatasetBuilder, token_dtype
from bertforge.data.sentences import split_sentences
from bertforge.utils import logger, progress

CHUNK_DOCS = 2048  # documents per work item, at most
CHUNK_BYTES = 1 << 20  # bytes per work item, at most: large enough for the tokenizer's own parallel batches


@dataclass
class PreprocessStats:
    """What a preprocessing run read and wrote."""

    documents: int = 0
    empty_documents: int = 0
    sentences: int = 0
    tokens: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.bytes_read / 1e6 / max(self.seconds, 1e-9)
        return (
            f"{self.documents:,} documents ({self.empty_documents:,} empty, skipped), {self.sentences:,} "
            f"sentences, {self.tokens:,} tokens from {self.bytes_read / 1e6:.1f} MB in {self.seconds:.1f}s "
            f"({rate:.2f} MB/s, {self.documents / max(self.seconds, 1e-9):,.0f} docs/s)"
        )


def read_documents(
    paths: Sequence[str], json_keys: Sequence[str] = ("text",), document_per_file: bool = False, errors: str = "strict"
) -> Iterator[tuple[list[str], int]]:
    """Yield (one text per json key, bytes consumed) per document, in input order."""
    if errors not in ("strict", "replace"):
        raise ValueError(f"errors={errors!r} must be 'strict' or 'replace'")
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"input file {path} does not exist")
    for path in paths:
        is_json = path.endswith((".jsonl", ".json", ".jsonl.txt"))
        if is_json:
            yield from _read_jsonl(path, json_keys, errors)
        elif document_per_file:
            with open(path, "rb") as fh:
                raw = fh.read()
            yield [_decode(raw, path, 1, 0, errors)], len(raw)
        else:
            yield from _read_blocks(path, errors, len(json_keys))


def _decode(raw: bytes, path: str, line: int, offset: int, errors: str) -> str:
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: line {line}, byte offset {offset + e.start}: not valid UTF-8; convert the file to "
            "UTF-8 or pass --errors replace"
        ) from None


def _read_jsonl(path: str, keys: Sequence[str], errors: str) -> Iterator[tuple[list[str], int]]:
    offset = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            size = len(raw)
            text = _decode(raw, path, number, offset, errors)
            offset += size
            if not text.strip():
                yield [""] * len(keys), size
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}: line {number}: not valid JSON ({e.msg} at column {e.colno}); each line must "
                    "be one JSON object"
                ) from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}: line {number}: expected a JSON object, found {type(obj).__name__}")
            texts = []
            for key in keys:
                if key not in obj:
                    raise ValueError(
                        f"{path}: line {number}: no key {key!r} (keys present: "
                        f"{', '.join(sorted(obj)) or 'none'}); choose the text field with --json-keys"
                    )
                value = obj[key]
                if not isinstance(value, str):
                    raise ValueError(f"{path}: line {number}: {key!r} holds {type(value).__name__}, expected a string")
                texts.append(value)
            yield texts, size


def _read_blocks(path: str, errors: str, n_keys: int) -> Iterator[tuple[list[str], int]]:
    block: list[str] = []
    size = 0
    offset = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            line = _decode(raw, path, number, offset, errors)
            offset += len(raw)
            size += len(raw)
            if line.strip():
                block.append(line)
            elif block:
                yield ["".join(block)] * n_keys, size
                block, size = [], 0
            # blank lines between blocks are counted into the next block's bytes
    if block or size:
        yield ["".join(block)] * n_keys, size


# ---- worker side -----------------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _tokenizer(vocab_file: str, lowercase: bool, merge_file: str | None):
    """WordPiece from vocab.txt, RoBERTa's byte-level BPE from vocab.json + merge_file, or a SentencePiece model
    (spiece.model) or tokenizer directory."""
    from bertforge.tokenization import BertTokenizer, RobertaTokenizer, load_tokenizer

    if merge_file is not None:
        return RobertaTokenizer(vocab_file, merge_file)
    if os.path.isdir(vocab_file) or vocab_file.endswith(".model"):
        return load_tokenizer(vocab_file)
    return BertTokenizer(vocab_file, lowercase=lowercase)


def _init_worker(vocab_file: str, lowercase: bool, split: bool, parallel: bool, merge_file: str | None = None) -> None:
    if not parallel:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # pieces of running text: byte-level BPE encodes each as if a space came before it (as words are mid-text)
    _WORKER["tok"] = _tokenizer(vocab_file, lowercase, merge_file)._backend_for(True)
    _WORKER["split"] = split


def _encode_chunk(docs: list[list[str]]) -> list[list[list[np.ndarray]]]:
    """docs: per document, one text per key -> per document, per key, the token arrays of its sentences."""
    tok = _WORKER["tok"]
    split = _WORKER["split"]
    pieces: list[str] = []
    layout: list[list[int]] = []  # per doc, per key: number of sentences
    for texts in docs:
        counts = []
        for text in texts:
            sents = split_sentences(text) if split else ([text.strip()] if text.strip() else [])
            pieces.extend(sents)
            counts.append(len(sents))
        layout.append(counts)
    encoded = tok.encode_batch(pieces, add_special_tokens=False) if pieces else []
    ids = [np.asarray(e.ids, dtype=np.int32) for e in encoded]
    out, pos = [], 0
    for counts in layout:
        per_key = []
        for n in counts:
            per_key.append([a for a in ids[pos : pos + n] if a.size])
            pos += n
        out.append(per_key)
    return out


# ---- driver ----------------------------------------------------------------------------------------------------------
def output_prefix(prefix: str, key: str, split_sentences_: bool) -> str:
    """Megatron's naming: ``{prefix}_{key}_sentence`` (or ``_document`` without sentence splitting)."""
    return f"{prefix}_{key}_{'sentence' if split_sentences_ else 'document'}"


def preprocess(
    inputs: Sequence[str],
    output_prefix_: str,
    vocab_file: str,
    *,
    lowercase: bool = True,
    json_keys: Sequence[str] = ("text",),
    split_sentences_: bool = True,
    workers: int = 1,
    append_eod: bool = False,
    document_per_file: bool = False,
    errors: str = "strict",
    show_progress: bool = True,
    merge_file: str | None = None,
) -> PreprocessStats:
    """Tokenize ``inputs`` into one indexed dataset per JSON key. Returns counts and timings. ``merge_file``: the
    vocabulary is RoBERTa's byte-level BPE (``vocab_file`` is its vocab.json)."""
    merge_file = os.fspath(merge_file) if merge_file is not None else None
    tok = _tokenizer(os.fspath(vocab_file), lowercase, merge_file)  # validates the vocab before any work
    dtype = token_dtype(tok.vocab_size)
    eod = tok.sep_token_id
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    stats = PreprocessStats()
    prefixes = [output_prefix(output_prefix_, k, split_sentences_) for k in json_keys]
    total_bytes = sum(os.path.getsize(p) for p in inputs if os.path.isfile(p))
    builders = [IndexedDatasetBuilder(p, dtype) for p in prefixes]
    start = time.perf_counter()
    pool = None
    try:
        if workers > 1:
            ctx = mp.get_context("spawn")
            pool = ctx.Pool(
                workers,
                initializer=_init_worker,
                initargs=(os.fspath(vocab_file), lowercase, split_sentences_, False, merge_file),
            )
        else:
            _init_worker(os.fspath(vocab_file), lowercase, split_sentences_, True, merge_file)
        with progress(total=total_bytes, unit="B", unit_scale=True, desc="preprocess", enabled=show_progress) as bar:
            pending: deque = deque()
            for chunk, size in _chunks(read_documents(inputs, json_keys, document_per_file, errors)):
                pending.append((pool.apply_async(_encode_chunk, (chunk,)) if pool else _encode_chunk(chunk), size))
                while pending and (len(pending) > 4 * workers or not pool):
                    _write(pending.popleft(), builders, stats, bar, append_eod, eod, bool(pool), start)
            while pending:
                _write(pending.popleft(), builders, stats, bar, append_eod, eod, bool(pool), start)
        if stats.tokens == 0:
            raise ValueError(
                f"the corpus is empty: {stats.documents + stats.empty_documents} documents read from "
                f"{', '.join(inputs)}, none with any text; nothing was written"
            )
        for b in builders:
            b.finalize()
    except BaseException:
        for b in builders:
            b.abort()
        raise
    finally:
        if pool is not None:
            pool.terminate()
    stats.seconds = time.perf_counter() - start
    stats.outputs = prefixes
    logger.info("preprocess: %s -> %s", stats.summary(), ", ".join(p + ".{bin,idx}" for p in prefixes))
    return stats


def _chunks(docs: Iterator[tuple[list[str], int]]) -> Iterator[tuple[list[list[str]], int]]:
    chunk, size = [], 0
    for texts, n in docs:
        chunk.append(texts)
        size += n
        if len(chunk) >= CHUNK_DOCS or size >= CHUNK_BYTES:
            yield chunk, size
            chunk, size = [], 0
    if chunk or size:
        yield chunk, size


def _write(
    item, builders, stats: PreprocessStats, bar, append_eod: bool, eod: int, is_async: bool, start: float
) -> None:
    result, size = item
    docs = result.get() if is_async else result
    for per_key in docs:
        if all(len(sents) == 0 for sents in per_key):
            stats.empty_documents += 1
            continue
        stats.documents += 1
        for builder, sents in zip(builders, per_key):
            if not sents:
                continue
            if append_eod:
                sents = sents[:-1] + [np.append(sents[-1], eod)]
            for s in sents:
                builder.add_sequence(s)
                stats.sentences += 1
                stats.tokens += int(s.size)
            builder.end_document()
    stats.bytes_read += size
    bar.update(size)
    elapsed = max(time.perf_counter() - start, 1e-9)
    bar.set_postfix_str(f"{stats.documents / elapsed:,.0f} docs/s")
