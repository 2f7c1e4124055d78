"""The GPU check script, tried on the CPU (``--device cpu --quick``): every check runs and passes, its JSON is written
as it goes, and it ends with the one-screen summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_passes_on_the_cpu_in_quick_mode(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("transformers")
    out = tmp_path / "gpu_check.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    record = json.loads(out.read_text())
    checks = record["checks"]
    assert {"parity_bf16", "pretrain_resume", "paper_recipe", "transformers_loop"} <= set(checks)
    assert all(c["pass"] for c in checks.values()), checks
    assert checks["paper_recipe"]["steps"] == 10 and 0 < checks["paper_recipe"]["mfu"] < 1
    assert "lm loss" in checks["paper_recipe"]["tensorboard_tags"]
    summary = run.stdout[run.stdout.index("cpu · torch") :].splitlines()
    assert len(summary) == 1 + len(checks) and all("pass" in line for line in summary[1:])
