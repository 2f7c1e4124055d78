"""The embedded default corpus, ready to pretrain on: the Python documentation as JSON lines, a vocabulary trained on
it (WordPiece, or the model family's kind: byte-level BPE, SentencePiece unigram), and its Megatron indexed dataset.
Built once per work directory and reused."""

from __future__ import annotations

import hashlib
import json
import os

from bertforge.data.corpus import python_docs
from bertforge.data.preprocess import output_prefix, preprocess
from bertforge.tokenization import train_vocab
from bertforge.utils import atomic_path, logger

VOCAB_FILES = {"wordpiece": "vocab.txt", "bpe": "vocab.json", "unigram": "tokenizer.json"}


def prepare_default_corpus(
    work_dir: str,
    vocab_size: int = 8192,
    vocab_file: str | None = None,
    lowercase: bool = True,
    kind: str = "wordpiece",
) -> tuple[str, str]:
    """Return (data prefix, vocab file) for the default corpus under ``work_dir``, building what is missing. ``kind``
    (wordpiece, bpe or unigram) is the vocabulary trained when none is given; the vocab file is then vocab.txt,
    vocab.json (beside merges.txt) or the SentencePiece tokenizer's directory."""
    data_dir = os.path.join(work_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    jsonl = os.path.join(data_dir, "python_docs.jsonl")
    if not os.path.exists(jsonl):
        logger.info("default corpus: collecting the Python documentation (pydoc topics and stdlib docstrings)")
        with atomic_path(jsonl) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                for doc in python_docs():
                    fh.write(json.dumps({"text": doc}) + "\n")
    own = vocab_file is None
    merges = None
    if vocab_file is None:
        directory = os.path.join(work_dir, "tokenizer" if kind == "wordpiece" else f"tokenizer-{kind}")
        trained = os.path.join(directory, VOCAB_FILES[kind])
        if not os.path.exists(trained):
            logger.info("default corpus: training a %d-token %s vocabulary", vocab_size, kind)
            texts = (json.loads(line)["text"] for line in open(jsonl, encoding="utf-8"))
            train_vocab(
                texts=texts,
                vocab_size=vocab_size,
                lowercase=lowercase,
                output=directory,
                show_progress=False,
                model=kind,
            )
        vocab_file = directory if kind == "unigram" else trained
        merges = os.path.join(directory, "merges.txt") if kind == "bpe" else None
    # token ids depend on the vocabulary: another one (a model's, for continued pretraining) gets files of its own
    name = "python_docs" + ("" if kind == "wordpiece" else f"_{kind}")
    prefix = os.path.join(data_dir, name if own else f"python_docs_{_digest(vocab_file, lowercase)}")
    out = output_prefix(prefix, "text", True)
    if not os.path.exists(out + ".idx"):
        preprocess([jsonl], prefix, vocab_file, lowercase=lowercase, workers=1, show_progress=False, merge_file=merges)
    return out, vocab_file


def _digest(vocab_file: str, lowercase: bool) -> str:
    """A short name for a vocabulary file's contents and casing."""
    with open(vocab_file, "rb") as fh:
        return hashlib.sha256(fh.read() + (b"lower" if lowercase else b"cased")).hexdigest()[:10]
