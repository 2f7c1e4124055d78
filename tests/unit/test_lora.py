"""LoRA: only the adapters and the head train; merging gives the same outputs; merged weights save as plain BERT."""

from __future__ import annotations

import pytest
import torch

import bertforge
from bertforge.adapt.lora import LoRALinear, apply_lora, merge_lora
from tests.conftest import random_batch, tiny_config


@pytest.mark.parametrize("targets", [("query", "value"), ("qkv", "output", "ffn_in", "ffn_out"), ("key",)])
def test_only_adapters_and_head_change_and_merge_is_exact(targets, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = bertforge.BertForSequenceClassification(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = apply_lora(model, r=4, alpha=8, targets=targets)
    assert wrapped and all(isinstance(w, LoRALinear) for w in wrapped)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("classifier.") for n in trainable)
    batch = random_batch(config)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(**batch, labels=torch.tensor([0, 1, 1])).loss.backward()
        opt.step()
        opt.zero_grad()
    after = model.state_dict()
    for name, value in before.items():
        key = (
            name
            if name in after
            else name.replace("qkv_proj.", "qkv_proj.base.")
            .replace("out_proj.", "out_proj.base.")
            .replace("ffn_in.", "ffn_in.base.")
            .replace("ffn_out.", "ffn_out.base.")
        )
        if name.startswith("classifier."):
            assert not torch.equal(after[key], value)
        else:
            assert torch.equal(after[key], value), name  # the frozen encoder did not move
    model.eval()
    with torch.no_grad():
        unmerged = model(**batch).logits
        for w in wrapped:
            w.merge()
        merged = model(**batch).logits
        torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
        for w in wrapped:
            w.unmerge()
        torch.testing.assert_close(model(**batch).logits, unmerged, atol=1e-5, rtol=1e-5)
    merge_lora(model)
    model.save_pretrained(tmp_path)
    again = bertforge.BertForSequenceClassification.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, unmerged, atol=1e-5, rtol=1e-5)
