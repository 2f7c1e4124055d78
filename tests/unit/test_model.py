"""Model unit tests: shapes with odd sizes for every head, config validation, input errors, checkpoint handling."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch

import bertforge
from bertforge import BertConfig, preset
from bertforge.model import convert
from tests.conftest import random_batch, tiny_config

B, S, V, H = 3, 7, 99, 32


@pytest.fixture
def config():
    return tiny_config()


def test_shapes_of_every_head(config):
    torch.manual_seed(0)
    batch = random_batch(config, B, S)
    out = bertforge.BertModel(config)(**batch)
    assert out.last_hidden_state.shape == (B, S, H) and out.pooler_output.shape == (B, H)
    out = bertforge.BertForPreTraining(config)(
        **batch, labels=batch["input_ids"], next_sentence_label=torch.ones(B).long()
    )
    assert out.prediction_logits.shape == (B, S, V) and out.seq_relationship_logits.shape == (B, 2)
    assert out.loss.shape == () and torch.isclose(out.loss, out.mlm_loss + out.binary_loss)
    assert bertforge.BertForMaskedLM(config)(**batch).logits.shape == (B, S, V)
    assert bertforge.BertForSequenceClassification(config.replace(num_labels=5))(**batch).logits.shape == (B, 5)
    assert bertforge.BertForTokenClassification(config.replace(num_labels=5))(**batch).logits.shape == (B, S, 5)
    qa = bertforge.BertForQuestionAnswering(config)(**batch)
    assert qa.start_logits.shape == (B, S) and qa.end_logits.shape == (B, S)
    mc_batch = {k: v.unsqueeze(1).expand(B, 4, S) for k, v in batch.items()}
    assert bertforge.BertForMultipleChoice(config)(**mc_batch, labels=torch.zeros(B).long()).logits.shape == (B, 4)


def test_eager_and_sdpa_agree_and_attentions_are_probabilities(config):
    torch.manual_seed(0)
    model = bertforge.BertModel(config).eval()
    batch = random_batch(config)
    sdpa = model(**batch)
    eager = model(**batch, output_attentions=True, output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(eager.last_hidden_state[mask], sdpa.last_hidden_state[mask], atol=1e-5, rtol=1e-5)
    assert (
        len(eager.attentions) == config.num_hidden_layers and len(eager.hidden_states) == config.num_hidden_layers + 1
    )
    probs = eager.attentions[0]
    assert probs.shape == (B, config.num_attention_heads, S, S)
    torch.testing.assert_close(probs.sum(-1), torch.ones(B, config.num_attention_heads, S))
    assert (probs[2, :, :, ~mask[2]] == 0).all()  # no attention to padding


def test_init_follows_bert(config):
    torch.manual_seed(0)
    model = bertforge.BertForPreTraining(preset("mini", vocab_size=1000))
    w = model.bert.layers[0].ffn.ffn_in.weight
    assert abs(w.std().item() - 0.02) < 0.002 and model.bert.layers[0].ffn.ffn_in.bias.abs().sum() == 0
    assert (model.bert.layers[0].norm_ffn.weight == 1).all() and (model.bert.layers[0].norm_ffn.bias == 0).all()
    assert (model.bert.embeddings.token.weight[0] == 0).all()  # [PAD] row
    assert model.mlm.decoder.weight is model.bert.embeddings.token.weight


def test_preset_parameter_counts():
    with torch.device("meta"):
        counts = {name: bertforge.BertModel(preset(name)).num_parameters() for name in bertforge.PRESETS}
    assert counts["base"] == 109_482_240  # BERT-base as published
    assert counts["large"] == 335_141_888
    assert counts["tiny"] == 4_385_920 and counts["mini"] == 11_170_560


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("hidden_size", 30, "divisible"),
        ("num_hidden_layers", 0, "positive"),
        ("vocab_size", -1, "positive"),
        ("hidden_act", "swishy", "not supported"),
        ("hidden_dropout_prob", 1.5, "[0, 1)"),
        ("position_embedding_type", "relative_key", "absolute"),
    ],
)
def test_config_validation_names_the_field(field, value, words):
    with pytest.raises(ValueError) as e:
        tiny_config(**{field: value})
    assert field in str(e.value) and words in str(e.value)


def test_config_json_round_trip_keeps_unknown_keys(tmp_path):
    data = tiny_config(num_labels=3).to_dict()
    data["use_cache"] = True
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = BertConfig.from_pretrained(tmp_path)
    assert config.extra == {"use_cache": True} and config.num_labels == 3
    config.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == data
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"hidden_size": 32,\n "x": }')
    with pytest.raises(ValueError, match="line 2"):
        BertConfig.from_pretrained(tmp_path / "bad")


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda b: b.update(input_ids=torch.full((3, 7), 120)), "past the last valid id"),
        (
            lambda b: b.update(input_ids=torch.ones(3, 70, dtype=torch.long), attention_mask=None, token_type_ids=None),
            "6 more than the model's max_position_embeddings",
        ),
        (lambda b: b.update(attention_mask=torch.ones(3, 6)), "attention_mask has shape (3, 6)"),
        (lambda b: b.update(token_type_ids=torch.full((3, 7), 2)), "token_type_ids holds 2"),
        (
            lambda b: b.update(input_ids=torch.ones(7, dtype=torch.long), attention_mask=None, token_type_ids=None),
            "(batch, sequence)",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(config, change, message):
    model = bertforge.BertModel(config)
    batch = random_batch(config)
    change(batch)
    with pytest.raises(ValueError) as e:
        model(**batch)
    assert message in str(e.value)


def test_load_report_for_heads_and_prefixes(config, tmp_path, caplog):
    torch.manual_seed(0)
    pre = bertforge.BertForPreTraining(config)
    pre.save_pretrained(tmp_path / "pre")
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        cls = bertforge.BertForSequenceClassification.from_pretrained(tmp_path / "pre", num_labels=4)
    assert cls.load_report.missing == ["classifier.bias", "classifier.weight"]
    assert "cls.seq_relationship.weight" in cls.load_report.unexpected
    assert "newly initialized" in caplog.text and "not used" in caplog.text
    torch.testing.assert_close(cls.bert.layers[1].attn.qkv_proj.weight, pre.bert.layers[1].attn.qkv_proj.weight)
    # A bare BertModel checkpoint (no "bert." prefix) loads into a head class, and a head checkpoint into BertModel.
    base = bertforge.BertModel.from_pretrained(tmp_path / "pre")
    base.save_pretrained(tmp_path / "base")
    mlm = bertforge.BertForMaskedLM.from_pretrained(tmp_path / "base")
    assert set(mlm.load_report.missing) == {
        "cls.predictions.bias",
        "cls.predictions.transform.LayerNorm.bias",
        "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.dense.weight",
    }
    assert mlm.load_report.unexpected == ["pooler.dense.bias", "pooler.dense.weight"]
    torch.testing.assert_close(mlm.bert.embeddings.token.weight, pre.bert.embeddings.token.weight)


def test_shape_mismatch_names_the_tensor(config, tmp_path):
    bertforge.BertForSequenceClassification(config.replace(num_labels=3)).save_pretrained(tmp_path)
    with pytest.raises(ValueError) as e:
        bertforge.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5, id2label=None, label2id=None)
    assert "tensor classifier.bias" in str(e.value) and "(3,)" in str(e.value) and "(5,)" in str(e.value)
    model = bertforge.BertForSequenceClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True
    )
    assert sorted(m[0] for m in model.load_report.mismatched) == ["classifier.bias", "classifier.weight"]
    assert ("classifier.weight", (3, 32), (5, 32)) in model.load_report.mismatched
    assert model.load_report.missing == [] and model.config.id2label == {i: f"LABEL_{i}" for i in range(5)}


def test_legacy_names_and_pytorch_bin(config, tmp_path):
    torch.manual_seed(0)
    model = bertforge.BertModel(config)
    state = model.hf_state_dict()
    legacy = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    legacy["embeddings.position_ids"] = torch.arange(64)[None]
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    config.save_pretrained(tmp_path)
    loaded = bertforge.BertModel.from_pretrained(tmp_path)
    assert not loaded.load_report.missing and not loaded.load_report.unexpected
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_name_table_round_trips(config):
    torch.manual_seed(0)
    model = bertforge.BertForPreTraining(config.replace(tie_word_embeddings=False))
    ours = model.state_dict()
    hf = convert.ours_to_hf(ours, tied=False)
    assert "bert.encoder.layer.1.attention.self.key.weight" in hf and "cls.predictions.decoder.weight" in hf
    back, unused = convert.hf_to_ours(hf)
    assert not unused and back.keys() == ours.keys()
    for k in ours:
        assert torch.equal(back[k], ours[k])


def test_missing_weights_file_and_corrupt_file(config, tmp_path):
    config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no weights"):
        bertforge.BertModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00garbage")
    with pytest.raises(ValueError, match="model.safetensors"):
        bertforge.BertModel.from_pretrained(tmp_path)


def test_training_reduces_loss(config):
    torch.manual_seed(0)
    model = bertforge.BertForSequenceClassification(config.replace(hidden_dropout_prob=0.0)).train()
    batch = random_batch(config)
    labels = torch.tensor([0, 1, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for _ in range(40):
        loss = model(**batch, labels=labels).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.2


def test_gradient_checkpointing_gives_same_gradients(config):
    torch.manual_seed(0)
    model = bertforge.BertForMaskedLM(config.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    batch = random_batch(config)
    model(**batch, labels=batch["input_ids"]).loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.bert.gradient_checkpointing = True
    model(**batch, labels=batch["input_ids"]).loss.backward()
    for a, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, a)


def test_mlm_at_masked_positions_only_matches_full_head(config):
    torch.manual_seed(0)
    model = bertforge.BertForPreTraining(config).eval()
    batch = random_batch(config)
    labels = torch.full((3, 7), -100)
    labels[0, 2], labels[1, 4], labels[2, 1] = 5, 6, 7
    positions = (labels.flatten() != -100).nonzero().flatten()
    full = model(**batch, labels=labels, next_sentence_label=torch.tensor([0, 1, 0]))
    part = model(**batch, labels=labels, next_sentence_label=torch.tensor([0, 1, 0]), mlm_positions=positions)
    assert part.prediction_logits.shape == (3, config.vocab_size)
    torch.testing.assert_close(part.prediction_logits, full.prediction_logits.flatten(0, 1)[positions])
    torch.testing.assert_close(part.loss, full.loss)
    mlm = bertforge.BertForMaskedLM(config).eval()
    torch.testing.assert_close(
        mlm(**batch, labels=labels, mlm_positions=positions).loss, mlm(**batch, labels=labels).loss
    )


def test_packing_round_trip_and_left_padding():
    from bertforge.model.padding import packing, pad, unpad, worth_unpadding

    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 0]])
    p = packing(mask)
    assert p.cu_seqlens.tolist() == [0, 3, 5, 6] and p.max_seqlen == 3 and p.total == 6
    x = torch.arange(12.0).view(3, 4, 1)
    packed = unpad(x, p)
    assert packed.squeeze(-1).tolist() == [0, 1, 2, 6, 7, 8]
    back = pad(packed, p)
    assert torch.equal(back * mask[..., None], x * mask[..., None]) and back[mask == 0].abs().sum() == 0
    assert worth_unpadding(int((mask == 0).sum()), mask.numel()) and not worth_unpadding(0, 16)
    assert not worth_unpadding(1, 100)  # 1% padding: not worth the gathers
    known = packing(mask, total=6, max_seqlen=3)  # counts read by the caller: no host read inside
    assert torch.equal(known.indices, p.indices) and torch.equal(known.cu_seqlens, p.cu_seqlens)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("left", [False, True])
def test_padding_free_matches_padded(config, train, left):
    """Packed execution (default) and the all-positions path agree on real tokens, outputs and gradients, to 1e-5."""
    cfg = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)
    torch.manual_seed(0)
    model = bertforge.BertForTokenClassification(cfg).train(train)
    batch = random_batch(cfg, batch=4, seq=9)
    if left:
        batch = {k: v.flip(-1) for k, v in batch.items()}
    mask = batch["attention_mask"].bool()
    labels = torch.randint(0, 3, mask.shape).masked_fill(~mask, -100)
    results = []
    for padding_free in (True, False):
        model.bert.padding_free = padding_free
        model.zero_grad()
        out = model(**batch, labels=labels, output_hidden_states=True)
        out.loss.backward()
        results.append((out, {k: p.grad.clone() for k, p in model.named_parameters()}))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(a.logits[mask], b.logits[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=1e-5)
    for ha, hb in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(ha[mask], hb[mask], atol=1e-5, rtol=1e-5)
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], atol=1e-5, rtol=1e-4, msg=k)


def test_packed_batch_matches_padded_batch(config):
    """A collate_packed batch (cu_seqlens, no padding stored) gives the padded batch's losses, logits and gradients."""
    from bertforge.data.collate import collate_packed, collate_padded

    cfg = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = bertforge.BertForPreTraining(cfg).train()
    g = torch.Generator().manual_seed(3)
    samples = []
    for n in (9, 4, 12):
        ids = torch.randint(5, cfg.vocab_size, (n,), generator=g)
        labels = torch.full((n,), -100)
        labels[1:n:3] = ids[1:n:3]
        samples.append(
            {
                "input_ids": ids.numpy(),
                "token_type_ids": (torch.arange(n) >= n // 2).long().numpy(),
                "labels": labels.numpy(),
                "binary_label": n % 2,
            }
        )
    results = []
    for batch in (collate_padded(samples, pad_id=0), collate_packed(samples)):
        model.zero_grad()
        out = model(**batch)
        out.loss.backward()
        results.append((out, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(b.prediction_logits, a.prediction_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.seq_relationship_logits, a.seq_relationship_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.loss, a.loss, atol=1e-5, rtol=1e-5)
    for k in ga:
        torch.testing.assert_close(gb[k], ga[k], atol=1e-5, rtol=1e-4, msg=k)
    with pytest.raises(ValueError, match="max_seqlen"):
        model.bert(batch["input_ids"], cu_seqlens=batch["cu_seqlens"])


def test_per_sequence_attention_matches_padded_block(config):
    """The CPU training path (one sequence at a time, for cheap dropout masks) equals the padded-block path."""
    from bertforge.model.padding import packing, unpad

    torch.manual_seed(0)
    attn = bertforge.model.bert.SelfAttention(config).eval()
    mask = torch.tensor([[1] * 7 + [0] * 2, [1] * 3 + [0] * 6, [1] * 9])
    x = unpad(torch.randn(3, 9, config.hidden_size), p := packing(mask))
    key_mask = mask.bool()[:, None, None, :]
    block = attn(x, key_mask, packed=p)[0]
    qkv = attn.qkv_proj(x)
    per_sequence = bertforge.model.attention._per_sequence(qkv, attn.num_heads, config.head_size, p, 0.0)
    torch.testing.assert_close(attn.out_proj(per_sequence), block, atol=1e-6, rtol=1e-5)
    attn.train()
    attn.dropout_p = 0.5
    bertforge.model.attention.PER_SEQUENCE_MIN_LENGTH, saved = 1, bertforge.model.attention.PER_SEQUENCE_MIN_LENGTH
    try:
        out = attn(x, key_mask, packed=p)[0]  # the dropout path runs and keeps the shape
    finally:
        bertforge.model.attention.PER_SEQUENCE_MIN_LENGTH = saved
    assert out.shape == block.shape and not torch.allclose(out, block)


def test_tied_word_embeddings_take_a_sparse_lookup_gradient_and_end_dense(config):
    """CPU training with a tied MLM decoder: the lookup's sparse gradient is added into the decoder's dense one; the
    result equals the dense path's, and the encoder trained alone still ends with a dense gradient."""
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = bertforge.BertForPreTraining(config).train()
    emb = model.bert.embeddings
    assert emb.sparse_token_grad
    batch = random_batch(config, B, S)
    grads = []
    for sparse in (True, False):
        emb.sparse_token_grad = sparse
        model.zero_grad(set_to_none=True)
        for _ in range(2):  # two micro-batches: the second accumulates into the first
            model(**batch, labels=batch["input_ids"]).loss.backward()
        grads.append(emb.token.weight.grad)
    assert not grads[0].is_sparse
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
    emb.sparse_token_grad = True
    model.zero_grad(set_to_none=True)
    model.bert(**batch).last_hidden_state.sum().backward()
    grad = emb.token.weight.grad
    assert not grad.is_sparse and grad.abs().sum() > 0
    clone = copy.deepcopy(model)  # the copy's parameter gets its own hook
    clone.bert(**batch).last_hidden_state.sum().backward()
    assert not clone.bert.embeddings.token.weight.grad.is_sparse
    assert len(emb.token.weight._post_accumulate_grad_hooks) == 1  # registered once, not per forward
    assert not bertforge.BertModel(config).embeddings.sparse_token_grad  # no decoder: always dense
