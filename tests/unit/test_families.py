"""The family registry: one entry per family, whose names cover every tensor of every head class both ways, whose
config.json round-trips, and whose best-known shape has the parameter count its published checkpoint has."""

from __future__ import annotations

import pytest
import torch

from bertforge.constants import MODEL_TYPES
from bertforge.evaluation.variants import base_configs, count, format_table, measure
from bertforge.model import MODEL_CLASSES, BertConfig
from bertforge.model.convert import hf_architecture, hf_to_ours, our_architecture, ours_to_hf
from bertforge.model.families import FAMILIES, family

PUBLISHED = {  # the encoder's parameters (with its pooler where it has one) of each published checkpoint
    "bert-base-uncased": 109_482_240,
    "roberta-base": 124_645_632,
    "distilbert-base-uncased": 66_362_880,
    "electra-base-discriminator": 108_891_648,
    "albert-base-v2": 11_683_584,
}


def tiny(model_type: str) -> BertConfig:
    extra = {"albert": dict(num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2, embedding_size=8)}
    return BertConfig(
        model_type=model_type,
        vocab_size=50,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=32,
        **{"num_hidden_layers": 2, **extra.get(model_type, {})},
    )


def test_the_registry_and_the_names_below_the_model_agree():
    assert tuple(FAMILIES) == MODEL_TYPES
    with pytest.raises(ValueError, match="bertforge loads bert, roberta, distilbert, electra, albert checkpoints"):
        family("t5")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_tensor_of_every_head_has_a_name_both_ways(model_type):
    entry = FAMILIES[model_type]
    for name, cls in MODEL_CLASSES.items():
        if name not in entry.architectures:
            continue  # the family has no such class in transformers
        assert our_architecture(hf_architecture(name, model_type)) == name
        config = tiny(model_type).replace(is_decoder=name == "BertLMHeadModel")
        model = cls(config)
        state = model.state_dict()
        hf = ours_to_hf(
            state, tied=True, model_type=model_type, architecture=name, inner_group_num=config.inner_group_num
        )
        back, unused = hf_to_ours(hf, model_type, config.inner_group_num)
        assert not unused, (name, unused)
        kept = {k for k in state if not (k == "mlm.decoder.weight" and config.tie_word_embeddings)}
        assert set(back) == kept, (name, set(back) ^ kept)
        assert all(torch.equal(back[k], state[k]) for k in kept)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_config_json_round_trips_in_the_family_s_names(model_type):
    config = tiny(model_type)
    data = config.to_dict()
    for theirs, ours in FAMILIES[model_type].config_names.items():
        assert theirs in data and ours not in data
    assert BertConfig.from_dict(data).to_dict() == data
    if model_type != "albert":
        assert "num_hidden_groups" not in data and "inner_group_num" not in data


def test_the_best_known_shapes_have_their_published_parameter_counts():
    configs = base_configs()
    assert list(configs) == list(PUBLISHED)
    assert {name: count(c)[0] for name, c in configs.items()} == PUBLISHED
    assert count(configs["albert-base-v2"])[1] == 30000 * 128 + 512 * 128 + 2 * 128 + 2 * 128 + 128 * 768 + 768


def test_the_speed_table_times_every_model_in_every_round():
    configs = {k: tiny(t) for k, t in (("a", "bert"), ("b", "albert"), ("c", "distilbert"))}
    rounds = []
    out = measure(configs, (torch.float32,), batch_size=2, seq_length=8, rounds=3, progress=rounds.append)
    rows = out[torch.float32]
    assert len(rounds) == 3 and [v.name for v in rows] == ["a", "b", "c"] and rows[0].speed == 1.0
    assert all(v.seconds and v.seconds > 0 for v in rows)
    table = format_table(rows, torch.float32)
    assert "(not in the table)" in table and table.count("\n") == 3
