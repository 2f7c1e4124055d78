"""Write the CLI reference (docs/reference/cli.md) from the argument parsers and the Python API reference
(docs/reference/api.md) from the docstrings, so neither can drift from the code.

    python docs/gen_reference.py            # rewrite both
    python docs/gen_reference.py --check    # exit 1 naming each stale file (the test suite runs this check)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "docs" / "reference"

API_MODULES = [
    "bertforge",
    "bertforge.model",
    "bertforge.tokenization",
    "bertforge.pipelines",
    "bertforge.config",
    "bertforge.training.pretrain",
    "bertforge.training.finetune",
    "bertforge.training.optim",
    "bertforge.auto",
    "bertforge.evaluation",
    "bertforge.adapt",
    "bertforge.deploy",
    "bertforge.generation",
    "bertforge.data.preprocess",
    "bertforge.data.indexed",
    "bertforge.data.masking",
    "bertforge.serve",
]
"""The modules a user imports from, in the order the page lists them; each lists its ``__all__`` (else its public
names defined in it)."""


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    return " ".join(text.split()).replace("|", "\\|")


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    metavar = ""
    if action.nargs != 0:
        if isinstance(action.metavar, str):
            metavar = " " + action.metavar
        elif action.choices:
            metavar = " {" + ",".join(map(str, action.choices)) + "}"
        else:
            metavar = " " + action.dest.upper()
    return ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings).replace("|", "\\|")


def _command(parser: argparse.ArgumentParser, name: str, lines: list[str]) -> None:
    subs = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    lines += [f"## {name}", ""]
    if parser.description:
        lines += [" ".join(parser.description.split()), ""]
    usage = parser.format_usage().removeprefix("usage: ").strip()
    lines += ["```text", " ".join(usage.split()), "```", ""]
    rows = [a for a in parser._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)]
    rows = [a for a in rows if not isinstance(a, argparse._HelpAction)]
    if rows:
        lines += ["| argument | meaning |", "| --- | --- |"]
        lines += [f"| {_flags(a)} | {_help(parser, a)} |" for a in rows]
        lines.append("")
    if subs is not None:
        for sub_name, sub in subs.choices.items():
            _command(sub, f"{name} {sub_name}", lines)


def cli_reference() -> str:
    import os

    from bertforge.cli.main import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "10000"  # argparse reads the width when it formats: one usage line, whatever the terminal
    try:
        parser = build_parser()
        return _cli_page(parser)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _cli_page(parser: argparse.ArgumentParser) -> str:
    lines = [
        "# CLI reference",
        "",
        "Generated from the argument parsers by `docs/gen_reference.py`; a test fails when this page differs from",
        "them. `bertforge COMMAND --help` prints the same.",
        "",
    ]
    _command(parser, "bertforge", lines)
    return "\n".join(lines).rstrip() + "\n"


def _public(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        ]
    return [
        n for n in names if inspect.isclass(getattr(module, n, None)) or inspect.isfunction(getattr(module, n, None))
    ]


def _annotation(value) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def _default(value) -> str:
    if value is dataclasses.MISSING:
        return "MISSING"
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))  # an object's address differs on every run


def _signature(obj) -> str:
    """``(name: annotation = default, ...) -> annotation``, the annotations as written, no object addresses."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parts, star_done = [], False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
        star_done = star_done or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {_default(p.default)}"
        parts.append(text)
    returns = "" if sig.return_annotation is sig.empty else f" -> {_annotation(sig.return_annotation)}"
    return f"({', '.join(parts)}){returns}"


def _entry(name: str, obj, lines: list[str]) -> None:
    kind = "class" if inspect.isclass(obj) else "def"
    lines += [f"### `{name}`", "", "```python", f"{kind} {name}{_signature(obj)}", "```", ""]
    doc = inspect.getdoc(obj)
    if doc:
        lines += [doc, ""]
    if inspect.isclass(obj):
        for attr, member in vars(obj).items():
            if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, classmethod)):
                continue
            func = member.__func__ if isinstance(member, classmethod) else member
            summary = (inspect.getdoc(func) or "").split("\n\n")[0]
            lines.append(f"- `{attr}{_signature(func)}`" + (f": {' '.join(summary.split())}" if summary else ""))
        if lines[-1].startswith("- "):
            lines.append("")


def api_reference() -> str:
    lines = [
        "# Python API reference",
        "",
        "Generated from the docstrings by `docs/gen_reference.py`; a test fails when this page differs from them.",
        "",
    ]
    home: dict[int, str] = {}  # each object is described once, under the first module listed that exports it
    for module_name in API_MODULES[1:]:
        module = importlib.import_module(module_name)
        for name in _public(module):
            home.setdefault(id(getattr(module, name)), module_name)
    top = importlib.import_module("bertforge")
    lines += ["## `bertforge`", "", "The names `import bertforge` gives, each described under its module:", ""]
    for name in _public(top):
        where = home.get(id(getattr(top, name)))
        link = f"[`{where}`](#{where.replace('.', '')})" if where else "`bertforge`"
        lines.append(f"- `bertforge.{name}`: {link}")
    lines.append("")
    for module_name in API_MODULES[1:]:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", ""]
        summary = (inspect.getdoc(module) or "").split("\n\n")[0]
        if summary:
            lines += [" ".join(summary.split()), ""]
        for name in _public(module):
            if home.get(id(getattr(module, name))) == module_name:
                _entry(name, getattr(module, name), lines)
    return "\n".join(lines).rstrip() + "\n"


def pages() -> dict[Path, str]:
    return {OUT / "cli.md": cli_reference(), OUT / "api.md": api_reference()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only say which pages are stale (exit 1 if any)")
    args = p.parse_args()
    stale = [path for path, text in pages().items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run python docs/gen_reference.py")
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in pages().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
