"""Fine-tuning readers: tables, CoNLL (IOB1 -> IOB2), SQuAD, with file/line errors; real files when present."""

from __future__ import annotations

import pytest

from bertforge.tasks.readers import read_conll, read_squad, read_table


def test_tables(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text('sentence\tlabel\nit\'s "good" \t1\nbad\t0\n')
    rows = read_table(str(tsv), "sentence", "label")
    assert [(r["text"], r["label"]) for r in rows] == [('it\'s "good" ', "1"), ("bad", "0")]
    csv_ = tmp_path / "t.csv"
    csv_.write_text('a,b,y\n"x, y",z,pos\n')
    assert read_table(str(csv_), "a", "y", "b")[0] == {"text": "x, y", "text_pair": "z", "label": "pos", "line": 2}
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"t": "hi", "y": 2}\n{"t": "yo"}\n')
    with pytest.raises(ValueError, match="line 2: no field 'y'"):
        read_table(str(jl), "t", "y")
    with pytest.raises(ValueError, match="no column 'text'"):
        read_table(str(tsv), "text", "label")
    short = tmp_path / "s.tsv"
    short.write_text("a\tb\nonly\n")
    with pytest.raises(ValueError, match="line 2: 1 columns"):
        read_table(str(short), "a", "b")
    cola = tmp_path / "cola.tsv"
    cola.write_text("src\t1\t\tThe book.\nsrc\t0\t*\tBook the.")
    assert [r["label"] for r in read_table(str(cola), 3, 1, has_header=False)] == ["1", "0"]


def test_conll(tmp_path):
    f = tmp_path / "x.conll"
    f.write_text(
        "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\n\n"
        "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n"
    )
    sents = read_conll(str(f))
    assert sents[0]["tokens"] == ["EU", "rejects", "German"] and sents[0]["tags"] == ["B-ORG", "O", "B-MISC"]
    assert sents[1]["tags"] == ["B-PER", "I-PER"]
    bad = tmp_path / "bad.conll"
    bad.write_text("EU NNP X-ORG\n")
    with pytest.raises(ValueError, match="line 1: 'X-ORG' is not an IOB tag"):
        read_conll(str(bad))


def test_real_files(data_dir):
    sents = read_conll(str(data_dir / "conll2003" / "eng.testb"))
    assert len(sents) == 3453 and sum(len(s["tokens"]) for s in sents) == 46435
    from bertforge.tasks.metrics import entity_spans

    assert sum(len(entity_spans(s["tags"])) for s in sents) == 5648
    rows = read_table(str(data_dir / "glue" / "SST-2" / "dev.tsv"), "sentence", "label")
    assert len(rows) == 872 and sum(r["label"] == "1" for r in rows) == 444
    mrpc = read_table(str(data_dir / "glue" / "MRPC" / "dev.tsv"), "#1 String", "Quality", "#2 String")
    assert len(mrpc) == 408
    squad = read_squad(str(data_dir / "squad" / "dev-v1.1.json"))
    assert len(squad) == 10570 and sum(len(e.answers) for e in squad) == 34726


def test_a_null_label_is_refused_with_its_line(tmp_path):
    from bertforge.tasks.classification import classification_labels

    path = tmp_path / "t.jsonl"
    path.write_text('{"sentence": "fine", "label": "pos"}\n{"sentence": "x", "label": null}\n')
    rows = read_table(str(path), "sentence", "label")
    with pytest.raises(ValueError, match=r"t.jsonl: line 2: the label is missing \(null\)"):
        classification_labels(rows, str(path), "single", None)
