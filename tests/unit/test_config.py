"""Run configuration: recipes and how they combine."""

from __future__ import annotations

import pytest


def test_a_recipe_sets_its_base_recipes_fields_first(tmp_path):
    from bertforge.config import PretrainConfig

    main_job = PretrainConfig().merged_yaml("main-job")
    crammed = PretrainConfig().merged_yaml("crammed")
    assert main_job.model.num_hidden_layers == crammed.model.num_hidden_layers == 2  # from its base, crammed
    assert main_job.data.full_sentences and main_job.optim.adam_beta2 == 0.98
    assert (main_job.data.seq_length, crammed.data.seq_length) == (64, 128)  # its own fields win
    assert main_job.optim.lr == 4e-3 and main_job.train.train_time == "5m"
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop}\n")
    with pytest.raises(ValueError, match=r"loop\.yaml: base .* must name another recipe"):
        PretrainConfig().merged_yaml(str(loop))


def test_the_family_decides_the_objectives_a_run_does_not_name():
    from bertforge.config import PretrainConfig

    bert = PretrainConfig.from_dict({"optim": {"lr": 1e-4}})
    assert (bert.data.objective, bert.data.binary_head) == ("mlm", "nsp")
    albert = bert.merged({"model": {"model_type": "albert"}})  # a family named later decides again
    assert (albert.data.objective, albert.data.binary_head) == ("mlm", "sop")
    electra = bert.merged({"model": {"model_type": "electra"}})
    assert (electra.data.objective, electra.data.binary_head) == ("electra", "none")
    named = bert.merged({"model": {"model_type": "albert"}, "data": {"binary_head": "none"}})
    assert named.data.binary_head == "none"  # what the run names stays
    assert named.merged({"model": {"model_type": "bert"}}).data.binary_head == "none"
    assert PretrainConfig.from_dict(albert.to_dict()).data.binary_head == "sop"  # a saved run reads back the same
    distil = bert.merged({"model": {"model_type": "distilbert", "num_hidden_layers": 3}})
    again = PretrainConfig.from_dict(distil.to_dict())  # config.json's own names (n_layers, dim) read back
    assert again.model.to_dict() == distil.model.to_dict() and again.model.num_hidden_layers == 3
