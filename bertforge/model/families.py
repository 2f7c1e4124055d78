"""The model families bertforge runs on its one encoder, one entry each: how a family's checkpoints name their tensors
and classes, how its config.json differs from BERT's, what its embeddings, pooler and heads do differently, which
tokenizer it uses and how it is pretrained by default. Adding a family is adding an entry here (and its name to
``constants.MODEL_TYPES``, which the layers below the model read).

Name rules pair a Hugging Face name template with ours; ``{i}`` stands for a layer index, ``{p}`` for ``weight`` or
``bias``, and ``{g}`` / ``{j}`` for ALBERT's group and the layer within it (ours: layer ``g * inner_group_num + j``).
Backbone names are given without the prefix that Hugging Face head classes put before the backbone (``bert.``,
``albert.``, ...; ours is always ``bert.``). Fused rules join the three query / key / value projections into our one
``qkv_proj`` (rows [q | k | v]). ``convert.py`` compiles and applies them; nothing else knows external names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Rule = tuple[str, str]
FusedRule = tuple[tuple[str, str, str], str]


@dataclass(frozen=True)
class ModelFamily:
    """One family: checkpoint names, config names, architecture and defaults."""

    name: str
    """config.json's ``model_type``."""
    title: str
    """How people write it (messages, ``bertforge info``)."""
    prefix: str
    """The backbone's attribute in transformers' head classes, with its dot (``roberta.``)."""
    backbone: tuple[Rule, ...]
    fused: tuple[FusedRule, ...]
    heads: tuple[Rule, ...]
    """Head tensors, at the top level of both name spaces; the first rule that fits wins."""
    ignored: tuple[str, ...] = ()
    """Regexes of checkpoint names that carry no weights of their own (buffers, tied decoder biases)."""
    architectures: dict[str, str] = field(default_factory=dict)
    """Our class -> transformers' class of this family (the classes it has)."""
    config_names: dict[str, str] = field(default_factory=dict)
    """The family's config.json keys -> BertConfig's, where they differ."""
    lora_layers: str = ""
    """peft's path to the layer list (LoRA adapter files)."""
    lora_modules: dict[str, str] = field(default_factory=dict)
    """Our LoRA targets -> the module paths under one of those layers."""
    tokenizer: str = "wordpiece"
    """wordpiece (vocab.txt), bpe (byte-level, vocab.json + merges.txt) or unigram (SentencePiece)."""
    binary_head: str = "nsp"
    """The sentence-pair objective pretraining uses by default: nsp, sop or none."""
    objective: str = "mlm"
    """The pretraining objective by default: mlm or electra."""
    sentence_head: str = "pooler"
    """What a sentence classifier reads: pooler (tanh(dense([CLS]))), or its own dense layer on the first token with
    tanh (roberta), gelu (electra) or relu (distilbert)."""
    pooler: bool = True
    token_types: bool = True
    position_offset: bool = False
    """Positions start after the padding id (RoBERTa)."""
    embedding_projection: str = "narrower"
    """When the embeddings are projected to the hidden size: narrower (E < H: ELECTRA) or always (ALBERT)."""
    mlm_activation: str | None = None
    """The MLM transform's activation when fixed by the family (gelu), else None: the config's hidden_act."""
    layer_sharing: bool = False
    """Cross-layer sharing (ALBERT's num_hidden_groups and inner_group_num)."""
    always_written: tuple[str, ...] = ()
    """Config fields written to config.json even at their defaults (the family's own defaults differ)."""
    base: tuple[str, dict[str, Any]] = ("", {})
    """The family's best-known checkpoint and its config fields (BertConfig's names): its true shape, built with random
    weights by ``bertforge info --variants`` (nothing is downloaded)."""


_BERT_LAYER: tuple[Rule, ...] = (
    ("encoder.layer.{i}.attention.output.dense.{p}", "layers.{i}.attn.out_proj.{p}"),
    ("encoder.layer.{i}.attention.output.LayerNorm.{p}", "layers.{i}.norm_attn.{p}"),
    ("encoder.layer.{i}.intermediate.dense.{p}", "layers.{i}.ffn.ffn_in.{p}"),
    ("encoder.layer.{i}.output.dense.{p}", "layers.{i}.ffn.ffn_out.{p}"),
    ("encoder.layer.{i}.output.LayerNorm.{p}", "layers.{i}.norm_ffn.{p}"),
)
_EMBEDDINGS: tuple[Rule, ...] = (
    ("embeddings.word_embeddings.weight", "embeddings.token.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position.weight"),
    ("embeddings.token_type_embeddings.weight", "embeddings.segment.weight"),
    ("embeddings.LayerNorm.{p}", "embeddings.norm.{p}"),
)
_BERT_FUSED: tuple[FusedRule, ...] = (
    (
        (
            "encoder.layer.{i}.attention.self.query.{p}",
            "encoder.layer.{i}.attention.self.key.{p}",
            "encoder.layer.{i}.attention.self.value.{p}",
        ),
        "layers.{i}.attn.qkv_proj.{p}",
    ),
)
_BERT_LORA = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "output": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}


def _buffers(prefix: str) -> tuple[str, ...]:
    """The position / token-type id buffers transformers may save under a family's embeddings."""
    return (rf"({prefix}\.)?embeddings\.position_ids", rf"({prefix}\.)?embeddings\.token_type_ids")


def _classes(family: str, names: tuple[str, ...]) -> dict[str, str]:
    """Our class names -> the family's (``BertForMaskedLM`` -> ``AlbertForMaskedLM``), for the heads in ``names``."""
    return {"Bert" + n: family + n for n in names}


_HEADS = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMultipleChoice")

BERT = ModelFamily(
    name="bert",
    title="BERT",
    prefix="bert.",
    backbone=(*_EMBEDDINGS, *_BERT_LAYER, ("pooler.dense.{p}", "pooler.dense.{p}")),
    fused=_BERT_FUSED,
    heads=(
        ("cls.predictions.transform.dense.{p}", "mlm.transform.{p}"),
        ("cls.predictions.transform.LayerNorm.{p}", "mlm.norm.{p}"),
        ("cls.predictions.bias", "mlm.bias"),
        ("cls.predictions.decoder.weight", "mlm.decoder.weight"),
        ("cls.seq_relationship.{p}", "binary_head.{p}"),
        ("classifier.{p}", "classifier.{p}"),
        ("qa_outputs.{p}", "qa_outputs.{p}"),
    ),
    ignored=(*_buffers("bert"), r"cls\.predictions\.decoder\.bias"),
    architectures={
        **_classes("Bert", ("Model", "ForPreTraining", "ForMaskedLM", *_HEADS)),
        "BertLMHeadModel": "BertLMHeadModel",
    },
    lora_layers="bert.encoder.layer",
    lora_modules=_BERT_LORA,
    base=("bert-base-uncased", {}),
)

# RoBERTa: BERT's backbone under "roberta."; its own MLM head (lm_head) and sentence classifier (dense + tanh on <s>,
# then out_proj: our head_dense and classifier). Its token classifier and QA head are named as BERT's.
ROBERTA = ModelFamily(
    name="roberta",
    title="RoBERTa",
    prefix="roberta.",
    backbone=BERT.backbone,
    fused=_BERT_FUSED,
    heads=(
        ("lm_head.dense.{p}", "mlm.transform.{p}"),
        ("lm_head.layer_norm.{p}", "mlm.norm.{p}"),
        ("lm_head.bias", "mlm.bias"),
        ("lm_head.decoder.weight", "mlm.decoder.weight"),
        ("classifier.dense.{p}", "head_dense.{p}"),
        ("classifier.out_proj.{p}", "classifier.{p}"),  # with head_dense: the sentence classifier
        ("classifier.{p}", "classifier.{p}"),  # without: the token classifier
        ("qa_outputs.{p}", "qa_outputs.{p}"),
    ),
    ignored=(*_buffers("roberta"), r"lm_head\.decoder\.bias"),  # tied to lm_head.bias
    architectures={
        **_classes("Roberta", ("Model", "ForMaskedLM", *_HEADS)),
        "BertLMHeadModel": "RobertaForCausalLM",
    },
    lora_layers="roberta.encoder.layer",
    lora_modules=_BERT_LORA,
    tokenizer="bpe",
    binary_head="none",
    sentence_head="tanh",
    position_offset=True,
    mlm_activation="gelu",
    base=(
        "roberta-base",
        dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5),
    ),
)

# DistilBERT: "distilbert.embeddings" (no token types) and "distilbert.transformer.layer.{i}"; heads at the top level.
DISTILBERT = ModelFamily(
    name="distilbert",
    title="DistilBERT",
    prefix="distilbert.",
    backbone=(
        *[rule for rule in _EMBEDDINGS if "token_type" not in rule[0]],
        ("transformer.layer.{i}.attention.out_lin.{p}", "layers.{i}.attn.out_proj.{p}"),
        ("transformer.layer.{i}.sa_layer_norm.{p}", "layers.{i}.norm_attn.{p}"),
        ("transformer.layer.{i}.ffn.lin1.{p}", "layers.{i}.ffn.ffn_in.{p}"),
        ("transformer.layer.{i}.ffn.lin2.{p}", "layers.{i}.ffn.ffn_out.{p}"),
        ("transformer.layer.{i}.output_layer_norm.{p}", "layers.{i}.norm_ffn.{p}"),
    ),
    fused=(
        (
            (
                "transformer.layer.{i}.attention.q_lin.{p}",
                "transformer.layer.{i}.attention.k_lin.{p}",
                "transformer.layer.{i}.attention.v_lin.{p}",
            ),
            "layers.{i}.attn.qkv_proj.{p}",
        ),
    ),
    heads=(
        ("vocab_transform.{p}", "mlm.transform.{p}"),
        ("vocab_layer_norm.{p}", "mlm.norm.{p}"),
        ("vocab_projector.bias", "mlm.bias"),
        ("vocab_projector.weight", "mlm.decoder.weight"),
        ("pre_classifier.{p}", "head_dense.{p}"),
        ("classifier.{p}", "classifier.{p}"),
        ("qa_outputs.{p}", "qa_outputs.{p}"),
    ),
    ignored=_buffers("distilbert")[:1],
    architectures=_classes("DistilBert", ("Model", "ForMaskedLM", *_HEADS)),
    config_names={
        "dim": "hidden_size",
        "n_layers": "num_hidden_layers",
        "n_heads": "num_attention_heads",
        "hidden_dim": "intermediate_size",
        "dropout": "hidden_dropout_prob",
        "attention_dropout": "attention_probs_dropout_prob",
        "activation": "hidden_act",
        "seq_classif_dropout": "classifier_dropout",
    },
    lora_layers="distilbert.transformer.layer",
    lora_modules={
        "query": "attention.q_lin",
        "key": "attention.k_lin",
        "value": "attention.v_lin",
        "output": "attention.out_lin",
        "ffn_in": "ffn.lin1",
        "ffn_out": "ffn.lin2",
    },
    binary_head="none",
    sentence_head="relu",
    pooler=False,
    token_types=False,
    base=("distilbert-base-uncased", dict(num_hidden_layers=6)),
)

# ELECTRA: BERT's backbone under "electra." without a pooler, plus the projection of its narrower embeddings; the
# discriminator's head (discriminator_predictions), the generator's MLM head (generator_predictions +
# generator_lm_head, in the embedding width), and a sentence head of its own (classifier.dense + gelu, classifier
# .out_proj; in multiple choice, sequence_summary.summary).
ELECTRA = ModelFamily(
    name="electra",
    title="ELECTRA",
    prefix="electra.",
    backbone=(*_EMBEDDINGS, *_BERT_LAYER, ("embeddings_project.{p}", "embeddings.project.{p}")),
    fused=_BERT_FUSED,
    heads=(
        ("discriminator_predictions.dense.{p}", "rtd_dense.{p}"),
        ("discriminator_predictions.dense_prediction.{p}", "rtd_prediction.{p}"),
        ("generator_predictions.dense.{p}", "mlm.transform.{p}"),
        ("generator_predictions.LayerNorm.{p}", "mlm.norm.{p}"),
        ("generator_lm_head.bias", "mlm.bias"),
        ("generator_lm_head.weight", "mlm.decoder.weight"),
        ("classifier.dense.{p}", "head_dense.{p}"),
        ("classifier.out_proj.{p}", "classifier.{p}"),  # with head_dense: the sentence classifier
        ("sequence_summary.summary.{p}", "head_dense.{p}"),  # multiple choice's own layer
        ("classifier.{p}", "classifier.{p}"),  # the token classifier, multiple choice's scorer
        ("qa_outputs.{p}", "qa_outputs.{p}"),
    ),
    ignored=_buffers("electra"),
    architectures={
        **_classes("Electra", ("Model", "ForMaskedLM", *_HEADS)),
        "BertForReplacedTokenDetection": "ElectraForPreTraining",
        "BertLMHeadModel": "ElectraForCausalLM",
    },
    lora_layers="electra.encoder.layer",
    lora_modules=_BERT_LORA,
    binary_head="none",
    objective="electra",
    sentence_head="gelu",
    pooler=False,
    mlm_activation="gelu",
    always_written=("embedding_size",),  # ElectraConfig's default is 128
    base=("electra-base-discriminator", dict(embedding_size=768)),
)

# ALBERT: factorised embeddings always projected (encoder.embedding_hidden_mapping_in), layers in groups that the
# stack reuses (albert_layer_groups.{g}.albert_layers.{j}), a pooler of one linear layer, the MLM head
# "predictions" in the embedding width, and sentence-order prediction (sop_classifier).
_ALBERT_LAYER = "encoder.albert_layer_groups.{g}.albert_layers.{j}."
ALBERT = ModelFamily(
    name="albert",
    title="ALBERT",
    prefix="albert.",
    backbone=(
        *_EMBEDDINGS,
        ("encoder.embedding_hidden_mapping_in.{p}", "embeddings.project.{p}"),
        (_ALBERT_LAYER + "attention.dense.{p}", "layers.{i}.attn.out_proj.{p}"),
        (_ALBERT_LAYER + "attention.LayerNorm.{p}", "layers.{i}.norm_attn.{p}"),
        (_ALBERT_LAYER + "ffn.{p}", "layers.{i}.ffn.ffn_in.{p}"),
        (_ALBERT_LAYER + "ffn_output.{p}", "layers.{i}.ffn.ffn_out.{p}"),
        (_ALBERT_LAYER + "full_layer_layer_norm.{p}", "layers.{i}.norm_ffn.{p}"),
        ("pooler.{p}", "pooler.dense.{p}"),
    ),
    fused=(
        (
            (
                _ALBERT_LAYER + "attention.query.{p}",
                _ALBERT_LAYER + "attention.key.{p}",
                _ALBERT_LAYER + "attention.value.{p}",
            ),
            "layers.{i}.attn.qkv_proj.{p}",
        ),
    ),
    heads=(
        ("predictions.dense.{p}", "mlm.transform.{p}"),
        ("predictions.LayerNorm.{p}", "mlm.norm.{p}"),
        ("predictions.bias", "mlm.bias"),
        ("predictions.decoder.weight", "mlm.decoder.weight"),
        ("sop_classifier.classifier.{p}", "binary_head.{p}"),
        ("classifier.{p}", "classifier.{p}"),
        ("qa_outputs.{p}", "qa_outputs.{p}"),
    ),
    ignored=(*_buffers("albert"), r"predictions\.decoder\.bias"),  # tied to predictions.bias
    architectures=_classes("Albert", ("Model", "ForPreTraining", "ForMaskedLM", *_HEADS)),
    config_names={"classifier_dropout_prob": "classifier_dropout"},
    lora_layers="albert.encoder.albert_layer_groups",  # one layer per group (inner_group_num 1), as released
    lora_modules={
        "query": "albert_layers.0.attention.query",
        "key": "albert_layers.0.attention.key",
        "value": "albert_layers.0.attention.value",
        "output": "albert_layers.0.attention.dense",
        "ffn_in": "albert_layers.0.ffn",
        "ffn_out": "albert_layers.0.ffn_output",
    },
    tokenizer="unigram",
    binary_head="sop",
    embedding_projection="always",
    layer_sharing=True,
    always_written=("embedding_size", "num_hidden_groups", "inner_group_num", "classifier_dropout_prob"),
    base=("albert-base-v2", dict(vocab_size=30000, embedding_size=128, hidden_act="gelu_new")),
)

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (BERT, ROBERTA, DISTILBERT, ELECTRA, ALBERT)}


def family(model_type: str) -> ModelFamily:
    """The family of a config's ``model_type`` (one line naming the families when it is none of them)."""
    if model_type not in FAMILIES:
        raise ValueError(f"config model_type is {model_type!r}; bertforge loads {', '.join(FAMILIES)} checkpoints")
    return FAMILIES[model_type]
