"""The tokenizer of a directory or a Megatron flag set, whichever kind it is: WordPiece (``BertTokenizer``),
byte-level BPE (``RobertaTokenizer``) or SentencePiece unigram (``AlbertTokenizer``). The classes themselves each load
their own kind only."""

from __future__ import annotations

import os

from bertforge.tokenization.files import backend_model_type
from bertforge.tokenization.roberta import RobertaTokenizer
from bertforge.tokenization.sentencepiece import SPIECE_FILE, AlbertTokenizer
from bertforge.tokenization.tokenizer import TOKENIZER_TYPES, BertTokenizer

TOKENIZER_CLASSES: dict[str, type[BertTokenizer]] = {
    "wordpiece": BertTokenizer,
    "bpe": RobertaTokenizer,
    "unigram": AlbertTokenizer,
}
"""The tokenizer class of each kind a model family names (``families.py``: ``ModelFamily.tokenizer``)."""


def load_tokenizer(directory: str | os.PathLike, **overrides) -> BertTokenizer:
    """A checkpoint directory's tokenizer (or a name, resolved as ``from_pretrained`` does), by its files: vocab.txt
    is WordPiece (``BertTokenizer``); vocab.json + merges.txt byte-level BPE (``RobertaTokenizer``); spiece.model
    SentencePiece (``AlbertTokenizer``); otherwise tokenizer.json's model type decides."""
    from bertforge.hub import resolve_model

    path = resolve_model(directory)
    return TOKENIZER_CLASSES[tokenizer_kind(path)].from_pretrained(path, **overrides)


def tokenizer_kind(path: str) -> str:
    """wordpiece, bpe or unigram: the kind of tokenizer a directory's files hold (wordpiece for a vocab.txt path)."""
    if os.path.isfile(path):
        return "unigram" if path.endswith(".model") else "wordpiece"
    if not os.path.isdir(path) or os.path.exists(os.path.join(path, "vocab.txt")):
        return "wordpiece"
    if os.path.exists(os.path.join(path, "vocab.json")) and os.path.exists(os.path.join(path, "merges.txt")):
        return "bpe"
    if os.path.exists(os.path.join(path, SPIECE_FILE)):
        return "unigram"
    return {"BPE": "bpe", "Unigram": "unigram"}.get(backend_model_type(path) or "", "wordpiece")


def megatron_tokenizer(
    tokenizer_type: str, vocab_file: str | os.PathLike, merge_file: str | os.PathLike | None = None
) -> BertTokenizer:
    """The tokenizer for Megatron-LM's ``--tokenizer-type``: BertWordPieceLowerCase / BertWordPieceCase (vocab.txt),
    GPT2BPETokenizer (vocab.json + ``--merge-file`` merges.txt, with RoBERTa's special tokens), or
    SentencePieceTokenizer (``--tokenizer-model``: a spiece.model, or a tokenizer directory; ALBERT's)."""
    if tokenizer_type == "SentencePieceTokenizer":
        return AlbertTokenizer.from_pretrained(vocab_file)
    if tokenizer_type != "GPT2BPETokenizer":
        return BertTokenizer.from_megatron(tokenizer_type, vocab_file)
    if merge_file is None:
        raise ValueError("--tokenizer-type GPT2BPETokenizer needs --merge-file (merges.txt) with --vocab-file")
    return RobertaTokenizer(vocab_file, merge_file)


__all__ = ["TOKENIZER_CLASSES", "TOKENIZER_TYPES", "load_tokenizer", "megatron_tokenizer", "tokenizer_kind"]
