"""The documentation cannot drift from the code: the CLI and API references equal what docs/gen_reference.py makes
from the parsers and docstrings now, the site builds in MkDocs' strict mode (a broken link or a missing page fails),
and the README stays a door (at most about 200 lines, every link in it resolving)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))

import gen_reference  # noqa: E402


@pytest.mark.parametrize("name", ["cli.md", "api.md"])
def test_the_reference_is_what_the_code_says_now(name):
    page = gen_reference.OUT / name
    expected = gen_reference.pages()[page]
    assert page.exists() and page.read_text() == expected, (
        f"docs/reference/{name} is stale: run python docs/gen_reference.py"
    )


def test_the_cli_reference_covers_every_command_and_flag():
    text = (gen_reference.OUT / "cli.md").read_text()
    from bertforge.cli.main import COMMANDS

    assert all(f"## bertforge {c}" in text for c in COMMANDS)
    for flag in ("--train-time", "--baseline", "--format", "--strategy", "--family", "--init-model"):
        assert f"`{flag}" in text, flag


def test_the_site_builds_in_strict_mode(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install 'bertforge[docs]')")
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "tutorials" / "05-ner" / "index.html").read_text().count('class="entity"') > 1


def test_the_readme_is_a_door_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert targets and [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()] == []
