"""`bertforge evaluate glue` on slices of the local GLUE data with a tiny random model: every task with a train file
is fine-tuned and scored in GLUE's metrics, QNLI (dev only here) is reported as skipped, --scratch adds the
from-scratch twin and --baseline tfidf a TF-IDF model."""

from __future__ import annotations

import json

import pytest
import torch

from bertforge.cli.main import main
from bertforge.evaluation import NARROW_LRS, WIDE_LRS, GlueSettings, default_lrs, evaluate_glue
from tests.conftest import tiny_config


def test_glue_evaluation_on_slices(tiny_checkpoint, data_dir, tmp_path, capsys):
    settings = GlueSettings(epochs=1, lrs=(1e-4, 1e-3), max_train_examples=48, seeds=2, batch_size=16, max_length=48)
    record = evaluate_glue(
        str(tiny_checkpoint),
        str(data_dir / "glue"),
        str(tmp_path / "g"),
        ("cola", "mrpc", "stsb", "qnli"),
        settings,
        scratch=True,
        show_progress=False,
        baseline="tfidf",
    )
    summary = record["summary"]
    assert set(summary) == {"pretrained", "scratch", "tfidf"}
    assert set(summary["tfidf"]["tasks"]) == {"cola", "mrpc", "stsb"}  # one fit each, on the same 48 rows
    assert (tmp_path / "g" / "glue.md").read_text().splitlines()[0].endswith("| tfidf |")
    assert set(summary["pretrained"]["tasks"]) == {"cola", "mrpc", "stsb"}
    assert "qnli" in record["skipped"] and "train.tsv" in record["skipped"]["qnli"]
    mrpc = summary["pretrained"]["tasks"]["mrpc"]
    assert set(mrpc["metrics"]) == {"f1", "accuracy"} and mrpc["seeds"] == 2
    assert mrpc["score"] == (mrpc["metrics"]["f1"]["median"] + mrpc["metrics"]["accuracy"]["median"]) / 2
    assert set(summary["scratch"]["tasks"]["stsb"]["metrics"]) == {"pearson", "spearman"}
    assert len(record["runs"]) == 3 * 2 * 2 * 2 + 3  # tasks x systems x learning rates x seeds, + the baseline
    for system, task in (("pretrained", "mrpc"), ("scratch", "cola")):
        row = summary[system]["tasks"][task]
        first = row["metrics"][next(iter(row["metrics"]))]["median"]
        assert set(row["by_lr"]) == {"0.0001", "0.001"} and first == max(row["by_lr"].values())
        assert row["by_lr"][f"{row['lr']:g}"] == first  # the reported rate is the best one's
    md = (tmp_path / "g" / "glue.md").read_text()
    assert "| CoLA | matthews |" in md and "| average | GLUE |" in md and "QNLI: skipped" in md
    assert (tmp_path / "g" / "glue.png").exists() and json.loads((tmp_path / "g" / "glue.json").read_text())["runs"]

    # the same output again, with a task more and one already done: only the missing runs are made, the rest kept
    glue, out = str(data_dir / "glue"), str(tmp_path / "g")
    more = evaluate_glue(str(tiny_checkpoint), glue, out, ("mrpc", "rte"), settings, show_progress=False)
    assert len(more["runs"]) == len(record["runs"]) + 2 * 2  # rte's rates x seeds; mrpc's runs not made again
    assert more["runs"][: len(record["runs"])] == record["runs"]
    assert set(more["summary"]) == {"pretrained", "scratch", "tfidf"}  # the earlier runs are still reported
    assert set(more["summary"]["pretrained"]["tasks"]) == {"cola", "mrpc", "stsb", "rte"}
    assert "| RTE | accuracy |" in (tmp_path / "g" / "glue.md").read_text()
    other = GlueSettings(epochs=2, lrs=(1e-4, 1e-3), max_train_examples=48, seeds=2, batch_size=16, max_length=48)
    with pytest.raises(ValueError, match=r"holds a GLUE evaluation with other settings: epochs 1 \(now 2\)"):
        evaluate_glue(str(tiny_checkpoint), glue, out, ("rte",), other)
    assert json.loads((tmp_path / "g" / "glue.json").read_text())["runs"] == more["runs"]  # untouched


def test_the_learning_rate_grid_follows_the_width():
    """bert-base's width and wider: the BERT paper's grid; narrower: the top of the miniatures' grid and 1e-3."""
    assert default_lrs(768) == default_lrs(1024) == WIDE_LRS == (2e-5, 3e-5, 5e-5)
    assert default_lrs(128) == default_lrs(767) == NARROW_LRS == (1e-4, 3e-4, 1e-3)


def test_glue_command(tmp_path, data_dir, capsys):
    from bertforge.model import BertModel
    from bertforge.tokenization import train_vocab

    lines = (data_dir / "glue" / "RTE" / "train.tsv").read_text().splitlines()[1:200]
    tok = train_vocab(texts=[x.split("\t")[1] for x in lines], vocab_size=300, output=tmp_path / "m")
    torch.manual_seed(0)
    BertModel(tiny_config(vocab_size=tok.vocab_size, max_position_embeddings=64)).save_pretrained(tmp_path / "m")
    argv = ["evaluate", "glue", "--model", str(tmp_path / "m"), "--data-dir", str(data_dir / "glue"), "--output"]
    argv += [str(tmp_path / "o"), "--tasks", "rte", "--seeds", "1", "--epochs", "1", "--max-train-examples", "32"]
    assert main([*argv, "--max-length", "48", "--lr", "2e-4"]) == 0
    out = capsys.readouterr().out
    assert "| RTE | accuracy |" in out and "lr 0.0002)" in out and "report:" in out
    assert json.loads((tmp_path / "o" / "glue.json").read_text())["settings"]["lrs"] == [2e-4]
    assert main([*argv, "--lr", "1e-4,fast"]) == 1
    assert "--lr 1e-4,fast: give learning rates as numbers" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "glue",
                "--model",
                str(tmp_path / "m"),
                "--output",
                str(tmp_path / "x"),
                "--tasks",
                "mnli",
                "--data-dir",
                str(data_dir / "glue"),
            ]
        )
        == 1
    )
    assert "unknown GLUE task(s) mnli" in capsys.readouterr().err
