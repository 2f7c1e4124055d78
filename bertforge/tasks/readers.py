"""Readers for the formats fine-tuning data comes in, each with errors that name the file and line.

- Tables: CSV, TSV (GLUE's files included: split on tabs only, no quoting, as GLUE's own readers do) and JSON lines,
  with named columns; a file without a header (CoLA) takes column indices instead of names.
- CoNLL column files: one token per line, the tag in the last column, blank lines between sentences, ``-DOCSTART-``
  lines skipped; IOB1 tags (the original CoNLL-2003 files) are converted to IOB2.
- SQuAD JSON (v1.1 and v2.0): one example per question, with its answers (texts and character starts).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

from bertforge.tasks.metrics import iob1_to_iob2, iobes_to_iob2


def _open(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path} does not exist")
    return open(path, encoding="utf-8-sig", newline="")  # -sig drops a UTF-8 BOM (GLUE's MRPC has one)


def _column(header: list[str] | None, name: str | int, path: str) -> int:
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        return int(name)
    if header is None:
        raise ValueError(f"{path} has no header row; name columns by index (e.g. --text-column 3)")
    if name not in header:
        raise ValueError(f"{path}: no column {name!r}; the header has {', '.join(header)}")
    return header.index(name)


def read_jsonl(path: str):
    """(line number, parsed value) for each non-blank line of a JSON-lines file; bad JSON names the file and line."""
    with _open(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {number}: not valid JSON ({e.msg})") from None


def read_table(
    path: str,
    text_column: str | int,
    label_column: str | int | None = None,
    text_pair_column: str | int | None = None,
    has_header: bool = True,
) -> list[dict]:
    """Rows of a CSV / TSV / JSONL file as dicts with ``text``, ``text_pair`` (or None) and ``label`` (raw string)."""
    rows: list[dict] = []
    if path.endswith((".jsonl", ".json")):
        for number, obj in read_jsonl(path):
            for col in (text_column, text_pair_column, label_column):
                if col is not None and col not in obj:
                    raise ValueError(f"{path}: line {number}: no field {col!r}")
            rows.append(
                {
                    "text": str(obj[text_column]),
                    "text_pair": None if text_pair_column is None else str(obj[text_pair_column]),
                    "label": None if label_column is None else obj[label_column],
                    "line": number,
                }
            )
        return rows
    delimiter = "\t" if path.endswith(".tsv") else ","
    with _open(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        header = next(reader, None) if has_header else None
        if has_header and header is None:
            raise ValueError(f"{path} is empty")
        cols = [
            _column(header, c, path) if c is not None else None for c in (text_column, text_pair_column, label_column)
        ]
        width = max(c for c in cols if c is not None) + 1
        for number, row in enumerate(reader, 2 if has_header else 1):
            if not row or all(not x.strip() for x in row):
                continue
            if len(row) < width:
                raise ValueError(f"{path}: line {number}: {len(row)} columns, expected at least {width}")
            rows.append(
                {
                    "text": row[cols[0]],  # type: ignore[index]  # the text column is always resolved
                    "text_pair": None if cols[1] is None else row[cols[1]],
                    "label": None if cols[2] is None else row[cols[2]],
                    "line": number,
                }
            )
    return rows


def read_conll(path: str, scheme: str = "auto") -> list[dict]:
    """Sentences of a CoNLL file as dicts with ``tokens`` and IOB2 ``tags``.

    ``scheme``: "iob1", "iob2", "iobes", or "auto" (IOBES when E- or S- tags occur; else IOB1 when some entity starts
    with I-, as in CoNLL-2003's own files). Tags come back as IOB2.
    """
    sentences: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    with _open(path) as fh:
        for number, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if tokens:
                    sentences.append({"tokens": tokens, "tags": tags, "line": first_line})
                    tokens, tags = [], []
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}: line {number}: expected 'token ... tag', found {line.strip()!r}")
            tag = parts[-1]
            if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-", "E-", "S-", "L-", "U-")):
                raise ValueError(f"{path}: line {number}: {tag!r} is not an IOB tag (O, B-X, I-X; or IOBES E-X, S-X)")
            if not tokens:
                first_line = number
            tokens.append(parts[0])
            tags.append(tag)
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags, "line": first_line})
    if not sentences:
        raise ValueError(f"{path} holds no sentences")
    if scheme == "auto" and any(t[:2] in ("E-", "S-", "L-", "U-") for s in sentences for t in s["tags"]):
        scheme = "iobes"
    if scheme == "auto":
        scheme = "iob1" if any(iob1_to_iob2(s["tags"]) != s["tags"] for s in sentences) else "iob2"
    if scheme == "iobes":
        for s in sentences:
            s["tags"] = iobes_to_iob2(s["tags"])
    elif scheme == "iob1":
        for s in sentences:
            s["tags"] = iob1_to_iob2(s["tags"])
    elif scheme != "iob2":
        raise ValueError(f"scheme={scheme!r} must be iob1, iob2, iobes or auto")
    return sentences


@dataclass
class SquadExample:
    id: str
    question: str
    context: str
    answers: list[str] = field(default_factory=list)
    answer_starts: list[int] = field(default_factory=list)
    title: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers


def read_squad(path: str) -> list[SquadExample]:
    """Questions of a SQuAD v1.1 / v2.0 file (v2.0's unanswerable questions have no answers)."""
    with _open(path) as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if "data" not in data:
        raise ValueError(f"{path}: not a SQuAD file (no top-level 'data')")
    examples = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                for a in answers:
                    if para["context"][a["answer_start"] : a["answer_start"] + len(a["text"])] != a["text"]:
                        raise ValueError(
                            f"{path}: question {qa['id']}: answer {a['text']!r} is not at character "
                            f"{a['answer_start']} of its context"
                        )
                examples.append(
                    SquadExample(
                        qa["id"],
                        qa["question"],
                        para["context"],
                        [a["text"] for a in answers],
                        [a["answer_start"] for a in answers],
                        article.get("title", ""),
                    )
                )
    return examples
