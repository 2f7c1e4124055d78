"""The one table between external checkpoint names (Hugging Face BERT, RoBERTa, DistilBERT) and bertforge's names.

Nothing else in bertforge knows external parameter names. Each family (``FAMILIES``, keyed by config.json's
``model_type``) pairs each Hugging Face name pattern with ours;
``{i}`` stands for a layer index and ``{p}`` for ``weight`` or ``bias``. The three separate query / key / value
projections of Hugging Face checkpoints become our single fused ``qkv_proj`` (rows laid out [q | k | v]) and are split
again on export.

Names are given without the prefix that Hugging Face head classes put before the backbone (``bert.``, ``roberta.``,
``distilbert.``; ours is always ``bert.``); the prefix is handled in ``hf_to_ours`` / ``ours_to_hf``, so checkpoints
with and without it load into every class. ``ARCHITECTURES`` names our classes as each family's transformers classes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch

# (Hugging Face name, bertforge name), backbone part (under "bert." in head classes).
BACKBONE_RULES: list[tuple[str, str]] = [
    ("embeddings.word_embeddings.weight", "embeddings.token.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position.weight"),
    ("embeddings.token_type_embeddings.weight", "embeddings.segment.weight"),
    ("embeddings.LayerNorm.{p}", "embeddings.norm.{p}"),
    ("encoder.layer.{i}.attention.output.dense.{p}", "layers.{i}.attn.out_proj.{p}"),
    ("encoder.layer.{i}.attention.output.LayerNorm.{p}", "layers.{i}.norm_attn.{p}"),
    ("encoder.layer.{i}.intermediate.dense.{p}", "layers.{i}.ffn.ffn_in.{p}"),
    ("encoder.layer.{i}.output.dense.{p}", "layers.{i}.ffn.ffn_out.{p}"),
    ("encoder.layer.{i}.output.LayerNorm.{p}", "layers.{i}.norm_ffn.{p}"),
    ("pooler.dense.{p}", "pooler.dense.{p}"),
]
# Fused: the Hugging Face names for q, k and v (in this order) -> one bertforge tensor, concatenated on dim 0.
FUSED_RULES: list[tuple[tuple[str, str, str], str]] = [
    (
        (
            "encoder.layer.{i}.attention.self.query.{p}",
            "encoder.layer.{i}.attention.self.key.{p}",
            "encoder.layer.{i}.attention.self.value.{p}",
        ),
        "layers.{i}.attn.qkv_proj.{p}",
    ),
]
# Head parts, at the top level of both name spaces.
HEAD_RULES: list[tuple[str, str]] = [
    ("cls.predictions.transform.dense.{p}", "mlm.transform.{p}"),
    ("cls.predictions.transform.LayerNorm.{p}", "mlm.norm.{p}"),
    ("cls.predictions.bias", "mlm.bias"),
    ("cls.predictions.decoder.weight", "mlm.decoder.weight"),
    ("cls.seq_relationship.{p}", "binary_head.{p}"),
    ("classifier.{p}", "classifier.{p}"),
    ("qa_outputs.{p}", "qa_outputs.{p}"),
]

# RoBERTa: BERT's backbone names under "roberta."; its own MLM head (lm_head) and sentence classifier (dense + tanh on
# <s>, then out_proj: our head_dense and classifier). Its token classifier and QA head are named as BERT's.
ROBERTA_HEAD_RULES: list[tuple[str, str]] = [
    ("lm_head.dense.{p}", "mlm.transform.{p}"),
    ("lm_head.layer_norm.{p}", "mlm.norm.{p}"),
    ("lm_head.bias", "mlm.bias"),
    ("lm_head.decoder.weight", "mlm.decoder.weight"),
    ("classifier.dense.{p}", "head_dense.{p}"),
    ("classifier.out_proj.{p}", "classifier.{p}"),  # with head_dense: the sentence classifier
    ("classifier.{p}", "classifier.{p}"),  # without: the token classifier
    ("qa_outputs.{p}", "qa_outputs.{p}"),
]

# DistilBERT: "distilbert.embeddings" (no token types) and "distilbert.transformer.layer.{i}"; heads at the top level.
DISTILBERT_BACKBONE_RULES: list[tuple[str, str]] = [
    ("embeddings.word_embeddings.weight", "embeddings.token.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position.weight"),
    ("embeddings.LayerNorm.{p}", "embeddings.norm.{p}"),
    ("transformer.layer.{i}.attention.out_lin.{p}", "layers.{i}.attn.out_proj.{p}"),
    ("transformer.layer.{i}.sa_layer_norm.{p}", "layers.{i}.norm_attn.{p}"),
    ("transformer.layer.{i}.ffn.lin1.{p}", "layers.{i}.ffn.ffn_in.{p}"),
    ("transformer.layer.{i}.ffn.lin2.{p}", "layers.{i}.ffn.ffn_out.{p}"),
    ("transformer.layer.{i}.output_layer_norm.{p}", "layers.{i}.norm_ffn.{p}"),
]
DISTILBERT_FUSED_RULES: list[tuple[tuple[str, str, str], str]] = [
    (
        (
            "transformer.layer.{i}.attention.q_lin.{p}",
            "transformer.layer.{i}.attention.k_lin.{p}",
            "transformer.layer.{i}.attention.v_lin.{p}",
        ),
        "layers.{i}.attn.qkv_proj.{p}",
    ),
]
DISTILBERT_HEAD_RULES: list[tuple[str, str]] = [
    ("vocab_transform.{p}", "mlm.transform.{p}"),
    ("vocab_layer_norm.{p}", "mlm.norm.{p}"),
    ("vocab_projector.bias", "mlm.bias"),
    ("vocab_projector.weight", "mlm.decoder.weight"),
    ("pre_classifier.{p}", "head_dense.{p}"),
    ("classifier.{p}", "classifier.{p}"),
    ("qa_outputs.{p}", "qa_outputs.{p}"),
]

# ELECTRA: BERT's backbone names under "electra." without a pooler, plus the projection of its narrower embeddings;
# the discriminator's head (discriminator_predictions), the generator's MLM head (generator_predictions +
# generator_lm_head, in the embedding width), and a sentence head of its own (classifier.dense + gelu, classifier
# .out_proj; in multiple choice, sequence_summary.summary).
ELECTRA_BACKBONE_RULES: list[tuple[str, str]] = [
    *[rule for rule in BACKBONE_RULES if not rule[0].startswith("pooler.")],
    ("embeddings_project.{p}", "embeddings.project.{p}"),
]
ELECTRA_HEAD_RULES: list[tuple[str, str]] = [
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
]

# Our classes under each family's transformers class names (config.json "architectures"; loading accepts both).
ARCHITECTURES: dict[str, dict[str, str]] = {
    "roberta": {
        "BertModel": "RobertaModel",
        "BertForMaskedLM": "RobertaForMaskedLM",
        "BertLMHeadModel": "RobertaForCausalLM",
        "BertForSequenceClassification": "RobertaForSequenceClassification",
        "BertForTokenClassification": "RobertaForTokenClassification",
        "BertForQuestionAnswering": "RobertaForQuestionAnswering",
        "BertForMultipleChoice": "RobertaForMultipleChoice",
    },
    "electra": {
        "BertModel": "ElectraModel",
        "BertForReplacedTokenDetection": "ElectraForPreTraining",
        "BertForMaskedLM": "ElectraForMaskedLM",
        "BertLMHeadModel": "ElectraForCausalLM",
        "BertForSequenceClassification": "ElectraForSequenceClassification",
        "BertForTokenClassification": "ElectraForTokenClassification",
        "BertForQuestionAnswering": "ElectraForQuestionAnswering",
        "BertForMultipleChoice": "ElectraForMultipleChoice",
    },
    "distilbert": {
        "BertModel": "DistilBertModel",
        "BertForMaskedLM": "DistilBertForMaskedLM",
        "BertForSequenceClassification": "DistilBertForSequenceClassification",
        "BertForTokenClassification": "DistilBertForTokenClassification",
        "BertForQuestionAnswering": "DistilBertForQuestionAnswering",
        "BertForMultipleChoice": "DistilBertForMultipleChoice",
    },
}


def hf_architecture(class_name: str, model_type: str) -> str:
    """The transformers class name of one of our classes in a family (BertForMaskedLM -> RobertaForMaskedLM)."""
    if model_type == "bert":
        return class_name
    table = ARCHITECTURES[model_type]
    if class_name not in table:
        raise ValueError(f"{model_type} has no {class_name} in transformers: save one of {', '.join(table)}")
    return table[class_name]


def our_architecture(name: str) -> str:
    """Our class name for a transformers class name of any family (RobertaForMaskedLM -> BertForMaskedLM)."""
    for table in ARCHITECTURES.values():
        for ours, theirs in table.items():
            if theirs == name:
                return ours
    return name


# peft's LoRA modules: our LoRA targets -> the module paths under each family's transformers layer that peft wraps
# (used for peft's adapter files in ``strategies.py``): {model_type: (the layers' path, {target: module path})}.
_BERT_LORA = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "output": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}
PEFT_LORA_MODULES: dict[str, tuple[str, dict[str, str]]] = {
    "bert": ("bert.encoder.layer", _BERT_LORA),
    "roberta": ("roberta.encoder.layer", _BERT_LORA),
    "electra": ("electra.encoder.layer", _BERT_LORA),
    "distilbert": (
        "distilbert.transformer.layer",
        {
            "query": "attention.q_lin",
            "key": "attention.k_lin",
            "value": "attention.v_lin",
            "output": "attention.out_lin",
            "ffn_in": "ffn.lin1",
            "ffn_out": "ffn.lin2",
        },
    ),
}
# Names that carry no weights of their own: buffers, and the decoder bias that transformers ties to
# cls.predictions.bias.
IGNORED = [
    r"((bert|roberta|distilbert|electra)\.)?embeddings\.position_ids",
    r"((bert|roberta|electra)\.)?embeddings\.token_type_ids",
    r"cls\.predictions\.decoder\.bias",
    r"lm_head\.decoder\.bias",  # RoBERTa ties it to lm_head.bias
]
# Renames applied before the table: checkpoints converted from TensorFlow call LayerNorm parameters gamma / beta.
LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}

_GROUPS = {"{i}": r"(?P<i>\d+)", "{p}": r"(?P<p>weight|bias)"}


def _regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for key, group in _GROUPS.items():
        pattern = pattern.replace(re.escape(key), group)
    return re.compile(pattern + r"\Z")


def _fill(template: str, match: re.Match) -> str:
    out = template
    for key in ("i", "p"):
        if "{" + key + "}" in out:
            out = out.replace("{" + key + "}", match.group(key))
    return out


@dataclass(frozen=True)
class Family:
    """One checkpoint family's compiled tables: its backbone prefix, backbone, fused and head rules."""

    prefix: str
    backbone: list
    fused: list
    heads: list


def _family(prefix: str, backbone, fused, heads) -> Family:
    return Family(
        prefix,
        [(_regex(hf), hf, _regex(ours), ours) for hf, ours in backbone],
        [([_regex(h) for h in hfs], hfs, _regex(ours), ours) for hfs, ours in fused],
        [(_regex(hf), hf, _regex(ours), ours) for hf, ours in heads],
    )


FAMILIES = {
    "bert": _family("bert.", BACKBONE_RULES, FUSED_RULES, HEAD_RULES),
    "roberta": _family("roberta.", BACKBONE_RULES, FUSED_RULES, ROBERTA_HEAD_RULES),
    "distilbert": _family("distilbert.", DISTILBERT_BACKBONE_RULES, DISTILBERT_FUSED_RULES, DISTILBERT_HEAD_RULES),
    "electra": _family("electra.", ELECTRA_BACKBONE_RULES, FUSED_RULES, ELECTRA_HEAD_RULES),
}
_IGNORED = [re.compile(p + r"\Z") for p in IGNORED]


def _split_prefix(name: str, prefix: str) -> tuple[str, str]:
    """(our backbone prefix "bert." or "", the rest) of a name under the family's ``prefix``."""
    return ("bert.", name[len(prefix) :]) if name.startswith(prefix) else ("", name)


def hf_to_ours(state: dict[str, torch.Tensor], model_type: str = "bert") -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename (and fuse) a Hugging Face state dict of the ``model_type`` family into bertforge names.

    The family's backbone prefix becomes ``bert.`` (kept absent where the input has none). Returns the converted
    dict and the input names that have no place in bertforge (reported as unused by ``from_pretrained``).
    """
    family = FAMILIES[model_type]
    state = {_legacy(k): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    pending: dict[str, dict[int, torch.Tensor]] = {}  # fused target -> {part index: tensor}
    for name, tensor in state.items():
        if any(p.match(name) for p in _IGNORED):
            if name == "cls.predictions.decoder.bias" and "cls.predictions.bias" not in state:
                out["mlm.bias"] = tensor  # an old checkpoint that stores the bias only under the decoder
            continue
        prefix, short = _split_prefix(name, family.prefix)
        target = None
        for hf_re, _, _, ours in family.backbone:
            m = hf_re.match(short)
            if m:
                target = prefix + _fill(ours, m)
                break
        if target is None:
            for hf_res, _, _, ours in family.fused:
                for part, hf_re in enumerate(hf_res):
                    m = hf_re.match(short)
                    if m:
                        pending.setdefault(prefix + _fill(ours, m), {})[part] = tensor
                        target = ""
                        break
                if target is not None:
                    break
        if target is None and not prefix:
            for hf_re, _, _, ours in family.heads:
                m = hf_re.match(name)
                if m:
                    target = _fill(ours, m)
                    break
        if target is None:
            unused.append(name)
        elif target:
            out[target] = tensor
    for target, parts in pending.items():
        if len(parts) != 3:
            missing = [("query", "key", "value")[i] for i in range(3) if i not in parts]
            raise ValueError(
                f"checkpoint has an incomplete attention projection for {target}: missing {', '.join(missing)}"
            )
        out[target] = torch.cat([parts[0], parts[1], parts[2]], dim=0)
    return out, unused


def ours_to_hf(
    state: dict[str, torch.Tensor],
    tied: bool = True,
    model_type: str = "bert",
    context: Iterable[str] | None = None,
    architecture: str | None = None,
) -> dict[str, torch.Tensor]:
    """Rename (and split) a bertforge state dict into the ``model_type`` family's Hugging Face names; our ``bert.``
    prefix becomes the family's.

    With ``tied`` the MLM decoder weight is left out (transformers ties it to the word embeddings on load).
    ``context``: the names of the whole model when ``state`` is a part of it (RoBERTa's classifier is named
    classifier.out_proj beside a sentence head's dense layer, classifier in a token classifier). ``architecture``: our
    class name, where a family names a head's layers by class (ELECTRA's multiple choice: sequence_summary).
    """
    family = FAMILIES[model_type]
    # RoBERTa: classifier -> classifier.out_proj in a sentence classifier
    sentence_head = any(k.startswith("head_dense.") for k in (state if context is None else context))
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name == "mlm.decoder.weight" and tied:
            continue
        prefix, short = _split_prefix(name, "bert.")
        prefix = family.prefix if prefix else ""
        done = False
        for _, hf, ours_re, _ in family.backbone:
            m = ours_re.match(short)
            if m:
                out[prefix + _fill(hf, m)] = tensor
                done = True
                break
        if not done:
            for _, hfs, ours_re, _ in family.fused:
                m = ours_re.match(short)
                if m:
                    for hf, part in zip(hfs, tensor.chunk(3, dim=0)):
                        out[prefix + _fill(hf, m)] = part.contiguous()
                    done = True
                    break
        if not done and not prefix:
            for _, hf, ours_re, _ in family.heads:
                m = ours_re.match(name)
                if m and not _skipped(hf, sentence_head, architecture == "BertForMultipleChoice"):
                    out[_fill(hf, m)] = tensor
                    done = True
                    break
        if not done:
            raise KeyError(f"bertforge parameter {name!r} has no Hugging Face name in convert.py's table")
    return out


def _skipped(hf: str, sentence_head: bool, multiple_choice: bool) -> bool:
    """Whether a head rule does not apply to this model: classifier.out_proj outside a sentence classifier, and
    ELECTRA's sentence-classifier names in multiple choice (its own layer is sequence_summary there) or the other way
    round."""
    if hf == "classifier.out_proj.{p}":
        return not sentence_head or multiple_choice
    if hf == "classifier.dense.{p}":
        return multiple_choice
    if hf == "sequence_summary.summary.{p}":
        return not multiple_choice
    return False


def _legacy(name: str) -> str:
    for old, new in LEGACY_SUFFIXES.items():
        if name.endswith(old) and "LayerNorm" in name:
            return name[: -len(old)] + new
    return name
