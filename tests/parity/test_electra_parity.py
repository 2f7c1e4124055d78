"""ELECTRA checkpoints on bertforge's encoder: parity with transformers on tiny random models whose embeddings are
narrower than the hidden size (the embeddings_project path), for the discriminator, the generator and every
fine-tuning head, padded and padding-free, losses and gradients, and round trips both ways."""

from __future__ import annotations

from functools import partial

import pytest
import torch

import bertforge
from bertforge.model import convert
from tests.parity.heads_util import assert_loss_and_gradients_match, assert_outputs_close, batch
from tests.parity.heads_util import labels as shared_labels

transformers = pytest.importorskip("transformers")

OURS = {
    "Model": "BertModel",
    "ForPreTraining": "BertForReplacedTokenDetection",
    "ForMaskedLM": "BertForMaskedLM",
    "ForSequenceClassification": "BertForSequenceClassification",
    "ForTokenClassification": "BertForTokenClassification",
    "ForQuestionAnswering": "BertForQuestionAnswering",
    "ForMultipleChoice": "BertForMultipleChoice",
}


def hf_config(embedding_size: int = 16, **extra):
    return transformers.ElectraConfig(
        vocab_size=99,
        max_position_embeddings=66,
        embedding_size=embedding_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        summary_last_dropout=0.0,
        **extra,
    )


def pair(head: str, tmp_path, embedding_size: int = 16):
    torch.manual_seed(0)
    hf = getattr(transformers, "Electra" + head)(hf_config(embedding_size)).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so that a mis-mapped tensor shows
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path)
    ours = getattr(bertforge, OURS[head]).from_pretrained(tmp_path)
    assert ours.config.model_type == "electra" and ours.config.embedding_width == embedding_size
    assert not ours.load_report.missing and not ours.load_report.unexpected, ours.load_report
    return hf, ours


def labels(head: str, inputs):
    if head == "ForPreTraining":
        g = torch.Generator().manual_seed(1)
        return {"labels": torch.randint(0, 2, inputs["attention_mask"].shape, generator=g)}
    return shared_labels(head, inputs)


def outputs(head: str, out):
    if head == "Model":
        return [out.last_hidden_state]
    if head == "ForQuestionAnswering":
        return [out.start_logits, out.end_logits]
    return [out.logits]


@pytest.mark.parametrize("pad", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("head", list(OURS))
def test_outputs_losses_and_gradients_match(head, pad, tmp_path):
    hf, ours = pair(head, tmp_path)
    inputs = batch(pad, choices=3 if head == "ForMultipleChoice" else None)
    y = labels(head, inputs)
    hf_out, our_out = hf(**inputs, **y), ours(**inputs, **y)
    assert_outputs_close(outputs(head, our_out), outputs(head, hf_out), inputs["attention_mask"].bool(), 1e-5)
    if head == "Model" or (head == "ForQuestionAnswering" and pad):  # ours leaves padding out of QA's softmax
        return
    to_hf = partial(convert.ours_to_hf, tied=True, model_type="electra", architecture=OURS[head])
    assert len(assert_loss_and_gradients_match(hf, ours, hf_out, our_out, to_hf)) > 10


@pytest.mark.parametrize("head", list(OURS))
def test_round_trip_ours_to_transformers(head, tmp_path):
    hf, ours = pair(head, tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    back, info = getattr(transformers, "Electra" + head).from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(back.config).__name__ == "ElectraConfig" and back.config.embedding_size == 16
    inputs = batch(pad=True, choices=3 if head == "ForMultipleChoice" else None)
    with torch.no_grad():
        theirs, again = outputs(head, hf(**inputs)), outputs(head, back.eval()(**inputs))
    assert_outputs_close(again, theirs, inputs["attention_mask"].bool(), 1e-6)


def test_equal_widths_need_no_projection_and_packed_batches_match(tmp_path):
    hf, ours = pair("Model", tmp_path, embedding_size=32)
    assert ours.embeddings.project is None and not hasattr(hf, "embeddings_project")
    inputs = batch(pad=True)
    real = inputs["attention_mask"].bool()
    padded = ours(**inputs).last_hidden_state
    rows = [ids[m] for ids, m in zip(inputs["input_ids"], real)]
    types = [t[m] for t, m in zip(inputs["token_type_ids"], real)]
    cu = torch.tensor([0] + [len(r) for r in rows]).cumsum(0).to(torch.int32)
    packed = ours(
        input_ids=torch.cat(rows), token_type_ids=torch.cat(types), cu_seqlens=cu, max_seqlen=max(len(r) for r in rows)
    ).last_hidden_state
    torch.testing.assert_close(packed, padded[real], atol=1e-5, rtol=1e-5)
