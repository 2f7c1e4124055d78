"""ALBERT checkpoints on bertforge's encoder: parity with transformers on tiny random models with factorised
embeddings and layers shared in groups (4 layers from 2 groups of 2), for every head, padded and padding-free,
outputs, losses and gradients (a shared layer's gradient is the sum over the steps that run it), and round trips
both ways; the shared parameters are saved once."""

from __future__ import annotations

import pytest
import torch

import bertforge
from bertforge.model import convert
from tests.parity.heads_util import assert_loss_and_gradients_match, assert_outputs_close
from tests.parity.heads_util import batch as shared_batch
from tests.parity.heads_util import labels as shared_labels

transformers = pytest.importorskip("transformers")

OURS = {
    "Model": "BertModel",
    "ForPreTraining": "BertForPreTraining",
    "ForMaskedLM": "BertForMaskedLM",
    "ForSequenceClassification": "BertForSequenceClassification",
    "ForTokenClassification": "BertForTokenClassification",
    "ForQuestionAnswering": "BertForQuestionAnswering",
    "ForMultipleChoice": "BertForMultipleChoice",
}


def hf_config(groups: int = 2, inner: int = 2, **extra):
    return transformers.AlbertConfig(
        vocab_size=99,
        max_position_embeddings=66,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=4,
        num_hidden_groups=groups,
        inner_group_num=inner,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0,
        **extra,
    )


def pair(head: str, tmp_path, groups: int = 2, inner: int = 2):
    torch.manual_seed(0)
    hf = getattr(transformers, "Albert" + head)(hf_config(groups, inner)).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so that a mis-mapped tensor shows
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path)
    ours = getattr(bertforge, OURS[head]).from_pretrained(tmp_path)
    assert ours.config.model_type == "albert" and ours.config.embedding_width == 16
    assert not ours.load_report.missing and not ours.load_report.unexpected, ours.load_report
    return hf, ours


def batch(pad: bool, choices: int | None = None):
    return shared_batch(pad, choices, low=5)  # clear of ALBERT's special ids 0..4


def labels(head: str, inputs):
    if head == "ForPreTraining":  # masked LM and sentence order
        return {**shared_labels("ForMaskedLM", inputs), "sentence_order_label": torch.tensor([0, 1, 1])}
    return shared_labels(head, inputs)


def outputs(head: str, out):
    if head == "Model":
        return [out.last_hidden_state, out.pooler_output, *(out.hidden_states or ())]
    if head == "ForPreTraining":
        return [out.prediction_logits, out.sop_logits]
    if head == "ForQuestionAnswering":
        return [out.start_logits, out.end_logits]
    return [out.logits]


@pytest.mark.parametrize("pad", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("head", list(OURS))
def test_outputs_losses_and_gradients_match(head, pad, tmp_path):
    hf, ours = pair(head, tmp_path)
    inputs = batch(pad, choices=3 if head == "ForMultipleChoice" else None)
    y = labels(head, inputs)
    extra = {"output_hidden_states": True} if head == "Model" else {}
    hf_out, our_out = hf(**inputs, **y, **extra), ours(**inputs, **y, **extra)
    hf_outs, our_outs = outputs(head, hf_out), outputs(head, our_out)
    assert len(hf_outs) == len(our_outs) == (2 + 4 * 2 + 1 if head == "Model" else len(hf_outs))
    assert_outputs_close(our_outs, hf_outs, inputs["attention_mask"].bool(), 1e-5)
    if head == "Model" or (head == "ForQuestionAnswering" and pad):  # ours leaves padding out of QA's softmax
        return
    our_grads = assert_loss_and_gradients_match(
        hf, ours, hf_out, our_out, lambda g: convert.ours_to_hf(g, tied=True, model_type="albert", inner_group_num=2)
    )
    assert any(".albert_layer_groups.1.albert_layers.1." in k for k in our_grads)


@pytest.mark.parametrize("head", list(OURS))
def test_round_trip_ours_to_transformers(head, tmp_path):
    hf, ours = pair(head, tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    back, info = getattr(transformers, "Albert" + head).from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    c = back.config
    assert type(c).__name__ == "AlbertConfig" and (c.embedding_size, c.num_hidden_groups, c.inner_group_num) == (
        16,
        2,
        2,
    )
    inputs = batch(pad=True, choices=3 if head == "ForMultipleChoice" else None)
    with torch.no_grad():
        theirs, again = outputs(head, hf(**inputs)), outputs(head, back.eval()(**inputs))
    assert_outputs_close(again, theirs, inputs["attention_mask"].bool(), 1e-6)


def test_one_parameter_set_serves_every_layer_of_a_group_and_is_saved_once(tmp_path):
    """albert-base-v2's sharing (one group of one layer for all 4 layers): the model has one layer's parameters, its
    gradient is the sum of what each of the 4 steps gives it, and the file holds each tensor once."""
    from safetensors.torch import load_file

    hf, ours = pair("ForMaskedLM", tmp_path / "hf", groups=1, inner=1)
    assert len(ours.bert.layers) == 1 and ours.bert.layer_order == (0, 0, 0, 0)
    inputs = batch(pad=True)
    steps: list[torch.Tensor] = []
    hook = ours.bert.layers[0].ffn.ffn_in.register_full_backward_hook(lambda m, gi, go: steps.append(go[0]))
    loss = ours(**inputs, **labels("ForMaskedLM", inputs)).loss
    loss.backward()
    hook.remove()
    assert len(steps) == 4  # the shared layer ran four times, each step adding to one gradient
    weight = ours.bert.layers[0].ffn.ffn_in.weight
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    ours.save_pretrained(tmp_path / "ours")
    saved = load_file(tmp_path / "ours" / "model.safetensors")
    layer_keys = [k for k in saved if ".albert_layers." in k]
    assert all(k.startswith("albert.encoder.albert_layer_groups.0.albert_layers.0.") for k in layer_keys)
    assert len(layer_keys) == 16  # q, k, v, dense, LayerNorm, ffn, ffn_output, LayerNorm: weight and bias
    assert sum(t.numel() for t in saved.values()) == ours.num_parameters()


def test_packed_batches_match_padded(tmp_path):
    _, ours = pair("Model", tmp_path)
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


def test_sharing_is_albert_only_and_groups_fit_the_stack():
    with pytest.raises(ValueError, match="set model_type albert"):
        bertforge.BertConfig(num_hidden_groups=2)
    with pytest.raises(ValueError, match="num_hidden_groups .13. exceeds num_hidden_layers .12."):
        bertforge.BertConfig(model_type="albert", num_hidden_groups=13)
    config = bertforge.BertConfig(model_type="albert", num_hidden_layers=6, num_hidden_groups=4, inner_group_num=1)
    assert config.layer_order == (0, 0, 1, 2, 2, 3)  # transformers' int(i / (L / groups))
