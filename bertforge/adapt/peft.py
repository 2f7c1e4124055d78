"""peft's layout for the strategies peft has (LoRA, prompt tuning, prefix tuning), both ways: the tensor names and the
``adapter_config.json`` that peft writes for transformers' ``BertFor*``, so that peft loads bertforge's artefact and
bertforge loads peft's. The family's module paths come from the one name table (``model/convert.py``)."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from bertforge.adapt.apply import apply_strategy, head_parameter_names
from bertforge.adapt.lora import apply_lora, lora_wrappers
from bertforge.adapt.registry import STRATEGIES
from bertforge.config import AdaptConfig
from bertforge.model import convert
from bertforge.model.families import family

PEFT_TASK_TYPES = {
    "BertForSequenceClassification": "SEQ_CLS",
    "BertForTokenClassification": "TOKEN_CLS",
    "BertForQuestionAnswering": "QUESTION_ANS",
}
"""peft's task types of our head classes (multiple choice has none in peft: the head is saved as modules_to_save)."""
PEFT_TYPES = {s.peft_type: name for name, s in STRATEGIES.items() if s.peft_type}
"""peft's type -> our strategy."""


def to_peft(model: nn.Module, cfg: AdaptConfig, base: str | None) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors under peft's names, peft's adapter_config.json) of a model trained with a strategy peft has."""
    backbone: Any = model.bert
    common = {
        "peft_type": STRATEGIES[cfg.strategy].peft_type,
        "task_type": PEFT_TASK_TYPES.get(type(model).__name__),
        "base_model_name_or_path": base,
        "inference_mode": True,
        "modules_to_save": sorted({n.split(".")[0] for n in head_parameter_names(model)}),
        "revision": None,
    }
    if cfg.strategy == "lora":
        return _lora_to_peft(model, backbone, cfg, common)
    config = backbone.config
    tensors = _head_tensors(model, "base_model.")
    prompt_common = {
        **common,
        "num_virtual_tokens": cfg.prompt_tokens if cfg.strategy == "prompt" else cfg.prefix_tokens,
        "token_dim": config.hidden_size,
        "num_transformer_submodules": 1,
        "num_attention_heads": config.num_attention_heads,
        "num_layers": config.num_hidden_layers,
    }
    if cfg.strategy == "prompt":
        tensors["prompt_embeddings"] = backbone.prompt().detach()
        return tensors, {
            **prompt_common,
            "token_dim": config.embedding_width,  # the soft tokens are word vectors (ELECTRA's are narrower)
            "prompt_tuning_init": "RANDOM",
            "prompt_tuning_init_text": None,
            "tokenizer_name_or_path": None,
            "tokenizer_kwargs": None,
        }
    tensors["prompt_embeddings"] = backbone.prefix().detach()  # the reparameterisation folded in
    return tensors, {**prompt_common, "encoder_hidden_size": config.hidden_size, "prefix_projection": False}


def _lora_to_peft(model: nn.Module, backbone: Any, cfg: AdaptConfig, common: dict) -> tuple[dict, dict]:
    H = backbone.config.hidden_size
    tensors = _head_tensors(model, "base_model.model.")
    targets: set[str] = set()
    layers, lora_modules = _lora_table(backbone.config)
    for i, module, names in lora_wrappers(backbone):
        for (row0, row1), a, b in zip(module.slices, module.lora_A, module.lora_B):
            # the fused q|k|v projection: each H-row block is one of peft's modules (a whole-qkv update shares its A
            # between the three)
            blocks = range(row0 // H, row1 // H) if len(names) > 1 else [0]
            for t in blocks:
                rows = slice(t * H - row0, (t + 1) * H - row0) if len(names) > 1 else slice(None)
                key = f"base_model.model.{layers}.{i}.{lora_modules[names[t]]}"
                tensors[f"{key}.lora_A.weight"] = a.detach()
                tensors[f"{key}.lora_B.weight"] = b.detach()[rows]
                targets.add(names[t])
    module_names = [lora_modules[t] for t in sorted(targets)]
    if "ffn_out" in targets:  # "output.dense" alone would also match attention.output.dense: a full-name regex
        layer_path = re.escape(layers.split(".", 1)[1])
        target_modules: Any = rf".*{layer_path}\.\d+\.(" + "|".join(re.escape(m) for m in module_names) + r")$"
    else:
        target_modules = [m.split(".")[-1] if m.startswith("attention.self.") else m for m in module_names]
    return tensors, {
        **common,
        "r": cfg.lora_r or 8,
        "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout,
        "target_modules": target_modules,
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


def _head_tensors(model: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    own = {n: model.get_parameter(n).detach() for n in head_parameter_names(model)}
    model_type: str = model.bert.config.model_type  # type: ignore[union-attr, assignment]
    return {prefix + k: v for k, v in convert.ours_to_hf(own, tied=False, model_type=model_type).items()}


def from_peft_config(peft: dict, peft_file: str, num_labels: int | None) -> tuple[AdaptConfig, dict]:
    """The strategy config and metadata of peft's ``adapter_config.json`` (``num_labels``: read from its weights)."""
    kind = PEFT_TYPES.get(peft.get("peft_type"))  # type: ignore[arg-type]
    if kind is None:
        raise ValueError(
            f"{peft_file}: peft_type {peft.get('peft_type')!r} is not one bertforge reads ({', '.join(PEFT_TYPES)})"
        )
    head_class = {v: k for k, v in PEFT_TASK_TYPES.items()}.get(str(peft.get("task_type")), "BertForMultipleChoice")
    meta = {
        "head_class": head_class,
        "base_model_name_or_path": peft.get("base_model_name_or_path"),
        "format": "peft",
        "num_labels": num_labels,
    }
    if kind == "lora":
        if peft.get("layers_to_transform") or peft.get("rank_pattern") or peft.get("alpha_pattern"):
            raise ValueError(
                f"{peft_file}: per-layer LoRA settings (layers_to_transform, rank/alpha patterns) are not supported"
            )
        return AdaptConfig(
            strategy="lora",
            lora_r=int(peft["r"]),
            lora_alpha=float(peft["lora_alpha"]),
            lora_dropout=float(peft.get("lora_dropout") or 0.0),
            lora_targets=("query", "value"),  # replaced by the targets found in the weights
        ), meta
    n = int(peft["num_virtual_tokens"])
    if kind == "prompt":
        return AdaptConfig(strategy="prompt", prompt_tokens=n, prompt_init="random"), meta
    return AdaptConfig(strategy="prefix", prefix_tokens=n), meta


def peft_num_labels(file: str) -> int | None:
    """The rows of a peft adapter's classifier (its label count), read from the safetensors header alone."""
    from safetensors import safe_open

    with safe_open(file, "pt") as f:
        for key in f.keys():
            if re.search(r"classifier(\.modules_to_save(\.default)?)?\.weight$", key):
                return int(f.get_slice(key).get_shape()[0])
    return None


def place_peft(model: nn.Module, cfg: AdaptConfig, tensors: dict[str, torch.Tensor], file: str) -> dict:
    """Insert the strategy into ``model`` and copy peft's LoRA or prompt tensors into it; returns the head's tensors
    under bertforge's names, for the caller to load."""
    backbone: Any = model.bert
    model_type = backbone.config.model_type
    _, lora_modules = _lora_table(backbone.config)
    lora_key = _peft_lora_key(model_type)
    inverse = {v: k for k, v in lora_modules.items()}
    table: torch.Tensor | None = None
    head: dict[str, torch.Tensor] = {}
    lora: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        m = lora_key.fullmatch(key)
        if m:
            lora.setdefault((int(m[1]), inverse[m[2]]), {})[m[3]] = t
        elif key == "prompt_embeddings":
            table = t
        elif key.startswith("base_model."):
            name = key.removeprefix("base_model.model.") if key.startswith("base_model.model.") else key[11:]
            head[name.replace(".modules_to_save.default", "").replace(".modules_to_save", "")] = t
        else:
            raise ValueError(f"{file}: tensor {key!r} is not one bertforge knows how to place")
    if cfg.strategy == "lora":
        _place_lora(model, backbone, cfg, lora, list(lora_modules), file)
    else:
        _place_table(model, backbone, cfg, table, file)
    converted, unused = convert.hf_to_ours(head, model_type)
    if unused:
        raise ValueError(f"{file}: head tensors {unused} do not belong to a {model_type} head")
    return converted


def _place_lora(model: nn.Module, backbone: Any, cfg: AdaptConfig, lora: dict, order: list[str], file: str) -> None:
    H = backbone.config.hidden_size
    targets = tuple(sorted({t for _, t in lora}, key=order.index))
    if not targets:
        raise ValueError(f"{file}: a LoRA adapter without lora_A / lora_B tensors")
    cfg.lora_targets = targets
    apply_lora(model, cfg.lora_r or 8, cfg.lora_alpha, cfg.lora_dropout, targets)
    for i, module, names in lora_wrappers(backbone):
        for j, (row0, _) in enumerate(module.slices):
            name = names[row0 // H] if len(names) > 1 else names[0]
            pair = lora.get((i, name))
            if pair is None or set(pair) != {"A", "B"}:
                raise ValueError(f"{file}: layer {i} {name} lacks its lora_A / lora_B tensors")
            with torch.no_grad():
                module.lora_A[j].copy_(pair["A"])
                module.lora_B[j].copy_(pair["B"])


def _place_table(model: nn.Module, backbone: Any, cfg: AdaptConfig, table: torch.Tensor | None, file: str) -> None:
    apply_strategy(model, cfg)
    if table is None:
        raise ValueError(f"{file}: no prompt_embeddings tensor")
    target = backbone.prompt if cfg.strategy == "prompt" else backbone.prefix
    if tuple(target.embedding.weight.shape) != tuple(table.shape):
        raise ValueError(
            f"{file}: prompt_embeddings is {tuple(table.shape)}, this model needs "
            f"{tuple(target.embedding.weight.shape)}"
        )
    with torch.no_grad():
        target.embedding.weight.copy_(table)


def _lora_table(config: Any) -> tuple[str, dict[str, str]]:
    """(peft's path to the layer list, our LoRA targets -> module paths under a layer) of a config's family."""
    if config.inner_group_num != 1:
        raise ValueError(
            f"peft's LoRA files name ALBERT's layers by group, one layer per group; this model has "
            f"inner_group_num {config.inner_group_num}: save the adapter in bertforge's format instead"
        )
    entry = family(config.model_type)
    return entry.lora_layers, entry.lora_modules


def _peft_lora_key(model_type: str) -> re.Pattern:
    """peft's LoRA tensor names of a family: base_model.model.<layers>.<i>.<module>.lora_A|B[.default].weight."""
    entry = family(model_type)
    layers, modules = entry.lora_layers, entry.lora_modules
    return re.compile(
        r"base_model\.model\."
        + re.escape(layers)
        + r"\.(\d+)\.("
        + "|".join(re.escape(m) for m in modules.values())
        + r")\.lora_([AB])(?:\.[^.]+)?\.weight"
    )
