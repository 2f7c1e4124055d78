"""The language-model heads on top of ``BertModel`` -- BERT's pretraining (MLM + NSP/SOP), MLM alone, next-token
prediction, ELECTRA's replaced-token detection -- and ``HEAD_CLASSES``, every head class by name (the fine-tuning
heads are in ``task_heads.py``). Each computes its loss when labels are given (label -100 is ignored).

Shapes use the letters of ``bert.py``: B batch, S sequence, H hidden, V vocab, C choices, L labels.
Class and output field names follow transformers so that its users find what they expect.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.model.bert import BertModel, Embeddings, activation, init_weights
from bertforge.model.config import BertConfig
from bertforge.model.pretrained import PreTrainedBert
from bertforge.model.task_heads import (  # noqa: F401  (re-exported: the fine-tuning heads' public names)
    BertForMultipleChoice,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    MultipleChoiceOutput,
    QuestionAnsweringOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    _hidden_extras,
    sequence_classification_loss,
)


@dataclass
class PreTrainingOutput:
    loss: torch.Tensor | None
    """mean MLM cross-entropy + binary-head cross-entropy (each term present when its labels are given)."""
    prediction_logits: torch.Tensor
    """(B, S, V) MLM logits."""
    seq_relationship_logits: torch.Tensor
    """(B, 2) NSP / SOP logits."""
    mlm_loss: torch.Tensor | None = None
    binary_loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    @property
    def sop_logits(self) -> torch.Tensor:
        """The binary head's logits under ALBERT's name (sentence-order prediction)."""
        return self.seq_relationship_logits


@dataclass
class MaskedLMOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor
    """(B, S, V)."""
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class MLMHead(nn.Module):
    """transform (dense H -> E + act + LayerNorm), then the decoder E -> V whose weight is the word-embedding matrix
    (E is the embedding width: the hidden size but for ELECTRA's generator)."""

    def __init__(self, config: BertConfig, embeddings: Embeddings):
        super().__init__()
        width = config.embedding_width
        self.transform = nn.Linear(config.hidden_size, width)
        self.act = activation(config.family.mlm_activation or config.hidden_act)  # RoBERTa's, ELECTRA's: gelu
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(width, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.apply(lambda m: init_weights(m, config))
        if config.tie_word_embeddings:
            self.decoder.weight = embeddings.token.weight
            embeddings.sparse_token_grad = True  # the decoder adds a dense gradient to the shared matrix

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., H) -> logits (..., V)."""
        return F.linear(self.norm(self.act(self.transform(hidden))), self.decoder.weight, self.bias)


class BertForPreTraining(PreTrainedBert):
    """MLM head + binary sentence head (NSP or SOP), as in BERT's pretraining."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=True)
        self.mlm = MLMHead(config, self.bert.embeddings)
        self.binary_head = nn.Linear(config.hidden_size, 2)
        init_weights(self.binary_head, config)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        labels=None,
        next_sentence_label=None,
        mlm_positions=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        cu_seqlens=None,
        max_seqlen=None,
        sentence_order_label=None,
    ) -> PreTrainingOutput:
        """``labels`` (B, S) MLM targets, -100 where not predicted; ``next_sentence_label`` (B,) 0/1 (or ALBERT's
        name for it, ``sentence_order_label``: 1 = the segments were swapped).

        ``mlm_positions`` (P,): flat indices into B x S of the positions to predict (the collator lists the masked
        ones). Given it, the MLM head runs at those positions only and ``prediction_logits`` is (P, V): in training
        this skips about 85% of the decoder's work, with no host sync since the indices come from the data loader.
        ``cu_seqlens`` / ``max_seqlen``: a packed batch (see ``BertModel.forward``); labels and positions then index
        the packed tokens.
        """
        out = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            cu_seqlens=cu_seqlens,
            max_seqlen=max_seqlen,
        )
        prediction_logits, mlm_loss = _mlm(self.mlm, out.last_hidden_state, labels, mlm_positions)
        seq_logits = self.binary_head(out.pooler_output)
        if sentence_order_label is not None:
            if next_sentence_label is not None:
                raise ValueError("give next_sentence_label or sentence_order_label (the same head's labels), not both")
            next_sentence_label = sentence_order_label
        loss, binary_loss = mlm_loss, None
        if next_sentence_label is not None:
            binary_loss = F.cross_entropy(seq_logits.float(), next_sentence_label.flatten(), ignore_index=IGNORE_INDEX)
            loss = binary_loss if loss is None else loss + binary_loss
        return PreTrainingOutput(loss, prediction_logits, seq_logits, mlm_loss, binary_loss, **_hidden_extras(out))


def _mlm(head: MLMHead, hidden: torch.Tensor, labels: torch.Tensor | None, positions: torch.Tensor | None):
    """MLM logits (at every position, or at ``positions`` only) and the mean cross-entropy when labels are given."""
    if positions is None:
        logits = head(hidden)  # (B, S, V)
        loss = (
            None
            if labels is None
            else F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), labels.flatten(), ignore_index=IGNORE_INDEX
            )
        )
        return logits, loss
    logits = head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions))  # (P, H) -> (P, V)
    loss = None
    if labels is not None:
        loss = F.cross_entropy(logits.float(), labels.flatten().index_select(0, positions), ignore_index=IGNORE_INDEX)
    return logits, loss


class BertForMaskedLM(PreTrainedBert):
    """MLM head only (no pooler): for MLM-only pretraining and fill-mask."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.mlm = MLMHead(config, self.bert.embeddings)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        labels=None,
        mlm_positions=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        cu_seqlens=None,
        max_seqlen=None,
    ) -> MaskedLMOutput:
        """As ``BertForPreTraining.forward`` without the binary head; ``logits`` is (P, V) with ``mlm_positions``."""
        out = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            cu_seqlens=cu_seqlens,
            max_seqlen=max_seqlen,
        )
        logits, loss = _mlm(self.mlm, out.last_hidden_state, labels, mlm_positions)
        return MaskedLMOutput(loss, logits, **_hidden_extras(out))


class BertLMHeadModel(PreTrainedBert):
    """Next-token prediction with causal attention (GPT's objective on BERT's blocks): the MLM head's transform and
    tied decoder read every position, and position t predicts token t + 1. transformers' ``BertLMHeadModel`` with
    ``is_decoder=True`` loads the same directory (parity test)."""

    def __init__(self, config: BertConfig):
        if not config.is_decoder:
            raise ValueError(
                "BertLMHeadModel predicts the next token and needs causal attention: pass is_decoder=True (a "
                "checkpoint trained with bidirectional attention, such as BERT's masked-LM, has not learnt next-token "
                "prediction; pretrain one with --objective clm)"
            )
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.mlm = MLMHead(config, self.bert.embeddings)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        labels=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        cu_seqlens=None,
        max_seqlen=None,
        cache=None,
    ) -> MaskedLMOutput:
        """``logits`` (B, S, V) (packed: (T, V)). ``labels`` are the tokens themselves (-100 where nothing is to be
        predicted, e.g. padding), not shifted: the loss compares the logits at t with the label at t + 1, within each
        sequence (packed batches never predict across a sequence boundary). ``cache``: see ``BertModel.forward``."""
        out = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            cu_seqlens=cu_seqlens,
            max_seqlen=max_seqlen,
            cache=cache,
        )
        logits = self.mlm(out.last_hidden_state)
        loss = None
        if labels is not None:
            logits_, targets = next_token_targets(logits, labels, cu_seqlens)
            loss = F.cross_entropy(logits_.float(), targets, ignore_index=IGNORE_INDEX)
        return MaskedLMOutput(loss, logits, **_hidden_extras(out))


def next_token_targets(
    logits: torch.Tensor, labels: torch.Tensor, cu_seqlens: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (M, V), targets (M,)) of next-token prediction: position t against label t + 1 of its own sequence;
    padded (B, S) labels, or packed (T,) labels with ``cu_seqlens`` (the last token of each sequence predicts
    nothing)."""
    V = logits.shape[-1]
    if cu_seqlens is None:
        return logits[..., :-1, :].reshape(-1, V), labels[..., 1:].reshape(-1)
    flat = labels.reshape(-1)
    targets = torch.cat([flat[1:], flat.new_full((1,), IGNORE_INDEX)])
    targets = targets.index_fill(0, (cu_seqlens[1:] - 1).long(), IGNORE_INDEX)
    return logits.reshape(-1, V), targets


@dataclass
class TokenDetectionOutput:
    """Output of ``BertForReplacedTokenDetection``."""

    loss: torch.Tensor | None
    logits: torch.Tensor
    """(B, S): a score per token, > 0 for "replaced"."""
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class BertForReplacedTokenDetection(PreTrainedBert):
    """ELECTRA's discriminator (transformers' ElectraForPreTraining): dense -> act -> linear (H -> 1) on every token,
    scoring whether the token is the original or a replacement; the loss is the binary cross-entropy over the real
    tokens."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.rtd_dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.rtd_act = activation(config.hidden_act)
        self.rtd_prediction = nn.Linear(config.hidden_size, 1)
        init_weights(self.rtd_dense, config)
        init_weights(self.rtd_prediction, config)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        labels=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        cu_seqlens=None,
        max_seqlen=None,
    ) -> TokenDetectionOutput:
        """``labels`` (B, S): 1 where the token was replaced, 0 where it is the original (packed: (T,))."""
        out = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            cu_seqlens=cu_seqlens,
            max_seqlen=max_seqlen,
        )
        logits = self.rtd_prediction(self.rtd_act(self.rtd_dense(out.last_hidden_state))).squeeze(-1)
        loss = None
        if labels is not None:
            scores, targets = logits.float(), labels.float()
            if attention_mask is not None:
                real = attention_mask.bool()
                scores, targets = scores[real], targets[real]
            loss = F.binary_cross_entropy_with_logits(scores, targets)
        return TokenDetectionOutput(loss, logits, **_hidden_extras(out))


HEAD_CLASSES: dict[str, type[PreTrainedBert]] = {
    cls.__name__: cls
    for cls in (
        BertForPreTraining,
        BertForMaskedLM,
        BertLMHeadModel,
        BertForSequenceClassification,
        BertForTokenClassification,
        BertForQuestionAnswering,
        BertForMultipleChoice,
        BertForReplacedTokenDetection,
    )
}
