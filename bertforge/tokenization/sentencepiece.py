"""ALBERT's SentencePiece (unigram) tokenizer on the ``tokenizers`` library, with the call of ``BertTokenizer``.

The pipeline is the one ALBERT's checkpoints ship: ```` `` ```` and ``''`` become ``"``; accents are stripped (NFKD)
unless ``keep_accents``; the text is lowercased for uncased models; SentencePiece's own normalisation table
(``precompiled_charsmap``) when the model has one -> the text is split on whitespace (runs of it are one break) and
each word gets ``▁`` in front (Metaspace) -> the unigram model picks the most likely segmentation under its piece
scores -> ``[CLS] A [SEP] (B [SEP])`` with segment ids 0/1.

A directory is read from its ``tokenizer.json`` (the whole pipeline as written there, so it is the reference's by
construction) or, without one, from SentencePiece's ``spiece.model`` (a protocol-buffer file read here field by field:
the pieces, their scores and the normalisation table; nothing is unpickled or executed).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

from bertforge.tokenization.files import tokenizer_config
from bertforge.tokenization.tokenizer import DEFAULT_MAX_LENGTH, BertTokenizer
from bertforge.utils import atomic_path, atomic_write_text

ALBERT_SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
SPIECE_FILE = "spiece.model"


class AlbertTokenizer(BertTokenizer):
    """ALBERT's SentencePiece unigram tokenizer (the call, offsets, pairs, overflow and word ids of ``BertTokenizer``).

    Args:
        vocab: the pieces and their log-probability scores, in id order.
        lowercase: lowercase the text (ALBERT's released models are uncased).
        keep_accents: keep accents (else NFKD and strip them).
        precompiled_charsmap: SentencePiece's normalisation table, from its model file.
        model_max_length: the length used when truncation or max_length padding is asked for without max_length.
        backend: a tokenizer.json's text, whose pipeline is used as it is.
    """

    special_tokens = ALBERT_SPECIAL_TOKENS
    family = "ALBERT"
    word_start = "\u2581"

    def __init__(
        self,
        vocab: Sequence[tuple[str, float]],
        lowercase: bool = True,
        keep_accents: bool = False,
        precompiled_charsmap: bytes | None = None,
        model_max_length: int = DEFAULT_MAX_LENGTH,
        *,
        backend: str | None = None,
        spiece_model: bytes | None = None,
    ):
        self.pieces = [(str(piece), float(score)) for piece, score in vocab]
        self.vocab = {piece: i for i, (piece, _) in enumerate(self.pieces)}
        self.lowercase = lowercase
        self.keep_accents = keep_accents
        self.strip_accents = not keep_accents
        self.tokenize_chinese_chars = False
        self.precompiled_charsmap = precompiled_charsmap
        self.model_max_length = model_max_length
        self._backend_text = backend
        self._spiece_model = spiece_model
        self._set_special_tokens()

    def _build(self) -> Tokenizer:
        if self._backend_text is not None:
            return Tokenizer.from_str(self._backend_text)
        tok = Tokenizer(Unigram(self.pieces, unk_id=self.vocab[self.unk_token], byte_fallback=False))
        steps: list[normalizers.Normalizer] = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        if not self.keep_accents:
            steps += [normalizers.NFKD(), normalizers.StripAccents()]
        if self.lowercase:
            steps.append(normalizers.Lowercase())
        if self.precompiled_charsmap:
            steps.append(normalizers.Precompiled(self.precompiled_charsmap))
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
        )
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in self.special_tokens.values()])
        cls, sep = self.cls_token, self.sep_token
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, self.cls_token_id), (sep, self.sep_token_id)],
        )
        return tok

    # ---- files ---------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> AlbertTokenizer:
        """Load from a directory holding tokenizer.json (a Unigram model) or spiece.model, and tokenizer_config.json
        when present; or from a SentencePiece model file."""
        from bertforge.hub import resolve_model

        directory = resolve_model(directory)
        if os.path.isfile(directory):  # a SentencePiece model file itself
            with open(directory, "rb") as fh:
                data = fh.read()
            vocab, charsmap = read_spiece(data, directory)
            return cls(vocab, precompiled_charsmap=charsmap, spiece_model=data, **overrides)
        cfg = tokenizer_config(directory)
        options: dict[str, Any] = {}
        if "do_lower_case" in cfg:
            options["lowercase"] = bool(cfg["do_lower_case"])
        if "keep_accents" in cfg:
            options["keep_accents"] = bool(cfg["keep_accents"])
        if "model_max_length" in cfg:
            options["model_max_length"] = cfg["model_max_length"]
        options.update(overrides)
        spiece = os.path.join(directory, SPIECE_FILE)
        model_bytes = open(spiece, "rb").read() if os.path.exists(spiece) else None
        tokenizer_json = os.path.join(directory, "tokenizer.json")
        if os.path.exists(tokenizer_json):
            with open(tokenizer_json, encoding="utf-8") as fh:
                text = fh.read()
            model = json.loads(text).get("model", {})
            if model.get("type") != "Unigram":
                raise ValueError(f"{tokenizer_json}: the model is {model.get('type')!r}, not SentencePiece's Unigram")
            vocab = [(piece, score) for piece, score in model["vocab"]]
            return cls(vocab, backend=text, spiece_model=model_bytes, **options)
        if model_bytes is not None:
            vocab, charsmap = read_spiece(model_bytes, spiece)
            return cls(vocab, precompiled_charsmap=charsmap, spiece_model=model_bytes, **options)
        raise FileNotFoundError(f"no tokenizer.json or {SPIECE_FILE} in {directory}")

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (and the spiece.model it was read
        from, when there was one), each atomically."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        specials = {"bos_token": self.cls_token, "eos_token": self.sep_token, **self.special_tokens}
        config = {
            "tokenizer_class": "AlbertTokenizer",
            "do_lower_case": self.lowercase,
            "keep_accents": self.keep_accents,
            "model_max_length": self.model_max_length,
            **specials,
        }
        atomic_write_text(os.path.join(directory, "tokenizer_config.json"), json.dumps(config, indent=2) + "\n")
        atomic_write_text(os.path.join(directory, "special_tokens_map.json"), json.dumps(specials, indent=2) + "\n")
        atomic_write_text(os.path.join(directory, "tokenizer.json"), self._build().to_str(pretty=True))
        if self._spiece_model is not None:
            with atomic_path(os.path.join(directory, SPIECE_FILE)) as tmp, open(tmp, "wb") as fh:
                fh.write(self._spiece_model)

    # ---- ids <-> text --------------------------------------------------------------------------------------------
    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Pieces -> text: ``▁`` back to a space, the leading one dropped."""
        return self._tokenizer.decoder.decode(list(tokens))


def read_spiece(data: bytes, source: str) -> tuple[list[tuple[str, float]], bytes | None]:
    """(pieces with their scores, the normalisation table) of a SentencePiece model file: a ModelProto whose field 1
    holds the pieces (each: 1 the piece, 2 its score) and field 3 the normaliser (2: precompiled_charsmap); field 2
    (the trainer's settings) says the model type, which must be unigram (1, its default)."""
    pieces: list[tuple[str, float]] = []
    charsmap = None
    try:
        for field, value in _fields(data):
            if field == 1:
                parts = dict(_fields(value))
                pieces.append((parts.get(1, b"").decode("utf-8"), struct.unpack("<f", parts.get(2, b"\0\0\0\0"))[0]))
            elif field == 2 and dict(_fields(value)).get(3, 1) != 1:
                raise ValueError(f"{source}: a SentencePiece model of type {dict(_fields(value))[3]}, not unigram")
            elif field == 3:
                charsmap = dict(_fields(value)).get(2) or None
    except (IndexError, UnicodeDecodeError, struct.error) as e:
        raise ValueError(f"{source}: not a readable SentencePiece model ({e})") from None
    if not pieces:
        raise ValueError(f"{source}: no pieces: not a SentencePiece model file")
    return pieces, charsmap


def _fields(data: bytes):
    """(field number, value) of each field of one protocol-buffer message: an int for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, kind = key >> 3, key & 7
        if kind == 0:
            value, pos = _varint(data, pos)
        elif kind == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif kind in (1, 5):
            width = 8 if kind == 1 else 4
            value, pos = data[pos : pos + width], pos + width
        else:
            raise struct.error(f"wire type {kind} at byte {pos}")
        if pos > len(data):
            raise IndexError(f"a field runs past the end of the file at byte {pos}")
        yield field, value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
