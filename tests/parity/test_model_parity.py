"""Parity of every model class with transformers on random tiny configs: outputs, losses and gradients (fp32)."""

from __future__ import annotations

import pytest
import torch

import bertforge
from bertforge.model import convert
from tests.conftest import random_batch, tiny_config

transformers = pytest.importorskip("transformers")

CLASSES = [
    "BertModel",
    "BertForPreTraining",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertForQuestionAnswering",
    "BertForMultipleChoice",
]


def _pair(name: str, tmp_path, **overrides):
    """A transformers model with random weights and ours loaded from its saved directory."""
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides)
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(**config.to_dict())
    hf = getattr(transformers, name)(hf_config).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so that a mis-mapped tensor shows
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path)
    ours = getattr(bertforge, name).from_pretrained(tmp_path)
    assert not ours.load_report.missing and not ours.load_report.unexpected, ours.load_report
    return hf, ours


def _labels(name: str, config, batch):
    B, S = batch["input_ids"].shape[0], batch["input_ids"].shape[-1]
    g = torch.Generator().manual_seed(1)
    if name in ("BertForPreTraining", "BertForMaskedLM"):
        labels = torch.randint(0, config.vocab_size, (B, S), generator=g)
        labels[torch.rand(B, S, generator=g) > 0.3] = -100
        labels[0, 0] = 5
        labels = labels.masked_fill(batch["attention_mask"] == 0, -100)  # padding carries no labels
        extra = {"next_sentence_label": torch.tensor([0, 1, 1])} if name == "BertForPreTraining" else {}
        return {"labels": labels, **extra}
    if name == "BertForSequenceClassification":
        return {"labels": torch.tensor([0, 1, 1])}
    if name == "BertForTokenClassification":
        labels = torch.randint(0, 2, (B, S), generator=g).masked_fill(batch["attention_mask"] == 0, -100)
        return {"labels": labels}
    if name == "BertForQuestionAnswering":
        return {"start_positions": torch.tensor([1, 2, 40]), "end_positions": torch.tensor([3, 2, 2])}
    if name == "BertForMultipleChoice":
        return {"labels": torch.tensor([1, 0, 2])}
    return {}


def _inputs(name, config, pad):
    batch = random_batch(config, pad=pad)
    if name == "BertForMultipleChoice":  # (B, C, S) with C = 3 choices
        batch = {k: torch.stack([v, v.roll(1, 0), v.roll(2, 0)], dim=1) for k, v in batch.items()}
    return batch


def _outputs(name, out):
    if name == "BertModel":
        return [out.last_hidden_state, out.pooler_output]
    if name == "BertForPreTraining":
        return [out.prediction_logits, out.seq_relationship_logits]
    if name == "BertForQuestionAnswering":
        return [out.start_logits, out.end_logits]
    return [out.logits]


@pytest.mark.parametrize("pad", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("name", CLASSES)
def test_outputs_losses_and_gradients_match(name, pad, tmp_path):
    hf, ours = _pair(name, tmp_path)
    batch = _inputs(name, ours.config, pad)
    labels = _labels(name, ours.config, batch)
    hf_out = hf(**batch, **labels)
    our_out = ours(**batch, **labels)
    mask = batch["attention_mask"].bool()
    for a, b in zip(_outputs(name, hf_out), _outputs(name, our_out)):
        assert a.shape == b.shape
        if a.dim() >= 2 and a.shape[:2] == mask.shape and name != "BertForMultipleChoice":
            a, b = a[mask], b[mask]  # padded positions are not defined to be equal
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    if name == "BertModel":
        return
    hf_loss = hf_out.loss
    if name == "BertForQuestionAnswering" and pad:  # ours leaves padding out of the softmax (transformers does not)
        fill = torch.finfo(torch.float32).min
        hf_loss = (
            sum(
                torch.nn.functional.cross_entropy(
                    logits.masked_fill(~mask, fill), labels[key].clamp(0, 7), ignore_index=7
                )
                for logits, key in ((hf_out.start_logits, "start_positions"), (hf_out.end_logits, "end_positions"))
            )
            / 2
        )
    torch.testing.assert_close(our_out.loss, hf_loss, atol=1e-5, rtol=1e-5)
    hf_loss.backward()
    our_out.loss.backward()
    our_grads = convert.ours_to_hf({k: p.grad for k, p in ours.named_parameters()}, tied=True)
    hf_grads = dict(hf.named_parameters())
    assert our_grads
    for key, grad in our_grads.items():
        torch.testing.assert_close(grad, hf_grads[key].grad, atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("problem", ["regression", "multi_label_classification"])
def test_sequence_classification_losses_match(problem, tmp_path):
    num_labels = 1 if problem == "regression" else 3
    hf, ours = _pair("BertForSequenceClassification", tmp_path, num_labels=num_labels)
    batch = random_batch(ours.config)
    labels = torch.rand(3, num_labels) if problem != "regression" else torch.rand(3)
    if problem != "regression":
        labels = (labels > 0.5).float()
    torch.testing.assert_close(ours(**batch, labels=labels).loss, hf(**batch, labels=labels).loss, atol=1e-6, rtol=1e-5)


def test_extra_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = bertforge.BertForPreTraining(tiny_config()).eval()
    batch = random_batch(model.config, pad=False)
    longer = {k: torch.cat([v, torch.zeros(3, 5, dtype=v.dtype)], dim=1) for k, v in batch.items()}
    a = model(**batch)
    b = model(**longer)
    torch.testing.assert_close(b.prediction_logits[:, :7], a.prediction_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.seq_relationship_logits, a.seq_relationship_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CLASSES)
def test_round_trip_ours_to_transformers(name, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(num_labels=2 if name == "BertForQuestionAnswering" else 3)
    ours = getattr(bertforge, name)(config).eval()
    ours.save_pretrained(tmp_path)
    hf, info = getattr(transformers, name).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    batch = _inputs(name, config, pad=True)
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        for a, b in zip(_outputs(name, hf.eval()(**batch)), _outputs(name, ours(**batch))):
            if a.dim() >= 2 and a.shape[:2] == mask.shape:
                a, b = a[mask], b[mask]  # padded positions are not defined to be equal
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    again = getattr(bertforge, name).from_pretrained(tmp_path)
    for (k, v), (k2, v2) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_minilm_real_weights_match_transformers(minilm):
    sentences = ["The quick brown fox jumps over the lazy dog.", "A BERT encoder maps text to vectors.", "Short one."]
    tok = transformers.BertTokenizerFast.from_pretrained(minilm)
    batch = dict(tok(sentences, padding=True, return_tensors="pt"))
    hf = transformers.BertModel.from_pretrained(minilm).eval()
    ours = bertforge.BertModel.from_pretrained(minilm)
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    with torch.no_grad():
        a, b = hf(**batch), ours(**batch)
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(b.last_hidden_state[mask], a.last_hidden_state[mask], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.pooler_output, a.pooler_output, atol=1e-4, rtol=1e-4)
