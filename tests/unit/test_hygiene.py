"""The project speaks only of itself: no tracked file names how it was developed (numbered working periods) or a path
that leaves the repository (the folders of the machines it was built on). The patterns are assembled from pieces so
that this file does not match itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "a numbered working period": re.compile(r"\b[Ss]ess" + r"ions?\s+(\d+|[IVX]+)\b"),
    "a folder of the build machines": re.compile("/wo" + "rk/"),
    "a data folder beside the checkout": re.compile(r"\.\./sha" + r"red\b|\bparents\[2\]\s*/\s*\"sha" + "red"),
    "the development machines": re.compile("this project's mach" + "ines", re.IGNORECASE),
}


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.decode().split("\0") if name]


def offending_lines(text: str) -> list[str]:
    return [
        f"line {n}: {what}: {line.strip()[:120]}"
        for n, line in enumerate(text.splitlines(), 1)
        for what, pattern in FORBIDDEN.items()
        if pattern.search(line)
    ]


def test_the_patterns_catch_what_they_are_for():
    assert offending_lines("measured in sess" + "ion 12 on the EPYC")
    assert offending_lines('DATA = ROOT / "../sha' + 'red/data"')
    assert offending_lines("vocab: /wo" + "rk/main/.venv/vocab.txt")
    assert not offending_lines("ort.InferenceSession(path); a pytest session fixture; torchrun --nnodes 2")


def test_no_tracked_file_speaks_of_the_development_process_or_leaves_the_repository():
    found = []
    for path in tracked_files():
        if not path.is_file() or path.suffix in {".png", ".svg", ".safetensors", ".bin", ".idx", ".model"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found += [f"{path.relative_to(ROOT)}: {line}" for line in offending_lines(text)]
    assert not found, "\n".join(found)
