"""RoBERTa's byte-level BPE tokenizer on the ``tokenizers`` library, with the call of ``BertTokenizer``.

The pipeline is GPT-2's, as RoBERTa uses it: ``ByteLevel`` pre-tokenization (every byte of the UTF-8 text maps to a
printable character, so there is no unknown character; a space belongs to the word after it, shown as ``Ġ``) ->
``BPE`` merges from ``merges.txt`` over ``vocab.json`` -> ``<s> A </s>`` and ``<s> A </s></s> B </s>`` with every
token type 0 (RoBERTa has one). ``add_prefix_space`` treats the first word as if a space came before it; pre-split
words (``is_split_into_words``, NER) always get one, as RoBERTa saw words in running text. Offsets are trimmed to the
word (``trim_offsets``), so answer spans and word ids align as with WordPiece.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

from bertforge.tokenization.files import tokenizer_config
from bertforge.tokenization.tokenizer import DEFAULT_MAX_LENGTH, BertTokenizer
from bertforge.utils import atomic_write_text

ROBERTA_SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "cls_token": "<s>",
    "sep_token": "</s>",
    "mask_token": "<mask>",
}
MERGES_HEADER = "#version: 0.2"


def read_bpe_files(vocab_file: str, merges_file: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(token -> id, merges in rank order) from RoBERTa's vocab.json and merges.txt, checked line by line."""
    try:
        with open(vocab_file, encoding="utf-8") as fh:
            vocab = json.load(fh)
    except json.JSONDecodeError as e:
        raise ValueError(f"{vocab_file}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise ValueError(f"{vocab_file}: expected a JSON object of token -> integer id")
    merges = []
    with open(merges_file, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line or (n == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{merges_file}: line {n}: a merge is two tokens separated by one space, got {line!r}")
            merges.append((parts[0], parts[1]))
    return vocab, merges


class RobertaTokenizer(BertTokenizer):
    """RoBERTa's byte-level BPE tokenizer (the call, offsets, pairs, overflow and word ids of ``BertTokenizer``).

    Args:
        vocab_file, merges_file: RoBERTa's vocab.json and merges.txt (or ``vocab=`` and ``merges=``).
        add_prefix_space: a space before the first word, as if it were in running text.
        trim_offsets: offsets without the leading space that byte-level tokens carry.
        model_max_length: the length used when truncation or max_length padding is asked for without max_length.
        mask_lstrip: <mask> takes the space before it ("a <mask>." masks the word " x", as RoBERTa was trained and as
            roberta-base's files say); a directory's tokenizer.json or tokenizer_config.json decides when it has one.
    """

    special_tokens = ROBERTA_SPECIAL_TOKENS
    family = "RoBERTa"
    word_start = "\u0120"

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        merges_file: str | os.PathLike | None = None,
        add_prefix_space: bool = False,
        trim_offsets: bool = True,
        model_max_length: int = DEFAULT_MAX_LENGTH,
        mask_lstrip: bool = True,
        *,
        vocab: dict[str, int] | None = None,
        merges: Sequence[tuple[str, str]] | None = None,
    ):
        if vocab is None or merges is None:
            if vocab_file is None or merges_file is None:
                raise ValueError("RobertaTokenizer needs vocab_file and merges_file (or vocab= and merges=)")
            vocab, merges = read_bpe_files(os.fspath(vocab_file), os.fspath(merges_file))
        self.vocab = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
        self.merges: list[tuple[str, str]] = [(m[0], m[1]) for m in merges]
        self.add_prefix_space = add_prefix_space
        self.trim_offsets = trim_offsets
        self.model_max_length = model_max_length
        self.mask_lstrip = mask_lstrip
        self.lowercase = False  # byte-level BPE keeps the text as it is
        self.strip_accents = None
        self.tokenize_chinese_chars = False
        self._set_special_tokens()
        self._words_backend: Tokenizer | None = None

    def _build(self, add_prefix_space: bool | None = None) -> Tokenizer:
        prefix = self.add_prefix_space if add_prefix_space is None else add_prefix_space
        tok = Tokenizer(
            BPE(
                vocab=self.vocab,
                merges=self.merges,
                dropout=None,
                continuing_subword_prefix="",
                end_of_word_suffix="",
                fuse_unk=False,
            )
        )
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(
            [
                AddedToken(
                    t,
                    special=True,
                    normalized=False,
                    lstrip=self.mask_lstrip and t == self.special_tokens["mask_token"],
                )
                for t in self.special_tokens.values()
            ]
        )
        tok.post_processor = processors.RobertaProcessing(
            (self.sep_token, self.sep_token_id),
            (self.cls_token, self.cls_token_id),
            trim_offsets=self.trim_offsets,
            add_prefix_space=prefix,
        )
        return tok

    def _backend_for(self, is_split_into_words: bool) -> Tokenizer:
        """Pre-split words each get the space RoBERTa saw before words (transformers requires add_prefix_space=True
        for them; here the tokenizer uses that setting for word lists only)."""
        if not is_split_into_words or self.add_prefix_space:
            return self._tokenizer
        if self._words_backend is None:
            self._words_backend = self._build(add_prefix_space=True)
        return self._words_backend

    # ---- files ---------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> RobertaTokenizer:
        """Load from a directory holding vocab.json + merges.txt, or tokenizer.json with a BPE model (and
        tokenizer_config.json when present)."""
        from bertforge.hub import resolve_model

        directory = resolve_model(directory)
        cfg = tokenizer_config(directory)
        options: dict[str, Any] = {k: bool(cfg[k]) for k in ("add_prefix_space", "trim_offsets") if k in cfg}
        if isinstance(cfg.get("mask_token"), dict) and "lstrip" in cfg["mask_token"]:
            options["mask_lstrip"] = bool(cfg["mask_token"]["lstrip"])
        if "model_max_length" in cfg:
            options["model_max_length"] = cfg["model_max_length"]
        tokenizer_json = os.path.join(directory, "tokenizer.json")
        backend = None
        if os.path.exists(tokenizer_json):
            with open(tokenizer_json, encoding="utf-8") as fh:
                backend = json.load(fh)
            for added in backend.get("added_tokens", []):  # the backend's own word on <mask> wins
                if added.get("content") == ROBERTA_SPECIAL_TOKENS["mask_token"]:
                    options["mask_lstrip"] = bool(added.get("lstrip"))
        options.update(overrides)
        vocab_file, merges_file = os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
        if os.path.exists(vocab_file) and os.path.exists(merges_file):
            return cls(vocab_file, merges_file, **options)
        if backend is not None:
            model = backend.get("model", {})
            if model.get("type") != "BPE":
                raise ValueError(f"{tokenizer_json}: the model is {model.get('type')!r}, not RoBERTa's BPE")
            pairs = [m.split(" ") if isinstance(m, str) else m for m in model.get("merges", [])]
            return cls(vocab=model["vocab"], merges=[(a, b) for a, b in pairs], **options)
        raise FileNotFoundError(f"no vocab.json + merges.txt (or tokenizer.json) in {directory}")

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json and tokenizer.json."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        atomic_write_text(os.path.join(directory, "vocab.json"), json.dumps(self.vocab, ensure_ascii=False) + "\n")
        atomic_write_text(
            os.path.join(directory, "merges.txt"), MERGES_HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in self.merges)
        )
        specials = {
            "bos_token": self.cls_token,
            "eos_token": self.sep_token,
            **self.special_tokens,
        }
        mask = {"content": self.mask_token, "lstrip": self.mask_lstrip, "normalized": False, "rstrip": False}
        mask.update(single_word=False, special=True)
        config = {
            "tokenizer_class": "RobertaTokenizer",
            "add_prefix_space": self.add_prefix_space,
            "trim_offsets": self.trim_offsets,
            "model_max_length": self.model_max_length,
            "errors": "replace",
            **specials,
            "mask_token": mask,
        }
        atomic_write_text(os.path.join(directory, "tokenizer_config.json"), json.dumps(config, indent=2) + "\n")
        atomic_write_text(os.path.join(directory, "special_tokens_map.json"), json.dumps(specials, indent=2) + "\n")
        atomic_write_text(os.path.join(directory, "tokenizer.json"), self._build().to_str(pretty=True))

    # ---- ids <-> text --------------------------------------------------------------------------------------------
    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Byte-level tokens -> text (``Ġ`` back to a space, bytes back to UTF-8)."""
        return self._tokenizer.decoder.decode(list(tokens))

    def __repr__(self) -> str:
        return (
            f"RobertaTokenizer(vocab_size={self.vocab_size}, add_prefix_space={self.add_prefix_space}, "
            f"model_max_length={self.model_max_length})"
        )
