"""The tokenizer of a directory or a Megatron flag set, whichever kind it is: WordPiece (``BertTokenizer``) or
byte-level BPE (``RobertaTokenizer``). The classes themselves each load their own kind only."""

from __future__ import annotations

import os

from bertforge.tokenization.roberta import RobertaTokenizer
from bertforge.tokenization.tokenizer import TOKENIZER_TYPES, BertTokenizer, is_bpe_dir


def load_tokenizer(directory: str | os.PathLike, **overrides) -> BertTokenizer:
    """A checkpoint directory's tokenizer (or a name, resolved as ``from_pretrained`` does): RoBERTa's vocab.json +
    merges.txt load as a ``RobertaTokenizer``, anything else as a ``BertTokenizer``."""
    from bertforge.hub import resolve_model

    path = resolve_model(directory)
    cls = RobertaTokenizer if os.path.isdir(path) and is_bpe_dir(path) else BertTokenizer
    return cls.from_pretrained(path, **overrides)


def megatron_tokenizer(
    tokenizer_type: str, vocab_file: str | os.PathLike, merge_file: str | os.PathLike | None = None
) -> BertTokenizer:
    """The tokenizer for Megatron-LM's ``--tokenizer-type``: BertWordPieceLowerCase / BertWordPieceCase (vocab.txt),
    or GPT2BPETokenizer (vocab.json + ``--merge-file`` merges.txt, with RoBERTa's special tokens)."""
    if tokenizer_type != "GPT2BPETokenizer":
        return BertTokenizer.from_megatron(tokenizer_type, vocab_file)
    if merge_file is None:
        raise ValueError("--tokenizer-type GPT2BPETokenizer needs --merge-file (merges.txt) with --vocab-file")
    return RobertaTokenizer(vocab_file, merge_file)


__all__ = ["TOKENIZER_TYPES", "load_tokenizer", "megatron_tokenizer"]
