"""``bertforge.pipeline(task, model=DIR)``: one call from text to answers, on bertforge's or Hugging Face checkpoints.

Tasks (aliases in brackets): fill-mask, text-classification [sentiment-analysis], token-classification [ner],
question-answering, zero-shot-classification, feature-extraction [sentence-embedding: mean pooling, normalised],
text-generation (causal checkpoints).
"""

from __future__ import annotations

from bertforge.pipelines.base import Pipeline
from bertforge.pipelines.feature_extraction import FeatureExtractionPipeline, similarity
from bertforge.pipelines.fill_mask import FillMaskPipeline
from bertforge.pipelines.question_answering import QuestionAnsweringPipeline
from bertforge.pipelines.text_classification import TextClassificationPipeline
from bertforge.pipelines.text_generation import TextGenerationPipeline
from bertforge.pipelines.token_classification import TokenClassificationPipeline
from bertforge.pipelines.zero_shot import ZeroShotClassificationPipeline

PIPELINES: dict[str, type[Pipeline]] = {
    "fill-mask": FillMaskPipeline,
    "text-classification": TextClassificationPipeline,
    "token-classification": TokenClassificationPipeline,
    "question-answering": QuestionAnsweringPipeline,
    "zero-shot-classification": ZeroShotClassificationPipeline,
    "feature-extraction": FeatureExtractionPipeline,
    "text-generation": TextGenerationPipeline,
}
ALIASES = {
    "sentiment-analysis": "text-classification",
    "ner": "token-classification",
    "sentence-embedding": "feature-extraction",
    "sentence-embeddings": "feature-extraction",
}
TASKS = sorted(PIPELINES) + sorted(ALIASES)


def pipeline(task: str, model=None, tokenizer=None, **kwargs) -> Pipeline:
    """The pipeline for ``task`` on ``model`` (a checkpoint directory). Keywords: device, dtype ("bf16"...),
    batch_size, max_length, show_progress, and the task's own (pooling/normalize for feature-extraction)."""
    if model is None:
        raise ValueError("bertforge has no default checkpoints (nothing is downloaded): pass model=DIR")
    name = ALIASES.get(task, task)
    if name not in PIPELINES:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if task.startswith("sentence-embedding"):
        kwargs.setdefault("pooling", "mean")
        kwargs.setdefault("normalize", True)
    return PIPELINES[name](model, tokenizer, **kwargs)


__all__ = ["PIPELINES", "TASKS", "Pipeline", "pipeline", "similarity"] + [c.__name__ for c in PIPELINES.values()]
