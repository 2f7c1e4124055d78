"""The BERT model: config, encoder, heads, and Hugging Face checkpoint interop."""

from bertforge.model.bert import BaseModelOutput, BertModel
from bertforge.model.config import PRESETS, BertConfig, preset
from bertforge.model.heads import (
    HEAD_CLASSES,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForReplacedTokenDetection,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertLMHeadModel,
    MaskedLMOutput,
    PreTrainingOutput,
    QuestionAnsweringOutput,
    SequenceClassifierOutput,
)
from bertforge.model.pretrained import LoadReport, PreTrainedBert

MODEL_CLASSES: dict[str, type[PreTrainedBert]] = {"BertModel": BertModel, **HEAD_CLASSES}

__all__ = [
    "BaseModelOutput",
    "BertConfig",
    "BertForMaskedLM",
    "BertLMHeadModel",
    "BertForMultipleChoice",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForReplacedTokenDetection",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "LoadReport",
    "MODEL_CLASSES",
    "MaskedLMOutput",
    "PRESETS",
    "PreTrainedBert",
    "PreTrainingOutput",
    "QuestionAnsweringOutput",
    "SequenceClassifierOutput",
    "preset",
]
