"""Exact parity of BertTokenizer with transformers' BertTokenizerFast built from the same vocab.txt."""

from __future__ import annotations

import json
import random

import pytest

from bertforge.tokenization import BertTokenizer

transformers = pytest.importorskip("transformers")

HARD_CASES = [
    "",
    "   ",
    "\t\n",
    "Héllo Wörld, naïve café résumé — Ångström!",
    "日本語のテキストと中文字符混在。",
    "Emoji 🤗🚀 and flags 🇫🇷 with text",
    "control\x00chars\x07here\u200b zero\u200dwidth\ufeffBOM",
    "a" * 150,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "!!!??...,,,;;;---",
    "Mixed CASE and numbers 3.14159 and 1,000,000",
    "[MASK] is a special token, [CLS] too [SEP]",
    "tab\tseparated\tand\r\nwindows newline",
    "don't can't won't it's",
    "ÀÉÎÕÜ àéîõü ßæøå",
    "x" * 99 + " " + "y" * 101,
    "Ǆemal and ﬁne ligatures",
    "Κείμενο στα ελληνικά και русский текст",
]


def _reference(vocab_file, tmp_path, lowercase=True):
    ref_dir = tmp_path / ("ref_uncased" if lowercase else "ref_cased")
    ref_dir.mkdir(exist_ok=True)
    (ref_dir / "vocab.txt").write_bytes(vocab_file.read_bytes())
    (ref_dir / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lowercase, "model_max_length": 512}))
    return transformers.BertTokenizerFast.from_pretrained(ref_dir)


def _real_texts(data_dir, n=60):
    texts = []
    squad = json.loads((data_dir / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    for article in squad["data"][:6]:
        for para in article["paragraphs"][:4]:
            texts.append(para["context"])
            texts.extend(qa["question"] for qa in para["qas"][:2])
    sst = (data_dir / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:40]
    texts.extend(line.split("\t")[0] for line in sst)
    emma = (data_dir / "gutenberg" / "austen-emma.txt").read_text(encoding="latin-1")
    texts.extend(p for p in emma.split("\n\n")[50:80] if p.strip())
    caesar = (data_dir / "gutenberg" / "shakespeare-caesar.txt").read_bytes().decode("latin-1")
    texts.extend(caesar.split("\n\n")[20:30])
    return texts[: n * 3]


KEYS = [
    "input_ids",
    "token_type_ids",
    "attention_mask",
    "offset_mapping",
    "special_tokens_mask",
    "overflow_to_sample_mapping",
]


def _compare(ours, ref, *args, **kwargs):
    a = ours(*args, return_offsets_mapping=True, return_special_tokens_mask=True, **kwargs)
    b = ref(*args, return_offsets_mapping=True, return_special_tokens_mask=True, **kwargs)
    for key in KEYS:
        if key in b:
            va, vb = a[key], b[key]
            va = (
                [[tuple(x) for x in row] for row in va]
                if key == "offset_mapping" and va and isinstance(va[0], list)
                else va
            )
            if key == "offset_mapping" and va and isinstance(va[0], tuple):
                va = [tuple(x) for x in va]
            vb = (
                [[tuple(x) for x in row] for row in vb]
                if key == "offset_mapping" and vb and isinstance(vb[0], list)
                else ([tuple(x) for x in vb] if key == "offset_mapping" else vb)
            )
            assert va == vb, (key, args, kwargs)
    batched = isinstance(a["input_ids"][0], list)
    for i in range(len(a["input_ids"]) if batched else 1):
        assert a.word_ids(i) == b.word_ids(i)
        assert a.sequence_ids(i) == b.sequence_ids(i)


@pytest.fixture
def vocab_file(minilm):
    return minilm / "vocab.txt"


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_hard_cases_single_and_pairs(vocab_file, tmp_path, lowercase):
    ours = BertTokenizer(vocab_file, lowercase=lowercase)
    ref = _reference(vocab_file, tmp_path, lowercase)
    for text in HARD_CASES:
        _compare(ours, ref, text)
        _compare(ours, ref, text, "second segment, with punctuation!")
    _compare(ours, ref, HARD_CASES)
    _compare(ours, ref, HARD_CASES, HARD_CASES[::-1], padding=True)
    assert ours.decode(ours("Hello, world!")["input_ids"]) == ref.decode(ref("Hello, world!")["input_ids"])


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_real_text_all_modes(vocab_file, tmp_path, data_dir, lowercase):
    ours = BertTokenizer(vocab_file, lowercase=lowercase)
    ref = _reference(vocab_file, tmp_path, lowercase)
    texts = _real_texts(data_dir)
    rng = random.Random(0)
    pairs = [texts[rng.randrange(len(texts))] for _ in texts]
    _compare(ours, ref, texts)
    _compare(ours, ref, texts, padding=True)
    _compare(ours, ref, texts, padding="max_length", truncation=True, max_length=64)
    _compare(ours, ref, texts, padding=True, pad_to_multiple_of=8)
    _compare(ours, ref, texts, max_length=40)
    for strategy in ("longest_first", "only_first", "only_second"):
        kwargs = dict(truncation=strategy, max_length=96, padding="longest")
        if strategy == "only_first":  # only the first text is cut, so the second must fit: give short seconds
            _compare(ours, ref, texts, [t[:60] for t in pairs], **kwargs)
        elif strategy == "only_second":
            _compare(ours, ref, [t[:60] for t in pairs], texts, **kwargs)
        else:
            _compare(ours, ref, texts, pairs, **kwargs)
    # Overflowing windows with a stride: the basis of QA (question first, context windows) and long-text NER.
    questions = [t[:80] for t in pairs]
    _compare(
        ours,
        ref,
        questions,
        texts,
        truncation="only_second",
        max_length=64,
        stride=16,
        return_overflowing_tokens=True,
        padding="max_length",
    )
    _compare(ours, ref, texts, truncation=True, max_length=32, stride=8, return_overflowing_tokens=True)
    _compare(ours, ref, texts[0], truncation=True, max_length=32, stride=8, return_overflowing_tokens=True)


def test_split_into_words_and_tensors(vocab_file, tmp_path):
    ours = BertTokenizer(vocab_file)
    ref = _reference(vocab_file, tmp_path)
    words = [
        ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
        ["Peter", "Blackburn"],
        ["S.", "Korea", "'s", "Kim", "Dae-jung", "supercalifragilistic"],
    ]
    _compare(ours, ref, words, is_split_into_words=True, padding=True)
    _compare(ours, ref, words[0], is_split_into_words=True)
    _compare(
        ours,
        ref,
        words,
        is_split_into_words=True,
        truncation=True,
        max_length=6,
        stride=2,
        return_overflowing_tokens=True,
    )
    a = ours(["a b c", "d"], padding=True, return_tensors="pt")
    b = ref(["a b c", "d"], padding=True, return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert a[key].tolist() == b[key].tolist() and a[key].dtype == b[key].dtype


def test_save_pretrained_loads_in_transformers(vocab_file, tmp_path):
    ours = BertTokenizer(vocab_file, lowercase=True)
    ours.save_pretrained(tmp_path / "saved")
    ref = transformers.BertTokenizerFast.from_pretrained(tmp_path / "saved")
    again = BertTokenizer.from_pretrained(tmp_path / "saved")
    for text in HARD_CASES + ["The [MASK] sat on the mat."]:
        assert ref(text)["input_ids"] == ours(text)["input_ids"] == again(text)["input_ids"]
    assert again.lowercase and again.model_max_length == 512
    cased = BertTokenizer(vocab_file, lowercase=False)
    cased.save_pretrained(tmp_path / "cased")
    ref_cased = transformers.BertTokenizerFast.from_pretrained(tmp_path / "cased")
    assert ref_cased("Hello World")["input_ids"] == cased("Hello World")["input_ids"]
    assert BertTokenizer.from_pretrained(tmp_path / "cased").lowercase is False
