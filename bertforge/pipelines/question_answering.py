"""question-answering: the answer span (text, score, start/end characters) of a question in a context.

Contexts longer than a window are split with ``doc_stride``; in each window the start and end logits are turned
into probabilities over the context tokens and [CLS] (question tokens and separators masked out), a span's score is
P(start) x P(end) with at most ``max_answer_len`` tokens, and the best spans of all windows compete. With
``handle_impossible_answer`` the empty answer competes too, with the lowest [CLS] score of the windows. (These are
the scores transformers' question-answering pipeline returned before it was removed in transformers 5.)
"""

from __future__ import annotations

import numpy as np

from bertforge.model import BertForQuestionAnswering
from bertforge.pipelines.base import Option, Pipeline, check_number, check_texts, softmax
from bertforge.tasks.qa import qa_features
from bertforge.tasks.readers import SquadExample


class QuestionAnsweringPipeline(Pipeline):
    task = "question-answering"
    model_class = BertForQuestionAnswering
    head = "qa_outputs."
    head_hint = "use a checkpoint fine-tuned for QA (bertforge finetune qa writes one)"
    cli_options = (
        Option("--top-k", "answers per question (default 1)", int, minimum=1),
        Option("--doc-stride", "overlap of a long context's windows, in tokens", int, minimum=0),
        Option("--max-answer-len", "longest answer, in tokens", int, minimum=1),
        Option("--handle-impossible-answer", "allow the empty answer (SQuAD v2.0)", bool),
    )

    def __init__(self, *args, max_length: int | None = 384, **kwargs):
        super().__init__(*args, max_length=max_length, **kwargs)

    def __call__(
        self,
        inputs=None,
        question: str | list[str] | None = None,
        *,
        context: str | list[str] | None = None,
        top_k: int = 1,
        doc_stride: int = 128,
        max_answer_len: int = 15,
        max_question_len: int = 64,
        handle_impossible_answer: bool = False,
    ):
        """``pipe(question=..., context=...)``, ``pipe(question, context)``, ``pipe({"question": ..., "context":
        ...})`` or a list of such dicts. Returns ``{"score", "start", "end", "answer"}`` per question (a list of
        ``top_k`` when top_k > 1)."""
        if isinstance(inputs, str) and isinstance(question, str) and context is None:
            inputs, question, context = None, inputs, question  # pipe(question, context), positionally
        if inputs is None:
            if question is None or context is None:
                raise ValueError("give question= and context= (or dicts with 'question' and 'context')")
            single = isinstance(question, str)
            questions = [question] if single else list(question)
            contexts = [context] * len(questions) if isinstance(context, str) else list(context)
            if len(questions) != len(contexts):
                raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
        else:
            single = isinstance(inputs, dict)
            items = [inputs] if single else list(inputs)
            for n, item in enumerate(items):
                if not isinstance(item, dict) or "question" not in item or "context" not in item:
                    raise ValueError(f"input {n} must be a dict with 'question' and 'context'")
            questions = [item["question"] for item in items]
            contexts = [item["context"] for item in items]
        examples = []
        for n, (q, c) in enumerate(zip(questions, contexts)):
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"question {n} is empty")
            if not isinstance(c, str) or not c.strip():
                raise ValueError(f"the context of question {n} is empty")
            examples.append(SquadExample(str(n), q, c))
        check_texts(questions, "question", "question")
        check_texts(contexts, "context", "context")
        check_number("max_answer_len", max_answer_len, 1)
        check_number("top_k", top_k, 1)
        check_number("doc_stride", doc_stride, 0)
        check_number("max_question_len", max_question_len, 1)
        max_question_len = min(max_question_len, self.max_length // 2 - 2)  # small models: half the window at most
        stride = max(0, min(doc_stride, self.max_length - max_question_len - 4))
        feats = qa_features(self.tokenizer, examples, self.max_length, stride, max_question_len)
        logits = self._predict(feats, lambda out: [out.start_logits, out.end_logits], per_token=True)
        results = [
            self._answers(
                ex,
                [(f, lg) for f, lg in zip(feats, logits) if f["example"] == n],
                top_k,
                max_answer_len,
                handle_impossible_answer,
            )
            for n, ex in enumerate(examples)
        ]
        results = [r[0] if top_k == 1 else r for r in results]
        return results[0] if single else results

    @staticmethod
    def _answers(ex: SquadExample, windows, top_k: int, max_answer_len: int, impossible: bool) -> list[dict]:
        spans: dict[tuple[int, int], float] = {}
        null = 1.0
        for f, (start_logits, end_logits) in windows:
            allowed = np.array([o is not None for o in f["offsets"]])
            allowed[0] = True  # [CLS]: the null answer
            p_start = softmax(np.where(allowed, start_logits, -10000.0))
            p_end = softmax(np.where(allowed, end_logits, -10000.0))
            null = min(null, float(p_start[0] * p_end[0]))
            p_start[0] = p_end[0] = 0.0
            scores = np.triu(np.outer(p_start, p_end))
            scores = np.tril(scores, max_answer_len - 1)  # end - start < max_answer_len
            flat = np.argsort(-scores, axis=None, kind="stable")[: max(top_k, 1) * 4]
            for s, e in zip(*np.unravel_index(flat, scores.shape)):
                if f["offsets"][s] is None or f["offsets"][e] is None or scores[s, e] <= 0:
                    continue
                span = (f["offsets"][s][0], f["offsets"][e][1])
                spans[span] = max(spans.get(span, 0.0), float(scores[s, e]))
        answers = [{"score": score, "start": a, "end": b, "answer": ex.context[a:b]} for (a, b), score in spans.items()]
        if impossible:
            answers.append({"score": null, "start": 0, "end": 0, "answer": ""})
        answers.sort(key=lambda a: -float(a["score"]))  # type: ignore[arg-type]
        if not answers:
            answers = [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
        return answers[:top_k]
