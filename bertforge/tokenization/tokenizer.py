"""BERT's WordPiece tokenizer, built on the ``tokenizers`` library.

The pipeline is BERT's: ``BertNormalizer`` (clean control characters, space out CJK characters, lowercase and strip
accents for uncased models) -> ``BertPreTokenizer`` (split on whitespace and punctuation) -> ``WordPiece`` (greedy
longest-match-first, ``##`` continuation prefix, words over 100 characters become [UNK]) -> a template that adds
``[CLS] A [SEP] (B [SEP])`` with segment ids 0/1. The special tokens are registered as such, so a literal "[MASK]" in
the text is one token. The Rust engine does the work (and batches in parallel); this module owns the BERT-specific
parts: vocab files and their validation, the transformers-style call, and saving files that transformers loads.

Megatron-LM names map onto it: ``BertWordPieceLowerCase`` (uncased) and ``BertWordPieceCase`` (cased).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from bertforge.tokenization.files import backend_model_type, is_bpe_dir, tokenizer_config
from bertforge.utils import atomic_write_text

SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
# Megatron-LM's --tokenizer-type names -> lowercase flag (None: GPT2BPETokenizer, byte-level BPE as RoBERTa uses it).
TOKENIZER_TYPES = {
    "BertWordPieceLowerCase": True,
    "BertWordPieceCase": False,
    "GPT2BPETokenizer": None,
    "SentencePieceTokenizer": None,  # ALBERT's unigram model: its casing is in its files
}
DEFAULT_MAX_LENGTH = 512
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")


class BatchEncoding(dict):
    """The result of a tokenizer call: a dict of input_ids, token_type_ids, attention_mask (and what was asked for),
    with the per-sequence encodings behind it for ``word_ids(i)``, ``sequence_ids(i)`` and ``tokens(i)``."""

    def __init__(self, data: dict[str, Any], encodings: list | None = None):
        super().__init__(data)
        self.encodings = encodings or []

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def word_ids(self, index: int = 0) -> list[int | None]:
        """Word index of each token of sequence ``index`` (None for special and padding tokens)."""
        return self.encodings[index].word_ids

    def sequence_ids(self, index: int = 0) -> list[int | None]:
        """0 for tokens of the first text, 1 for the second, None for special and padding tokens."""
        return self.encodings[index].sequence_ids

    def tokens(self, index: int = 0) -> list[str]:
        """The token strings of sequence ``index``."""
        return self.encodings[index].tokens

    def to(self, device) -> BatchEncoding:
        """Move tensor values to ``device`` (for ``return_tensors="pt"``)."""
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()}, self.encodings)


def read_vocab(vocab_file: str | os.PathLike) -> dict[str, int]:
    """Read a BERT vocab.txt (one token per line, the line number is the id) with clear errors.

    A missing or empty file, bytes that are not UTF-8 (reported with the byte offset), or a vocabulary without BERT's
    special tokens raise ValueError / FileNotFoundError naming the file.
    """
    vocab_file = os.fspath(vocab_file)
    if not os.path.exists(vocab_file):
        raise FileNotFoundError(f"vocab file {vocab_file} does not exist")
    with open(vocab_file, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{vocab_file}: byte offset {e.start} (line {line}) is not valid UTF-8; a vocab.txt must be UTF-8 text"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ValueError(f"{vocab_file} is empty; a BERT vocab.txt lists one token per line")
    vocab: dict[str, int] = {}
    for index, token in enumerate(lines):
        vocab[token.rstrip("\r")] = index  # as BERT's load_vocab: a repeated token keeps its last line
    missing = [t for t in SPECIAL_TOKENS.values() if t not in vocab]
    if missing:
        raise ValueError(
            f"{vocab_file} lacks the special tokens {', '.join(missing)}; a BERT vocabulary must contain "
            f"{', '.join(SPECIAL_TOKENS.values())} (train one with `bertforge tokenizer train`)"
        )
    return vocab


class BertTokenizer:
    """BERT WordPiece tokenizer with the call of transformers' ``BertTokenizerFast``.

    Args:
        vocab_file: path to a vocab.txt (or a token -> id dict via ``vocab``).
        lowercase: uncased model (lowercase the text).
        strip_accents: strip accents; None follows ``lowercase``, as in the original BERT.
        tokenize_chinese_chars: put spaces around CJK characters so each is its own word.
        model_max_length: the length used when truncation or max_length padding is asked for without max_length.
    """

    special_tokens = SPECIAL_TOKENS
    """attribute -> token of the family's special tokens (RoBERTa's are <pad>, <unk>, <s>, </s>, <mask>)."""
    family = "BERT"
    word_start: str | None = None
    """The mark of a piece that starts a word (byte-level BPE's Ġ, SentencePiece's ▁); None: WordPiece, whose
    pieces inside a word start with ##."""
    # The special tokens and their ids, set from special_tokens and the vocabulary.
    pad_token: str
    unk_token: str
    cls_token: str
    sep_token: str
    mask_token: str
    pad_token_id: int
    unk_token_id: int
    cls_token_id: int
    sep_token_id: int
    mask_token_id: int

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        model_max_length: int = DEFAULT_MAX_LENGTH,
        *,
        vocab: dict[str, int] | None = None,
    ):
        if vocab is None:
            if vocab_file is None:
                raise ValueError("BertTokenizer needs a vocab_file (or vocab=dict)")
            vocab = read_vocab(vocab_file)
        self.vocab = dict(sorted(vocab.items(), key=lambda kv: kv[1]))  # token -> id, in id order
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.model_max_length = model_max_length
        self._set_special_tokens()

    def _set_special_tokens(self) -> None:
        """The special-token attributes (``cls_token``, ``cls_token_id``, ...) from ``special_tokens`` and the
        vocabulary; then the backend."""
        wanted = self.special_tokens
        for attr, token in wanted.items():
            if token not in self.vocab:
                raise ValueError(f"the vocabulary lacks {token}; {self.family} needs {', '.join(wanted.values())}")
            setattr(self, attr, token)
            setattr(self, attr + "_id", self.vocab[token])
        self._tokenizer = self._build()
        self._ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.all_special_ids = sorted({self.vocab[t] for t in wanted.values()})

    def _build(self) -> Tokenizer:
        tok = Tokenizer(WordPiece(self.vocab, unk_token=self.unk_token, max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=self.tokenize_chinese_chars,
            strip_accents=self.strip_accents,
            lowercase=self.lowercase,
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS.values()])
        cls, sep = self.cls_token, self.sep_token
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, self.cls_token_id), (sep, self.sep_token_id)],
        )
        return tok

    # ---- construction from files ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> BertTokenizer:
        """Load from a directory holding vocab.txt (and tokenizer_config.json when present), or a vocab.txt path."""
        from bertforge.hub import resolve_model

        directory = resolve_model(directory)
        if cls is BertTokenizer and os.path.isdir(directory) and not os.path.exists(f"{directory}/vocab.txt"):
            kind = "byte-level BPE vocabulary (vocab.json + merges.txt)" if is_bpe_dir(directory) else None
            if backend_model_type(directory) == "Unigram" or os.path.exists(f"{directory}/spiece.model"):
                kind = "SentencePiece (unigram) vocabulary"
            if kind:
                raise ValueError(
                    f"{directory} holds a {kind}, not WordPiece: load it with bertforge.load_tokenizer(...)"
                )
        if os.path.isfile(directory):
            return cls(directory, **overrides)
        vocab_file = os.path.join(directory, "vocab.txt")
        cfg = tokenizer_config(directory)
        options: dict[str, Any] = {}
        if cfg:
            if "do_lower_case" in cfg:
                options["lowercase"] = bool(cfg["do_lower_case"])
            if "strip_accents" in cfg:
                options["strip_accents"] = cfg["strip_accents"]
            if "tokenize_chinese_chars" in cfg:
                options["tokenize_chinese_chars"] = bool(cfg["tokenize_chinese_chars"])
            if "model_max_length" in cfg:
                options["model_max_length"] = cfg["model_max_length"]
        options.update(overrides)
        if os.path.exists(vocab_file):
            return cls(vocab_file, **options)
        tokenizer_json = os.path.join(directory, "tokenizer.json")
        if os.path.exists(tokenizer_json):
            return cls(vocab=Tokenizer.from_file(tokenizer_json).get_vocab(with_added_tokens=True), **options)
        raise FileNotFoundError(f"no vocab.txt (or tokenizer.json) in {directory}")

    @classmethod
    def from_megatron(cls, tokenizer_type: str, vocab_file: str | os.PathLike) -> BertTokenizer:
        """The WordPiece tokenizer for Megatron-LM's ``--tokenizer-type`` BertWordPieceLowerCase / BertWordPieceCase
        (vocab.txt); ``tokenization.megatron_tokenizer`` also builds GPT2BPETokenizer's."""
        if tokenizer_type not in TOKENIZER_TYPES:
            raise ValueError(
                f"--tokenizer-type {tokenizer_type!r} is not supported; use one of {', '.join(TOKENIZER_TYPES)}"
            )
        if TOKENIZER_TYPES[tokenizer_type] is None:
            raise ValueError(
                f"--tokenizer-type {tokenizer_type} is not WordPiece: bertforge.tokenization.megatron_tokenizer builds "
                "every kind"
            )
        return cls(vocab_file, lowercase=bool(TOKENIZER_TYPES[tokenizer_type]))

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write vocab.txt, tokenizer_config.json, special_tokens_map.json and tokenizer.json (each atomically)."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        ordered = sorted(self.vocab.items(), key=lambda kv: kv[1])
        if [i for _, i in ordered] != list(range(len(ordered))):
            raise ValueError("the vocabulary ids are not contiguous from 0; it cannot be written as vocab.txt")
        atomic_write_text(os.path.join(directory, "vocab.txt"), "".join(t + "\n" for t, _ in ordered))
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lowercase,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "model_max_length": self.model_max_length,
            "clean_up_tokenization_spaces": False,
            **SPECIAL_TOKENS,
        }
        atomic_write_text(os.path.join(directory, "tokenizer_config.json"), json.dumps(config, indent=2) + "\n")
        atomic_write_text(
            os.path.join(directory, "special_tokens_map.json"), json.dumps(SPECIAL_TOKENS, indent=2) + "\n"
        )
        atomic_write_text(os.path.join(directory, "tokenizer.json"), self._build().to_str(pretty=True))

    # ---- the call ------------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def backend(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (without truncation or padding set)."""
        return self._tokenizer

    def __call__(
        self,
        text,
        text_pair=None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool = True,
        return_attention_mask: bool = True,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
    ) -> BatchEncoding:
        """Encode a text, a pair, or a batch of either, as transformers' fast tokenizer does.

        ``text``: a string, a list of strings (a batch), or with ``is_split_into_words`` a list of words (one
        sequence) or a list of lists of words (a batch). ``text_pair`` matches it. ``padding``: False, True/"longest",
        "max_length". ``truncation``: False, True/"longest_first", "only_first", "only_second"; a ``max_length`` with
        neither set truncates (longest_first). With ``return_overflowing_tokens`` the truncated rest comes back as
        more windows that overlap by ``stride`` tokens, and ``overflow_to_sample_mapping`` says which input each
        came from. ``return_tensors``: None (lists), "pt" or "np".
        """
        padding_strategy, truncation_strategy, max_length = self._strategies(
            padding, truncation, max_length, pad_to_multiple_of, stride
        )
        is_batched = _is_batched(text, is_split_into_words)
        if is_batched:
            if isinstance(text_pair, str):
                raise TypeError("when text is a batch, text_pair must be a list of the same length")
            if text_pair is not None and len(text_pair) != len(text):
                raise ValueError(f"text has {len(text)} items but text_pair has {len(text_pair)}; they must match")
            inputs = list(zip(text, text_pair)) if text_pair is not None else list(text)
        else:
            _check_text(text, is_split_into_words)
            inputs = [(text, text_pair)] if text_pair else [text]
        tok = self._backend_for(is_split_into_words)
        if truncation_strategy == "do_not_truncate":
            tok.no_truncation()
        else:
            tok.enable_truncation(max_length, stride=stride, strategy=truncation_strategy)
        if padding_strategy == "do_not_pad":
            tok.no_padding()
        else:
            tok.enable_padding(
                pad_id=self.pad_token_id,
                pad_token=self.pad_token,
                pad_type_id=0,
                length=max_length if padding_strategy == "max_length" else None,
                pad_to_multiple_of=pad_to_multiple_of,
            )
        try:
            encodings = tok.encode_batch(
                inputs, add_special_tokens=add_special_tokens, is_pretokenized=is_split_into_words
            )
        except Exception as e:  # the Rust engine raises a bare Exception
            if "Truncation error" in str(e):
                raise ValueError(
                    f"cannot truncate to max_length={max_length} with truncation={truncation_strategy!r} "
                    f"(stride {stride}): the sequence that may be cut is too short for it; use "
                    "'longest_first', a larger max_length or a smaller stride"
                ) from None
            raise
        finally:
            tok.no_truncation()
            tok.no_padding()
        flat, mapping = [], []
        for i, enc in enumerate(encodings):
            for e in [enc] + (list(enc.overflowing) if return_overflowing_tokens else []):
                flat.append(e)
                mapping.append(i)
        data: dict[str, Any] = {"input_ids": [e.ids for e in flat]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in flat]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in flat]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in flat]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in flat]
        if return_length:
            data["length"] = [len(e.ids) for e in flat]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = mapping
        if return_tensors is not None:
            data = {k: _to_tensor(k, v, return_tensors) for k, v in data.items()}
        elif not is_batched and not return_overflowing_tokens:
            data = {k: v[0] for k, v in data.items()}
        return BatchEncoding(data, flat)

    def _backend_for(self, is_split_into_words: bool) -> Tokenizer:
        """The backend that encodes this kind of input (one for WordPiece; RoBERTa's differs for word lists)."""
        return self._tokenizer

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of, stride: int = 0):
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # as transformers: max_length alone means truncate to it
        if padding is True:
            padding = "longest"
        padding = "do_not_pad" if padding in (False, None) else padding
        if padding not in PADDING_STRATEGIES:
            raise ValueError(f"padding={padding!r} is not one of True, False, {', '.join(PADDING_STRATEGIES)}")
        if truncation is True:
            truncation = "longest_first"
        truncation = "do_not_truncate" if truncation in (False, None) else truncation
        if truncation not in TRUNCATION_STRATEGIES + ("do_not_truncate",):
            raise ValueError(f"truncation={truncation!r} is not one of True, False, {', '.join(TRUNCATION_STRATEGIES)}")
        if max_length is None and (padding == "max_length" or truncation != "do_not_truncate"):
            max_length = self.model_max_length
        if stride < 0:
            raise ValueError(f"stride must be >= 0, got {stride}")
        if max_length is not None and max_length <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}")
        if (
            truncation != "do_not_truncate"
            and padding != "do_not_pad"
            and pad_to_multiple_of
            and max_length % pad_to_multiple_of
        ):
            raise ValueError(
                f"max_length ({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})"
            )
        return padding, truncation, max_length

    # ---- ids <-> text --------------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """The vocabulary's tokens for a text, without special tokens."""
        return self.convert_ids_to_tokens(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True, **kwargs) -> list[int]:
        """The ids of one text (or pair), with [CLS]/[SEP] unless ``add_special_tokens=False`` (transformers'
        ``encode``); keywords such as ``truncation`` and ``max_length`` are those of the call."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """WordPiece tokens -> text: ``##`` pieces joined to the piece before them."""
        return " ".join(tokens).replace(" ##", "").strip()

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]):
        """Token(s) -> id(s); unknown tokens give the [UNK] id."""
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        return [self.vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False):
        """Id(s) -> token string(s)."""
        if isinstance(ids, int) or (hasattr(ids, "dim") and ids.dim() == 0):
            return self._ids_to_tokens[int(ids)]  # type: ignore[arg-type]  # an int or a 0-d tensor
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._ids_to_tokens[int(i)] for i in ids if int(i) not in skip]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Ids -> text: ``##`` pieces joined to the piece before them, and the spaces before punctuation and
        English contractions removed (the WordPiece decoder's clean-up, as in transformers)."""
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch: Sequence[Sequence[int]], **kwargs) -> list[str]:
        return [self.decode(ids, **kwargs) for ids in batch]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
            f"strip_accents={self.strip_accents}, model_max_length={self.model_max_length})"
        )


def _is_batched(text, is_split_into_words: bool) -> bool:
    if is_split_into_words:
        return isinstance(text, (list, tuple)) and len(text) > 0 and isinstance(text[0], (list, tuple))
    return isinstance(text, (list, tuple))


def _check_text(text, is_split_into_words: bool) -> None:
    if is_split_into_words:
        if not isinstance(text, (list, tuple)) or not all(isinstance(w, str) for w in text):
            raise TypeError("with is_split_into_words=True, text must be a list of word strings (or a list of those)")
    elif not isinstance(text, str):
        raise TypeError(f"text must be a string or a list of strings, got {type(text).__name__}")


def _to_tensor(key: str, value: list, kind: str):
    if key == "offset_mapping" or value and isinstance(value[0], list):
        lengths = {len(v) for v in value}
        if len(lengths) > 1:
            raise ValueError(
                f"cannot make a tensor of {key}: sequences have lengths {sorted(lengths)}; pass "
                "padding=True (or padding='max_length') with return_tensors"
            )
    if kind == "pt":
        import torch

        return torch.tensor(value, dtype=torch.long)
    if kind == "np":
        import numpy as np

        return np.asarray(value, dtype=np.int64)
    raise ValueError(f"return_tensors={kind!r} is not supported; use 'pt', 'np' or None")
