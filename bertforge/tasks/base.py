"""A task family: what fine-tuning needs to know about a kind of task, so that one driver (``training/finetune.py``)
runs them all. Each family (``ClassificationTask``, ``NERTask``, ``QATask``; the registry in ``families.py``) reads
its files, names the unit a validation split keeps whole, turns the training data into the head's arguments (labels),
makes features (one tokenized window each), and evaluates a model into metrics and prediction records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from bertforge.tasks.features import predict

if TYPE_CHECKING:
    from bertforge.config import TaskConfig


class TaskFamily:
    name = ""
    """classification, ner or qa: the task's name in configs, messages and ``finetune_result.json``."""
    model_class: type
    """The head class the task trains."""
    unit = "rows"
    """What the training file holds, for messages."""
    label_keys: tuple[str, ...] = ()
    """Per-token label keys of a feature (padded with -100 when batched)."""

    def __init__(self, task: TaskConfig, bf16: bool = False):
        self.task, self.bf16 = task, bf16

    def read(self, source: Any) -> list:
        """The items of a file (or of rows in memory)."""
        raise NotImplementedError

    def group(self, item: Any) -> Any:
        """The unit a validation split keeps on one side (a row, a sentence, an article)."""
        raise NotImplementedError

    def prepare(self, train: list, valid: list, train_name: str, valid_name: str) -> dict[str, Any]:
        """Learn the labels from the training items (checking the validation items against them); returns the
        head's config arguments (num_labels, id2label, ...)."""
        raise NotImplementedError

    def features(self, tokenizer: Any, items: list, train: bool = False) -> list[dict]:
        """One feature per window; training features carry their labels."""
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, tokenizer: Any, items: list, features: list[dict], source: str):
        """(metrics, prediction records) of ``model`` on ``items`` (whose features are given)."""
        raise NotImplementedError

    def baseline(self, name: str, train: list, valid: list, valid_name: str) -> dict[str, float]:
        """The validation metrics of baseline ``name`` (``constants.BASELINES``) fitted on ``train``."""
        raise ValueError(f"--baseline {name} is for classification, not {self.name}")

    @property
    def default_metric(self) -> str:
        raise NotImplementedError

    def metric_names(self) -> tuple[str, ...]:
        """The metrics ``evaluate`` reports (checked against a --metric before training)."""
        raise NotImplementedError

    def describe(self, base: str) -> str:
        raise NotImplementedError

    @property
    def label_dtype(self) -> torch.dtype:
        return torch.long

    def _predict(self, model, tokenizer, features: Sequence[dict], outputs: Callable, per_token: bool = False):
        """The model's outputs on the features, in length-sorted batches of ``eval_batch_size``."""
        return predict(
            model,
            features,
            self.task.eval_batch_size,
            outputs,
            pad_token_id=tokenizer.pad_token_id,
            bf16=self.bf16,
            per_token=per_token,
        )
