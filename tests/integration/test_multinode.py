"""Multi-node training as torchrun runs it, on one machine: two agents (``--nnodes 2 --nproc-per-node 1``) meeting
through a c10d rendezvous over loopback, gloo between the workers. Two nodes give the losses and weights of one
process; with ``--max-restarts 1`` a worker killed mid-run makes torchrun restart the group, which resumes from the
last checkpoint and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bertforge.cli.main import main
from tests.integration.test_pretrain import corpus  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def flags(corpus, save: Path, iters: int = 12) -> list[str]:  # noqa: F811
    line = (
        "--num-layers 2 --hidden-size 32 --num-attention-heads 2 --seq-length 48 --max-position-embeddings 64 "
        f"--micro-batch-size 4 --global-batch-size 8 --train-iters {iters} --lr 3e-3 --lr-warmup-iters 2 "
        f"--data-path {corpus['prefix']} --vocab-file {corpus['vocab']} --split 90,10,0 --num-workers 0 "
        f"--save {save} --load {save} --save-interval 4 --log-interval 1 --eval-interval 1000 --eval-iters 1 "
        "--fp32 --no-demo --device cpu"
    )
    return line.split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(program: list[str], tmp_path: Path, restarts: int = 0, timeout: float = 300) -> list[str]:
    """Start two torchrun agents (one per "node") on a c10d rendezvous at 127.0.0.1; returns their outputs."""
    port = free_port()
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    agent = [
        TORCHRUN,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        f"bertforge-{port}",
        "--local-addr",
        "127.0.0.1",
        "--max-restarts",
        str(restarts),
        *program,
    ]
    logs = [open(tmp_path / f"node{k}.log", "w+") for k in range(2)]
    procs = [subprocess.Popen(agent, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
    outputs = [(tmp_path / f"node{k}.log").read_text() for k in range(2)]
    assert codes == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    return outputs


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "hf" / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=atol, rtol=0, msg=name)


def test_two_nodes_over_loopback_equal_one_process(corpus, tmp_path):  # noqa: F811
    assert main(["pretrain", *flags(corpus, tmp_path / "one")]) == 0
    tensorboard = ["--tensorboard-dir", str(tmp_path / "tb"), "--tensorboard-log-interval", "3"]
    two_nodes(["-m", "bertforge", "pretrain", *flags(corpus, tmp_path / "two"), *tensorboard], tmp_path)
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1  # rank 0 alone writes
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(two) == 12
    assert two == pytest.approx(one, abs=1e-5)
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=1e-5)
    assert (tmp_path / "two" / "checkpoints" / "latest").read_text().strip() == "iter_0000012"


KILLER = """
    # A worker of bertforge pretrain whose rank 1 dies by SIGKILL after step 6 the first time round (the checkpoint
    # of step 4 is the newest then): what a lost machine looks like to the rest of the group.
    import os, signal, sys
    from bertforge.training import trainer

    step_function = trainer.train_step
    calls = [0]
    marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "killed-once")

    def train_step(*args, **kwargs):
        out = step_function(*args, **kwargs)
        calls[0] += 1
        if os.environ["RANK"] == "1" and calls[0] == 6 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    trainer.train_step = train_step
    from bertforge.cli.main import main

    sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_worker_is_restarted_and_the_run_ends_as_an_uninterrupted_one(corpus, tmp_path):  # noqa: F811
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER))
    two_nodes(["-m", "bertforge", "pretrain", *flags(corpus, tmp_path / "whole")], tmp_path)
    outputs = two_nodes([str(script), "pretrain", *flags(corpus, tmp_path / "killed")], tmp_path, restarts=1)
    assert (tmp_path / "killed-once").exists()
    assert any("resumed from" in o and "iter_0000004" in o for o in outputs), outputs[0][-3000:]
    assert_same_weights(tmp_path / "whole", tmp_path / "killed", atol=0)
    assert losses(tmp_path / "killed") == losses(tmp_path / "whole")  # steps 5-6 logged once, as the resumed run did
