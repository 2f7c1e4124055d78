"""Run configuration: one dataclass per concern, every field with a docstring that states its unit.

- ``DataConfig``: pretraining data (Megatron's files, masking).
- ``OptimConfig``: optimizer and learning-rate schedule (pretraining and fine-tuning).
- ``TrainConfig``: batches, precision, checkpoints, logging, distribution (pretraining and fine-tuning).
- ``TaskConfig``: a fine-tuning task's inputs, windows, evaluation and post-processing.
- ``AdaptConfig``: which parameters fine-tuning trains (full, head only, LoRA).
- ``TrackingConfig``: TensorBoard and Weights & Biases (pretraining and fine-tuning).
- ``PretrainConfig`` nests model + data + optim + train (``bertforge pretrain``); ``FinetuneConfig`` nests
  optim + train + task + adapt (``bertforge finetune``) with BERT's fine-tuning defaults.

The model's own config is ``BertConfig`` (``model/config.py``, Hugging Face names). The command line is generated from
these fields (``cli/fields.py``): a field's flag is ``--field-name`` unless its metadata names another (Megatron's
name, say), so adding an option is one field here. Units: tokens, sequences (samples), steps (optimizer iterations).
"""

from bertforge.config.fields import opt, validate
from bertforge.config.runs import RECIPES, RECIPES_DIR, FinetuneConfig, PretrainConfig, RunConfig, recipe_path
from bertforge.config.sections import (
    BINARY_HEADS,
    DECAY_STYLES,
    LORA_TARGETS,
    NONFINITE,
    OBJECTIVES,
    OPTIMIZERS,
    STRATEGY_NAMES,
    TOKENIZER_TYPES,
    UNFREEZE_SCHEDULES,
    AdaptConfig,
    DataConfig,
    DistillConfig,
    OptimConfig,
    PhaseConfig,
    TaskConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "AdaptConfig",
    "BINARY_HEADS",
    "DECAY_STYLES",
    "DataConfig",
    "DistillConfig",
    "FinetuneConfig",
    "LORA_TARGETS",
    "NONFINITE",
    "OBJECTIVES",
    "OPTIMIZERS",
    "OptimConfig",
    "PhaseConfig",
    "PretrainConfig",
    "RECIPES",
    "RECIPES_DIR",
    "RunConfig",
    "STRATEGY_NAMES",
    "TOKENIZER_TYPES",
    "TaskConfig",
    "TrackingConfig",
    "TrainConfig",
    "UNFREEZE_SCHEDULES",
    "opt",
    "recipe_path",
    "validate",
]
