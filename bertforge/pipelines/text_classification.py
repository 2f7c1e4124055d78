"""text-classification / sentiment-analysis: labels from the config's id2label, softmax / sigmoid / none, top_k, pairs;
inputs longer than a window are scored over overlapping windows and the windows' scores averaged (or maxed)."""

from __future__ import annotations

import numpy as np

from bertforge.model import BertForSequenceClassification
from bertforge.pipelines.base import STRIDE, Option, Pipeline, as_list, check_texts, sigmoid, softmax

FUNCTIONS = ("softmax", "sigmoid", "none")


class TextClassificationPipeline(Pipeline):
    task = "text-classification"
    model_class = BertForSequenceClassification
    head = "classifier."
    head_hint = "use a checkpoint fine-tuned for classification (bertforge finetune classification writes one)"
    cli_options = (
        Option("--top-k", "labels per input (default 1)", int, minimum=1),
        Option("--function-to-apply", "scores from the logits", choices=("softmax", "sigmoid", "none")),
        STRIDE,
    )

    def default_function(self) -> str:
        """As transformers: none for regression, sigmoid for multi-label or one output, else softmax."""
        problem = self.config.problem_type
        if problem == "regression":
            return "none"
        if problem == "multi_label_classification" or self.config.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def __call__(
        self,
        inputs,
        *,
        top_k: int | None = 1,
        function_to_apply: str | None = None,
        window_aggregation: str = "mean",
        stride: int | None = None,
    ):
        """Classify a text, a pair (``{"text": ..., "text_pair": ...}`` or a 2-tuple), or a list of either.

        Returns per input ``{"label", "score"}`` when ``top_k`` is 1 (the default), else the ``top_k`` best (all
        for None) as a list sorted by score. As transformers' pipeline, a single string gives a list of one result
        with the default top_k, and its ranked list itself with another top_k.
        """
        items, _ = as_list(inputs) if not isinstance(inputs, tuple) else ([inputs], True)
        texts, pairs = [], []
        for item in items:
            if isinstance(item, dict):
                if "text" not in item:
                    raise ValueError(f"a pair input needs 'text' (and 'text_pair'); got keys {sorted(item)}")
                texts.append(item["text"])
                pairs.append(item.get("text_pair"))
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                texts.append(item[0])
                pairs.append(item[1])
            else:
                texts.append(item)
                pairs.append(None)
        check_texts(texts)
        function = (function_to_apply or self.default_function()).lower()
        if function not in FUNCTIONS:
            raise ValueError(f"function_to_apply={function!r} is not one of {FUNCTIONS}")
        if window_aggregation not in ("mean", "max"):
            raise ValueError(f"window_aggregation={window_aggregation!r} must be 'mean' or 'max'")
        feats: list[dict] = []
        owner: list[int] = []
        for with_pair in (False, True):  # single texts and pairs are encoded apart (a batch may mix them)
            chosen = [i for i, p in enumerate(pairs) if (p is not None) == with_pair]
            if not chosen:
                continue
            enc, window_owner = self._windows(
                [texts[i] for i in chosen],
                [pairs[i] for i in chosen] if with_pair else None,  # type: ignore[misc]
                stride,
            )
            feats.extend(self._features(enc))
            owner.extend(chosen[k] for k in window_owner)
        logits = self._predict(feats, lambda out: [out.logits])
        per_input: list[list[np.ndarray]] = [[] for _ in texts]
        for j, i in enumerate(owner):
            x = logits[j][0]
            per_input[i].append(softmax(x) if function == "softmax" else sigmoid(x) if function == "sigmoid" else x)
        id2label = self.config.id2label
        results: list = []
        for windows in per_input:
            stacked = np.stack(windows)
            scores = stacked.mean(0) if window_aggregation == "mean" else stacked.max(0)
            if top_k == 1:
                k = int(scores.argmax())
                results.append({"label": id2label[k], "score": float(scores[k])})
            else:
                ranked = [{"label": id2label[k], "score": float(scores[k])} for k in np.argsort(-scores, kind="stable")]
                results.append(ranked[:top_k] if top_k is not None else ranked)
        if isinstance(inputs, (dict, tuple)) or (isinstance(inputs, str) and top_k != 1):
            return results[0]  # as transformers: one text with top_k given -> its ranked list, not a list of one
        return results
