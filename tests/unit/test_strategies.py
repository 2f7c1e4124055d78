"""Fine-tuning strategies: only the intended parameters change, artefacts round-trip, soft prompts and prefixes are
exact on padded, padding-free and paired batches, gradual unfreezing follows its announced plan."""

from __future__ import annotations

import pytest
import torch

import bertforge
from bertforge.config import AdaptConfig
from bertforge.strategies import (
    UnfreezeSchedule,
    apply_strategy,
    from_adapter,
    head_parameter_names,
    remove_strategy,
    save_adapter,
)
from tests.conftest import random_batch, tiny_config

STRATEGIES = {
    "head": AdaptConfig(strategy="head"),
    "freeze": AdaptConfig(strategy="freeze", freeze_layers=1),
    "lora": AdaptConfig(strategy="lora", lora_r=4, lora_targets=("query", "value", "ffn_out")),
    "adapter": AdaptConfig(strategy="adapter", adapter_size=8),
    "adapter-pfeiffer": AdaptConfig(strategy="adapter", adapter_size=8, adapter_placement="pfeiffer"),
    "prompt": AdaptConfig(strategy="prompt", prompt_tokens=4),
    "prefix": AdaptConfig(strategy="prefix", prefix_tokens=3),
    "prefix-mlp": AdaptConfig(strategy="prefix", prefix_tokens=3, prefix_projection=16),
}
HEADS = [
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertForQuestionAnswering",
    "BertForMultipleChoice",
]


def _config(head: str = ""):
    labels = 2 if head == "BertForQuestionAnswering" else 3
    return tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=labels)


def _inputs(head: str, config, seed: int = 0) -> dict:
    batch = random_batch(config, batch=3, seq=9, seed=seed)
    if head == "BertForMultipleChoice":
        batch = {k: torch.stack([v, v.roll(1, 0)], 1) for k, v in batch.items()}  # (B, C=2, S)
    return batch


def _labels(head: str, batch: dict) -> dict:
    B, S = batch["input_ids"].shape[0], batch["input_ids"].shape[-1]
    if head == "BertForSequenceClassification":
        return {"labels": torch.tensor([0, 1, 2])[:B]}
    if head == "BertForTokenClassification":
        return {"labels": torch.randint(0, 3, (B, S), generator=torch.Generator().manual_seed(0))}
    if head == "BertForQuestionAnswering":
        return {"start_positions": torch.tensor([1, 2, 3])[:B], "end_positions": torch.tensor([2, 3, 3])[:B]}
    return {"labels": torch.tensor([0, 1, 1])[:B]}


def _out(model, batch):
    out = model(**batch)
    return torch.stack([out.start_logits, out.end_logits], -1) if hasattr(out, "start_logits") else out.logits


def _intended(strategy: str, name: str, model) -> bool:
    """Whether ``name`` may change under ``strategy``."""
    if name in head_parameter_names(model):
        return True
    if strategy == "freeze":
        return name.startswith("bert.layers.1.") or name.startswith("bert.pooler.")
    marks = {"lora": "lora_", "adapter": "adapter_", "prompt": "bert.prompt.", "prefix": "bert.prefix."}
    return strategy in marks and marks[strategy] in name


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("key", list(STRATEGIES))
def test_only_the_intended_parameters_change(key, head):
    torch.manual_seed(0)
    config = _config(head)
    model = getattr(bertforge, head)(config)
    cfg = STRATEGIES[key]
    trainable = apply_strategy(model, cfg)
    assert 0 < trainable < model.num_parameters()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.01)
    batch = _inputs(head, config)
    for _ in range(2):
        model(**batch, **_labels(head, batch)).loss.backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    unexpected = sorted(n for n in changed if not _intended(cfg.strategy, n, model))
    assert not unexpected, unexpected
    assert any(n in changed for n in head_parameter_names(model))  # the head always trains
    if cfg.strategy != "head":
        assert any(n not in head_parameter_names(model) for n in changed)  # and the strategy's own parameters


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("key", list(STRATEGIES))
def test_artefact_round_trips_to_the_same_outputs(key, head, tmp_path):
    torch.manual_seed(0)
    config = _config(head)
    getattr(bertforge, head)(config).save_pretrained(tmp_path / "base")
    model = getattr(bertforge, head).from_pretrained(tmp_path / "base")
    cfg = STRATEGIES[key]
    apply_strategy(model, cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # trained values everywhere the strategy trains
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    model.eval()
    save_adapter(model, cfg, str(tmp_path / "adapter"), str(tmp_path / "base"))
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert "adapter_model.safetensors" in files and "bertforge_adapter.json" in files
    assert ("adapter_config.json" in files) == (cfg.strategy in ("lora", "prompt", "prefix"))
    adapter_bytes = (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size
    base_bytes = (tmp_path / "base" / "model.safetensors").stat().st_size
    if cfg.strategy != "freeze":
        assert adapter_bytes < base_bytes / 2
    loaded = from_adapter(str(tmp_path / "adapter"))
    batch = _inputs(head, config, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(_out(loaded, batch), _out(model, batch), atol=1e-6, rtol=1e-5)
    # and load_model of the adapter directory is the same model; from_pretrained says to use it
    again = bertforge.load_model(tmp_path / "adapter", getattr(bertforge, head))
    with torch.no_grad():
        torch.testing.assert_close(_out(again, batch), _out(model, batch), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match=r"a fine-tuning strategy's artefact .* bertforge\.load_model"):
        getattr(bertforge, head).from_pretrained(tmp_path / "adapter")


@pytest.mark.parametrize("kind", ["prompt", "prefix"])
@pytest.mark.parametrize("head", ["BertForTokenClassification", "BertForQuestionAnswering"])
def test_prompt_and_prefix_are_exact_on_padded_padding_free_and_paired_batches(kind, head):
    torch.manual_seed(0)
    config = _config(head)
    model = getattr(bertforge, head)(config).eval()
    apply_strategy(model, AdaptConfig(strategy=kind, prompt_tokens=4, prefix_tokens=3))
    batch = random_batch(config, batch=4, seq=11)  # token types 0 then 1 (pairs), rows of different lengths
    with torch.no_grad():
        packed = _out(model, batch)
        model.bert.padding_free = False
        padded = _out(model, batch)
        # each row alone, without padding: what the row computes does not depend on its batch
        for row in range(4):
            n = int(batch["attention_mask"][row].sum())
            alone = {k: v[row : row + 1, :n] for k, v in batch.items()}
            torch.testing.assert_close(_out(model, alone)[0], padded[row, :n], atol=1e-5, rtol=1e-4)
    assert packed.shape[:2] == batch["input_ids"].shape  # outputs at the input's positions: labels/offsets unchanged
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(packed[mask], padded[mask], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["prompt", "prefix"])
@pytest.mark.parametrize("causal", [False, True])
def test_soft_tokens_on_prepacked_batches_equal_padded(kind, causal):
    torch.manual_seed(0)
    config = _config().replace(is_decoder=causal)
    model = bertforge.BertForSequenceClassification(config).eval()
    apply_strategy(model, AdaptConfig(strategy=kind, prompt_tokens=4, prefix_tokens=3, prompt_init="random"))
    batch = random_batch(config, batch=3, seq=8)
    mask = batch["attention_mask"].bool()
    lengths = mask.sum(1)
    cu = torch.cat([torch.zeros(1, dtype=torch.int32), lengths.cumsum(0).to(torch.int32)])
    with torch.no_grad():
        padded = model.bert(**batch)
        packed = model.bert(
            batch["input_ids"][mask], token_type_ids=batch["token_type_ids"][mask], cu_seqlens=cu, max_seqlen=8
        )
    torch.testing.assert_close(packed.last_hidden_state, padded.last_hidden_state[mask], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed.pooler_output, padded.pooler_output, atol=1e-5, rtol=1e-4)


def test_prefix_reparameterisation_folds_to_the_same_outputs():
    torch.manual_seed(0)
    config = _config()
    model = bertforge.BertForSequenceClassification(config).eval()
    apply_strategy(model, STRATEGIES["prefix-mlp"])
    batch = random_batch(config)
    with torch.no_grad():
        before = model(**batch).logits
        model.bert.prefix.fold()
        assert model.bert.prefix.transform is None
        torch.testing.assert_close(model(**batch).logits, before, atol=1e-6, rtol=1e-5)


def test_prompt_starts_from_a_text_and_counts_against_the_position_limit(tmp_path):
    from bertforge.tokenization import BertTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "great", "movie", "review"]) + "\n")
    tok = BertTokenizer(str(vocab))
    config = tiny_config(vocab_size=8, max_position_embeddings=12)
    model = bertforge.BertForSequenceClassification(config)
    cfg = AdaptConfig(strategy="prompt", prompt_tokens=5, prompt_init="text", prompt_init_text="movie review")
    apply_strategy(model, cfg, tok)
    table = model.bert.embeddings.token.weight
    expected = table[torch.tensor([6, 7, 6, 7, 6])]
    torch.testing.assert_close(model.bert.prompt.embedding.weight, expected)
    with pytest.raises(ValueError, match="with the 5 prompt tokens"):
        model(torch.ones(1, 8, dtype=torch.long))


def test_remove_strategy_gives_back_the_base_model():
    torch.manual_seed(0)
    config = _config()
    model = bertforge.BertForSequenceClassification(config).eval()
    batch = random_batch(config)
    with torch.no_grad():
        base = model(**batch).logits
    for cfg in STRATEGIES.values():
        if cfg.strategy in ("head", "freeze"):
            continue
        apply_strategy(model, cfg)
        remove_strategy(model)
        with torch.no_grad():
            torch.testing.assert_close(model(**batch).logits, base)


def test_gradual_unfreezing_follows_its_plan():
    config = tiny_config(num_hidden_layers=4)
    model = bertforge.BertForSequenceClassification(config)
    cfg = AdaptConfig(strategy="freeze", freeze_layers=1, unfreeze="steps", unfreeze_steps=3)
    apply_strategy(model, cfg)
    schedule = UnfreezeSchedule(model, cfg, steps_per_epoch=10)
    assert schedule.plan() == [(3, 0), (2, 3), (1, 6)]

    def frozen_layers(step):
        ids = {id(p) for p in schedule.frozen_at(step)}
        return [i for i, layer in enumerate(model.bert.layers) if any(id(p) in ids for p in layer.parameters())]

    assert frozen_layers(0) == [1, 2] and frozen_layers(2) == [1, 2]
    assert frozen_layers(3) == [1] and frozen_layers(5) == [1]
    assert frozen_layers(6) == [] and frozen_layers(100) == []
    by_epoch = UnfreezeSchedule(model, AdaptConfig(strategy="freeze", unfreeze="epoch"), steps_per_epoch=7)
    assert by_epoch.plan() == [(3, 0), (2, 7), (1, 14), (0, 21)]


def test_strategy_options_are_checked():
    with pytest.raises(ValueError, match="prompt_init_text"):
        AdaptConfig(strategy="prompt", prompt_init="text")
    with pytest.raises(ValueError, match="part of strategy freeze"):
        AdaptConfig(strategy="lora", unfreeze="epoch")
    with pytest.raises(ValueError, match="every layer"):
        apply_strategy(
            bertforge.BertForSequenceClassification(tiny_config()), AdaptConfig(strategy="freeze", freeze_layers=2)
        )
