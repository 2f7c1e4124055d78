"""int8 dynamic quantization and ONNX export: outputs within stated tolerances of fp32 bertforge on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

import bertforge
from bertforge.deploy import export_onnx, quantize_int8
from tests.conftest import random_batch, tiny_config


def test_int8_quantizes_every_linear_layer_and_stays_close_to_fp32():
    torch.manual_seed(0)
    model = bertforge.BertForSequenceClassification(tiny_config(num_labels=3)).eval()
    q = quantize_int8(model)
    quantized = [m for m in q.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__]
    assert len(quantized) == 2 * 4 + 2  # per layer qkv, out, ffn_in, ffn_out; pooler and classifier
    assert all(type(m) is torch.nn.Linear for m in model.modules() if isinstance(m, torch.nn.Linear))  # a copy
    batch = random_batch(model.config)
    with torch.no_grad():
        a, b = model(**batch).logits, q(**batch).logits
    assert (a - b).abs().max() < 0.05 * a.abs().max() + 1e-3  # int8 weights: within a few percent
    with pytest.raises(ValueError, match="starts from fp32 weights"):
        quantize_int8(model.to(torch.bfloat16))


def test_pipelines_take_int8_and_auto(tmp_path, monkeypatch):
    from bertforge.pipelines.base import resolve_dtype
    from bertforge.tokenization import train_vocab

    tok = train_vocab(texts=["a good film", "a bad film", "the plot was dull"] * 20, vocab_size=60, output=tmp_path)
    torch.manual_seed(0)
    bertforge.BertForSequenceClassification(tiny_config(vocab_size=tok.vocab_size)).save_pretrained(tmp_path)
    fp32 = bertforge.pipeline("text-classification", model=str(tmp_path))
    int8 = bertforge.pipeline("text-classification", model=str(tmp_path), dtype="int8")
    assert int8.quantized and "dtype=int8" in repr(int8)
    a, b = fp32("a good film", top_k=None), int8("a good film", top_k=None)
    assert [r["label"] for r in a] and abs(a[0]["score"] - b[0]["score"]) < 0.05
    monkeypatch.setattr("bertforge.utils.fast_bf16", lambda device="cpu": True)
    assert resolve_dtype("auto") == torch.bfloat16
    monkeypatch.setattr("bertforge.utils.fast_bf16", lambda device="cpu": False)
    assert resolve_dtype("auto") == torch.float32
    with pytest.raises(ValueError, match="is not one of fp32"):
        resolve_dtype("int4")


onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize(
    "name, family",
    [
        ("BertModel", "bert"),
        ("BertForPreTraining", "bert"),
        ("BertForMaskedLM", "bert"),
        ("BertForSequenceClassification", "roberta"),
        ("BertForTokenClassification", "distilbert"),
        ("BertForQuestionAnswering", "bert"),
        ("BertForMultipleChoice", "bert"),
        ("BertForPreTraining", "albert"),
        ("BertForSequenceClassification", "albert"),
    ],
)
def test_onnx_export_matches_bertforge_on_another_shape(name, family, tmp_path):
    torch.manual_seed(0)
    extra = dict(pad_token_id=1, type_vocab_size=1, max_position_embeddings=66) if family == "roberta" else {}
    if family == "albert":  # 4 layers from 2 shared ones, 16-wide embeddings projected
        extra = dict(embedding_size=16, num_hidden_layers=4, num_hidden_groups=2)
    config = tiny_config(model_type=family, num_labels=2 if name == "BertForQuestionAnswering" else 3, **extra)
    model = getattr(bertforge, name)(config).eval()
    report = export_onnx(model, tmp_path / "m.onnx")
    assert report["max_abs_difference"] is not None and report["max_abs_difference"] < 1e-4
    assert ("token_type_ids" in report["inputs"]) == (family != "distilbert")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    assert [o.name for o in session.get_outputs()] == report["outputs"]
    assert (model if name == "BertModel" else model.bert).padding_free  # untouched: the export ran a copy


def test_export_command(tmp_path, capsys):
    from bertforge.cli.main import main

    torch.manual_seed(0)
    bertforge.BertForTokenClassification(tiny_config(num_labels=5)).save_pretrained(tmp_path / "m")
    assert main(["export", "onnx", "--model", str(tmp_path / "m"), "--output", str(tmp_path / "out" / "m.onnx")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["architecture"] == "BertForTokenClassification" and report["outputs"] == ["logits"]
    assert report["max_abs_difference"] < 1e-4 and (tmp_path / "out" / "m.onnx").exists()
