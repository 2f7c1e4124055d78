"""Readers for the formats fine-tuning data comes in, each with errors that name the file and line.

- Tables: CSV, TSV (GLUE's files: split on tabs only, no quoting, as GLUE's own readers do; a TSV written by pandas
  or ``datasets``, which quotes the cells that hold a quote, is recognised and unquoted), and records: JSON lines, a
  JSON array, Parquet and Arrow (``datasets``' ``save_to_disk`` directory or an .arrow file; pyarrow needed for
  these two), with named columns; a file without a header (CoLA) takes column indices instead of names.
- CoNLL column files: one token per line, the tag in the last column, blank lines between sentences, ``-DOCSTART-``
  lines skipped; IOB1 and IOBES tags are converted to IOB2. Or records in the ``datasets`` layout of conll2003:
  ``tokens`` and ``ner_tags`` (tag names, or ids named by the dataset's features).
- SQuAD JSON (v1.1 and v2.0): one example per question, with its answers (texts and character starts). Or records in
  the ``datasets`` layout of squad: ``id``, ``question``, ``context``, ``answers: {text: [...], answer_start: [...]}``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

from bertforge.tasks.metrics import iob1_to_iob2, iobes_to_iob2


@contextmanager
def _open(path: str) -> Iterator[TextIO]:
    """A data file opened as UTF-8 text (a BOM dropped: GLUE's MRPC has one); bytes that are not UTF-8 end the
    reading with one line naming the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path} does not exist")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        try:
            yield fh
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}: not UTF-8 text (byte {e.start} of a line cannot be decoded); convert it to UTF-8"
            ) from None


def _column(header: list[str] | None, name: str | int, path: str) -> int:
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        return int(name)
    if header is None:
        raise ValueError(f"{path} has no header row; name columns by index (e.g. --text-column 3)")
    if name not in header:
        shown = ", ".join(h if h.isprintable() else repr(h) for h in header)
        raise ValueError(f"{path}: no column {name!r}; the header has {shown}")
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


RECORD_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow")


IN_MEMORY = "rows in memory"
"""The name in messages of data given as Python rows (a list of dicts, a pandas DataFrame, a datasets.Dataset)."""


def in_memory(source) -> bool:
    """Whether ``source`` is data in memory rather than a path."""
    return not isinstance(source, (str, os.PathLike))


def is_records(path) -> bool:
    """Whether ``path`` is a records file (JSON lines / array, Parquet, Arrow), a ``save_to_disk`` directory, or rows in
    memory (a list of dicts, a pandas DataFrame, a ``datasets.Dataset``)."""
    if in_memory(path):
        return True
    path = os.fspath(path)
    return path.endswith(RECORD_SUFFIXES) or (os.path.isdir(path) and _arrow_files(path) != [])


def _memory_rows(source) -> list:
    """The rows of in-memory data: a pandas DataFrame's records, a datasets.Dataset's examples, or a list's items."""
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # pandas.DataFrame
        return source.to_dict("records")
    try:
        return list(source)
    except TypeError:
        raise ValueError(
            f"training data must be a file path or rows (a list of dicts, a DataFrame, a Dataset), "
            f"got {type(source).__name__}"
        ) from None


def read_records(path):
    """(place, record) for each record of a JSON-lines file ("line N"), a JSON array ("record N"), a Parquet or Arrow
    file, a ``datasets`` ``save_to_disk`` directory or rows in memory ("row N"). A record that is not an object
    names its place."""
    if in_memory(path):
        pairs = ((f"row {i}", obj) for i, obj in enumerate(_memory_rows(path), 1))
        path = IN_MEMORY
    elif path.endswith((".parquet", ".arrow")) or os.path.isdir(path):
        rows = _arrow_rows(path)
        places = (f"row {i}" for i in range(1, len(rows) + 1))
        pairs = zip(places, rows)
    elif path.endswith(".json") and _starts_with(path, "["):
        with _open(path) as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
        pairs = ((f"record {i}", obj) for i, obj in enumerate(data, 1))
    else:
        pairs = ((f"line {n}", obj) for n, obj in read_jsonl(path))
    for place, obj in pairs:
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: {place}: expected an object with named fields, found {type(obj).__name__}")
        yield place, obj


def _starts_with(path: str, char: str) -> bool:
    with _open(path) as fh:
        head = fh.read(4096).lstrip()
    return head.startswith(char)


def _arrow_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    return sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".arrow"))


def _arrow_rows(path: str) -> list[dict]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"{path}: reading Parquet / Arrow needs pyarrow (pip install pyarrow)") from None
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path} does not exist")
    try:
        if path.endswith(".parquet"):
            return pq.read_table(path).to_pylist()
        rows: list[dict] = []
        for file in _arrow_files(path):
            with pa.memory_map(file) as source:
                try:
                    table = pa.ipc.open_stream(source).read_all()  # what datasets writes
                except pa.ArrowInvalid:
                    table = pa.ipc.open_file(source).read_all()
            rows.extend(table.to_pylist())
        return rows
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{path}: not a readable Parquet / Arrow file ({e})") from None


def label_names(path: str, column: str) -> list[str] | None:
    """The class names of an integer label column, from the ``datasets`` metadata of a Parquet file or a
    ``save_to_disk`` directory (``features.COLUMN`` as a ClassLabel, or a sequence of them); None when absent."""
    if in_memory(path):  # a datasets.Dataset carries its features
        feature = getattr(path, "features", {}).get(column) if hasattr(getattr(path, "features", None), "get") else None
        while feature is not None and not hasattr(feature, "names") and hasattr(feature, "feature"):
            feature = feature.feature
        return list(feature.names) if feature is not None and hasattr(feature, "names") else None
    info = None
    try:
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "dataset_info.json")):
            with open(os.path.join(path, "dataset_info.json"), encoding="utf-8") as fh:
                info = json.load(fh)
        elif path.endswith(".parquet"):
            import pyarrow.parquet as pq

            meta = pq.read_schema(path).metadata or {}
            if b"huggingface" in meta:
                info = json.loads(meta[b"huggingface"]).get("info", {})
    except (OSError, ValueError, ImportError):
        return None
    feature = ((info or {}).get("features") or {}).get(column)
    while isinstance(feature, dict) and "names" not in feature and "feature" in feature:
        feature = feature["feature"]
    if isinstance(feature, list) and feature:
        feature = feature[0]
    return list(feature["names"]) if isinstance(feature, dict) and "names" in feature else None


def _tsv_is_quoted(path: str, sample: int = 4 << 20) -> bool:
    """Whether a TSV was written with CSV quoting (pandas, ``datasets``: a cell holding a quote, tab or newline is
    wrapped in quotes, inner quotes doubled). Test: parsed as quoted CSV and written back the same way, the first MBs
    of the file come out unchanged. GLUE's raw TSVs hold quotes in running text, which quoting would have wrapped."""
    with _open(path) as fh:
        text = fh.read(sample)
    if '"' not in text:
        return False
    if len(text) == sample:  # cut at a line end outside any quoted cell
        cut = text.rfind("\n")
        while cut > 0 and text.count('"', 0, cut) % 2:
            cut = text.rfind("\n", 0, cut)
        text = text[: cut + 1]
    newline = "\r\n" if "\r\n" in text else "\n"
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", strict=True))
    except csv.Error:
        return False
    out = io.StringIO()
    csv.writer(out, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator=newline).writerows(rows)
    return out.getvalue() == text


def read_table(
    path: str,
    text_column: str | int,
    label_column: str | int | None = None,
    text_pair_column: str | int | None = None,
    has_header: bool = True,
) -> list[dict]:
    """Rows of a CSV / TSV / JSONL file as dicts with ``text``, ``text_pair`` (or None) and ``label`` (raw string)."""
    rows: list[dict] = []
    if is_records(path):
        names = label_names(path, str(label_column)) if label_column is not None else None
        source, path = path, (IN_MEMORY if in_memory(path) else path)
        for place, obj in read_records(source):
            for col in (text_column, text_pair_column, label_column):
                if col is not None and col not in obj:
                    raise ValueError(f"{path}: {place}: no field {col!r}; the record has {', '.join(map(str, obj))}")
            for col in (text_column, text_pair_column):
                if col is not None and not isinstance(obj[col], str):
                    raise ValueError(f"{path}: {place}: field {col!r} is {obj[col]!r}, not a text")
            label = None if label_column is None else obj[label_column]
            if names is not None and isinstance(label, int) and 0 <= label < len(names):
                label = names[label]
            rows.append(
                {
                    "text": obj[text_column],
                    "text_pair": None if text_pair_column is None else obj[text_pair_column],
                    "label": label,
                    "line": int(place.split()[-1]),
                }
            )
        return rows
    delimiter = "\t" if path.endswith(".tsv") else ","
    try:
        return _read_csv(path, delimiter, text_column, label_column, text_pair_column, has_header)
    except csv.Error as e:
        raise ValueError(f"{path}: not a readable {'TSV' if delimiter == chr(9) else 'CSV'} file ({e})") from None


def _read_csv(path, delimiter, text_column, label_column, text_pair_column, has_header) -> list[dict]:
    rows: list[dict] = []
    csv.field_size_limit(1 << 30)  # long documents are data, not errors (the csv module stops at 131,072 chars)
    quoted = delimiter == "," or _tsv_is_quoted(path)
    with _open(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
        header = next(reader, None) if has_header else None
        if has_header and header is None:
            raise ValueError(f"{path} is empty")
        cols = [
            _column(header, c, path) if c is not None else None for c in (text_column, text_pair_column, label_column)
        ]
        width = max(c for c in cols if c is not None) + 1
        for row in reader:
            number = reader.line_num  # the line the row ends on (a quoted cell may span lines)
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
    sentences = _conll_records(path) if is_records(path) else _conll_file(path)
    if not sentences:
        raise ValueError(f"{IN_MEMORY if in_memory(path) else path} holds no sentences")
    return _to_iob2(sentences, scheme)


def _conll_records(path: str) -> list[dict]:
    """Sentences from records with ``tokens`` and ``ner_tags`` (tag names, or ids named by the dataset's features)."""
    names = label_names(path, "ner_tags")
    sentences = []
    source, path = path, (IN_MEMORY if in_memory(path) else path)
    for place, obj in read_records(source):
        tokens, tags = obj.get("tokens"), obj.get("ner_tags", obj.get("tags"))
        if not isinstance(tokens, list) or not isinstance(tags, list) or len(tokens) != len(tags):
            raise ValueError(f"{path}: {place}: expected 'tokens' and 'ner_tags' lists of the same length")
        if any(isinstance(t, int) for t in tags):
            if names is None:
                raise ValueError(
                    f"{path}: {place}: 'ner_tags' holds ids but the file names no tags (no datasets "
                    "features metadata); give tag names instead"
                )
            if any(not isinstance(t, int) or not 0 <= t < len(names) for t in tags):
                raise ValueError(f"{path}: {place}: a tag id is outside the {len(names)} named tags")
            tags = [names[int(t)] for t in tags]
        for t in tags:
            _check_tag(path, place, str(t))
        if tokens:
            sentences.append(
                {"tokens": [str(t) for t in tokens], "tags": [str(t) for t in tags], "line": int(place.split()[-1])}
            )
    return sentences


def _check_tag(path: str, place: str, tag: str) -> None:
    if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-", "E-", "S-", "L-", "U-")):
        raise ValueError(f"{path}: {place}: {tag!r} is not an IOB tag (O, B-X, I-X; or IOBES E-X, S-X)")


def _conll_file(path: str) -> list[dict]:
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
            _check_tag(path, f"line {number}", tag)
            if not tokens:
                first_line = number
            tokens.append(parts[0])
            tags.append(tag)
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags, "line": first_line})
    return sentences


def _to_iob2(sentences: list[dict], scheme: str) -> list[dict]:
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
    """Questions of a SQuAD v1.1 / v2.0 file (v2.0's unanswerable questions have no answers), or of records in the
    ``datasets`` squad layout. A missing field, a non-integer ``answer_start`` or an answer that is not where its start
    says name the file and question."""
    if in_memory(path):
        return [_squad_record(IN_MEMORY, place, obj) for place, obj in read_records(path)]
    if is_records(path) and not (path.endswith(".json") and not _starts_with(path, "[")):
        return [_squad_record(path, place, obj) for place, obj in read_records(path)]
    with _open(path) as fh:  # parsed once: SQuAD's own layout, or one squad row in a .json file
        try:
            data = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if path.endswith(".json") and isinstance(data, dict) and "data" not in data:
        return [_squad_record(path, "record 1", data)]
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{path}: not a SQuAD file (no top-level 'data' list)")
    examples = []
    for a, article in enumerate(data["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise ValueError(f"{path}: article {a}: no 'paragraphs' list")
        for p, para in enumerate(paragraphs):
            if not isinstance(para, dict) or not isinstance(para.get("context"), str) or "qas" not in para:
                raise ValueError(f"{path}: article {a} paragraph {p}: needs a 'context' text and 'qas'")
            for q, qa in enumerate(para["qas"]):
                where = f"article {a} paragraph {p} question {q}"
                if not isinstance(qa, dict):
                    raise ValueError(f"{path}: {where}: not an object")
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                examples.append(
                    _squad_example(
                        path,
                        where,
                        qa.get("id"),
                        qa.get("question"),
                        para["context"],
                        [x.get("text") if isinstance(x, dict) else None for x in answers],
                        [x.get("answer_start") if isinstance(x, dict) else None for x in answers],
                        article.get("title", ""),
                    )
                )
    return examples


def _squad_record(path: str, place: str, obj: dict) -> SquadExample:
    answers = obj.get("answers") or {}
    if isinstance(answers, list):  # a list of {text, answer_start}
        texts = [x.get("text") if isinstance(x, dict) else None for x in answers]
        starts = [x.get("answer_start") if isinstance(x, dict) else None for x in answers]
    elif isinstance(answers, dict):
        texts, starts = list(answers.get("text") or []), list(answers.get("answer_start") or [])
    else:
        raise ValueError(f"{path}: {place}: 'answers' must be {{text: [...], answer_start: [...]}}")
    return _squad_example(
        path, place, obj.get("id"), obj.get("question"), obj.get("context"), texts, starts, obj.get("title", "")
    )


def _squad_example(path, where, qid, question, context, texts, starts, title) -> SquadExample:
    for name, value in (("id", qid), ("question", question), ("context", context)):
        if (
            not isinstance(value, (str, int))
            or isinstance(value, bool)
            or (name != "id" and not isinstance(value, str))
        ):
            raise ValueError(f"{path}: {where}: '{name}' is missing or not a text ({value!r})")
    if len(texts) != len(starts):
        raise ValueError(f"{path}: {where}: {len(texts)} answer texts but {len(starts)} answer_start values")
    for text, start in zip(texts, starts):
        if not isinstance(text, str):
            raise ValueError(f"{path}: {where}: an answer has no 'text' ({text!r})")
        if not isinstance(start, int) or isinstance(start, bool):
            raise ValueError(f"{path}: {where}: answer_start must be an integer, got {start!r}")
        if context[start : start + len(text)] != text:
            raise ValueError(f"{path}: question {qid}: answer {text!r} is not at character {start} of its context")
    return SquadExample(str(qid), question, context, list(texts), list(starts), str(title or ""))
