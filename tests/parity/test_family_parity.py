"""RoBERTa and DistilBERT checkpoints on bertforge's one encoder: parity with transformers on tiny random models (no
weights of either family can be downloaded here), every head, padded and padding-free, and round trips both ways."""

from __future__ import annotations

from functools import partial

import pytest
import torch

import bertforge
from bertforge.model import convert
from tests.parity.heads_util import assert_loss_and_gradients_match, assert_outputs_close

transformers = pytest.importorskip("transformers")

HEADS = ["Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering"]
PREFIX = {"roberta": "Roberta", "distilbert": "DistilBert"}
SIZES = dict(vocab_size=99, max_position_embeddings=66)


def hf_config(family: str, sinusoidal: bool = False, **extra):
    """A tiny config with odd sizes (hidden 32, intermediate 37), dropout off, in the family's own names."""
    if family == "roberta":
        return transformers.RobertaConfig(
            **SIZES,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            layer_norm_eps=1e-5,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            **extra,
        )
    return transformers.DistilBertConfig(
        **SIZES,
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=37,
        dropout=0.0,
        attention_dropout=0.0,
        seq_classif_dropout=0.0,
        qa_dropout=0.0,
        sinusoidal_pos_embds=sinusoidal,
        **extra,
    )


def pair(family: str, head: str, tmp_path, sinusoidal: bool = False, **extra):
    """A transformers model with random weights, and ours loaded from its directory (nothing missing or unused)."""
    torch.manual_seed(0)
    hf = getattr(transformers, PREFIX[family] + head)(hf_config(family, sinusoidal, **extra)).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so that a mis-mapped tensor shows
        for name, p in hf.named_parameters():
            if not (sinusoidal and "position_embeddings" in name):
                p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path)
    ours = getattr(bertforge, "Bert" + head).from_pretrained(tmp_path)
    assert ours.config.model_type == family
    assert not ours.load_report.missing and not ours.load_report.unexpected, ours.load_report
    return hf, ours


def batch(family: str, pad: bool):
    """Ids clear of the special ids, right padding of different lengths per row; DistilBERT takes no token types."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 99, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    if pad:
        mask[1, 6:] = 0
        mask[2, 3:] = 0
    ids = ids.masked_fill(mask == 0, 1 if family == "roberta" else 0)
    out = {"input_ids": ids, "attention_mask": mask}
    if family == "roberta":
        out["token_type_ids"] = torch.zeros_like(ids)
    return out


def labels(head: str, inputs):
    g = torch.Generator().manual_seed(1)
    mask = inputs["attention_mask"]
    if head == "ForMaskedLM":
        y = torch.randint(0, 99, mask.shape, generator=g)
        y[torch.rand(mask.shape, generator=g) > 0.4] = -100
        y[0, 0] = 5
        return {"labels": y.masked_fill(mask == 0, -100)}
    if head == "ForSequenceClassification":
        return {"labels": torch.tensor([0, 1, 1])}
    if head == "ForTokenClassification":
        return {"labels": torch.randint(0, 2, mask.shape, generator=g).masked_fill(mask == 0, -100)}
    if head == "ForQuestionAnswering":
        return {"start_positions": torch.tensor([1, 2, 2]), "end_positions": torch.tensor([3, 2, 2])}
    return {}


def outputs(head: str, out):
    if head == "Model":
        return [out.last_hidden_state] + (
            [out.pooler_output] if getattr(out, "pooler_output", None) is not None else []
        )
    if head == "ForQuestionAnswering":
        return [out.start_logits, out.end_logits]
    return [out.logits]


@pytest.mark.parametrize("pad", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("family", ["roberta", "distilbert"])
def test_outputs_losses_and_gradients_match(family, head, pad, tmp_path):
    hf, ours = pair(family, head, tmp_path)
    inputs = batch(family, pad)
    y = labels(head, inputs)
    hf_out, our_out = hf(**inputs, **y), ours(**inputs, **y)
    assert_outputs_close(outputs(head, our_out), outputs(head, hf_out), inputs["attention_mask"].bool(), 1e-5)
    if head == "Model" or (head == "ForQuestionAnswering" and pad):  # ours leaves padding out of QA's softmax
        return
    to_hf = partial(convert.ours_to_hf, tied=True, model_type=family)
    assert len(assert_loss_and_gradients_match(hf, ours, hf_out, our_out, to_hf)) > 10


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("family", ["roberta", "distilbert"])
def test_round_trip_ours_to_transformers(family, head, tmp_path):
    hf, ours = pair(family, head, tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    back, info = getattr(transformers, PREFIX[family] + head).from_pretrained(
        tmp_path / "ours", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(back.config).__name__ == type(hf.config).__name__
    inputs = batch(family, pad=True)
    with torch.no_grad():
        theirs, again = outputs(head, hf(**inputs)), outputs(head, back.eval()(**inputs))
    assert_outputs_close(again, theirs, inputs["attention_mask"].bool(), 1e-6)


def test_distilbert_sinusoidal_positions_are_distilberts_and_stay_fixed(tmp_path):
    hf, ours = pair("distilbert", "ForMaskedLM", tmp_path, sinusoidal=True)
    fresh = bertforge.BertForMaskedLM(ours.config)  # built here: the table is computed, not loaded
    torch.testing.assert_close(
        fresh.bert.embeddings.position.weight, hf.distilbert.embeddings.position_embeddings.weight, atol=1e-6, rtol=0
    )
    assert not fresh.bert.embeddings.position.weight.requires_grad
    inputs = batch("distilbert", pad=True)
    mask = inputs["attention_mask"].bool()
    torch.testing.assert_close(ours(**inputs).logits[mask], hf(**inputs).logits[mask], atol=1e-5, rtol=1e-5)


def test_roberta_positions_follow_the_padding_id_and_left_padding(tmp_path):
    """RoBERTa counts positions from pad + 1 over the non-padding ids: left-padded rows match transformers too, and
    the longest input is max_position_embeddings - 2 tokens."""
    hf, ours = pair("roberta", "Model", tmp_path)
    ids = torch.randint(3, 99, (2, 8), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    ids = ids.masked_fill(mask == 0, 1)
    a = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    b = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(b[mask.bool()], a[mask.bool()], atol=1e-5, rtol=1e-5)
    ours(input_ids=torch.full((1, 64), 5))
    with pytest.raises(
        ValueError, match="65 tokens, 1 more than the model's max_position_embeddings \\(66, 64 tokens\\)"
    ):
        ours(input_ids=torch.full((1, 65), 5))


@pytest.mark.parametrize("family", ["roberta", "distilbert"])
def test_packed_batches_match_padded_ones(family, tmp_path):
    """Pre-packed batches (cu_seqlens, no padding stored) give the padded batch's real-token outputs: positions restart
    per sequence from the family's offset."""
    _, ours = pair(family, "Model", tmp_path)
    inputs = batch(family, pad=True)
    real = inputs["attention_mask"].bool()
    padded = ours(**inputs).last_hidden_state
    rows = [ids[m] for ids, m in zip(inputs["input_ids"], real)]
    cu = torch.tensor([0] + [len(r) for r in rows]).cumsum(0).to(torch.int32)
    packed = ours(input_ids=torch.cat(rows), cu_seqlens=cu, max_seqlen=max(len(r) for r in rows)).last_hidden_state
    torch.testing.assert_close(packed, padded[real], atol=1e-5, rtol=1e-5)
