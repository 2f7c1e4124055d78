"""The fine-tuning heads on top of ``BertModel``: sequence classification, token classification, extractive QA and
multiple choice, each family's sentence head included (BERT's pooler, RoBERTa's and ELECTRA's dense layer on the
first token, DistilBERT's pre-classifier). Each computes its loss when labels are given (label -100 is ignored).

Shapes use the letters of ``bert.py``: B batch, S sequence, H hidden, C choices, L labels. Class and output field names
follow transformers so that its users find what they expect.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.model.bert import BertModel, init_weights
from bertforge.model.config import BertConfig
from bertforge.model.dropout import Dropout
from bertforge.model.pretrained import PreTrainedBert


def _hidden_extras(out) -> dict:
    return dict(hidden_states=out.hidden_states, attentions=out.attentions)


@dataclass
class SequenceClassifierOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor
    """(B, L) for classification and sequence heads; (B, S, L) for token classification; (B, C) for multiple choice."""
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


TokenClassifierOutput = SequenceClassifierOutput
MultipleChoiceOutput = SequenceClassifierOutput


@dataclass
class QuestionAnsweringOutput:
    loss: torch.Tensor | None
    start_logits: torch.Tensor
    """(B, S)."""
    end_logits: torch.Tensor
    """(B, S)."""
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def _classifier_dropout(config: BertConfig) -> Dropout:
    p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    return Dropout(p)


def sequence_classification_loss(config: BertConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Regression (MSE), single-label (CE) or multi-label (BCE) loss, chosen as transformers chooses.

    ``config.problem_type`` wins when set; otherwise one label means regression, integer labels single-label
    classification, and float labels of shape (B, L) multi-label classification.
    """
    problem = config.problem_type
    if problem is None:
        if config.num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    logits = logits.float()
    if problem == "regression":
        if config.num_labels == 1:
            return F.mse_loss(logits.view(-1), labels.reshape(-1).float())  # (B,): a batch of one stays (1,)
        return F.mse_loss(logits, labels.float())
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1).long(), ignore_index=IGNORE_INDEX)
    return F.binary_cross_entropy_with_logits(logits, labels.float())


def _sentence_dense(config: BertConfig, own: bool) -> nn.Linear | None:
    """The H -> H layer of a family's own sentence head (``own``: RoBERTa's classifier.dense, DistilBERT's
    pre_classifier); None where the head reads the pooler."""
    if not own:
        return None
    dense = nn.Linear(config.hidden_size, config.hidden_size)
    init_weights(dense, config)
    return dense


def _sentence_vector(head: PreTrainedBert, out) -> torch.Tensor:
    """What a sentence-level head reads: the pooler (BERT: tanh(dense(h[CLS]))), or with the head's own layer
    RoBERTa's tanh(dense(dropout(h[<s>]))) or DistilBERT's relu(dense(h[CLS]))."""
    dense: nn.Linear | None = head.head_dense  # type: ignore[assignment]
    if dense is None:
        return out.pooler_output
    first = out.last_hidden_state[:, 0]
    kind = head.config.family.sentence_head
    if kind == "tanh":
        return torch.tanh(dense(head.dropout(first)))  # type: ignore[operator]
    if kind == "gelu":  # ELECTRA: gelu in both of its heads; the classifier's drops out first, as RoBERTa's
        dropped = head.dropout(first) if isinstance(head, BertForSequenceClassification) else first
        return F.gelu(dense(dropped))
    return F.relu(dense(first))


class BertForSequenceClassification(PreTrainedBert):
    """Pooler -> dropout -> linear (H -> L): single-label, multi-label or regression. RoBERTa and DistilBERT read
    their own dense layer on the first token instead of the pooler (``_sentence_vector``)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        own = config.family.sentence_head != "pooler"
        self.bert = BertModel(config, add_pooling_layer=not own)
        self.head_dense = _sentence_dense(config, own)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels or 2)
        init_weights(self.classifier, config)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        labels=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> SequenceClassifierOutput:
        out = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(self.dropout(_sentence_vector(self, out)))  # (B, L)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss, logits, **_hidden_extras(out))


class BertForTokenClassification(PreTrainedBert):
    """Dropout -> linear on every token (H -> L): NER and other taggers."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels or 2)
        init_weights(self.classifier, config)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        labels=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> TokenClassifierOutput:
        out = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, S, L)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
        return TokenClassifierOutput(loss, logits, **_hidden_extras(out))


class BertForQuestionAnswering(PreTrainedBert):
    """Linear (H -> 2) on every token: start and end logits of the answer span."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        if config.num_labels != 2:
            raise ValueError(
                f"BertForQuestionAnswering needs num_labels = 2 (start and end logits), the config has "
                f"{config.num_labels}; pass num_labels=2"
            )
        self.bert = BertModel(config, add_pooling_layer=False)
        # DistilBERT's QA head drops out before the projection (its config's qa_dropout); BERT's and RoBERTa's do not
        self.dropout = Dropout(config.extra.get("qa_dropout", 0.1)) if config.model_type == "distilbert" else None
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        init_weights(self.qa_outputs, config)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        start_positions=None,
        end_positions=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> QuestionAnsweringOutput:
        """``start_positions``/``end_positions`` (B,) token indices; positions outside the sequence are ignored.

        The loss's softmax runs over the real tokens only (padding masked out), so a window's loss does not depend on
        how much padding its batch has; transformers includes the padded positions (equal on unpadded batches)."""
        out = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden = out.last_hidden_state if self.dropout is None else self.dropout(out.last_hidden_state)
        start_logits, end_logits = self.qa_outputs(hidden).unbind(-1)  # (B, S, 2) -> 2 x (B, S)
        loss = None
        if start_positions is not None and end_positions is not None:
            S = start_logits.shape[1]
            # An answer index past the sequence (truncated away) is mapped to S and ignored, as in BERT's run_squad.
            start = start_positions.flatten().clamp(0, S)
            end = end_positions.flatten().clamp(0, S)
            s_logits, e_logits = start_logits.float(), end_logits.float()
            if attention_mask is not None:
                pad = attention_mask == 0
                s_logits = s_logits.masked_fill(pad, torch.finfo(s_logits.dtype).min)
                e_logits = e_logits.masked_fill(pad, torch.finfo(e_logits.dtype).min)
            loss = (
                F.cross_entropy(s_logits, start, ignore_index=S) + F.cross_entropy(e_logits, end, ignore_index=S)
            ) / 2
        return QuestionAnsweringOutput(loss, start_logits, end_logits, **_hidden_extras(out))


class BertForMultipleChoice(PreTrainedBert):
    """Each (context, choice) pair encoded, pooled and scored (H -> 1); softmax over the C choices."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        own = not config.has_pooler  # DistilBERT's and ELECTRA's own layer; RoBERTa's reads the pooler, as BERT's
        self.bert = BertModel(config, add_pooling_layer=not own)
        self.head_dense = _sentence_dense(config, own)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        init_weights(self.classifier, config)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        labels=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> MultipleChoiceOutput:
        """Inputs (B, C, S); ``labels`` (B,) the index of the right choice."""
        if input_ids.dim() != 3:
            raise ValueError(
                f"multiple choice takes input_ids of shape (batch, choices, sequence), got {tuple(input_ids.shape)}"
            )
        B, C, S = input_ids.shape

        def flat(t):
            return None if t is None else t.reshape(B * C, S)

        out = self.bert(
            flat(input_ids),
            attention_mask=flat(attention_mask),
            token_type_ids=flat(token_type_ids),
            position_ids=flat(position_ids),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(self.dropout(_sentence_vector(self, out))).view(B, C)
        loss = None if labels is None else F.cross_entropy(logits.float(), labels.flatten(), ignore_index=IGNORE_INDEX)
        return MultipleChoiceOutput(loss, logits, **_hidden_extras(out))
