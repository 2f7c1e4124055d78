"""Strategies against Hugging Face peft on transformers' BERT: the same weights give the same logits, parameter counts
match, bertforge's saved adapter loads in peft and peft's in bertforge (LoRA, prompt tuning, prefix tuning).

peft 0.21 cannot run prefix tuning through transformers 5's ``BertFor*`` (their forward no longer takes past key
values), so the prefix reference is peft's own ``get_prompt`` (its key/value layout) fed to transformers' ``BertModel``
as a cache, the classifier applied by hand."""

from __future__ import annotations

import pytest
import torch

import bertforge
from bertforge.config import AdaptConfig
from bertforge.strategies import apply_strategy, from_adapter, load_adapter, save_adapter
from tests.conftest import random_batch, tiny_config

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

HEADS = {
    "SEQ_CLS": ("BertForSequenceClassification", 3),
    "TOKEN_CLS": ("BertForTokenClassification", 5),
    "QUESTION_ANS": ("BertForQuestionAnswering", None),
}


def _pair(tmp_path, task_type: str):
    """(transformers model, bertforge model) with the same random weights, both in eval mode."""
    name, labels = HEADS[task_type]
    config = tiny_config(num_labels=labels) if labels else tiny_config()
    torch.manual_seed(0)
    ours = getattr(bertforge, name)(config)
    ours.save_pretrained(tmp_path / "base")
    theirs = getattr(transformers, name).from_pretrained(tmp_path / "base").eval()
    return theirs, ours.eval(), str(tmp_path / "base")


def _peft_config(kind: str, task_type: str):
    if kind == "lora":
        return peft.LoraConfig(
            task_type=task_type, r=4, lora_alpha=8, target_modules=["query", "value", "intermediate.dense"]
        )
    if kind == "prompt":
        return peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=5)
    return peft.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=5)


def _randomize(model) -> None:
    """Non-zero values in every trainable tensor (LoRA's B starts at zero, which would hide a layout error)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _logits(out):
    return torch.stack([out.start_logits, out.end_logits], -1) if hasattr(out, "start_logits") else out.logits


def _reference(pm, kind: str, batch: dict):
    """peft's output on transformers (the prefix path by hand, see the module notes)."""
    if kind != "prefix":
        return _logits(pm(**batch))
    B, S = batch["input_ids"].shape
    base = pm.base_model
    cache = pm.get_prompt(B)
    mask = torch.cat([torch.ones(B, 5, dtype=torch.long), batch["attention_mask"]], 1)
    out = base.bert(
        input_ids=batch["input_ids"], attention_mask=mask, token_type_ids=batch["token_type_ids"], cache=cache
    )
    if hasattr(base, "qa_outputs"):
        return base.qa_outputs(out.last_hidden_state)
    hidden = out.pooler_output if type(base).__name__.endswith("SequenceClassification") else out.last_hidden_state
    return base.classifier(hidden)


@pytest.mark.parametrize("kind", ["lora", "prompt", "prefix"])
@pytest.mark.parametrize("task_type", ["SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS"])
def test_bertforge_adapter_loads_in_peft_with_the_same_outputs(kind, task_type, tmp_path):
    theirs, ours, base = _pair(tmp_path, task_type)
    cfg = AdaptConfig(
        strategy=kind,
        lora_r=4 if kind == "lora" else None,
        lora_alpha=8,
        lora_targets=("query", "value", "ffn_in"),
        prompt_tokens=5,
        prefix_tokens=5,
    )
    trainable = apply_strategy(ours, cfg)
    _randomize(ours)
    save_adapter(ours, cfg, str(tmp_path / "adapter"), base)
    pm = peft.PeftModel.from_pretrained(theirs, str(tmp_path / "adapter")).eval()
    # the same configuration trains as many parameters in peft (adapter + head)
    fresh = peft.get_peft_model(_pair(tmp_path / "fresh", task_type)[0], _peft_config(kind, task_type))
    assert trainable == fresh.get_nb_trainable_parameters()[0]
    batch = random_batch(ours.config, batch=3, seq=9)
    if task_type == "QUESTION_ANS":  # peft 0.21's PeftModelForQuestionAnswering.forward drops token_type_ids
        batch["token_type_ids"].zero_()
    with torch.no_grad():
        expected = _reference(pm, kind, batch)
        got = _logits(ours(**batch))
    if kind == "prompt" and task_type != "SEQ_CLS":
        expected = expected[:, 5:]  # peft returns outputs for the soft tokens too; ours are the input's positions
    mask = batch["attention_mask"].bool()
    if got.dim() == 3 or task_type == "QUESTION_ANS":
        got, expected = got[mask], expected[mask]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["lora", "prompt", "prefix"])
def test_peft_adapter_loads_in_bertforge_with_the_same_outputs(kind, tmp_path):
    theirs, _, base = _pair(tmp_path, "SEQ_CLS")
    pm = peft.get_peft_model(theirs, _peft_config(kind, "SEQ_CLS"))
    _randomize(pm)
    pm.save_pretrained(str(tmp_path / "peft_adapter"))
    pm.eval()
    batch = random_batch(bertforge.BertConfig.from_pretrained(base), batch=3, seq=9)
    ours = from_adapter(str(tmp_path / "peft_adapter"), base=base)
    with torch.no_grad():
        expected = _reference(pm, kind, batch)
        got = ours(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_lora_on_the_fused_projection_exports_as_three_peft_modules(tmp_path):
    theirs, ours, base = _pair(tmp_path, "SEQ_CLS")
    cfg = AdaptConfig(strategy="lora", lora_r=4, lora_targets=("qkv", "output", "ffn_out"))
    apply_strategy(ours, cfg)
    _randomize(ours)
    save_adapter(ours, cfg, str(tmp_path / "adapter"), base)
    pm = peft.PeftModel.from_pretrained(theirs, str(tmp_path / "adapter")).eval()
    batch = random_batch(ours.config)
    with torch.no_grad():
        expected = pm(**batch).logits
        torch.testing.assert_close(ours(**batch).logits, expected, atol=1e-5, rtol=1e-4)
    # and back: peft's three modules load as three slices with the same outputs
    again = bertforge.BertForSequenceClassification.from_pretrained(base)
    load_adapter(again, str(tmp_path / "adapter"))
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(**batch).logits, expected, atol=1e-5, rtol=1e-4)
