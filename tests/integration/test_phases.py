"""Multi-phase pretraining (the BERT paper's 128-then-512 tokens, NVIDIA's two LAMB phases) on a tiny model: a new
phase carries the weights, the optimizer state and the step count; it is the same as a resume that changes the sample
length and the batch; a stop inside phase 2 resumes exactly; the shipped recipes parse and run at tiny sizes."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch

from bertforge.cli.main import build_parser
from bertforge.cli.pretrain import build_config
from bertforge.config import PhaseConfig, PretrainConfig
from bertforge.training.optim import lr_lambda, phased_lambda
from bertforge.training.pretrain import pretrain
from tests.integration.test_pretrain import corpus, tiny_run  # noqa: F401  (the fixture)

PHASES = (PhaseConfig(fraction=0.5, seq_length=32), PhaseConfig(seq_length=48, global_batch_size=4))


def phased(corpus, save, **train):  # noqa: F811
    cfg = tiny_run(corpus, str(save), train_iters=8, save_interval=2, **train)
    return dataclasses.replace(cfg, phases=PHASES)


def with_train(cfg: PretrainConfig, **train) -> PretrainConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def weights(run) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "hf" / "model.safetensors"))


def state(run, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"iter_{step:07d}" / "trainer_state.pt", weights_only=False)


def test_phase_two_continues_phase_one_and_equals_a_resume_that_changes_the_shape(corpus, tmp_path, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="bertforge")
    whole = pretrain(phased(corpus, tmp_path / "whole"), show_progress=False)
    assert whole.step == 8 and len(whole.losses) == 8
    assert "new phase at step 4: seq length 32 -> 48, global batch size 8 -> 4" in caplog.text
    end = state(tmp_path / "whole", 8)
    assert end["consumed_samples"] == 4 * 8 + 4 * 4
    assert all(int(s["step"]) == 8 for s in end["optimizer"]["state"].values())  # one optimizer, eight updates
    assert end["loop"]["shape"] == {"seq_length": 48, "global_batch_size": 4}
    records = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["batch_size"]) for r in records if "loss" in r] == [(4, 8), (5, 4), (8, 4)]

    # The same as two runs by hand: phase 1's settings stopped at step 4, then a resume with phase 2's.
    by_hand = tiny_run(corpus, str(tmp_path / "hand"), train_iters=8, save_interval=2)
    first = pretrain(with_train(by_hand, exit_interval=4).merged({"data": {"seq_length": 32}}), show_progress=False)
    second = pretrain(with_train(by_hand, load=str(tmp_path / "hand"), global_batch_size=4), show_progress=False)
    assert first.losses + second.losses == whole.losses  # bit-identical on CPU
    for name, tensor in weights(tmp_path / "whole").items():
        assert torch.equal(tensor, weights(tmp_path / "hand")[name]), name


def test_a_stop_inside_phase_two_resumes_exactly(corpus, tmp_path):  # noqa: F811
    whole = pretrain(phased(corpus, tmp_path / "whole"), show_progress=False)
    cfg = phased(corpus, tmp_path / "part")
    first = pretrain(cfg, exit_interval=6, show_progress=False)
    assert first.step == 6 and len(first.losses) == 6
    rest = pretrain(with_train(cfg, load=str(tmp_path / "part")), show_progress=False)
    assert rest.step == 8 and first.losses + rest.losses == whole.losses
    for name, tensor in weights(tmp_path / "whole").items():
        assert torch.equal(tensor, weights(tmp_path / "part")[name]), name


def test_a_phase_with_its_own_schedule_warms_up_again_over_its_steps():
    cfg = PretrainConfig().merged({"optim": {"lr": 6e-3, "lr_warmup_fraction": 0.5}, "train": {"train_iters": 10}})
    own = PhaseConfig(lr=4e-3, lr_warmup_fraction=0.5)
    f = phased_lambda(cfg.optim, 10, [(0, 6, PhaseConfig(fraction=0.6)), (6, 10, own)])
    run = lr_lambda(cfg.optim, 10)
    assert [f(s) for s in range(6)] == [run(s) for s in range(6)]
    assert [round(f(s) * 6e-3, 6) for s in range(6, 10)] == [0.002, 0.004, 0.004, 0.002]


def test_phases_are_checked_when_the_config_is_read():
    with pytest.raises(ValueError, match="every phase but the last needs a fraction"):
        PretrainConfig().merged({"phases": [{"seq_length": 128}, {"seq_length": 256}]})
    with pytest.raises(ValueError, match="phase 2: seq_length 1024 exceeds"):
        PretrainConfig().merged({"phases": [{"fraction": 0.9}, {"seq_length": 1024}]})
    with pytest.raises(ValueError, match=r"phase 1: unknown field\(s\) \['seq_len'\]"):
        PretrainConfig().merged({"phases": [{"seq_len": 128}]})
    with pytest.raises(ValueError, match="not --train-time"):
        PretrainConfig().merged({"phases": [{"fraction": 0.9}, {}], "train": {"train_time": "1h"}})


@pytest.mark.parametrize("recipe", ["bert-paper", "nvidia-lamb"])
def test_the_shipped_two_phase_recipes_run_at_tiny_sizes(corpus, tmp_path, recipe, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="bertforge")
    tiny = "--num-layers 2 --hidden-size 32 --num-attention-heads 2 --lr-warmup-iters 1"
    line = f"--config {recipe} {tiny} --data-path {corpus['prefix']} --vocab-file {corpus['vocab']} --split 90,10,0"
    line += " --num-workers 0"
    line += f" --train-iters 10 --micro-batch-size 4 --eval-iters 1 --save {tmp_path / 'run'} --log-interval 1"
    cfg, _ = build_config(build_parser().parse_args(["pretrain", *line.split()]))
    assert len(cfg.phases) == 2 and cfg.phases[1].seq_length == 512
    assert cfg.model.num_hidden_layers == 2 and cfg.train.train_iters == 10
    small = [
        dataclasses.replace(p, seq_length=min(p.seq_length, 64), global_batch_size=8, micro_batch_size=4)
        for p in cfg.phases
    ]
    result = pretrain(dataclasses.replace(cfg, phases=tuple(small)), show_progress=False)
    assert result.step == 10 and all(loss == loss for loss in result.losses)
    assert "phase 2 of 2" in caplog.text
