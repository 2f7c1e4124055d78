"""Token classification (NER) features: word labels on first sub-word pieces, long sentences in overlapping windows.

Windows are cut between words, never inside one: a sentence whose pieces do not fit ``max_length`` is split into runs
of whole words that overlap by about ``stride`` pieces, each encoded on its own. So every word has its first piece in
some window, and a word's prediction is read from the window where it has the most context on both sides (the
"max context" rule of BERT's SQuAD code, applied to words).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bertforge.model import BertForTokenClassification
from bertforge.tasks import metrics as M
from bertforge.tasks.base import TaskFamily
from bertforge.tasks.readers import read_conll
from bertforge.tokenization import BertTokenizer
from bertforge.tokenization.alignment import align_word_labels


def label_list(tag_sequences: Sequence[Sequence[str]]) -> list[str]:
    """The tag set in a stable order: "O" first, then by entity type and B- before I-."""
    tags = {t for seq in tag_sequences for t in seq}
    rest = sorted(tags - {"O"}, key=lambda t: (t[2:], t[:2]))
    return (["O"] if "O" in tags else []) + rest


def word_windows(piece_counts: Sequence[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) word ranges whose pieces fit ``budget``, consecutive ranges overlapping by <= ``stride`` pieces."""
    n = len(piece_counts)
    if n == 0:
        return [(0, 0)]
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end, used = start, 0
        while end < n and (used + piece_counts[end] <= budget or end == start):
            used += piece_counts[end]
            end += 1
        windows.append((start, end))
        if end >= n:
            return windows
        back, overlap = end, 0
        while back - 1 > start and overlap + piece_counts[back - 1] <= stride:
            back -= 1
            overlap += piece_counts[back]
        start = max(back, start + 1)


def ner_features(
    tok: BertTokenizer,
    sentences: Sequence[Sequence[str]],
    max_length: int = 128,
    stride: int = 32,
    tags: Sequence[Sequence[str]] | None = None,
    label2id: dict[str, int] | None = None,
) -> list[dict]:
    """One feature per window: input_ids, token_type_ids, word_ids (indices into the sentence), the window's word
    range, and with ``tags`` the aligned ``labels`` (first piece of each word labelled, the rest -100)."""
    if max_length < 3:
        raise ValueError(f"max_length={max_length} leaves no room for words after [CLS] and [SEP]")
    if stride >= max_length - 2:
        raise ValueError(f"stride={stride} must be smaller than max_length - 2 = {max_length - 2}")
    whole = (
        tok(
            [list(s) for s in sentences],
            is_split_into_words=True,
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        if sentences
        else None
    )
    features: list[dict] = []
    for i, words in enumerate(sentences):
        counts = np.bincount(
            [w for w in whole.word_ids(i) if w is not None],  # type: ignore[union-attr]
            minlength=len(words),
        ).tolist()
        for start, end in word_windows(counts, max_length - 2, stride):
            features.append({"sentence": i, "start": start, "end": end, "words": list(words[start:end])})
    if not features:
        return []
    enc = tok(
        [f.pop("words") or [""] for f in features],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
    )
    for j, f in enumerate(features):
        f["input_ids"] = enc["input_ids"][j]
        f["token_type_ids"] = enc["token_type_ids"][j]
        f["word_ids"] = [None if w is None else w + f["start"] for w in enc.word_ids(j)]
        if tags is not None:
            sentence_tags = tags[f["sentence"]]
            if label2id is None:
                raise ValueError("ner_features: tags were given without label2id")
            word_labels = [label2id[t] for t in sentence_tags]
            f["labels"] = align_word_labels(f["word_ids"], word_labels)
    return features


def word_predictions(
    features: Sequence[dict], token_scores: Sequence[np.ndarray], sentence_lengths: Sequence[int]
) -> list[list[np.ndarray | None]]:
    """Per sentence, per word: the score vector at the word's first piece, taken from the window where the word has
    the most words on its shorter side; None for a word that has no piece (all its characters were dropped)."""
    best: list[list[tuple[int, np.ndarray] | None]] = [[None] * n for n in sentence_lengths]
    for f, scores in zip(features, token_scores):
        previous = None
        for t, w in enumerate(f["word_ids"]):
            if w is None or w == previous:
                previous = w
                continue
            previous = w
            context = min(w - f["start"], f["end"] - 1 - w)
            held = best[f["sentence"]][w]
            if held is None or context > held[0]:
                best[f["sentence"]][w] = (context, scores[t])
    return [[None if b is None else b[1] for b in sentence] for sentence in best]


class NERTask(TaskFamily):
    """Token classification on CoNLL column files; entity-level precision / recall / F1 (IOB2 spans, as conlleval
    and seqeval count them) on whole words."""

    name, model_class, unit, label_keys = "ner", BertForTokenClassification, "sentences", ("labels",)

    def read(self, source: Any) -> list[dict]:
        return read_conll(source, self.task.scheme)

    def group(self, sentence: dict) -> Any:
        return sentence["line"]

    def prepare(self, train: list, valid: list, train_name: str, valid_name: str) -> dict[str, Any]:
        self.labels = label_list([s["tags"] for s in train])
        self.label2id = {t: i for i, t in enumerate(self.labels)}
        for s in valid:
            unknown = [t for t in s["tags"] if t not in self.label2id]
            if unknown:
                raise ValueError(
                    f"{valid_name}: line {s['line']}: tag {unknown[0]!r} was not seen in training "
                    f"(tags: {', '.join(self.labels)})"
                )
        return {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)), "label2id": self.label2id}

    def features(self, tokenizer: Any, items: list, train: bool = False) -> list[dict]:
        max_length = self.task.length("ner")
        stride = (max_length - 2) // 4 if self.task.stride is None else self.task.stride
        words = [s["tokens"] for s in items]
        if not train:
            return ner_features(tokenizer, words, max_length, stride)
        return ner_features(tokenizer, words, max_length, stride, [s["tags"] for s in items], self.label2id)

    def evaluate(self, model, tokenizer: Any, items: list, features: list[dict], source: str):
        scores = self._predict(model, tokenizer, features, lambda out: [out.logits], per_token=True)
        words = word_predictions(features, [s[0] for s in scores], [len(s["tokens"]) for s in items])
        pred = [[self.labels[int(np.argmax(w))] if w is not None else "O" for w in sent] for sent in words]
        records = [
            {"line": s["line"], "tokens": s["tokens"], "prediction": p, "label": s["tags"]} for s, p in zip(items, pred)
        ]
        return M.entity_scores(pred, [s["tags"] for s in items]), records

    @property
    def default_metric(self) -> str:
        return "f1"

    def metric_names(self) -> tuple[str, ...]:
        return tuple(M.entity_scores([self.labels], [self.labels]))  # every tag once: every entity type's score

    def describe(self, base: str) -> str:
        return f"{base} for NER ({len(self.labels)} tags)"
