"""zero-shot-classification with an NLI checkpoint: each candidate label becomes a hypothesis ("This example is
{}.") and the entailment logits rank the labels; every (text, label) pair of a call runs in one batched pass."""

from __future__ import annotations

import numpy as np

from bertforge.model import BertForSequenceClassification
from bertforge.pipelines.base import Option, Pipeline, as_list, check_texts, comma_list, softmax


class ZeroShotClassificationPipeline(Pipeline):
    task = "zero-shot-classification"
    model_class = BertForSequenceClassification
    head = "classifier."
    cli_options = (
        Option("--candidate-labels", "the labels, comma-separated", required=True),
        Option("--hypothesis-template", "the NLI hypothesis, with {} where the label goes"),
        Option("--multi-label", "score each label on its own", bool),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.entailment_id = next(
            (i for label, i in self.config.label2id.items() if label.lower().startswith("entail")), None
        )
        if self.entailment_id is None:
            raise ValueError(
                f"zero-shot classification needs an NLI checkpoint whose label2id names an entailment "
                f"label; this one has {self.config.label2id}"
            )
        contradiction = [i for label, i in self.config.label2id.items() if label.lower().startswith("contradict")]
        self.contradiction_id = contradiction[0] if contradiction else (-1 if self.entailment_id == 0 else 0)

    def __call__(
        self,
        inputs,
        candidate_labels: str | list[str] | None = None,
        *,
        hypothesis_template: str = "This example is {}.",
        multi_label: bool = False,
    ):
        """Returns ``{"sequence", "labels", "scores"}`` (labels best first) per text. ``multi_label``: each label
        scored on its own (entailment vs contradiction), else the entailment scores are a softmax over labels."""
        texts, single = as_list(inputs)
        check_texts(texts)
        if isinstance(candidate_labels, str):
            candidate_labels = comma_list(candidate_labels)
        if not candidate_labels or isinstance(candidate_labels, (bytes, dict)):
            raise ValueError("zero-shot classification needs candidate_labels (a list, or a comma-separated string)")
        candidate_labels = list(candidate_labels)
        check_texts(candidate_labels, "candidate label", argument="candidate_labels")
        hypotheses = [_hypothesis(hypothesis_template, label) for label in candidate_labels]
        firsts = [t for t in texts for _ in hypotheses]
        seconds = hypotheses * len(texts)
        enc = self.tokenizer(
            firsts, seconds, truncation="only_first", max_length=self.max_length, return_attention_mask=False
        )
        logits = np.stack([o[0] for o in self._predict(self._features(enc), lambda out: [out.logits])])
        logits = logits.reshape(len(texts), len(hypotheses), -1)
        if multi_label or len(hypotheses) == 1:
            scores = softmax(logits[..., [self.contradiction_id, self.entailment_id]])[..., 1]
        else:
            scores = softmax(logits[..., self.entailment_id])
        results = []
        for text, row in zip(texts, scores):
            order = np.argsort(-row, kind="stable")
            results.append(
                {
                    "sequence": text,
                    "labels": [candidate_labels[k] for k in order],
                    "scores": [float(row[k]) for k in order],
                }
            )
        return results[0] if single else results


def _hypothesis(template: str, label: str) -> str:
    """``template`` with ``label`` in its one ``{}``; a template without one, or with other fields, is an error."""
    if not isinstance(template, str):
        raise TypeError(f"hypothesis_template must be a string, got {type(template).__name__}")
    try:
        text = template.format(label)
    except (IndexError, KeyError, ValueError):
        text = None
    if text is None or text == template or template.count("{}") != 1:
        raise ValueError(
            f"hypothesis_template {template!r} must hold exactly one {{}} where the label goes "
            "(e.g. 'This example is {}.'); write {{ and }} for literal braces"
        )
    return text
