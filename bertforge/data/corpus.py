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
    stdlib = sysconfig.get_paths()["stdlib"]
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "test", "tests", "idle_test", "__pycache__"))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(root, name), encoding="utf-8") as fh:
                    tree = ast.parse(fh.read())
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
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
