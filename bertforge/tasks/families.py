"""The task families fine-tuning runs, by name: adding a task is its family class and one line here."""

from __future__ import annotations

from bertforge.tasks.base import TaskFamily
from bertforge.tasks.classification import ClassificationTask
from bertforge.tasks.ner import NERTask
from bertforge.tasks.qa import QATask

FAMILIES: dict[str, type[TaskFamily]] = {cls.name: cls for cls in (ClassificationTask, NERTask, QATask)}
