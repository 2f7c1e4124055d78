"""Text sources: the embedded default corpus (the Python interpreter's own English documentation).

``python_docs()`` needs no download and is present wherever Python is: the pydoc topic pages (``pydoc_data``) and the
docstrings of the standard library's modules, classes and functions, read with ``ast`` (nothing is imported or run).
Each item is one document: paragraphs joined by newlines, with code-only lines dropped.
"""

from __future__ import annotations

import ast
import os
import re
import sysconfig
from collections.abc import Iterator

_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|[$#]|[\w.]+\(.*\)\s*$)")


def _clean(text: str) -> str:
    """Keep prose lines: drop interactive-prompt, shell and call-only lines; collapse indentation."""
    lines = []
    for line in text.splitlines():
        if _CODE_LINE.match(line):
            continue
        lines.append(line.strip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def python_docs(max_docs: int | None = None, min_chars: int = 200) -> Iterator[str]:
    """Documents of English prose from the Python installation: pydoc topics, then stdlib docstrings (sorted order)."""
    count = 0
    try:
        from pydoc_data.topics import topics as found

        topics: dict[str, str] = dict(found)
    except ImportError:  # some distributions strip pydoc_data
        topics = {}
    for key in sorted(topics):
        doc = _clean(topics[key])
        if len(doc) >= min_chars:
            yield doc
            count += 1
            if max_docs is not None and count >= max_docs:
                return
    for tree in _module_trees(sysconfig.get_paths()["stdlib"]):
        parts = []
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(_clean(doc))
        doc = "\n\n".join(p for p in dict.fromkeys(parts) if p)
        if len(doc) >= min_chars:
            yield doc
            count += 1
            if max_docs is not None and count >= max_docs:
                return


def _module_trees(root: str) -> Iterator[ast.Module]:
    """The parsed ``.py`` files under ``root`` in sorted order (tests, caches and site-packages left out; a file that
    does not parse is skipped)."""
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "test", "tests", "idle_test", "__pycache__"))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as fh:
                    yield ast.parse(fh.read())
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue


NOT_FOR_THE_TASK = frozenset({"test", "idlelib", "lib2to3", "distutils", "ensurepip", "turtledemo", "pydoc_data"})
"""Standard-library packages ``docstring_task`` leaves out: tests, tools and deprecated copies of other packages."""


def docstring_task(classes: int = 6, per_class: int = 100, min_chars: int = 80) -> list[dict[str, str]]:
    """A small labelled task from the same text, for the main job's fine-tuning demo: the docstrings of the
    functions and classes of the standard library's packages, each labelled with the package it comes from (asyncio,
    email, logging, tkinter, ...). The ``classes`` packages with the most docstrings of ``min_chars`` characters or
    more; the same number of each (``per_class``, or the smallest package's count), evenly spaced through the
    package's files. Rows ``{"text", "label"}``, package by package; empty if fewer than two packages are found."""
    stdlib = sysconfig.get_paths()["stdlib"]
    found: dict[str, list[str]] = {}
    for entry in sorted(os.listdir(stdlib)):
        path = os.path.join(stdlib, entry)
        if entry in NOT_FOR_THE_TASK or not os.path.isfile(os.path.join(path, "__init__.py")):
            continue
        docs = []
        for tree in _module_trees(path):
            for node in ast.walk(tree):
                if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = _clean(ast.get_docstring(node) or "")
                    if len(doc) >= min_chars:
                        docs.append(doc)
        found[entry] = list(dict.fromkeys(docs))
    chosen = sorted(found, key=lambda name: (-len(found[name]), name))[:classes]
    if len(chosen) < 2:
        return []
    n = min(per_class, *(len(found[name]) for name in chosen))
    return [{"text": found[name][i * len(found[name]) // n], "label": name} for name in chosen for i in range(n)]
