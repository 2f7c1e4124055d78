"""Every strategy through the fine-tuning driver on slices of real data with a tiny random BERT: the best epoch
reloaded from its artefact scores what training measured; gradual unfreezing keeps the announced layers; pipelines
switch adapters on one loaded base."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from bertforge import load_model, pipeline
from bertforge.config import FinetuneConfig
from bertforge.model import BertForSequenceClassification, BertForTokenClassification
from bertforge.strategies import from_adapter
from bertforge.training.finetune import finetune_classification, finetune_ner, finetune_qa
from tests.integration.test_finetune_tasks import FAST, squad_slice


def _sst(data_dir, tmp_path, n=64):
    """A small SST-2 training file and validation file (the first n rows of each)."""
    sst = data_dir / "glue" / "SST-2"
    for name in ("train", "dev"):
        lines = (sst / f"{name}.tsv").read_text().splitlines()[: n + 1]
        (tmp_path / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path / "train.tsv", tmp_path / "dev.tsv"


@pytest.mark.parametrize("strategy", ["adapter", "prompt", "prefix"])
def test_ner_with_inserted_modules_reloads_to_the_measured_score(strategy, tiny_checkpoint, data_dir, tmp_path):
    conll = data_dir / "conll2003"
    sentences = (conll / "eng.testa").read_text().split("\n\n")[:41]  # the -DOCSTART- block and 40 sentences
    (tmp_path / "valid.conll").write_text("\n\n".join(sentences) + "\n")
    cfg = FinetuneConfig.build(
        **FAST,
        max_length=24,
        max_train_examples=96,
        strategy=strategy,
        prompt_tokens=4,
        prefix_tokens=4,
        adapter_size=8,
    )
    valid = str(tmp_path / "valid.conll")
    result = finetune_ner(
        str(tiny_checkpoint),
        str(conll / "eng.train"),
        valid,
        str(tmp_path / "out"),
        test_file=valid,
        cfg=cfg,
        show_progress=False,
    )
    # the test file is the validation file: scored from best/ (base + adapter loaded from disk), it must match
    assert result["test_f1"] == pytest.approx(result["f1"], abs=1e-9)
    out = tmp_path / "out"
    meta = json.loads((out / "adapter" / "bertforge_adapter.json").read_text())
    assert meta["strategy"] == strategy and meta["base_model_name_or_path"] == str(tiny_checkpoint)
    assert (out / "adapter" / "adapter_config.json").exists() == (strategy != "adapter")
    saved = load_file(out / "adapter" / "adapter_model.safetensors")
    assert sum(t.numel() for t in saved.values()) == result["trainable_parameters"]
    model = load_model(out / "best", BertForTokenClassification)
    assert model.config.id2label[0] == "O"
    preds = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    assert all(len(p["prediction"]) == len(p["tokens"]) for p in preds)  # word alignment with the extra tokens


@pytest.mark.parametrize("strategy", ["prompt", "prefix"])
def test_qa_with_soft_tokens_keeps_offsets(strategy, tiny_checkpoint, data_dir, tmp_path):
    train = squad_slice(data_dir, tmp_path / "train.json", articles=slice(0, 1))
    valid = squad_slice(data_dir, tmp_path / "valid.json", articles=slice(1, 2), paragraphs=1)
    cfg = FinetuneConfig.build(
        **FAST, max_length=96, stride=32, max_query_length=32, strategy=strategy, prompt_tokens=4, prefix_tokens=4
    )
    result = finetune_qa(
        str(tiny_checkpoint),
        str(train),
        str(valid),
        str(tmp_path / "out"),
        test_file=str(valid),
        cfg=cfg,
        show_progress=False,
    )
    assert result["test_f1"] == pytest.approx(result["f1"], abs=1e-9)
    preds = [json.loads(line) for line in (tmp_path / "out" / "predictions_validation.jsonl").read_text().splitlines()]
    contexts = {
        qa["id"]: p["context"]
        for a in json.loads(valid.read_text())["data"]
        for p in a["paragraphs"]
        for qa in p["qas"]
    }
    assert preds and all(p["prediction"] in contexts[p["id"]] for p in preds)  # spans cut from the context


def test_gradual_unfreezing_trains_the_announced_layers(tiny_checkpoint, data_dir, tmp_path, caplog):
    from bertforge.training.checkpoint import checkpoints

    train, dev = _sst(data_dir, tmp_path, n=48)  # 3 steps of 16
    out = tmp_path / "out"
    cfg = FinetuneConfig.build(
        epochs=1, batch_size=16, lr=1e-3, strategy="freeze", unfreeze="steps", unfreeze_steps=2, max_length=32
    )
    base = BertForSequenceClassification.from_pretrained(tiny_checkpoint, num_labels=2).state_dict()

    def layers_changed(directory) -> set[str]:
        new = BertForSequenceClassification.from_pretrained(directory).state_dict()
        assert all(torch.equal(base[k], new[k]) for k in base if k.startswith("bert.embeddings."))  # never trained
        return {k.split(".")[2] for k in base if k.startswith("bert.layers.") and not torch.equal(base[k], new[k])}

    with caplog.at_level(logging.INFO, logger="bertforge"):
        stopped = finetune_classification(
            str(tiny_checkpoint),
            str(train),
            str(dev),
            str(out),
            cfg=cfg.merged({"train": {"exit_interval": 2}}),
            show_progress=False,
        )
    assert stopped["stopped_at_step"] == 2
    assert "gradual unfreezing: layer 1 from step 0, layer 0 from step 2" in caplog.text
    assert layers_changed(checkpoints(str(out))[-1]) == {"1"}  # steps 0 and 1: the top layer alone
    with caplog.at_level(logging.INFO, logger="bertforge"):
        finetune_classification(
            str(tiny_checkpoint), str(train), str(dev), str(out), cfg=cfg, show_progress=False, resume=True
        )
    assert "step 2: training layer(s) 1, 0" in caplog.text  # the resumed run announces what trains from its step
    assert layers_changed(out / "best") == {"0", "1"}  # step 2 (after resuming): layer 0 joins


def test_pipeline_switches_adapters_on_one_base(tiny_checkpoint, data_dir, tmp_path):
    train, dev = _sst(data_dir, tmp_path, n=32)
    outputs = {}
    for strategy in ("lora", "prefix"):
        cfg = FinetuneConfig.build(epochs=1, batch_size=16, lr=1e-2, strategy=strategy, prefix_tokens=3, max_length=32)
        finetune_classification(
            str(tiny_checkpoint), str(train), str(dev), str(tmp_path / strategy), cfg=cfg, show_progress=False
        )
        outputs[strategy] = from_adapter(str(tmp_path / strategy / "adapter"))
    pipe = pipeline(
        "text-classification",
        model=str(tiny_checkpoint),
        adapter={"lora": tmp_path / "lora" / "adapter", "prefix": tmp_path / "prefix" / "adapter"},
    )
    encoder = pipe.model.bert.embeddings.token.weight
    text = "a gripping, funny film"
    enc = pipe.tokenizer([text], return_tensors="pt")
    for name in ("lora", "prefix", "lora"):
        pipe.set_adapter(name)
        assert pipe.model.bert.embeddings.token.weight is encoder  # the encoder was not reloaded
        with torch.no_grad():
            expected = outputs[name](**enc).logits.softmax(-1)[0]
        scores = {r["label"]: r["score"] for r in pipe([text], top_k=None)[0]}
        assert [scores[outputs[name].config.id2label[i]] for i in range(2)] == pytest.approx(
            expected.tolist(), abs=1e-5
        )
    with pytest.raises(ValueError, match="no adapter named"):
        pipe.set_adapter("missing")


def test_run_command_takes_an_adapter(tiny_checkpoint, data_dir, tmp_path, capsys):
    from bertforge.cli.main import main

    train, dev = _sst(data_dir, tmp_path, n=32)
    cfg = FinetuneConfig.build(epochs=1, batch_size=16, strategy="adapter", adapter_size=4, max_length=32)
    finetune_classification(
        str(tiny_checkpoint), str(train), str(dev), str(tmp_path / "out"), cfg=cfg, show_progress=False
    )
    capsys.readouterr()
    text = "a gripping, funny film"
    argv = [
        "run",
        "text-classification",
        "--model",
        str(tiny_checkpoint),
        "--adapter",
        str(tmp_path / "out" / "adapter"),
    ]
    assert main(argv + [text]) == 0
    via_adapter = json.loads(capsys.readouterr().out)
    assert main(["run", "text-classification", "--model", str(tmp_path / "out" / "best"), text]) == 0
    assert json.loads(capsys.readouterr().out) == via_adapter  # base + adapter = the best directory
