"""Runs that cannot be turned against their user or each other: no code runs from a checkpoint, no run deletes what
another wrote, --load must point at something, one writer per directory, and a crashed run leaves a clean record
(metrics without duplicates or torn lines, no temporary files) that resumes exactly."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import time

import pytest
import torch

from bertforge.training import checkpoint as ckpt
from bertforge.training.pretrain import pretrain

from .test_pretrain import corpus, tiny_run  # noqa: F401  (the session corpus fixture)


def _with(cfg, **train):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_trainer_state_is_refused_and_runs_nothing(corpus, tmp_path):  # noqa: F811
    cfg = tiny_run(corpus, str(tmp_path / "run"), train_iters=2)
    pretrain(cfg, show_progress=False)
    checkpoint = ckpt.resolve_checkpoint(str(tmp_path / "run"))
    state_file = os.path.join(checkpoint, ckpt.STATE_FILE)
    state = torch.load(state_file, weights_only=True)
    marker = tmp_path / "pwned"
    torch.save({**state, "payload": _Exploit(marker)}, state_file)
    with pytest.raises(ValueError, match=r"trainer_state\.pt: refused"):
        pretrain(_with(cfg, load=str(tmp_path / "run"), train_iters=4), show_progress=False)
    assert not marker.exists()
    with open(state_file, "wb") as fh:
        fh.write(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"trainer_state\.pt: not a readable trainer state"):
        ckpt.load_trainer_state(checkpoint)


def test_a_new_run_never_deletes_another_runs_checkpoints(corpus, tmp_path):  # noqa: F811
    run = str(tmp_path / "D")
    cfg = tiny_run(corpus, run, train_iters=18, save_interval=3, keep_last=3, log_interval=1)
    pretrain(cfg, show_progress=False)
    first = [os.path.basename(p) for p in ckpt.checkpoints(run)]
    assert first == ["iter_0000012", "iter_0000015", "iter_0000018"]
    other = _with(cfg, seed=2, exit_interval=3)
    with pytest.raises(ValueError, match="holds the checkpoints of an earlier run.*--load.*--overwrite"):
        pretrain(other, show_progress=False)
    assert [os.path.basename(p) for p in ckpt.checkpoints(run)] == first  # refused before writing anything
    new = pretrain(_with(other, overwrite=True), show_progress=False)
    assert new.step == 3
    names = [os.path.basename(p) for p in ckpt.checkpoints(run)]
    assert names == ["iter_0000003", *first]  # the earlier run's checkpoints are kept
    assert open(os.path.join(run, "checkpoints", "latest")).read().strip() == "iter_0000003"
    assert any(name.startswith("metrics.") and name != "metrics.jsonl" for name in os.listdir(run))  # moved aside
    resumed = pretrain(_with(other, load=run, exit_interval=None, train_iters=12), show_progress=False)
    assert resumed.step == 12
    names = [os.path.basename(p) for p in ckpt.checkpoints(run)]
    # The new run pruned only its own (iter 3); its iter 12 took the name of the earlier run's, which was moved aside.
    assert names == ["iter_0000006", "iter_0000009", "iter_0000012", "iter_0000015", "iter_0000018"]
    aside = [n for n in os.listdir(os.path.join(run, "checkpoints")) if n.startswith("iter_0000012.")]
    assert len(aside) == 1 and os.path.exists(os.path.join(run, "checkpoints", aside[0], ckpt.STATE_FILE))


def test_load_that_points_nowhere_is_an_error_and_deletes_nothing(corpus, tmp_path):  # noqa: F811
    cfg = tiny_run(corpus, str(tmp_path / "run"), train_iters=2)
    pretrain(cfg, show_progress=False)
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    for target in (tmp_path / "typo", tmp_path / "empty", corpus["vocab"]):
        if target == tmp_path / "empty":
            target.mkdir()
        with pytest.raises(ValueError, match="--load .* (does not exist|holds no checkpoint)"):
            pretrain(_with(cfg, load=str(target), save=str(tmp_path / "run2")), show_progress=False)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics
    assert not (tmp_path / "run2").exists()
    # Megatron's launch line: --save X --load X with no checkpoint in X yet starts fresh.
    fresh = pretrain(_with(cfg, save=str(tmp_path / "X"), load=str(tmp_path / "X")), show_progress=False)
    assert fresh.step == 2


def test_one_writer_per_run_directory(corpus, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (run / ".lock").write_text(f"{sleeper.pid} {socket.gethostname()}\n")
        cfg = tiny_run(corpus, str(run), train_iters=2)
        with pytest.raises(ValueError, match=rf"in use by another run \(pid {sleeper.pid}"):
            pretrain(cfg, show_progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    result = pretrain(cfg, show_progress=False)  # the holder is gone: its lock is taken over
    assert result.step == 2 and not (run / ".lock").exists()


def test_a_restarted_torchrun_job_takes_over_its_earlier_attempts_lock(tmp_path, monkeypatch):
    """Rank 0 of a restarted attempt may run on another node than the last one, whose pid it cannot check: the
    lock's torchrun run id says it was this job's, and torchrun stopped that attempt before starting this one."""
    from bertforge.training.checkpoint import RunLock

    (tmp_path / ".lock").write_text("4242 node007 job-1\n")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-2")
    with pytest.raises(ValueError, match="in use by another run \\(pid 4242 on node007"):
        RunLock(str(tmp_path)).__enter__()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    with RunLock(str(tmp_path)):
        assert (tmp_path / ".lock").read_text().split()[2] == "job-1"
    assert not (tmp_path / ".lock").exists()


def test_resume_after_a_crash_keeps_a_clean_record(corpus, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    cfg = tiny_run(corpus, str(run), train_iters=12, save_interval=5, log_interval=1)
    full = pretrain(_with(cfg, save=str(tmp_path / "full")), show_progress=False)
    pretrain(_with(cfg, exit_interval=10), show_progress=False)
    # What a kill leaves: records of steps past the last checkpoint, a torn line, temporary files of a save.
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 11, "loss": 1.0}) + "\n" + '{"step": 12, "lo')
    (run / "checkpoints" / ".iter_0000015.abc.tmp").mkdir()
    (run / "checkpoints" / ".latest.xyz.tmp").write_text("iter_0000015")
    (run / ".hf.q1.tmp").mkdir()
    (run / "checkpoints" / "iter_0000010").rename(run / "checkpoints" / "iter_0000010.old")  # between two renames
    resumed = pretrain(_with(cfg, load=str(run)), show_progress=False)
    assert resumed.losses == full.losses[10:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, 13))  # each step once, no torn line
    leftovers = [n for d in (run, run / "checkpoints") for n in os.listdir(d) if n.endswith((".tmp", ".old"))]
    assert leftovers == []


@pytest.mark.slow
def test_kill_nine_loop_ends_with_a_resumable_clean_run(corpus, tmp_path):  # noqa: F811
    """Kill -9 the CLI at random moments (some inside saves: a checkpoint every step), resume each time; the run
    finishes with the uninterrupted run's losses, a record without duplicates or torn lines, and no temporary files."""
    run = tmp_path / "run"
    steps = 400
    line = [
        sys.executable,
        "-m",
        "bertforge",
        "pretrain",
        "--num-layers",
        "2",
        "--hidden-size",
        "32",
        "--num-attention-heads",
        "2",
        "--ffn-hidden-size",
        "64",
        "--seq-length",
        "48",
        "--max-position-embeddings",
        "64",
        "--micro-batch-size",
        "4",
        "--train-iters",
        str(steps),
        "--save-interval",
        "1",
        "--keep-last",
        "2",
        "--log-interval",
        "1",
        "--eval-interval",
        "100000",
        "--data-path",
        corpus["prefix"],
        "--vocab-file",
        corpus["vocab"],
        "--split",
        "90,10,0",
        "--seed",
        "3",
        "--no-demo",
        "--hidden-dropout",
        "0.1",
        "--save",
        str(run),
        "--load",
        str(run),
        "--num-workers",
        "0",
        "--no-export-hf",
    ]
    env = {**os.environ, "BERTFORGE_NO_MALLOC_TUNING": "1"}
    rng = random.Random(0)
    kills = 0
    while kills < 10:  # each launch resumes, trains a little and is killed (or finishes the run)
        proc = subprocess.Popen(line, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.5, 4.5))
        if proc.poll() is not None:
            break
        proc.kill()
        proc.wait()
        kills += 1
    done = subprocess.run(line, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert kills >= 5, kills
    assert open(run / "checkpoints" / "latest").read().strip() == f"iter_{steps:07d}"
    text = (run / "metrics.jsonl").read_text()
    records = [json.loads(x) for x in text.splitlines()]  # no torn line
    assert [r["step"] for r in records if "loss" in r] == list(range(1, steps + 1))
    uninterrupted = tmp_path / "u"
    u_line = [*line[: line.index("--save")], "--save", str(uninterrupted), "--num-workers", "0", "--no-export-hf"]
    assert subprocess.run(u_line, env=env, capture_output=True).returncode == 0
    expected = [
        r["loss"] for r in map(json.loads, (uninterrupted / "metrics.jsonl").read_text().splitlines()) if "loss" in r
    ]
    assert [r["loss"] for r in records if "loss" in r] == expected
    leftovers = [n for d in (run, run / "checkpoints") for n in os.listdir(d) if n.endswith((".tmp", ".old"))]
    assert leftovers == [] and not (run / ".lock").exists()


def test_token_ids_past_the_vocabulary_are_refused_by_file(corpus, tmp_path):  # noqa: F811
    import numpy as np

    from bertforge.data.indexed import IndexedDatasetBuilder
    from bertforge.training.pretrain import build_data

    with IndexedDatasetBuilder(str(tmp_path / "big"), dtype=np.uint16) as b:
        for d in range(20):
            b.add_document([[5, 6, 7], [4000 + d, 8]])
        b.finalize()
    cfg = tiny_run(corpus)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_path=[str(tmp_path / "big")]))
    with pytest.raises(ValueError, match=r"big.bin holds token id 40\d\d, past the \d+-token vocabulary"):
        build_data(cfg)


def test_the_default_run_directory_never_collides_with_an_earlier_run(tmp_path, monkeypatch):
    from bertforge.cli.pretrain import new_run_dir

    monkeypatch.chdir(tmp_path)
    assert new_run_dir("runs/pretrain") == "runs/pretrain"
    (tmp_path / "runs" / "pretrain" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "pretrain" / "checkpoints" / "latest").write_text("iter_0000900\n")
    assert new_run_dir("runs/pretrain") == "runs/pretrain-2"
