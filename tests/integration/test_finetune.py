"""Fine-tuning on a slice of real data from all-MiniLM-L6-v2 (skips without the data or the package)."""

from __future__ import annotations

import json

import pytest

from bertforge.config import FinetuneConfig
from bertforge.model import BertForSequenceClassification
from bertforge.training.finetune import finetune_classification
from tests.conftest import read_predictions


@pytest.mark.parametrize("mode", ["full", "freeze", "lora"])
def test_sst2_slice(minilm, data_dir, tmp_path, mode):
    sst = data_dir / "glue" / "SST-2"
    cfg = FinetuneConfig.build(
        epochs=1,
        batch_size=16,
        max_length=48,
        lr=1e-4 if mode != "full" else 5e-5,
        max_train_examples=96,
        freeze_encoder=mode == "freeze",
        lora_r=4 if mode == "lora" else None,
    )
    result = finetune_classification(
        str(minilm), str(sst / "train.tsv"), str(sst / "dev.tsv"), str(tmp_path), cfg=cfg, show_progress=False
    )
    assert "matthews" in result and "f1" in result
    preds = read_predictions(tmp_path / "predictions_validation.jsonl")
    assert len(preds) == 872  # SST-2 dev, every sentence predicted
    assert result["accuracy"] == pytest.approx(sum(p["prediction"] == p["label"] for p in preds) / len(preds))
    if mode == "freeze":
        assert result["trainable_parameters"] == 384 * 2 + 2  # the head alone
    if mode == "lora":
        assert result["trainable_parameters"] == 6 * 2 * (4 * 384 + 384 * 4) + 384 * 2 + 2
    record = next(r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "epoch" in r)
    assert record["epoch"] == 1 and "eval_accuracy" in record
    best = BertForSequenceClassification.from_pretrained(tmp_path / "best")
    assert best.config.id2label == {0: "0", 1: "1"} and not best.load_report.missing


def test_finetune_command(minilm, data_dir, tmp_path, capsys):
    from bertforge.cli.main import main

    sst = data_dir / "glue" / "SST-2"
    assert (
        main(
            [
                "finetune",
                "classification",
                "--model",
                str(minilm),
                "--train",
                str(sst / "train.tsv"),
                "--validation",
                str(sst / "dev.tsv"),
                "--output",
                str(tmp_path),
                "--epochs",
                "1",
                "--max-train-examples",
                "32",
                "--batch-size",
                "16",
                "--freeze-encoder",
            ]
        )
        == 0
    )
    assert '"trainable_parameters": 770' in capsys.readouterr().out
