"""The metrics the field reports for BERT's tasks, computed here (no scikit-learn / seqeval / evaluate dependency).

- Classification: accuracy, F1 (binary on the positive class, macro over classes), Matthews correlation (CoLA).
- Regression: Pearson and Spearman correlation (STS-B); Spearman uses average ranks for ties.
- NER: entity-level precision / recall / F1 as conlleval and seqeval (default mode) compute them: an entity is a
  (type, start, end) span read from IOB2 tags; a prediction counts only when type and both ends match. IOB1 tags (as in
  the original CoNLL-2003 files) are converted with ``iob1_to_iob2``.
- Extractive QA: SQuAD v1.1 exact match and token F1 after the official normalisation (lowercase, drop punctuation,
  drop the articles a/an/the, collapse whitespace), maximised over the reference answers.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np


def accuracy(pred: Sequence[int], gold: Sequence[int]) -> float:
    pred, gold = np.asarray(pred), np.asarray(gold)
    _same_length(pred, gold)
    return float((pred == gold).mean()) if len(gold) else 0.0


def f1(pred: Sequence[int], gold: Sequence[int], average: str = "binary", positive: int = 1) -> float:
    """F1: ``binary`` (of the positive class) or ``macro`` (mean over the classes present in gold or pred)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    _same_length(pred, gold)
    if average == "binary":
        return _f1_class(pred, gold, positive)
    if average == "macro":
        classes = np.union1d(np.unique(gold), np.unique(pred))
        return float(np.mean([_f1_class(pred, gold, c) for c in classes])) if len(classes) else 0.0
    raise ValueError(f"average={average!r} must be 'binary' or 'macro'")


def _f1_class(pred: np.ndarray, gold: np.ndarray, c) -> float:
    tp = int(((pred == c) & (gold == c)).sum())
    fp = int(((pred == c) & (gold != c)).sum())
    fn = int(((pred != c) & (gold == c)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def matthews_corrcoef(pred: Sequence[int], gold: Sequence[int]) -> float:
    """Matthews correlation, multi-class form (Gorodkin 2004); 0 when undefined."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    _same_length(pred, gold)
    classes = np.union1d(np.unique(gold), np.unique(pred))
    index = {c: i for i, c in enumerate(classes.tolist())}
    cm = np.zeros((len(classes), len(classes)), dtype=np.float64)
    for p, g in zip(pred.tolist(), gold.tolist()):
        cm[index[g], index[p]] += 1
    t, p = cm.sum(1), cm.sum(0)
    c, s = np.trace(cm), cm.sum()
    denom = math.sqrt((s * s - (p * p).sum()) * (s * s - (t * t).sum()))
    return float((c * s - (t * p).sum()) / denom) if denom else 0.0


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    _same_length(x, y)
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom else 0.0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(_ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64)))


def _ranks(a: np.ndarray) -> np.ndarray:
    order = a.argsort(kind="mergesort")
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = np.arange(1, len(a) + 1)
    for value in np.unique(a):  # ties share their average rank
        tied = a == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def multilabel_scores(pred: Sequence[Sequence[float]], gold: Sequence[Sequence[float]]) -> dict[str, float]:
    """Multi-label 0/1 matrices (examples x labels): micro and macro F1 over labels, and subset accuracy (every label
    of an example right)."""
    _same_length(pred, gold)
    p = np.asarray(pred, dtype=bool)
    g = np.asarray(gold, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"predictions have shape {p.shape} but gold labels {g.shape}")
    tp, n_pred, n_gold = (p & g).sum(0), p.sum(0), g.sum(0)
    micro = 2 * tp.sum() / (n_pred.sum() + n_gold.sum()) if n_pred.sum() + n_gold.sum() else 0.0
    per_label = np.where(n_pred + n_gold > 0, 2 * tp / np.maximum(n_pred + n_gold, 1), 0.0)
    return {
        "f1_micro": float(micro),
        "f1_macro": float(per_label.mean()) if per_label.size else 0.0,
        "subset_accuracy": float((p == g).all(1).mean()) if len(p) else 0.0,
    }


def _same_length(a, b) -> None:
    if len(a) != len(b):
        raise ValueError(f"predictions ({len(a)}) and references ({len(b)}) differ in length")


# ---- NER ------------------------------------------------------------------------------------------------------------
def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 (I- starts an entity unless it follows one of the same type) -> IOB2 (every entity starts with B-)."""
    out: list[str] = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def iobes_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOBES / BIOES (S- a single-token entity, E- the last token) -> IOB2: S- becomes B-, E- becomes I- (or B- when
    it does not continue an entity of its type), as seqeval reads them."""
    out: list[str] = []
    previous = "O"
    for tag in tags:
        prefix, _, label = tag.partition("-")
        if prefix in ("S", "U"):
            tag = "B-" + label
        elif prefix in ("E", "L"):
            tag = ("I-" if previous != "O" and previous[2:] == label else "B-") + label
        out.append(tag)
        previous = tag
    return out


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(type, start, end inclusive) of each entity in an IOB2 sequence; a stray I- starts an entity (conlleval)."""
    spans: set[tuple[str, int, int]] = set()
    kind, start = None, -1
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, label = tag.partition("-")
        begins = prefix == "B" or (prefix == "I" and label != kind) or prefix in ("S", "U")
        if kind is not None and (prefix == "O" or begins):
            spans.add((kind, start, i - 1))
            kind = None
        if prefix in ("B", "I", "S", "U") and (begins or kind is None):
            kind, start = label, i
    return spans


def entity_scores(pred: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 over entities of all sentences (IOB2 tags), plus per-type F1."""
    _same_length(pred, gold)
    tp = n_pred = n_gold = 0
    per_type: dict[str, list[int]] = {}
    for p_tags, g_tags in zip(pred, gold):
        if len(p_tags) != len(g_tags):
            raise ValueError(f"a sentence has {len(p_tags)} predicted and {len(g_tags)} gold tags")
        p_spans, g_spans = entity_spans(p_tags), entity_spans(g_tags)
        tp += len(p_spans & g_spans)
        n_pred += len(p_spans)
        n_gold += len(g_spans)
        for span in p_spans | g_spans:
            per_type.setdefault(span[0], [0, 0, 0])  # [true positives, predicted, gold]
        for span in p_spans:
            per_type[span[0]][1] += 1
            per_type[span[0]][0] += span in g_spans
        for span in g_spans:
            per_type[span[0]][2] += 1
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    scores = {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }
    for kind, (t, p, g) in sorted(per_type.items()):
        scores[f"f1_{kind}"] = 2 * t / (p + g) if p + g else 0.0
    return scores


# ---- SQuAD ----------------------------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's official normalisation: lowercase, remove punctuation, remove articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised answer; no answers (SQuAD v2.0) means the answer ""."""
    return max(float(normalize_answer(prediction) == normalize_answer(a)) for a in (list(answers) or [""]))


def squad_f1(prediction: str, answers: Sequence[str], version_2: bool = True) -> float:
    """Best token-overlap F1 over the answers; no answers (SQuAD v2.0) means the answer "".

    ``version_2=False`` follows evaluate-v1.1.py: an answer that normalises to nothing (dev-v1.1 has three, ".")
    scores F1 0 even against an empty prediction; v2.0's script scores an empty match 1."""
    return max(_token_f1(prediction, a, version_2) for a in (list(answers) or [""]))


def _token_f1(prediction: str, answer: str, version_2: bool = True) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(answer).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if version_2 and (not p or not g):
        return float(p == g)  # both empty (a no-answer matched) scores 1
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_scores(
    predictions: dict[str, str], references: dict[str, Sequence[str]], version_2: bool = True
) -> dict[str, float]:
    """EM and F1 in percent over the questions of ``references``, as the official scripts count them: a missing
    prediction scores 0; ``version_2=False`` applies evaluate-v1.1.py's F1 (see ``squad_f1``)."""
    if not references:
        return {"exact_match": 0.0, "f1": 0.0}
    em = sum(squad_exact(predictions[q], a) for q, a in references.items() if q in predictions)
    f = sum(squad_f1(predictions[q], a, version_2) for q, a in references.items() if q in predictions)
    return {"exact_match": 100 * em / len(references), "f1": 100 * f / len(references)}
