"""The fine-tuning strategies' public functions under their first import path; they live in ``bertforge.adapt``."""

from bertforge.adapt.apply import apply_strategy, head_parameter_names, remove_strategy, trained_state
from bertforge.adapt.artefact import (
    from_adapter,
    head_overrides,
    is_adapter_dir,
    load_adapter,
    read_adapter_config,
    save_adapter,
)
from bertforge.adapt.freeze import UnfreezeSchedule

__all__ = [
    "UnfreezeSchedule",
    "apply_strategy",
    "from_adapter",
    "head_overrides",
    "head_parameter_names",
    "is_adapter_dir",
    "load_adapter",
    "read_adapter_config",
    "remove_strategy",
    "save_adapter",
    "trained_state",
]
