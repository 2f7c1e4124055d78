"""The baseline a fine-tuned BERT should beat: TF-IDF features and a linear model (scikit-learn).

Each text (a pair is joined with " [SEP] ") becomes TF-IDF weights of its word unigrams and bigrams (lowercased,
sublinear term frequency, one-letter words kept), fitted on the training texts only; a logistic regression
(single-label; one per label for multi-label) or a ridge regression (regression) is trained on them and predicts the
evaluation texts. The scores come from the same metric code as the model's, so the two are comparable row for row.
scikit-learn is an extra (``pip install 'bertforge[baseline]'``); the rest of bertforge works without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError as e:
        raise ValueError(
            "--baseline tfidf needs scikit-learn: pip install 'bertforge[baseline]' (or scikit-learn)"
        ) from e
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multiclass import OneVsRestClassifier

    return TfidfVectorizer, LogisticRegression, Ridge, OneVsRestClassifier


def joined(row: dict) -> str:
    """A table row's text, or its pair joined the way the baseline reads it."""
    pair = row.get("text_pair")
    return row["text"] if pair is None else f"{row['text']} [SEP] {pair}"


def tfidf_predict(train_texts: Sequence[str], targets: Sequence[Any], texts: Sequence[str], kind: str) -> list:
    """Predictions for ``texts`` from a TF-IDF + linear model fitted on (``train_texts``, ``targets``): class ids
    (``kind`` "single"), 0/1 vectors ("multi") or numbers ("regression"), as the model's predictions are."""
    import numpy as np

    TfidfVectorizer, LogisticRegression, Ridge, OneVsRestClassifier = _sklearn()
    if kind == "single" and len(set(map(str, targets))) < 2:
        return [targets[0]] * len(texts)  # one class in training: the only answer it can give
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
    x_train = vectorizer.fit_transform(list(train_texts))
    x = vectorizer.transform(list(texts))
    if kind == "regression":
        return Ridge(alpha=1.0).fit(x_train, np.asarray(targets, dtype=float)).predict(x).tolist()
    linear = LogisticRegression(max_iter=1000, C=10.0)
    if kind == "multi":
        y = np.asarray(targets, dtype=int)
        return OneVsRestClassifier(linear).fit(x_train, y).predict(x).astype(float).tolist()
    return linear.fit(x_train, np.asarray(targets)).predict(x).tolist()
