"""Data in the formats people have: TSVs written by pandas / datasets (quoted), JSON arrays, Parquet and Arrow with
the datasets layouts for classification, NER (tokens + ner_tags ids) and QA (squad rows); and the one-line errors
that malformed files get. A fuzz test checks that any input gives a result or a ValueError naming the place."""

from __future__ import annotations

import csv
import json

import pytest

from bertforge.tasks.readers import read_conll, read_squad, read_table

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

TEXTS = ['found "extensive" additional evidence', "plain text", 'a "quote" and\ta tab', "comma, here"]


def test_a_quoted_tsv_is_unquoted_and_a_raw_glue_tsv_is_kept(tmp_path):
    quoted = tmp_path / "q.tsv"
    with open(quoted, "w", newline="") as fh:  # what pandas / datasets to_csv(sep="\t") writes
        writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["sentence", "label"])
        for i, t in enumerate(TEXTS):
            writer.writerow([t, i % 2])
    assert [r["text"] for r in read_table(str(quoted), "sentence", "label")] == TEXTS
    raw = tmp_path / "glue.tsv"  # GLUE: tabs only, quotes are text
    raw.write_text('sentence\tlabel\nhe said "no\t0\n"quoted" start\t1\n')
    assert [r["text"] for r in read_table(str(raw), "sentence", "label")] == ['he said "no', '"quoted" start']


def test_json_arrays_parquet_and_arrow_tables(tmp_path):
    rows = [{"sentence1": t, "label": i % 2} for i, t in enumerate(TEXTS)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    got = read_table(str(tmp_path / "a.json"), "sentence1", "label")
    assert [r["text"] for r in got] == TEXTS and [r["line"] for r in got] == [1, 2, 3, 4]
    table = pa.Table.from_pylist(rows)
    info = {"info": {"features": {"label": {"names": ["neg", "pos"], "_type": "ClassLabel"}}}}
    table = table.replace_schema_metadata({b"huggingface": json.dumps(info).encode()})
    pq.write_table(table, tmp_path / "t.parquet")
    got = read_table(str(tmp_path / "t.parquet"), "sentence1", "label")
    assert [r["label"] for r in got] == ["neg", "pos", "neg", "pos"]  # class ids named by the dataset's features
    disk = tmp_path / "saved"  # datasets' save_to_disk layout
    disk.mkdir()
    with pa.OSFile(str(disk / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (disk / "dataset_info.json").write_text(json.dumps(info["info"]))
    assert [r["label"] for r in read_table(str(disk), "sentence1", "label")] == ["neg", "pos", "neg", "pos"]


def test_ner_and_qa_rows_in_the_datasets_layouts(tmp_path):
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    rows = [{"tokens": ["Peter", "Blackburn", "in", "Brussels"], "ner_tags": [1, 2, 0, 3]}]
    table = pa.Table.from_pylist(rows).replace_schema_metadata(
        {
            b"huggingface": json.dumps(
                {"info": {"features": {"ner_tags": {"feature": {"names": names, "_type": "ClassLabel"}}}}}
            ).encode()
        }
    )
    pq.write_table(table, tmp_path / "ner.parquet")
    assert read_conll(str(tmp_path / "ner.parquet"))[0]["tags"] == ["B-PER", "I-PER", "O", "B-LOC"]
    (tmp_path / "ner.jsonl").write_text(json.dumps({"tokens": ["EU"], "ner_tags": ["S-ORG"]}) + "\n")
    assert read_conll(str(tmp_path / "ner.jsonl"))[0]["tags"] == ["B-ORG"]
    context = "Paris is the capital of France."
    squad = [
        {
            "id": "q1",
            "title": "t",
            "context": context,
            "question": "Capital?",
            "answers": {"text": ["Paris"], "answer_start": [0]},
        },
        {"id": "q2", "context": context, "question": "None?", "answers": {"text": [], "answer_start": []}},
    ]
    (tmp_path / "sq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in squad))
    examples = read_squad(str(tmp_path / "sq.jsonl"))
    assert examples[0].answers == ["Paris"] and examples[1].is_impossible


@pytest.mark.parametrize(
    "content, name, message",
    [
        (
            '{"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "abc", "qas": [{"id": "1", '
            '"question": "q", "answers": [{"text": "b", "answer_start": "1"}]}]}]}]}',
            "s.json",
            "question 0: answer_start must be an integer, got '1'",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "abc", "qas": [{"question": "q", "answers": []}]}]}]}',
            "s.json",
            "'id' is missing",
        ),
        (
            '{"context": "abc", "question": "q", "id": "x", "answers": {"text": ["b"]}}\n',
            "s.jsonl",
            "1 answer texts but 0 answer_start values",
        ),
    ],
)
def test_malformed_squad_gets_one_line(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_squad(str(path))


def test_malformed_tables_get_one_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"sentence": "a", "label": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"t.jsonl: line 2: expected an object"):
        read_table(str(path), "sentence", "label")
    latin = tmp_path / "l.tsv"
    latin.write_bytes("sentence\tlabel\ncaf\xe9\t1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"l.tsv: not UTF-8 text"):
        read_table(str(latin), "sentence", "label")
    big = tmp_path / "big.tsv"
    big.write_text("sentence\tlabel\n" + "x" * 200_000 + "\t1\n")  # over the csv module's 131,072 limit
    assert len(read_table(str(big), "sentence", "label")[0]["text"]) == 200_000


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_text = st.text(alphabet=st.sampled_from('ab "\t\n,{}[]:-BIOSE0123\\'), max_size=120)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_text, suffix=st.sampled_from([".tsv", ".csv", ".jsonl", ".json", ".conll"]))
def test_fuzz_readers_give_a_result_or_a_one_line_error(tmp_path, content, suffix):
    path = tmp_path / f"f{suffix}"
    path.write_text(content)
    for read in (
        lambda: read_table(str(path), "sentence", "label"),
        lambda: read_conll(str(path)),
        lambda: read_squad(str(path)),
    ):
        try:
            read()
        except ValueError as e:  # one line naming the file
            assert str(path) in str(e) and "\n" not in str(e).strip()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    section=st.sampled_from(["data", "optim", "train", "model"]),
    key=st.sampled_from(
        [
            "lr",
            "bf16",
            "micro_batch_size",
            "seq_length",
            "hidden_size",
            "split",
            "data_path",
            "hidden_dropout_prob",
            "lr_warmup_fraction",
            "nope",
        ]
    ),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 5000),
        st.floats(allow_nan=True),
        st.text(max_size=8),
        st.lists(st.text(max_size=4), max_size=3),
    ),
)
def test_fuzz_config_values_give_a_config_or_a_one_line_error(section, key, value):
    from bertforge.config import PretrainConfig

    try:
        PretrainConfig().merged({section: {key: value}})
    except ValueError as e:
        assert "\n" not in str(e)
