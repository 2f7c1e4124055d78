"""RobertaTokenizer against transformers' RoBERTa tokenizer built from the same vocab.json and merges.txt: ids,
offsets, pairs, truncation with overflow and stride, word ids; real text (WikiText-2 from the benchmark data, or
Python's own documentation where that is absent) and hard cases."""

from __future__ import annotations

import json

import pytest

from bertforge.tokenization import RobertaTokenizer, train_vocab
from tests.conftest import DATA_DIR
from tests.parity.test_tokenizer_parity import HARD_CASES

transformers = pytest.importorskip("transformers")

MORE_CASES = [
    "  leading spaces and trailing ones  ",
    "Hello world, it's 2026! Ünïcödé 😀 test.",
    "a <mask>.",
    "<s> literal specials </s> inside <pad> text",
    "Newlines\n\nand\ttabs",
]


def fallback_lines() -> list[str]:
    """Real English text that every Python ships (pydoc's topics), for machines without the benchmark data."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[name] for name in sorted(topics))
    return [x.strip() for x in text.splitlines() if len(x.strip()) > 40][:3000]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """A 3,000-token byte-level BPE trained on WikiText-2 valid (or Python's documentation), its files, and real
    lines."""
    out = tmp_path_factory.mktemp("bpe")
    wiki = DATA_DIR / "wikitext-2" / "valid.txt"
    if wiki.exists():
        tok = train_vocab([wiki], vocab_size=3000, model="bpe", output=out, show_progress=False)
        lines = [x.strip() for x in wiki.read_text(encoding="utf-8").splitlines() if len(x.strip()) > 40][:300]
    else:
        text = fallback_lines()
        tok = train_vocab(texts=text, vocab_size=3000, model="bpe", output=out, show_progress=False)
        lines = text[:300]
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    merges = [tuple(x.split(" ")) for x in (out / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]]
    return tok, out, vocab, merges, lines


def reference(vocab, merges, **kw):
    return transformers.RobertaTokenizer(vocab=vocab, merges=merges, **kw)


def same(ours, theirs):
    assert ours["input_ids"] == theirs["input_ids"]
    assert [tuple(o) for o in ours["offset_mapping"]] == [tuple(o) for o in theirs["offset_mapping"]]
    assert ours["attention_mask"] == theirs["attention_mask"]


def test_trained_vocabulary_puts_robertas_special_tokens_first(bpe):
    tok, out, vocab, merges, _ = bpe
    assert [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [0, 1, 2, 3, 4]
    assert tok.pad_token_id == 1 and tok.cls_token == "<s>" and tok.sep_token == "</s>" and len(merges) > 100


def test_texts_and_pairs_match_transformers(bpe):
    _, out, vocab, merges, lines = bpe
    ours = RobertaTokenizer(out / "vocab.json", out / "merges.txt", mask_lstrip=False)  # as transformers builds it
    theirs = reference(vocab, merges)
    texts = HARD_CASES + MORE_CASES + lines
    for text in texts:
        same(ours(text, return_offsets_mapping=True), theirs(text, return_offsets_mapping=True))
    for a, b in zip(texts[::2], texts[1::2]):
        same(ours(a, b, return_offsets_mapping=True), theirs(a, b, return_offsets_mapping=True))
    batch = dict(padding=True, truncation=True, max_length=24, return_offsets_mapping=True)
    same(ours(lines[:8], **batch), theirs(lines[:8], **batch))
    prefixed_ours = RobertaTokenizer(out / "vocab.json", out / "merges.txt", add_prefix_space=True, mask_lstrip=False)
    prefixed = reference(vocab, merges, add_prefix_space=True)
    for text in MORE_CASES + lines[:20]:
        same(prefixed_ours(text, return_offsets_mapping=True), prefixed(text, return_offsets_mapping=True))


def test_overflow_windows_with_stride_match_transformers(bpe):
    """QA's windows: the question whole, the context cut into overlapping windows."""
    _, out, vocab, merges, lines = bpe
    ours = RobertaTokenizer(out / "vocab.json", out / "merges.txt", mask_lstrip=False)
    theirs = reference(vocab, merges)
    question, context = "What was trained longer?", " ".join(lines[:6])
    kw = dict(
        truncation="only_second", max_length=48, stride=12, return_overflowing_tokens=True, return_offsets_mapping=True
    )
    a, b = ours(question, context, **kw), theirs(question, context, **kw)
    assert len(a["input_ids"]) > 2
    same(a, b)
    assert a["overflow_to_sample_mapping"] == b["overflow_to_sample_mapping"]
    for i in range(len(a["input_ids"])):
        assert a.sequence_ids(i) == b.sequence_ids(i)


def test_word_ids_of_pre_split_words_match_transformers_with_a_prefix_space(bpe):
    """NER's words: each word gets RoBERTa's leading space (transformers asks for add_prefix_space=True; ours
    uses it for word lists by itself)."""
    _, out, vocab, merges, lines = bpe
    ours = RobertaTokenizer(out / "vocab.json", out / "merges.txt", mask_lstrip=False)
    theirs = reference(vocab, merges, add_prefix_space=True)
    for line in lines[:30] + ["Ünïcödé 😀 words", "  spaced   out  "]:
        words = line.split()
        if not words:
            continue
        a = ours(words, is_split_into_words=True, return_offsets_mapping=True)
        b = theirs(words, is_split_into_words=True, return_offsets_mapping=True)
        same(a, b)
        assert a.word_ids() == b.word_ids()


def test_saved_directory_loads_in_transformers_with_robertas_mask(bpe, tmp_path):
    """Saved files load in transformers (AutoTokenizer) and give the same ids; <mask> takes the space before it, as
    in roberta-base's files, and decoding gives the text back."""
    tok, *_ = bpe
    tok.save_pretrained(tmp_path)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    again = RobertaTokenizer.from_pretrained(tmp_path)
    for text in ["The <mask> of it.", "a <mask>.", *MORE_CASES]:
        same(again(text, return_offsets_mapping=True), auto(text, return_offsets_mapping=True))
    assert again.tokenize("a <mask>.") == ["a", "<mask>", "."]
    text = "Ünïcödé 😀 and  spaces"
    assert again.decode(again(text)["input_ids"], skip_special_tokens=True) == text
    assert again.convert_tokens_to_string(again.tokenize(text)) == text


def test_load_tokenizer_finds_a_roberta_directory(bpe, tmp_path):
    from bertforge.tokenization import BertTokenizer, load_tokenizer

    tok, out, *_ = bpe
    assert isinstance(load_tokenizer(out), RobertaTokenizer)
    with pytest.raises(ValueError, match=r"byte-level BPE vocabulary .* bertforge\.load_tokenizer"):
        BertTokenizer.from_pretrained(out)  # the WordPiece class loads WordPiece only
    (tmp_path / "merges.txt").write_text("#version: 0.2\nab c d\n")
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(ValueError, match="merges.txt: line 2: a merge is two tokens"):
        load_tokenizer(tmp_path)


def test_a_directory_with_only_tokenizer_json_loads(bpe, tmp_path):
    tok, out, *_ = bpe
    (tmp_path / "tokenizer.json").write_text((out / "tokenizer.json").read_text(encoding="utf-8"), encoding="utf-8")
    from bertforge.tokenization import load_tokenizer

    alone = load_tokenizer(tmp_path)
    assert isinstance(alone, RobertaTokenizer) and alone.mask_lstrip == tok.mask_lstrip
    for text in MORE_CASES:
        assert alone(text)["input_ids"] == tok(text)["input_ids"]
