"""The components the training loop is made of, on their own: the run record, the train state a checkpoint carries,
the checkpoint manager's save decision, and the registries of strategies and task families."""

from __future__ import annotations

import json
import types

from bertforge.training.checkpoint import CheckpointManager
from bertforge.training.metrics import MetricsLogger
from bertforge.training.trainer import TrainState


def test_the_record_keeps_a_resumed_runs_steps_and_moves_a_new_runs_aside(tmp_path):
    log = MetricsLogger(str(tmp_path), is_main=True, log_interval=2)
    for step in (2, 4, 6):
        log.write({"step": step, "loss": 1.0 / step})
    (tmp_path / "metrics.jsonl").open("a").write('{"step": 8, "lo')  # a line torn by a kill
    log.start(4)  # resumed at step 4: steps 6 and the torn line go, they are redone
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    log.start(0)  # a fresh run: the earlier record is kept under another name, never deleted
    assert not (tmp_path / "metrics.jsonl").exists()
    assert len(list(tmp_path.glob("metrics.*.jsonl"))) == 1
    assert log.should_log(4, 100) and log.should_log(7, 7) and not log.should_log(5, 100)
    quiet = MetricsLogger(str(tmp_path / "other"), is_main=False, log_interval=1)
    quiet.write({"step": 1})  # only the main rank writes
    assert not (tmp_path / "other").exists()


def test_the_train_state_round_trips_through_a_checkpoint_dict():
    state = TrainState(best={"step": 3, "eval_f1": 0.5}, stale=2, since_eval=[1.5, 3], spent_seconds=12.0)
    again = TrainState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    assert TrainState.from_dict({"stale": 1, "written_by_a_later_version": True}).stale == 1
    assert TrainState().run_id != TrainState().run_id  # each run its own id


def test_the_checkpoint_manager_saves_at_intervals_the_end_evaluations_and_an_early_stop(tmp_path):
    train = types.SimpleNamespace(save_interval=5, load=None, overwrite=False, keep_last=1)
    manager = CheckpointManager(str(tmp_path), train, None, "", lambda d, s: None, lambda c, m: None)
    assert manager.should_save(10, 100, False, False, False) and manager.should_save(7, 7, False, False, False)
    assert not manager.should_save(7, 100, False, False, False)
    assert manager.should_save(7, 100, True, True, False) and not manager.should_save(7, 100, True, False, False)
    assert manager.should_save(7, 100, False, False, True)
    assert manager.resume_point() is None  # a fresh directory: a fresh start
    nowhere = CheckpointManager(None, train, None, "", lambda d, s: None, lambda c, m: None)
    assert not nowhere.should_save(10, 10, True, True, True)  # no run directory, no checkpoint


def test_every_strategy_and_task_family_is_registered_with_its_module():
    from bertforge.adapt import STRATEGIES
    from bertforge.config import AdaptConfig
    from bertforge.tasks.families import FAMILIES

    fields = {f for s in STRATEGIES.values() for f in s.fields}
    assert fields <= set(AdaptConfig.__dataclass_fields__)  # each strategy's fields are AdaptConfig's
    for strategy in STRATEGIES.values():
        assert callable(strategy.implementation().apply)
        assert strategy.peft_type is None or strategy.peft_type.isupper()
    assert set(FAMILIES) == {"classification", "ner", "qa"}
    assert all(cls.name == name and cls.model_class.__name__.startswith("BertFor") for name, cls in FAMILIES.items())
