"""bertforge: pretrain, fine-tune and run BERT encoders, compatible with Hugging Face and Megatron-LM files.

The model classes are imported on first use (``bertforge.BertModel``), so that the CLI, data preprocessing and its
worker processes start without loading torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "BertConfig": "bertforge.model",
    "BertModel": "bertforge.model",
    "BertForPreTraining": "bertforge.model",
    "BertForMaskedLM": "bertforge.model",
    "BertLMHeadModel": "bertforge.model",
    "BertForSequenceClassification": "bertforge.model",
    "BertForTokenClassification": "bertforge.model",
    "BertForQuestionAnswering": "bertforge.model",
    "BertForMultipleChoice": "bertforge.model",
    "BertForReplacedTokenDetection": "bertforge.model",
    "MODEL_CLASSES": "bertforge.model",
    "PRESETS": "bertforge.model",
    "preset": "bertforge.model",
    "BertTokenizer": "bertforge.tokenization",
    "RobertaTokenizer": "bertforge.tokenization",
    "AlbertTokenizer": "bertforge.tokenization",
    "pipeline": "bertforge.pipelines",
    "load_model": "bertforge.auto",
    "load_tokenizer": "bertforge.auto",
    "finetune": "bertforge.training.finetune",
    "FinetuneConfig": "bertforge.config",
    "get_linear_schedule_with_warmup": "bertforge.training.optim",
    "get_cosine_schedule_with_warmup": "bertforge.training.optim",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bertforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
