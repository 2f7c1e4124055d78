"""Sequence classification as a task: labels read from table rows (single-label ids, multi-label 0/1 vectors or
regression floats), texts encoded into features, logits turned into predictions, and the metrics of each kind.

``ClassificationTask`` is the family fine-tuning runs (``training/finetune.py``); the text-classification pipeline
builds on the same pieces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bertforge.model import BertForSequenceClassification
from bertforge.tasks import metrics as M
from bertforge.tasks.base import TaskFamily
from bertforge.tasks.baseline import joined, tfidf_predict
from bertforge.tasks.readers import read_table
from bertforge.tokenization import BertTokenizer

if TYPE_CHECKING:
    from bertforge.config import TaskConfig

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


PROBLEM_TYPES = {
    "single": "single_label_classification",
    "multi": "multi_label_classification",
    "regression": "regression",
}
"""Each of the ``KINDS`` of classification -> the config's problem_type."""


class ClassificationTask(TaskFamily):
    """Sequence classification from table rows: single-label (accuracy, F1, MCC), multi-label (micro F1, one sigmoid
    per label above 0.5), regression (MSE, Pearson, Spearman)."""

    name, model_class = "classification", BertForSequenceClassification

    def __init__(self, task: TaskConfig, bf16: bool = False):
        super().__init__(task, bf16)
        self.kind = "regression" if task.regression else "multi" if task.multi_label else "single"

    def read(self, source: Any) -> list[dict]:
        t = self.task
        return read_table(source, t.text_column, t.label_column, t.text_pair_column, not t.no_header)

    def group(self, row: dict) -> Any:
        return row["line"]

    def prepare(self, train: list, valid: list, train_name: str, valid_name: str) -> dict[str, Any]:
        sep = self.task.label_separator
        self.y_train, self.label2id = classification_labels(train, train_name, self.kind, None, sep)
        classification_labels(valid, valid_name, self.kind, self.label2id, sep)  # a label unseen in training: refused
        self.num_labels = 1 if self.kind == "regression" else len(self.label2id)
        self.id2label = {i: n for n, i in (self.label2id or {}).items()}
        if self.task.label_names and self.kind != "regression":
            self.id2label = name_labels(self.label2id, self.task.label_names, train_name)
        head: dict[str, Any] = {"num_labels": self.num_labels, "problem_type": PROBLEM_TYPES[self.kind]}
        if self.kind != "regression":
            head["id2label"] = self.id2label
        return head

    def features(self, tokenizer: Any, items: list, train: bool = False) -> list[dict]:
        return encode_rows(tokenizer, items, self.task.length("classification"), self.y_train if train else None)

    def evaluate(self, model, tokenizer: Any, items: list, features: list[dict], source: str):
        gold, _ = classification_labels(items, source, self.kind, self.label2id, self.task.label_separator)
        logits = np.stack([o[0] for o in self._predict(model, tokenizer, features, lambda out: [out.logits])])
        pred = predictions(logits, self.kind)
        records = [
            {
                "line": r["line"],
                "prediction": self._shown(p),
                "label": r["label"],
                "logits": [round(float(x), 5) for x in lg],
            }
            for r, p, lg in zip(items, pred, logits)
        ]
        return classification_metrics(pred, gold, self.kind, self.num_labels), records

    def baseline(self, name: str, train: list, valid: list, valid_name: str) -> dict[str, float]:
        gold, _ = classification_labels(valid, valid_name, self.kind, self.label2id, self.task.label_separator)
        pred = tfidf_predict([joined(r) for r in train], self.y_train, [joined(r) for r in valid], self.kind)
        return classification_metrics(pred, gold, self.kind, self.num_labels)

    def _shown(self, p: Any) -> Any:
        """A prediction as the records show it: the label's name, the names of a multi-label row, or the value."""
        if self.kind == "regression":
            return p
        return [self.id2label[k] for k, v in enumerate(p) if v] if self.kind == "multi" else self.id2label[p]

    @property
    def default_metric(self) -> str:
        return {"regression": "pearson", "multi": "f1_micro", "single": "accuracy"}[self.kind]

    def metric_names(self) -> tuple[str, ...]:
        return tuple(classification_metrics(self.y_train[:2], self.y_train[:2], self.kind, self.num_labels))

    def describe(self, base: str) -> str:
        return f"{base} for {self.kind} classification ({self.num_labels} outputs)"

    @property
    def label_dtype(self) -> torch.dtype:
        return torch.long if self.kind == "single" else torch.float
