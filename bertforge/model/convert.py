"""Translation between external checkpoint names (each family's, in Hugging Face's layout) and bertforge's names.

The names themselves are in ``families.py``, one entry per family; this module compiles their rules and applies them
both ways. The three separate query / key / value projections of Hugging Face checkpoints become our single fused
``qkv_proj`` (rows laid out [q | k | v]) and are split again on export; ALBERT's (group, layer in group) becomes our
flat layer index, so a layer the stack reuses is one set of tensors on both sides.

The backbone prefix (``bert.``, ``albert.``, ...; ours is always ``bert.``) is handled in ``hf_to_ours`` /
``ours_to_hf``, so checkpoints with and without it load into every class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from bertforge.model.families import FAMILIES as MODEL_FAMILIES
from bertforge.model.families import ModelFamily, family


def hf_architecture(class_name: str, model_type: str) -> str:
    """The transformers class name of one of our classes in a family (BertForMaskedLM -> RobertaForMaskedLM)."""
    table = family(model_type).architectures
    if class_name not in table:
        raise ValueError(f"{model_type} has no {class_name} in transformers: save one of {', '.join(table)}")
    return table[class_name]


def our_architecture(name: str) -> str:
    """Our class name for a transformers class name of any family (RobertaForMaskedLM -> BertForMaskedLM)."""
    for entry in MODEL_FAMILIES.values():
        for ours, theirs in entry.architectures.items():
            if theirs == name:
                return ours
    return name


# Renames applied before the table: checkpoints converted from TensorFlow call LayerNorm parameters gamma / beta.
LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}

_GROUPS = {"{i}": r"(?P<i>\d+)", "{g}": r"(?P<g>\d+)", "{j}": r"(?P<j>\d+)", "{p}": r"(?P<p>weight|bias)"}


def _regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for key, group in _GROUPS.items():
        pattern = pattern.replace(re.escape(key), group)
    return re.compile(pattern + r"\Z")


def _fill(template: str, match: re.Match, inner: int = 1) -> str:
    """The template with the match's fields; a layer index becomes ALBERT's (group, layer in group) and back, with
    ``inner`` layers in a group."""
    fields = {k: v for k, v in match.groupdict().items() if v is not None}
    if "i" in fields and "{g}" in template:
        fields["g"], fields["j"] = (str(n) for n in divmod(int(fields["i"]), inner))
    elif "g" in fields and "{i}" in template:
        fields["i"] = str(int(fields["g"]) * inner + int(fields["j"]))
    out = template
    for key, value in fields.items():
        out = out.replace("{" + key + "}", value)
    return out


@dataclass(frozen=True)
class Compiled:
    """One family's rules compiled: (their regex, their template, our regex, our template) for each."""

    entry: ModelFamily
    backbone: list
    fused: list
    heads: list
    ignored: list


def _compile(entry: ModelFamily) -> Compiled:
    return Compiled(
        entry,
        [(_regex(hf), hf, _regex(ours), ours) for hf, ours in entry.backbone],
        [([_regex(h) for h in hfs], hfs, _regex(ours), ours) for hfs, ours in entry.fused],
        [(_regex(hf), hf, _regex(ours), ours) for hf, ours in entry.heads],
        [re.compile(p + r"\Z") for p in entry.ignored],
    )


FAMILIES = {name: _compile(entry) for name, entry in MODEL_FAMILIES.items()}


def _split_prefix(name: str, prefix: str) -> tuple[str, str]:
    """(our backbone prefix "bert." or "", the rest) of a name under the family's ``prefix``."""
    return ("bert.", name[len(prefix) :]) if name.startswith(prefix) else ("", name)


def hf_to_ours(
    state: dict[str, torch.Tensor], model_type: str = "bert", inner_group_num: int = 1
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename (and fuse) a Hugging Face state dict of the ``model_type`` family into bertforge names.

    The family's backbone prefix becomes ``bert.`` (kept absent where the input has none). ``inner_group_num``:
    ALBERT's layers per group. Returns the converted dict and the input names that have no place in bertforge
    (reported as unused by ``from_pretrained``).
    """
    rules = FAMILIES[model_type]
    state = {_legacy(k): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    pending: dict[str, dict[int, torch.Tensor]] = {}  # fused target -> {part index: tensor}
    for name, tensor in state.items():
        if any(p.match(name) for p in rules.ignored):
            if name == "cls.predictions.decoder.bias" and "cls.predictions.bias" not in state:
                out["mlm.bias"] = tensor  # an old checkpoint that stores the bias only under the decoder
            continue
        prefix, short = _split_prefix(name, rules.entry.prefix)
        target = _our_name(rules, prefix, short, inner_group_num)
        if target is None:
            fused = _fused_part(rules, short, inner_group_num)
            if fused is not None:
                pending.setdefault(prefix + fused[0], {})[fused[1]] = tensor
                continue
        if target is None:
            unused.append(name)
        else:
            out[target] = tensor
    for target, parts in pending.items():
        if len(parts) != 3:
            missing = [("query", "key", "value")[i] for i in range(3) if i not in parts]
            raise ValueError(
                f"checkpoint has an incomplete attention projection for {target}: missing {', '.join(missing)}"
            )
        out[target] = torch.cat([parts[0], parts[1], parts[2]], dim=0)
    return out, unused


def _our_name(rules: Compiled, prefix: str, short: str, inner: int) -> str | None:
    """Our name of one (unfused) checkpoint tensor, or None: a backbone rule, or (outside the backbone) a head's."""
    for hf_re, _, _, ours in rules.backbone:
        m = hf_re.match(short)
        if m:
            return prefix + _fill(ours, m, inner)
    if not prefix:
        for hf_re, _, _, ours in rules.heads:
            m = hf_re.match(short)
            if m:
                return _fill(ours, m, inner)
    return None


def _fused_part(rules: Compiled, short: str, inner: int) -> tuple[str, int] | None:
    """(our fused tensor, which of q / k / v) of a checkpoint's query, key or value projection; None otherwise."""
    for hf_res, _, _, ours in rules.fused:
        for part, hf_re in enumerate(hf_res):
            m = hf_re.match(short)
            if m:
                return _fill(ours, m, inner), part
    return None


def ours_to_hf(
    state: dict[str, torch.Tensor],
    tied: bool = True,
    model_type: str = "bert",
    context: Iterable[str] | None = None,
    architecture: str | None = None,
    inner_group_num: int = 1,
) -> dict[str, torch.Tensor]:
    """Rename (and split) a bertforge state dict into the ``model_type`` family's Hugging Face names; our ``bert.``
    prefix becomes the family's.

    With ``tied`` the MLM decoder weight is left out (transformers ties it to the word embeddings on load).
    ``context``: the names of the whole model when ``state`` is a part of it (RoBERTa's classifier is named
    classifier.out_proj beside a sentence head's dense layer, classifier in a token classifier). ``architecture``: our
    class name, where a family names a head's layers by class (ELECTRA's multiple choice: sequence_summary).
    ``inner_group_num``: ALBERT's layers per group (our layer i is its group i // inner, layer i % inner).
    """
    rules = FAMILIES[model_type]
    # RoBERTa: classifier -> classifier.out_proj in a sentence classifier
    sentence_head = any(k.startswith("head_dense.") for k in (state if context is None else context))
    multiple_choice = architecture == "BertForMultipleChoice"
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name == "mlm.decoder.weight" and tied:
            continue
        prefix, short = _split_prefix(name, "bert.")
        prefix = rules.entry.prefix if prefix else ""
        done = False
        for _, hf, ours_re, _ in rules.backbone:
            m = ours_re.match(short)
            if m:
                out[prefix + _fill(hf, m, inner_group_num)] = tensor
                done = True
                break
        for _, hfs, ours_re, _ in rules.fused if not done else ():
            m = ours_re.match(short)
            if m:
                for hf, part in zip(hfs, tensor.chunk(3, dim=0)):
                    out[prefix + _fill(hf, m, inner_group_num)] = part.contiguous()
                done = True
                break
        for _, hf, ours_re, _ in rules.heads if not (done or prefix) else ():
            m = ours_re.match(name)
            if m and not _skipped(hf, sentence_head, multiple_choice):
                out[_fill(hf, m)] = tensor
                done = True
                break
        if not done:
            raise KeyError(f"bertforge parameter {name!r} has no Hugging Face name in the {model_type} family's table")
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
