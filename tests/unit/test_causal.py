"""The causal switch (GPT's attention pattern on BERT's blocks): what each position sees, padded vs packed, the
next-token loss, transformers' BertLMHeadModel parity, and the classifier reading the last token."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import bertforge
from bertforge.constants import IGNORE_INDEX
from tests.conftest import random_batch, tiny_config


def _config(**kw):
    return tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kw)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_a_changed_token_reaches_only_later_positions_when_causal(causal, backend):
    torch.manual_seed(0)
    model = bertforge.BertModel(_config(is_decoder=causal)).eval()
    model.set_attention_backend(backend)
    ids = torch.randint(5, 99, (2, 10))
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 99
    with torch.no_grad():
        a, b = model(ids).last_hidden_state, model(changed).last_hidden_state
    diff = (a - b).abs().amax(-1)  # (B, S)
    assert bool((diff[:, 6:] > 1e-4).all())  # the changed position and every later one
    if causal:
        assert float(diff[:, :6].max()) == 0.0  # earlier positions: bit-identical
    else:
        assert bool((diff[:, :6] > 1e-4).all())


def test_packed_and_padded_causal_runs_agree():
    torch.manual_seed(0)
    config = _config(is_decoder=True)
    model = bertforge.BertLMHeadModel(config).eval()
    batch = random_batch(config, batch=4, seq=12)
    mask = batch["attention_mask"].bool()
    lengths = mask.sum(1)
    cu = torch.cat([torch.zeros(1, dtype=torch.int32), lengths.cumsum(0).to(torch.int32)])
    labels = batch["input_ids"].masked_fill(~mask, IGNORE_INDEX)
    with torch.no_grad():
        padded = model(**batch, labels=labels)
        model.bert.padding_free = False
        unpacked = model(**batch, labels=labels)
        packed = model(
            batch["input_ids"][mask],
            token_type_ids=batch["token_type_ids"][mask],
            cu_seqlens=cu,
            max_seqlen=12,
            labels=labels[mask],
        )
    torch.testing.assert_close(padded.logits[mask], packed.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unpacked.logits[mask], packed.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.loss, packed.loss, atol=1e-5, rtol=1e-5)


def test_clm_loss_is_the_shifted_cross_entropy():
    torch.manual_seed(0)
    config = _config(is_decoder=True)
    model = bertforge.BertLMHeadModel(config).eval()
    batch = random_batch(config, batch=3, seq=9)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
    out = model(**batch, labels=labels)
    total, count = 0.0, 0
    for b in range(3):
        n = int(batch["attention_mask"][b].sum())
        for t in range(n - 1):
            total += F.cross_entropy(out.logits[b, t], labels[b, t + 1]).item()
            count += 1
    assert out.loss.item() == pytest.approx(total / count, rel=1e-5)


def test_bert_lm_head_model_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = _config(is_decoder=True)
    ours = bertforge.BertLMHeadModel(config).eval()
    ours.save_pretrained(tmp_path)
    theirs = transformers.BertLMHeadModel.from_pretrained(tmp_path).eval()
    assert theirs.config.is_decoder
    batch = random_batch(config, batch=3, seq=9)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
    with torch.no_grad():
        a = ours(**batch, labels=labels)
        b = theirs(**batch, labels=labels)
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(a.logits[mask], b.logits[mask], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=1e-4)
    # and transformers' checkpoint loads back into ours
    theirs.save_pretrained(tmp_path / "hf")
    again = bertforge.BertLMHeadModel.from_pretrained(tmp_path / "hf")
    assert again.config.is_decoder and not again.load_report.missing
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits[mask], b.logits[mask], atol=1e-5, rtol=1e-4)


def test_causal_classifier_reads_the_last_real_token():
    torch.manual_seed(0)
    config = _config(is_decoder=True, num_labels=3)
    model = bertforge.BertForSequenceClassification(config).eval()
    batch = random_batch(config, batch=3, seq=9)
    with torch.no_grad():
        logits = model(**batch).logits
        for b in range(3):
            n = int(batch["attention_mask"][b].sum())
            alone = model(batch["input_ids"][b : b + 1, :n], token_type_ids=batch["token_type_ids"][b : b + 1, :n])
            torch.testing.assert_close(alone.logits[0], logits[b], atol=1e-5, rtol=1e-4)
            # appending a token changes the last token's view: the prediction moves
            longer = torch.cat([batch["input_ids"][b : b + 1, :n], torch.tensor([[7]])], 1)
            assert not torch.allclose(model(longer).logits, alone.logits)
