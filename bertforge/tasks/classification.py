"""Sequence classification as a task: labels read from table rows (single-label ids, multi-label 0/1 vectors or
regression floats), texts encoded into features, logits turned into predictions, and the metrics of each kind.

Fine-tuning (``training/finetune.py``) and the text-classification pipeline build on these.
"""

from __future__ import annotations

import numpy as np

from bertforge.tasks import metrics as M
from bertforge.tokenization import BertTokenizer

KINDS = ("single", "multi", "regression")


def _is_number(x) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def _split_labels(value, separator: str) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(separator) if v.strip()]


def _label_order(name: str):
    """Integer labels in numeric order (2 before 10), then the others alphabetically."""
    try:
        return (0, int(name), "")
    except ValueError:
        return (1, 0, name)


def name_labels(label2id: dict[str, int], names: tuple[str, ...] | list[str], path: str) -> dict[int, str]:
    """id2label that shows ``names`` for the label values in their order (``--label-names negative,positive`` for
    GLUE's 0 and 1); the counts must match."""
    if len(names) != len(label2id):
        raise ValueError(
            f"--label-names gives {len(names)} names but {path} has {len(label2id)} labels "
            f"({', '.join(label2id)}, in this order)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"--label-names has a name twice: {', '.join(names)}")
    return {i: names[i] for i in range(len(names))}


def classification_labels(
    rows: list[dict], path: str, kind: str, label2id: dict[str, int] | None, separator: str = ","
):
    """Label values for ``kind`` "single" (ids), "multi" (0/1 vectors) or "regression" (floats), and the label map
    (built from ``rows`` when None). An unknown or malformed label names the file and line."""
    for r in rows:
        if r["label"] is None:
            raise ValueError(f"{path}: line {r['line']}: the label is missing (null); every row needs a label")
    if kind == "regression":
        for r in rows:
            if not _is_number(r["label"]):
                raise ValueError(f"{path}: line {r['line']}: label {r['label']!r} is not a number")
        return [float(r["label"]) for r in rows], None
    per_row = [_split_labels(r["label"], separator) if kind == "multi" else [str(r["label"])] for r in rows]
    if label2id is None:
        names = sorted({name for names in per_row for name in names}, key=_label_order)
        if not names:
            raise ValueError(f"{path}: no labels found in column for labels")
        label2id = {name: i for i, name in enumerate(names)}
    values: list = []
    for r, names in zip(rows, per_row):
        for name in names:
            if name not in label2id:
                raise ValueError(
                    f"{path}: line {r['line']}: label {name!r} was not seen in training (labels: {', '.join(label2id)})"
                )
        if kind == "multi":
            vec = [0.0] * len(label2id)
            for name in names:
                vec[label2id[name]] = 1.0
            values.append(vec)
        else:
            values.append(label2id[names[0]])
    return values, label2id


def classification_metrics(pred, gold, kind: str, num_labels: int) -> dict[str, float]:
    """Metrics for predicted vs gold labels: ids (single), 0/1 vectors (multi) or floats (regression)."""
    if kind == "regression":
        return {
            "pearson": M.pearson(pred, gold),
            "spearman": M.spearman(pred, gold),
            "mse": float(np.mean((np.asarray(pred) - np.asarray(gold)) ** 2)),
        }
    if kind == "multi":
        return M.multilabel_scores(pred, gold)
    out = {
        "accuracy": M.accuracy(pred, gold),
        "f1_macro": M.f1(pred, gold, average="macro"),
        "matthews": M.matthews_corrcoef(pred, gold),
    }
    if num_labels == 2:
        out["f1"] = M.f1(pred, gold)
    return out


def encode_rows(tok: BertTokenizer, rows: list[dict], max_length: int, labels: list | None) -> list[dict]:
    """Features (input_ids, token_type_ids, and labels when given) of table rows: texts or text pairs, truncated."""
    texts = [r["text"] for r in rows]
    pairs = [r["text_pair"] for r in rows] if rows and rows[0]["text_pair"] is not None else None
    enc = tok(texts, pairs, truncation=True, max_length=max_length, return_attention_mask=False)
    feats = [{"input_ids": ids, "token_type_ids": types} for ids, types in zip(enc["input_ids"], enc["token_type_ids"])]
    if labels is not None:
        for f, y in zip(feats, labels):
            f["labels"] = y
    return feats


def predictions(logits: np.ndarray, kind: str) -> list:
    """Predicted values from (rows, outputs) logits: class ids, 0/1 vectors (sigmoid > 0.5) or numbers."""
    if kind == "regression":
        return logits[:, 0].tolist()
    if kind == "multi":
        return (logits > 0).astype(float).tolist()  # sigmoid(x) > 0.5
    return logits.argmax(-1).tolist()
