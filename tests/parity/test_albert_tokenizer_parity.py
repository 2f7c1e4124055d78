"""AlbertTokenizer against transformers' ALBERT tokenizer on the same SentencePiece unigram vocabulary: ids, offsets,
token types, pairs, truncation, word ids, decoding; text with accents, CJK, whitespace runs and the hard cases of the
WordPiece parity test; loaded from the directory transformers writes (tokenizer.json) and from a spiece.model."""

from __future__ import annotations

import struct

import pytest

from bertforge.tokenization import AlbertTokenizer, load_tokenizer, train_vocab
from tests.parity.test_roberta_tokenizer_parity import fallback_lines
from tests.parity.test_tokenizer_parity import HARD_CASES

transformers = pytest.importorskip("transformers")

MORE_CASES = [
    "  leading   spaces,\t\ttabs and   runs  ",
    "Café naïve résumé Ångström — ``quoted'' text",
    "東京は日本の首都です。中文字符",
    "a [MASK] b",
    "<pad> literal <unk> specials [CLS] inside",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A 2,000-piece unigram vocabulary trained by bertforge, transformers' tokenizer on the same pieces written to a
    directory, and ours loaded from it."""
    lines = fallback_lines()[:1500] + MORE_CASES * 3
    trained = train_vocab(texts=lines, vocab_size=2000, model="unigram", show_progress=False)
    theirs = transformers.AlbertTokenizer(vocab=trained.pieces)
    out = tmp_path_factory.mktemp("albert")
    theirs.save_pretrained(out)
    return theirs, out, trained, lines[:200]


def _compare(ours, theirs, text, pair=None, **kw):
    a = ours(text, pair, return_offsets_mapping=True, **kw)
    b = theirs(text, pair, return_offsets_mapping=True, return_token_type_ids=True, **kw)
    assert a["input_ids"] == b["input_ids"], text
    assert a["token_type_ids"] == b["token_type_ids"], text
    assert [tuple(o) for o in a["offset_mapping"]] == [tuple(o) for o in b["offset_mapping"]], text
    assert ours.decode(a["input_ids"], skip_special_tokens=True) == theirs.decode(
        b["input_ids"], skip_special_tokens=True
    )


def test_loaded_from_transformers_directory_matches(reference):
    theirs, out, _, lines = reference
    ours = load_tokenizer(out)
    assert isinstance(ours, AlbertTokenizer) and ours.pad_token_id == 0 and ours.mask_token_id == 4
    for text in HARD_CASES + MORE_CASES + lines:
        _compare(ours, theirs, text)
        _compare(ours, theirs, text, "second segment, with punctuation!")
    _compare(ours, theirs, lines[0], lines[1], truncation=True, max_length=16)


def test_built_from_pieces_matches_and_round_trips(reference, tmp_path):
    theirs, _, trained, lines = reference
    for text in HARD_CASES + MORE_CASES + lines[:50]:
        _compare(trained, theirs, text)
    trained.save_pretrained(tmp_path)
    back = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text in MORE_CASES + lines[:50]:
        _compare(trained, back, text)
    words = ["Héllo", "wörld", "東京"]
    ours = trained(words, is_split_into_words=True)
    assert ours["input_ids"] == theirs(words, is_split_into_words=True)["input_ids"]
    assert ours.word_ids() == theirs(words, is_split_into_words=True).word_ids()


def _message(fields: list[tuple[int, int, bytes]]) -> bytes:
    """A protocol-buffer message from (field, wire type, payload) triples (test helper: varint lengths only)."""
    out = b""
    for field, kind, payload in fields:
        out += _varint(field << 3 | kind) + (_varint(len(payload)) + payload if kind == 2 else payload)
    return out


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def test_spiece_model_alone_is_read(reference, tmp_path):
    _, _, trained, lines = reference
    pieces = [_message([(1, 2, p.encode()), (2, 5, struct.pack("<f", s))]) for p, s in trained.pieces]
    model = b"".join(_message([(1, 2, p)]) for p in pieces) + _message([(2, 2, _message([(3, 0, _varint(1))]))])
    (tmp_path / "spiece.model").write_bytes(model)
    ours = load_tokenizer(tmp_path)
    assert isinstance(ours, AlbertTokenizer) and len(ours) == len(trained)
    for text in MORE_CASES + lines[:50]:
        assert ours(text)["input_ids"] == trained(text)["input_ids"], text
    (tmp_path / "spiece.model").write_bytes(model[:-3] + b"\xff\xff")
    with pytest.raises(ValueError, match="spiece.model: not a readable SentencePiece model"):
        load_tokenizer(tmp_path)
