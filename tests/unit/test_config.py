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
