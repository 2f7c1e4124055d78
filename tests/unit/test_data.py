"""Pretraining data: MMIDIDX bytes read back independently, sentence splitting, samples, masking statistics,
determinism, blending/splits, collation and bad input."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from bertforge.data.blend import blend_indices, parse_data_path, split_ranges
from bertforge.data.collate import collate_packed, collate_padded
from bertforge.data.dataset import PretrainingStream
from bertforge.data.indexed import IndexedDataset, IndexedDatasetBuilder
from bertforge.data.masking import Masker
from bertforge.data.preprocess import preprocess
from bertforge.data.samples import PretrainingSamples, SpecialIds
from bertforge.data.sentences import split_sentences
from bertforge.tokenization import BertTokenizer

SPECIALS = SpecialIds(cls=101, sep=102, pad=0, mask=103)
VOCAB = 30522


@pytest.fixture
def tok(minilm):
    return BertTokenizer.from_pretrained(minilm)


def _synthetic(tmp_path, docs=300, seed=0):
    """Documents whose sentences use token ids private to the document (ids 1000 + 30 d .. + 30), 3-12 sentences."""
    rng = np.random.default_rng(seed)
    prefix = str(tmp_path / "synth")
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        for d in range(docs):
            for _ in range(int(rng.integers(3, 13))):
                b.add_sequence(rng.integers(1000 + 30 * d, 1000 + 30 * (d + 1), size=int(rng.integers(5, 40))))
            b.end_document()
        b.finalize()
    return IndexedDataset(prefix)


def _masker(**kw):
    special = np.array([0, 100, 101, 102, 103])
    replacement = np.setdiff1d(np.arange(VOCAB), np.r_[special, np.arange(1, 999)])
    return Masker(
        vocab_size=VOCAB,
        mask_id=103,
        special_ids=special,
        replacement_ids=replacement,
        is_continuation=np.zeros(VOCAB, dtype=bool),
        **kw,
    )


# ---- format -------------------------------------------------------------------------------------------------------
def _read_independently(prefix):
    """Parse .idx/.bin from the byte layout alone (not through bertforge's reader)."""
    raw = open(prefix + ".idx", "rb").read()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    version, code, n_seq, n_doc = struct.unpack("<QBQQ", raw[9:34])
    assert version == 1 and code == 8  # uint16 for a 30,522-token vocabulary
    off = 34
    lengths = struct.unpack(f"<{n_seq}i", raw[off : off + 4 * n_seq])
    off += 4 * n_seq
    pointers = struct.unpack(f"<{n_seq}q", raw[off : off + 8 * n_seq])
    off += 8 * n_seq
    doc_idx = struct.unpack(f"<{n_doc}q", raw[off : off + 8 * n_doc])
    assert off + 8 * n_doc == len(raw)
    data = open(prefix + ".bin", "rb").read()
    seqs = [list(struct.unpack(f"<{n}H", data[p : p + 2 * n])) for n, p in zip(lengths, pointers)]
    return seqs, list(doc_idx)


def test_preprocess_bytes_match_the_tokenizer(tmp_path, tok, minilm):
    docs = [
        {"text": "The cat sat on the mat. It was happy! Was it? Dr. Smith said so.", "id": 1},
        {"text": "", "id": 2},
        {"text": "Prices rose 3.5 percent in the U.S. last year. Analysts were surprised.", "id": 3},
        {"text": "Une phrase en français. Ünïcödé too.", "id": 4},
    ]
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")
    stats = preprocess([str(src)], str(tmp_path / "out"), str(minilm / "vocab.txt"), show_progress=False)
    assert stats.documents == 3 and stats.empty_documents == 1
    seqs, doc_idx = _read_independently(str(tmp_path / "out_text_sentence"))
    expected = [tok(s, add_special_tokens=False)["input_ids"] for d in docs for s in split_sentences(d["text"])]
    assert seqs == expected
    assert doc_idx == [0, 4, 6, 8]
    ds = IndexedDataset(str(tmp_path / "out_text_sentence"))
    assert ds.num_documents == 3 and len(ds) == 8 and ds[5].tolist() == expected[5]
    assert [s.tolist() for s in ds.document(1)] == expected[4:6]


def test_workers_give_identical_files(tmp_path, minilm):
    src = tmp_path / "t.txt"
    src.write_text("\n\n".join(f"Paragraph {i} starts here. It has two sentences." for i in range(500)))
    vocab = str(minilm / "vocab.txt")
    preprocess([str(src)], str(tmp_path / "one"), vocab, workers=1, show_progress=False)
    preprocess([str(src)], str(tmp_path / "two"), vocab, workers=2, show_progress=False)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"one_text_sentence{ext}").read_bytes() == (
            tmp_path / f"two_text_sentence{ext}"
        ).read_bytes()


def test_reader_rejects_other_formats_and_truncation(tmp_path):
    ds = _synthetic(tmp_path, docs=3)
    idx = (tmp_path / "synth.idx").read_bytes()
    (tmp_path / "bad.idx").write_bytes(b"NOTMMIDX" + idx[8:])
    (tmp_path / "bad.bin").write_bytes((tmp_path / "synth.bin").read_bytes())
    with pytest.raises(ValueError, match="not a Megatron MMIDIDX"):
        IndexedDataset(str(tmp_path / "bad"))
    (tmp_path / "cut.idx").write_bytes(idx[:-10])
    (tmp_path / "cut.bin").write_bytes((tmp_path / "synth.bin").read_bytes())
    with pytest.raises(ValueError, match="truncated"):
        IndexedDataset(str(tmp_path / "cut"))
    (tmp_path / "short.idx").write_bytes(idx)
    (tmp_path / "short.bin").write_bytes((tmp_path / "synth.bin").read_bytes()[:-2])
    with pytest.raises(ValueError, match="truncated or mismatched"):
        IndexedDataset(str(tmp_path / "short"))
    with pytest.raises(FileNotFoundError, match="prefix"):
        IndexedDataset(str(tmp_path / "nothing"))
    assert len(ds) > 0


def test_failed_build_leaves_no_files(tmp_path):
    with pytest.raises(RuntimeError):
        with IndexedDatasetBuilder(str(tmp_path / "x")) as b:
            b.add_sequence([1, 2, 3])
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


# ---- bad input -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content,message",
    [
        (b'{"text": "ok"}\n{"text": oops}\n', "line 2: not valid JSON"),
        (b'{"text": "ok"}\n{"body": "no text key"}\n', "line 2: no key 'text' (keys present: body)"),
        (b'{"text": "ok"}\n{"text": "bad \xff byte"}\n', "line 2, byte offset 29: not valid UTF-8"),
        (b'{"text": ""}\n\n{"text": "   "}\n', "the corpus is empty"),
    ],
)
def test_bad_input_messages(tmp_path, minilm, content, message):
    src = tmp_path / "in.jsonl"
    src.write_bytes(content)
    with pytest.raises(ValueError) as e:
        preprocess([str(src)], str(tmp_path / "out"), str(minilm / "vocab.txt"), show_progress=False)
    assert message in str(e.value) and "in.jsonl" in str(e.value)
    assert not any(p.suffix in (".bin", ".idx") for p in tmp_path.iterdir())


def test_missing_input_file(tmp_path, minilm):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        preprocess([str(tmp_path / "nope.jsonl")], str(tmp_path / "o"), str(minilm / "vocab.txt"), show_progress=False)


# ---- sentences -------------------------------------------------------------------------------------------------------
def test_sentence_splitter_rules():
    text = (
        'Mr. Smith paid $3.50 for it. "Really?" she asked. J. R. R. Tolkien wrote it, e.g. in 1937. '
        "It ended... Then more!\nA new line is whitespace.\n\nNew paragraph without period"
    )
    assert split_sentences(text) == [
        "Mr. Smith paid $3.50 for it.",
        '"Really?" she asked.',
        "J. R. R. Tolkien wrote it, e.g. in 1937.",
        "It ended...",
        "Then more!",
        "A new line is whitespace.",
        "New paragraph without period",
    ]
    assert split_sentences("One line\nand its continuation. Next") == ["One line\nand its continuation.", "Next"]
    assert split_sentences("") == [] and split_sentences("   \n ") == []


# ---- samples and masking -------------------------------------------------------------------------------------------
def _doc_of(token: int) -> int:
    return (token - 1000) // 30


@pytest.mark.parametrize("head", ["nsp", "sop"])
def test_pairs_labels_and_negatives(tmp_path, head):
    ds = _synthetic(tmp_path)
    samples = PretrainingSamples(ds, SPECIALS, max_seq_length=64, binary_head=head, seed=3)
    labels = []
    for i in range(len(samples)):
        s = samples.get(i, epoch=0)
        ids = s["input_ids"].tolist()
        assert ids[0] == 101 and ids[-1] == 102 and ids.count(102) == 2 and len(ids) <= 64
        sep = ids.index(102)
        a, b = ids[1:sep], ids[sep + 1 : -1]
        assert s["token_type_ids"].tolist() == [0] * (sep + 1) + [1] * (len(b) + 1)
        doc = int(samples.index[i, 0])
        labels.append(s["binary_label"])
        if head == "nsp" and s["binary_label"] == 1:
            assert {_doc_of(t) for t in b} != {doc} and all(_doc_of(t) == doc for t in a)
        else:
            assert {_doc_of(t) for t in a + b} == {doc}
    assert len(labels) > 500
    assert abs(np.mean(labels) - 0.5) < 0.02 * 2.5  # 50% +- 2% at ~1k samples is ~1.3 sigma; 5% bound is 3 sigma


def test_binary_label_rate_is_half_over_many_samples(tmp_path):
    ds = _synthetic(tmp_path, docs=800)
    samples = PretrainingSamples(ds, SPECIALS, max_seq_length=32, binary_head="nsp", seed=1)
    labels = [samples.get(i % len(samples), epoch=i // len(samples))["binary_label"] for i in range(6000)]
    assert abs(np.mean(labels) - 0.5) < 0.02


def test_short_sequences_and_single_segment(tmp_path):
    ds = _synthetic(tmp_path)
    samples = PretrainingSamples(ds, SPECIALS, max_seq_length=128, short_seq_prob=0.5, binary_head="none", seed=0)
    targets = samples.index[:, 3]
    assert 0.35 < np.mean(targets < 126) < 0.65
    s = samples.get(0)
    assert s["binary_label"] == -100 and s["input_ids"].tolist().count(102) == 1


def test_mask_statistics_over_100k_tokens(tmp_path):
    ds = _synthetic(tmp_path, docs=800)
    samples = PretrainingSamples(ds, SPECIALS, max_seq_length=128, binary_head="nsp", seed=0)
    stream = PretrainingStream([samples], _masker(), seed=0)
    special = {0, 100, 101, 102, 103}
    n_tokens = chosen = masked = random_ = kept = 0
    p = 0
    while n_tokens < 100_000:
        raw = samples.get(*stream.locate(p)[1:])
        s = stream[p]
        p += 1
        orig = raw["input_ids"]
        sel = s["labels"] != -100
        n_tokens += int(np.isin(orig, list(special), invert=True).sum())
        chosen += int(sel.sum())
        assert (s["labels"][sel] == orig[sel]).all() and not np.isin(orig[sel], list(special)).any()
        out = s["input_ids"][sel]
        masked += int((out == 103).sum())
        kept += int((out == orig[sel]).sum())
        rnd = out[(out != 103) & (out != orig[sel])]
        random_ += rnd.size
        assert not np.isin(rnd, list(special)).any() and not ((rnd >= 1) & (rnd < 999)).any()
        assert (s["input_ids"][~sel] == orig[~sel]).all()
    assert abs(chosen / n_tokens - 0.15) < 0.005
    # random replacements that hit the original token count as kept: 0.1 * P(same) is negligible here
    assert abs(masked / chosen - 0.8) < 0.01 and abs(random_ / chosen - 0.1) < 0.01 and abs(kept / chosen - 0.1) < 0.01


def test_whole_word_and_ngram_masking_never_split_words(tok):
    text = (
        "The antidisestablishmentarianism of unaffable Tolkienesque hobbits perplexed counterrevolutionaries "
        "while photosynthesizing xylophonists serenaded electroencephalographers near Llanfairpwllgwyngyll"
    )
    ids = np.array(tok(text)["input_ids"])
    tokens = tok.convert_ids_to_tokens(ids.tolist())
    word_of = np.array(tok(text).word_ids(), dtype=object)
    for ngram in (1, 3):
        masker = Masker.from_tokenizer(tok, whole_word_mask=True, max_ngram=ngram, mask_prob=0.3)
        for seed in range(200):
            _, labels = masker(ids, np.random.default_rng(seed))
            chosen = set(np.flatnonzero(labels != -100).tolist())
            assert chosen
            for w in set(word_of[list(chosen)]):
                positions = {i for i, x in enumerate(word_of) if x == w}
                assert positions <= chosen, (ngram, seed, [tokens[i] for i in positions])
    assert any(t.startswith("##") for t in tokens)


def test_determinism_and_dynamic_masking(tmp_path):
    ds = _synthetic(tmp_path)
    samples = PretrainingSamples(ds, SPECIALS, max_seq_length=64, seed=5)
    a = PretrainingStream([samples], _masker(), seed=5)
    b = PretrainingStream([PretrainingSamples(ds, SPECIALS, max_seq_length=64, seed=5)], _masker(), seed=5)
    for p in (0, 7, 123, len(a) + 7):
        x, y = a[p], b[p]
        assert all(np.array_equal(x[k], y[k]) for k in ("input_ids", "labels", "token_type_ids"))
    # The same sample in another epoch gets another mask.
    source, index, epoch = a.locate(3)
    later = next(q for q in range(len(a), 2 * len(a)) if a.locate(q)[1] == index)
    assert a.locate(later)[2] != epoch and not np.array_equal(a[3]["labels"], a[later]["labels"])
    # The index is cached beside the data and reused.
    assert list(tmp_path.glob("synth_samples_*.npy"))


def test_blend_split_and_parse():
    assert parse_data_path(["a"]) == [(1.0, "a")]
    assert parse_data_path(["7", "a", "3", "b"]) == [(0.7, "a"), (0.3, "b")]
    with pytest.raises(ValueError, match="weight"):
        parse_data_path(["a", "0.3", "b", "c"])
    assert split_ranges(1000, "949,50,1") == [(0, 949), (949, 999), (999, 1000)]
    assert split_ranges(10, "1,1") == [(0, 5), (5, 10), (10, 10)]
    which, kth = blend_indices([0.7, 0.3], 1000)
    assert abs((which == 0).sum() - 700) <= 1 and (kth[which == 1] == np.arange((which == 1).sum())).all()
    for n in (10, 100, 999):
        assert abs((which[:n] == 0).sum() - 0.7 * n) <= 1


def test_collate_padded_and_packed():
    samples = [
        {
            "input_ids": np.array([101, 5, 6, 102]),
            "token_type_ids": np.array([0, 0, 0, 0]),
            "labels": np.array([-100, 5, -100, -100]),
            "binary_label": 1,
        },
        {
            "input_ids": np.array([101, 7, 102]),
            "token_type_ids": np.array([0, 0, 1]),
            "labels": np.array([-100, -100, -100]),
            "binary_label": 0,
        },
    ]
    batch = collate_padded(samples, pad_id=0, pad_to_multiple_of=8)
    assert batch["input_ids"].tolist() == [[101, 5, 6, 102, 0, 0, 0, 0], [101, 7, 102, 0, 0, 0, 0, 0]]
    assert batch["attention_mask"].sum().item() == 7 and batch["next_sentence_label"].tolist() == [1, 0]
    assert batch["labels"][1].tolist() == [-100] * 8 and batch["mlm_positions"].tolist() == [1]
    packed = collate_packed(samples)
    assert packed["cu_seqlens"].tolist() == [0, 4, 7] and packed["max_seqlen"] == 4
    assert packed["position_ids"].tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert packed["input_ids"].tolist() == [101, 5, 6, 102, 101, 7, 102] and packed["mlm_positions"].tolist() == [1]


def _split_reference(text):
    """The splitter before it was made linear (copies the rest of the paragraph at every candidate end)."""
    import re

    from bertforge.data.sentences import _END, _STARTS_SENTENCE, _is_abbreviation

    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        start = 0
        for m in _END.finditer(paragraph):
            rest = paragraph[m.end() :]
            if not rest or not _STARTS_SENTENCE.match(rest):
                continue
            if m.group(1) == "." and _is_abbreviation(paragraph[start : m.start(1)]):
                continue
            piece = paragraph[start : m.end(2)].strip()
            if piece:
                sentences.append(piece)
            start = m.end()
        if paragraph[start:].strip():
            sentences.append(paragraph[start:].strip())
    return sentences


def test_linear_sentence_splitter_splits_as_before():
    import random

    rng = random.Random(7)
    words = [
        "Dr.",
        "Smith",
        "met",
        "J.",
        "R.",
        "Tolkien",
        "at",
        "3.14",
        "p.m.",
        "in",
        "the",
        "U.S.",
        "e.g.",
        "It",
        "was",
        "fine!",
        "Was",
        "it?",
        "yes.",
        "(Maybe)",
        '"Quoted."',
        "Mr.",
        "X.",
        "\n",
        "\n\n",
        "etc.",
        "1999.",
    ]
    for _ in range(200):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 60)))
        assert split_sentences(text) == _split_reference(text), text


def test_reader_rejects_corrupt_pointers_lengths_and_document_index(tmp_path):
    import struct

    _synthetic(tmp_path, docs=3)
    idx = bytearray((tmp_path / "synth.idx").read_bytes())
    data = (tmp_path / "synth.bin").read_bytes()
    n_seq, n_doc = struct.unpack("<QQ", idx[18:34])
    lengths_at, pointers_at = 34, 34 + 4 * n_seq
    docs_at = pointers_at + 8 * n_seq

    def variant(name, offset, fmt, value):
        bad = bytearray(idx)
        struct.pack_into(fmt, bad, offset, value)
        (tmp_path / f"{name}.idx").write_bytes(bytes(bad))
        (tmp_path / f"{name}.bin").write_bytes(data)
        return str(tmp_path / name)

    first_len = struct.unpack_from("<i", idx, lengths_at)[0]
    with pytest.raises(ValueError, match="sequence 1 points at byte"):
        IndexedDataset(variant("ptr", pointers_at + 8, "<q", 10**12))
    with pytest.raises(ValueError, match="negative length|truncated or mismatched"):
        IndexedDataset(variant("neg", lengths_at, "<i", -first_len))
    with pytest.raises(ValueError, match="document index"):
        IndexedDataset(variant("doc", docs_at + 8, "<q", n_seq + 5))


def test_a_new_build_removes_what_a_killed_one_left(tmp_path):
    from bertforge.data.indexed import IndexedDatasetBuilder

    stale = tmp_path / ".out.bin.999999999.abc"  # no such pid
    stale.write_bytes(b"partial")
    (tmp_path / "out.idx.tmp").write_bytes(b"partial")
    with IndexedDatasetBuilder(str(tmp_path / "out")) as b:
        b.add_document([[1, 2, 3]])
        b.finalize()
    assert not stale.exists() and not (tmp_path / "out.idx.tmp").exists()
    assert len(IndexedDataset(str(tmp_path / "out"))) == 1


def test_python_docs_are_prose_documents():
    from bertforge.data.corpus import _CODE_LINE, python_docs

    docs = list(python_docs(max_docs=40))
    assert len(docs) == 40 and all(len(d) >= 200 for d in docs)
    assert not any(_CODE_LINE.match(line) for d in docs for line in d.splitlines())  # prompts and calls dropped


def test_docstring_task_labels_docstrings_with_their_package():
    """The main job's fine-tuning demo data: balanced classes of standard-library packages, none a left-out one."""
    from bertforge.data.corpus import NOT_FOR_THE_TASK, docstring_task

    rows = docstring_task(classes=4, per_class=30, min_chars=80)
    counts = {}
    for r in rows:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    assert len(counts) == 4 and set(counts.values()) == {30} and not set(counts) & NOT_FOR_THE_TASK
    assert all(len(r["text"]) >= 80 for r in rows) and len({r["text"] for r in rows}) > 100
    import importlib.util

    assert all(importlib.util.find_spec(name) is not None for name in counts)  # real, importable packages
    assert docstring_task(classes=4, per_class=30) == rows  # the same task every time
