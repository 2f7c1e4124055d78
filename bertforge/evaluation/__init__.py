"""What a model is worth downstream: benchmarks run against the same architecture from random weights.

- ``glue.py``: ``bertforge evaluate glue``: GLUE's tasks with one fine-tuning recipe, GLUE's metrics, a
  learning-rate grid, seeds, the from-scratch twin (``scratch_copy``), resumable reports.
"""

from bertforge.evaluation.glue import (
    DEFAULT_TASKS,
    GLUE_TASKS,
    NARROW_LRS,
    WIDE_LRS,
    GlueSettings,
    default_lrs,
    evaluate_glue,
    scratch_copy,
    table,
)

__all__ = [
    "DEFAULT_TASKS",
    "GLUE_TASKS",
    "NARROW_LRS",
    "WIDE_LRS",
    "GlueSettings",
    "default_lrs",
    "evaluate_glue",
    "scratch_copy",
    "table",
]
