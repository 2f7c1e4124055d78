"""Training a vocabulary from text files, streaming: BERT's WordPiece (BERT's special tokens first), RoBERTa's
byte-level BPE (<s>, <pad>, </s>, <unk>, <mask> first: <pad> at 1 as in RoBERTa) or ALBERT's SentencePiece unigram.

The ``tokenizers`` WordPiece trainer counts words as the text streams through, so memory grows with the number of
distinct words, not with the corpus size. Bytes that are not UTF-8 are an error that names the file and byte offset
(``errors="strict"``, the default) or are replaced by U+FFFD (``errors="replace"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence

from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE, Unigram, WordPiece

from bertforge.tokenization.roberta import RobertaTokenizer
from bertforge.tokenization.sentencepiece import ALBERT_SPECIAL_TOKENS, AlbertTokenizer
from bertforge.tokenization.tokenizer import SPECIAL_TOKENS, BertTokenizer
from bertforge.utils import progress

BATCH_LINES = 1000
BPE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # RoBERTa's order: <pad> is id 1
SPECIALS = {
    "wordpiece": tuple(SPECIAL_TOKENS.values()),
    "bpe": BPE_SPECIALS,
    "unigram": tuple(ALBERT_SPECIAL_TOKENS.values()),  # ALBERT's order: <pad> 0, <unk> 1, [CLS] 2, [SEP] 3, [MASK] 4
}


def iter_text_files(
    files: Sequence[str | os.PathLike], errors: str = "strict", bar: bool = True
) -> Iterator[list[str]]:
    """Yield batches of lines from text files, checking UTF-8 and showing a progress bar in MB."""
    if errors not in ("strict", "replace"):
        raise ValueError(f"errors={errors!r} must be 'strict' or 'replace'")
    paths = [os.fspath(f) for f in files]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"input file {path} does not exist")
    total = sum(os.path.getsize(p) for p in paths)
    with progress(total=total, unit="B", unit_scale=True, desc="reading text", enabled=bar) as pbar:
        for path in paths:
            offset = 0
            batch: list[str] = []
            with open(path, "rb") as fh:
                for raw in fh:
                    try:
                        line = raw.decode("utf-8", errors=errors)
                    except UnicodeDecodeError as e:
                        raise ValueError(
                            f"{path}: byte offset {offset + e.start} is not valid UTF-8; convert the file "
                            "to UTF-8 or pass errors='replace' (--errors replace)"
                        ) from None
                    offset += len(raw)
                    batch.append(line)
                    pbar.update(len(raw))
                    if len(batch) >= BATCH_LINES:
                        yield batch
                        batch = []
            if batch:
                yield batch


def _setup(model: str, specials: list[str], vocab_size: int, lowercase: bool, min_frequency: int, limit_alphabet: int):
    """(an untrained tokenizer with the family's normaliser and pre-tokenizer, its trainer)."""
    if model == "bpe":
        tok = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        return tok, trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    if model == "unigram":
        blank = AlbertTokenizer([(t, 0.0) for t in specials], lowercase=lowercase)._build()
        tok = Tokenizer(Unigram())
        tok.normalizer, tok.pre_tokenizer = blank.normalizer, blank.pre_tokenizer
        return tok, trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=specials, unk_token=specials[1], show_progress=False
        )
    tok = Tokenizer(WordPiece(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok, trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        limit_alphabet=limit_alphabet,
        continuing_subword_prefix="##",
        show_progress=False,
    )


def train_vocab(
    files: Sequence[str | os.PathLike] | None = None,
    *,
    texts: Iterable[str] | None = None,
    vocab_size: int = 30522,
    lowercase: bool = True,
    min_frequency: int = 2,
    limit_alphabet: int = 1000,
    output: str | os.PathLike | None = None,
    errors: str = "strict",
    show_progress: bool = True,
    model: str = "wordpiece",
) -> BertTokenizer:
    """Train a vocabulary from ``files`` (or an iterable of ``texts``) and return its tokenizer.

    ``model="wordpiece"`` (BERT): [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, then the alphabet and pieces; cased or
    uncased. ``model="bpe"`` (RoBERTa): byte-level BPE, <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 4, then the 256 byte
    symbols and the merges; never lowercased (``lowercase`` and ``limit_alphabet`` do not apply).
    ``model="unigram"`` (ALBERT): SentencePiece's unigram model on ALBERT's normalisation (accents stripped, cased
    or uncased), <pad> 0, <unk> 1, [CLS] 2, [SEP] 3, [MASK] 4, then the pieces by score. With ``output`` the
    tokenizer files (vocab.txt, or vocab.json + merges.txt, and tokenizer_config.json ...) are written there.
    """
    if (files is None) == (texts is None):
        raise ValueError("give exactly one of files or texts")
    if model not in SPECIALS:
        raise ValueError(f"model={model!r} must be 'wordpiece' (BERT), 'bpe' (RoBERTa) or 'unigram' (ALBERT)")
    specials = list(SPECIALS[model])
    smallest = len(specials) + (len(pre_tokenizers.ByteLevel.alphabet()) if model == "bpe" else 0)
    if vocab_size <= smallest:
        what = "special tokens and 256 byte symbols" if model == "bpe" else "special tokens"
        raise ValueError(f"vocab_size must be larger than the {smallest} {what}, got {vocab_size}")
    tok, trainer = _setup(model, specials, vocab_size, lowercase, min_frequency, limit_alphabet)
    if files is not None:
        batches: Iterable = iter_text_files(files, errors=errors, bar=show_progress)
    else:
        batches = ([t] for t in texts or ())
    seen = {"chars": 0}

    def counted():
        for batch in batches:
            seen["chars"] += sum(len(t.strip()) for t in batch)
            yield batch

    tok.train_from_iterator(counted(), trainer=trainer)
    if seen["chars"] == 0:
        raise ValueError("the training text is empty; a vocabulary needs some text")
    vocab = tok.get_vocab()
    for i, token in enumerate(specials):
        if vocab.get(token) != i:
            raise RuntimeError(f"trainer placed {token} at {vocab.get(token)}, expected {i}")
    if model == "bpe":
        saved = json.loads(tok.to_str())["model"]["merges"]
        merges = [(a, b) for a, b in (m.split(" ") if isinstance(m, str) else m for m in saved)]
        result: BertTokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
    elif model == "unigram":
        pieces = [(piece, score) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
        result = AlbertTokenizer(pieces, lowercase=lowercase)
    else:
        result = BertTokenizer(vocab=vocab, lowercase=lowercase)
    if output is not None:
        result.save_pretrained(output)
    return result
