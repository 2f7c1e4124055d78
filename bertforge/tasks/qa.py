"""Extractive QA features and post-processing (SQuAD v1.1 and v2.0).

Features: the question (cut to ``max_query_length`` pieces) then the context, in windows of ``max_length`` tokens
that overlap by ``doc_stride`` tokens (the meaning of ``stride`` in a tokenizer call, as transformers' run_qa uses
it). A training window is labelled with the answer's token span when the whole answer lies inside it, else with
[CLS] (index 0), BERT's "no answer here".

Post-processing: for each question, over all of its windows, the ``n_best`` highest start and end logits inside the
context are paired; a pair is kept when end >= start and the span has at most ``max_answer_length`` tokens; its
score is start + end logit and its text is cut from the original context by character offsets. For v2.0 the null
score is the lowest [CLS] start + end over the windows; the answer is empty when null - best > ``null_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertforge.model import BertForQuestionAnswering
from bertforge.tasks import metrics as M
from bertforge.tasks.base import TaskFamily
from bertforge.tasks.readers import SquadExample, read_squad
from bertforge.tokenization import BertTokenizer
from bertforge.tokenization.alignment import char_span_to_token_span


def _cut_question(tok: BertTokenizer, question: str, max_query_length: int) -> str:
    question = question.lstrip()  # SQuAD has questions with leading spaces that waste the window
    enc = tok(
        question,
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_token_type_ids=False,
        return_attention_mask=False,
    )
    if len(enc["input_ids"]) <= max_query_length:
        return question
    return question[: enc["offset_mapping"][max_query_length - 1][1]]


def qa_features(
    tok: BertTokenizer,
    examples: Sequence[SquadExample],
    max_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    train: bool = False,
) -> list[dict]:
    """One feature per window: input_ids, token_type_ids, ``example`` (index), ``offsets`` (character spans into the
    context, None outside it) and, with ``train``, ``start_positions`` / ``end_positions``."""
    for ex in examples:
        if not ex.question.strip():
            raise ValueError(f"question {ex.id!r} is empty")
        if not ex.context.strip():
            raise ValueError(f"question {ex.id!r} has an empty context")
    if max_query_length + doc_stride + 3 >= max_length:
        raise ValueError(
            f"max_length={max_length} must exceed max_query_length ({max_query_length}) + doc_stride "
            f"({doc_stride}) + 3 special tokens, or the windows cannot advance"
        )
    questions = [_cut_question(tok, ex.question, max_query_length) for ex in examples]
    enc = tok(
        questions,
        [ex.context for ex in examples],
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_attention_mask=False,
    )
    features = []
    for j, i in enumerate(enc["overflow_to_sample_mapping"]):
        seq_ids = enc.sequence_ids(j)
        offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][j], seq_ids)]
        f = {
            "example": i,
            "input_ids": enc["input_ids"][j],
            "token_type_ids": enc["token_type_ids"][j],
            "offsets": offsets,
        }
        if train:
            ex = examples[i]
            span = None
            if ex.answers:
                start = ex.answer_starts[0]
                span = char_span_to_token_span(enc["offset_mapping"][j], seq_ids, start, start + len(ex.answers[0]))
            f["start_positions"], f["end_positions"] = span if span is not None else (0, 0)
        features.append(f)
    return features


@dataclass
class Answer:
    text: str
    score: float
    """start + end logit (the null answer's: the [CLS] logits)."""
    start: int
    """character offsets into the context; -1 for the null answer."""
    end: int


def best_answers(
    examples: Sequence[SquadExample],
    features: Sequence[dict],
    logits: Sequence[Sequence[np.ndarray]],
    n_best: int = 20,
    max_answer_length: int = 30,
    version_2: bool = False,
    null_threshold: float = 0.0,
) -> list[list[Answer]]:
    """For each example the candidate answers, best first (at most ``n_best``); with ``version_2`` the null answer
    ("" with start -1) is first when null score - best span score > ``null_threshold``."""
    by_example: list[list[int]] = [[] for _ in examples]
    for j, f in enumerate(features):
        by_example[f["example"]].append(j)
    results = []
    for i, ex in enumerate(examples):
        spans: dict[tuple[int, int], float] = {}
        null = None
        for j in by_example[i]:
            start_logits, end_logits = logits[j][0], logits[j][1]
            offsets = features[j]["offsets"]
            null_here = float(start_logits[0] + end_logits[0])
            null = null_here if null is None else min(null, null_here)
            starts = np.argsort(-start_logits, kind="stable")[:n_best]
            ends = np.argsort(-end_logits, kind="stable")[:n_best]
            for s in starts:
                if s >= len(offsets) or offsets[s] is None:
                    continue
                for e in ends:
                    if e >= len(offsets) or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    char_span = (offsets[s][0], offsets[e][1])
                    score = float(start_logits[s] + end_logits[e])
                    if score > spans.get(char_span, -np.inf):
                        spans[char_span] = score
        ranked = sorted(spans.items(), key=lambda kv: -kv[1])[:n_best]
        answers = [Answer(ex.context[a:b], score, a, b) for (a, b), score in ranked]
        if version_2 and null is not None:
            null_answer = Answer("", null, -1, -1)
            if not answers or null - answers[0].score > null_threshold:
                answers.insert(0, null_answer)
            else:
                answers.append(null_answer)
        if not answers:
            answers = [Answer("", float("-inf"), -1, -1)]
        results.append(answers)
    return results


class QATask(TaskFamily):
    """Extractive QA on SQuAD-style JSON; EM and F1 with SQuAD's official normalisation (v2.0: also on the answerable
    and the unanswerable questions apart). Held out by article: questions about one passage stay on one side."""

    name, model_class, unit = "qa", BertForQuestionAnswering, "questions"

    def read(self, source: Any) -> list[SquadExample]:
        return read_squad(source)

    def group(self, example: SquadExample) -> Any:
        return example.title or example.context

    def prepare(self, train: list, valid: list, train_name: str, valid_name: str) -> dict[str, Any]:
        t = self.task
        self.version_2 = t.version_2 if t.version_2 is not None else any(ex.is_impossible for ex in train)
        return {"num_labels": 2}

    def features(self, tokenizer: Any, items: list, train: bool = False) -> list[dict]:
        t = self.task
        stride = 128 if t.stride is None else t.stride
        return qa_features(tokenizer, items, t.length("qa"), stride, t.max_query_length, train=train)

    def evaluate(self, model, tokenizer: Any, items: list, features: list[dict], source: str):
        t = self.task
        logits = self._predict(model, tokenizer, features, lambda out: [out.start_logits, out.end_logits], True)
        answers = best_answers(items, features, logits, t.n_best, t.max_answer_length, self.version_2, t.null_threshold)
        predicted = {ex.id: a[0].text for ex, a in zip(items, answers)}
        scores = M.squad_scores(predicted, {ex.id: ex.answers for ex in items}, self.version_2)
        if self.version_2:
            for name, keep in (("has_ans", lambda e: not e.is_impossible), ("no_ans", lambda e: e.is_impossible)):
                subset = {ex.id: ex.answers for ex in items if keep(ex)}
                if subset:
                    part = M.squad_scores(predicted, subset, self.version_2)
                    scores[f"{name}_exact_match"], scores[f"{name}_f1"] = part["exact_match"], part["f1"]
        records = [
            {
                "id": ex.id,
                "prediction": a[0].text,
                "answers": ex.answers,
                "n_best": [{"text": c.text, "score": round(c.score, 4)} for c in a[:5]],
            }
            for ex, a in zip(items, answers)
        ]
        return scores, records

    @property
    def default_metric(self) -> str:
        return "f1"

    def metric_names(self) -> tuple[str, ...]:
        both = ("has_ans_exact_match", "has_ans_f1", "no_ans_exact_match", "no_ans_f1")
        return ("exact_match", "f1") + (both if self.version_2 else ())

    def describe(self, base: str) -> str:
        return f"{base} for {'SQuAD v2.0' if self.version_2 else 'SQuAD v1.1'} QA"
