"""The one table between external checkpoint names (Hugging Face / Google BERT) and bertforge's names.

Nothing else in bertforge knows external parameter names. ``RULES`` pairs each Hugging Face name pattern with ours;
``{i}`` stands for a layer index and ``{p}`` for ``weight`` or ``bias``. The three separate query / key / value
projections of Hugging Face checkpoints become our single fused ``qkv_proj`` (rows laid out [q | k | v]) and are split
again on export.

Names are given without the ``bert.`` prefix that Hugging Face head classes put before the backbone; the prefix is
handled in ``hf_to_ours`` / ``ours_to_hf``, so checkpoints with and without it load into every class.
"""

from __future__ import annotations

import re

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
# peft's LoRA modules: our LoRA targets -> the module paths under transformers' ``encoder.layer.{i}`` that peft wraps
# (used for peft's adapter files in ``strategies.py``).
PEFT_LORA_MODULES: dict[str, str] = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "output": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}
# Names that carry no weights of their own: buffers, and the decoder bias that transformers ties to
# cls.predictions.bias.
IGNORED = [
    r"(bert\.)?embeddings\.position_ids",
    r"(bert\.)?embeddings\.token_type_ids",
    r"cls\.predictions\.decoder\.bias",
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


_BACKBONE = [(_regex(hf), hf, _regex(ours), ours) for hf, ours in BACKBONE_RULES]
_HEADS = [(_regex(hf), hf, _regex(ours), ours) for hf, ours in HEAD_RULES]
_FUSED = [([_regex(h) for h in hfs], hfs, _regex(ours), ours) for hfs, ours in FUSED_RULES]
_IGNORED = [re.compile(p + r"\Z") for p in IGNORED]


def _split_prefix(name: str) -> tuple[str, str]:
    return ("bert.", name[5:]) if name.startswith("bert.") else ("", name)


def hf_to_ours(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename (and fuse) a Hugging Face BERT state dict into bertforge names.

    The ``bert.`` prefix is kept as it is on the input. Returns the converted dict and the input names that have no
    place in bertforge (reported as unused by ``from_pretrained``).
    """
    state = {_legacy(k): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    pending: dict[str, dict[int, torch.Tensor]] = {}  # fused target -> {part index: tensor}
    for name, tensor in state.items():
        if any(p.match(name) for p in _IGNORED):
            if name == "cls.predictions.decoder.bias" and "cls.predictions.bias" not in state:
                out["mlm.bias"] = tensor  # an old checkpoint that stores the bias only under the decoder
            continue
        prefix, short = _split_prefix(name)
        target = None
        for hf_re, _, _, ours in _BACKBONE:
            m = hf_re.match(short)
            if m:
                target = prefix + _fill(ours, m)
                break
        if target is None:
            for hf_res, _, _, ours in _FUSED:
                for part, hf_re in enumerate(hf_res):
                    m = hf_re.match(short)
                    if m:
                        pending.setdefault(prefix + _fill(ours, m), {})[part] = tensor
                        target = ""
                        break
                if target is not None:
                    break
        if target is None and not prefix:
            for hf_re, _, _, ours in _HEADS:
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


def ours_to_hf(state: dict[str, torch.Tensor], tied: bool = True) -> dict[str, torch.Tensor]:
    """Rename (and split) a bertforge state dict into Hugging Face BERT names, ``bert.`` prefix kept as given.

    With ``tied`` the MLM decoder weight is left out (transformers ties it to the word embeddings on load).
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name == "mlm.decoder.weight" and tied:
            continue
        prefix, short = _split_prefix(name)
        done = False
        for _, hf, ours_re, _ in _BACKBONE:
            m = ours_re.match(short)
            if m:
                out[prefix + _fill(hf, m)] = tensor
                done = True
                break
        if not done:
            for _, hfs, ours_re, _ in _FUSED:
                m = ours_re.match(short)
                if m:
                    for hf, part in zip(hfs, tensor.chunk(3, dim=0)):
                        out[prefix + _fill(hf, m)] = part.contiguous()
                    done = True
                    break
        if not done and not prefix:
            for _, hf, ours_re, _ in _HEADS:
                m = ours_re.match(name)
                if m:
                    out[_fill(hf, m)] = tensor
                    done = True
                    break
        if not done:
            raise KeyError(f"bertforge parameter {name!r} has no Hugging Face name in convert.py's table")
    return out


def _legacy(name: str) -> str:
    for old, new in LEGACY_SUFFIXES.items():
        if name.endswith(old) and "LayerNorm" in name:
            return name[: -len(old)] + new
    return name
