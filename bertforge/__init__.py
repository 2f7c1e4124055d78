"""bertforge: pretrain, fine-tune and run BERT encoders, compatible with Hugging Face and Megatron-LM files."""

__version__ = "0.1.0"

from bertforge.model import (  # noqa: E402
    MODEL_CLASSES,
    PRESETS,
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    preset,
)

__all__ = [
    "BertConfig", "BertForMaskedLM", "BertForMultipleChoice", "BertForPreTraining", "BertForQuestionAnswering",
    "BertForSequenceClassification", "BertForTokenClassification", "BertModel", "MODEL_CLASSES", "PRESETS", "preset",
    "__version__",
]
