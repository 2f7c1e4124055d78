"""Run the tutorials' code: every ```python and ```bash block of a page, in order, in one fresh process and an empty
working folder per page, as a reader would paste them (the test suite runs each page this way).

    python docs/run_tutorials.py                   # every page, small (what the tests run)
    python docs/run_tutorials.py 04 --scale 10     # one page, ten times the data and steps: results worth reading
    python docs/run_tutorials.py --figures         # also copy the figures the pages draw into docs/tutorials/figures

Pages read ``TUTORIAL_SCALE`` (the ``--scale``) to size their data and steps; fp32 is pinned (``BERTFORGE_BF16=0``)
so the printed numbers do not depend on the machine's bf16 units. A failing block is reported with its page and line.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "tutorials"
FIGURES = PAGES / "figures"
FENCE = re.compile(r"^```(python|bash)\s*\n(.*?)^```\s*$", re.M | re.S)


def blocks(page: Path) -> list[tuple[str, int, str]]:
    """(language, line, code) of each block of ``page`` that runs."""
    text = page.read_text(encoding="utf-8")
    return [(m.group(1), text.count("\n", 0, m.start()) + 2, m.group(2)) for m in FENCE.finditer(text)]


def script(page: Path) -> str:
    """One Python program that runs the page's blocks in order, announcing each (bash blocks through bash -e)."""
    parts = [
        "import subprocess as _sp, sys as _sys",
        "def _bash(_code, _where):",
        "    print(f'--- {_where}', flush=True)",
        "    if _sp.run(['bash', '-e', '-c', _code]).returncode:",
        "        raise SystemExit(f'{_where}: the bash block failed')",
    ]
    for language, line, code in blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        if language == "bash":
            parts.append(f"_bash({code!r}, {where!r})")
        else:
            parts.append(f"print('--- {where}', flush=True)")
            parts.append(f"exec(compile({code!r}, {where!r}, 'exec'))")
    return "\n".join(parts) + "\n"


def run_page(page: Path, scale: int = 1, figures: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run one page in a new empty folder; its figures (``figures/*`` there) copied into the docs if asked."""
    env = {
        **os.environ,
        "TUTORIAL_SCALE": str(scale),
        "BERTFORGE_BF16": "0",
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    with tempfile.TemporaryDirectory(prefix=f"tutorial-{page.stem}-") as work:
        done = subprocess.run(
            [sys.executable, "-c", script(page)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if figures and done.returncode == 0:
            FIGURES.mkdir(exist_ok=True)
            for drawn in sorted(Path(work, "figures").glob("*.*")):  # pictures, and HTML drawings (NER)
                shutil.copyfile(drawn, FIGURES / drawn.name)
    return done


def pages(chosen: list[str] | None = None) -> list[Path]:
    found = sorted(p for p in PAGES.glob("[0-9][0-9]-*.md"))
    return [p for p in found if not chosen or any(p.name.startswith(c) for c in chosen)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pages", nargs="*", help="page numbers or name prefixes (default: all)")
    p.add_argument("--scale", type=int, default=1, help="data and steps x this (default 1: what the tests run)")
    p.add_argument("--figures", action="store_true", help="copy the pages' figures into docs/tutorials/figures")
    args = p.parse_args()
    failed = 0
    for page in pages(args.pages):
        done = run_page(page, args.scale, args.figures)
        print(done.stdout, end="")
        if done.returncode:
            failed += 1
            print(done.stderr[-4000:], file=sys.stderr)
        print(f"{page.name}: {'ok' if done.returncode == 0 else 'FAILED'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
