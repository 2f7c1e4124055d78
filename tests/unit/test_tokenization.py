"""Tokenizer unit tests on a tiny hand-made vocabulary: WordPiece splits, pairs, alignment helpers, errors, training."""

from __future__ import annotations

import pytest

from bertforge.tokenization import (
    BertTokenizer,
    align_word_labels,
    char_span_to_token_span,
    read_vocab,
    train_vocab,
)

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "un",
    "##aff",
    "##able",
    "play",
    "##ing",
    ".",
    ",",
    "a",
    "b",
    "c",
]


@pytest.fixture
def tok(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer(path)


def test_wordpiece_splits_and_specials(tok):
    assert tok.tokenize("The cat is unaffable") == ["the", "cat", "[UNK]", "un", "##aff", "##able"]
    enc = tok("The cat sat.", "Playing on a mat")
    assert enc.tokens() == ["[CLS]", "the", "cat", "sat", ".", "[SEP]", "play", "##ing", "on", "a", "mat", "[SEP]"]
    assert enc["token_type_ids"] == [0] * 6 + [1] * 6
    assert enc.word_ids() == [None, 0, 1, 2, 3, None, 0, 0, 1, 2, 3, None]
    assert enc.sequence_ids() == [None, 0, 0, 0, 0, None, 1, 1, 1, 1, 1, None]
    assert tok("the [MASK] sat")["input_ids"] == [2, 5, 4, 7, 3]
    assert (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.mask_token_id, tok.unk_token_id) == (
        2,
        3,
        0,
        4,
        1,
    )
    assert tok.decode(tok("unaffable playing")["input_ids"], skip_special_tokens=True) == "unaffable playing"


def test_offsets_point_into_original_text(tok):
    text = "The  CAT,  sat"
    enc = tok(text, return_offsets_mapping=True)
    pieces = [text[a:b] for a, b in enc["offset_mapping"]]
    assert pieces == ["", "The", "CAT", ",", "sat", ""]


def test_padding_truncation_and_overflow(tok):
    batch = tok(["the cat", "the cat sat on a mat"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 8) and batch["attention_mask"][0].tolist() == [1] * 4 + [0] * 4
    batch = tok(["the cat"], padding="max_length", max_length=6)
    assert batch["input_ids"] == [[2, 5, 6, 3, 0, 0]]
    batch = tok(["the cat"], padding=True, pad_to_multiple_of=8)
    assert len(batch["input_ids"][0]) == 8
    windows = tok("the cat sat on a mat", truncation=True, max_length=5, stride=1, return_overflowing_tokens=True)
    assert [w[1:-1] for w in windows["input_ids"]] == [[5, 6, 7], [7, 8, 17], [17, 9]]
    assert windows["overflow_to_sample_mapping"] == [0, 0, 0]
    with pytest.raises(ValueError, match="padding=True"):
        tok(["the cat", "the cat sat"], return_tensors="pt")
    with pytest.raises(ValueError, match="truncation"):
        tok("a", truncation="sideways")


def test_align_word_labels_by_hand(tok):
    enc = tok(["the", "playing", "cat"], is_split_into_words=True)
    assert enc.word_ids() == [None, 0, 1, 1, 2, None]
    assert align_word_labels(enc.word_ids(), [3, 1, 0]) == [-100, 3, 1, -100, 0, -100]
    assert align_word_labels(enc.word_ids(), [3, 1, 0], label_all_tokens=True) == [-100, 3, 1, 1, 0, -100]
    assert align_word_labels(enc.word_ids(), [3, 1, 0], label_all_tokens=True, continuation_label=lambda x: x + 10) == [
        -100,
        3,
        1,
        11,
        0,
        -100,
    ]
    with pytest.raises(ValueError, match="word labels"):
        align_word_labels(enc.word_ids(), [3])


def test_answer_span_to_tokens_per_window(tok):
    question, context = "the cat", "a cat sat on the mat , playing"
    start = context.index("the mat")
    end = start + len("the mat")
    enc = tok(
        question,
        context,
        truncation="only_second",
        max_length=9,
        stride=2,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    spans = [
        char_span_to_token_span(enc["offset_mapping"][i], enc.sequence_ids(i), start, end)
        for i in range(len(enc["input_ids"]))
    ]
    found = [(i, s) for i, s in enumerate(spans) if s is not None]
    assert found, spans
    for i, (s, e) in found:
        assert enc.tokens(i)[s : e + 1] == ["the", "mat"]
    assert spans[0] is None  # the first window ends before "the mat"


def test_vocab_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_vocab(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_vocab(tmp_path / "empty.txt")
    (tmp_path / "nospecial.txt").write_text("the\ncat\n")
    with pytest.raises(ValueError, match=r"lacks the special tokens \[PAD\], \[UNK\]"):
        read_vocab(tmp_path / "nospecial.txt")
    (tmp_path / "bad.txt").write_bytes(b"[PAD]\n[UNK]\nca\xfft\n")
    with pytest.raises(ValueError, match="byte offset 14 \\(line 3\\)"):
        read_vocab(tmp_path / "bad.txt")


def test_megatron_names(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    assert BertTokenizer.from_megatron("BertWordPieceLowerCase", path).lowercase
    assert not BertTokenizer.from_megatron("BertWordPieceCase", path).lowercase
    with pytest.raises(ValueError, match="GPT2BPETokenizer"):
        BertTokenizer.from_megatron("GPT2BPETokenizer", path)


def test_trained_vocab_round_trips_with_few_unknowns(tmp_path):
    corpus = tmp_path / "corpus.txt"
    lines = [
        f"The {w} number {i} walked across the {v} bridge, singing about café life."
        for i in range(300)
        for w, v in [("quick", "old"), ("lazy", "new"), ("brown", "stone")]
    ]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tok = train_vocab([corpus], vocab_size=300, output=tmp_path / "tok", show_progress=False)
    assert read_vocab(tmp_path / "tok" / "vocab.txt") == tok.vocab
    assert list(tok.vocab)[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tok.vocab["[PAD]"] == 0 and tok.vocab["[MASK]"] == 4
    again = BertTokenizer.from_pretrained(tmp_path / "tok")
    ids = again(lines[:50])["input_ids"]
    tokens = [i for row in ids for i in row]
    assert tokens.count(again.unk_token_id) / len(tokens) < 0.01
    assert (
        again.decode(ids[0], skip_special_tokens=True)
        == "the quick number 0 walked across the old bridge, singing about cafe life."
    )


def test_training_reports_bad_utf8_and_empty_input(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"bad.txt: byte offset 14"):
        train_vocab([bad], vocab_size=50, show_progress=False)
    train_vocab([bad], vocab_size=50, errors="replace", show_progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="empty"):
        train_vocab([empty], vocab_size=50, show_progress=False)
    with pytest.raises(FileNotFoundError):
        train_vocab([tmp_path / "missing.txt"], vocab_size=50, show_progress=False)
