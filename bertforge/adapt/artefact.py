"""The directory a strategy run saves, and putting it back on its base model.

``save_adapter`` writes ``adapter_model.safetensors`` with the trained parameters and the head, and
``bertforge_adapter.json`` (the strategy, the head class and its labels, and ``base_model_name_or_path``, the pointer
to the base model). For the strategies peft has (LoRA, prompt tuning, prefix tuning) the tensors carry peft's names and
an ``adapter_config.json`` is written as peft writes it (``peft.py``), so peft loads the directory onto transformers'
``BertFor*`` and ``load_adapter`` reads a directory peft wrote. The prefix reparameterisation is folded into its table
when saved.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from bertforge.adapt.apply import apply_strategy, head_parameter_names, trained_state
from bertforge.adapt.peft import from_peft_config, peft_num_labels, place_peft, to_peft
from bertforge.adapt.registry import STRATEGIES
from bertforge.config import AdaptConfig
from bertforge.model import MODEL_CLASSES, convert
from bertforge.model.pretrained import ADAPTER_FILE
from bertforge.utils import atomic_directory, atomic_write_text

ADAPTER_WEIGHTS = ADAPTER_FILE
PEFT_CONFIG = "adapter_config.json"
META = "bertforge_adapter.json"


def save_adapter(model: nn.Module, cfg: AdaptConfig, directory: str, base: str | None) -> None:
    """Write the strategy's artefact for ``model`` (unwrapped, on any device): see the module notes."""
    from safetensors.torch import save_file

    config: Any = model.config
    adapt = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    adapt["prefix_projection"] = 0  # saved folded: the table itself
    peft = STRATEGIES[cfg.strategy].peft_type is not None
    meta = {
        "strategy": cfg.strategy,
        "adapt": adapt,
        "head_class": type(model).__name__,
        "num_labels": config.num_labels,
        "id2label": {str(k): v for k, v in (config.id2label or {}).items()},
        "problem_type": config.problem_type,
        "base_model_name_or_path": base,
        "format": "peft" if peft else "bertforge",
    }
    tensors, peft_config = to_peft(model, cfg, base) if peft else (trained_state(model), None)
    with atomic_directory(directory) as tmp:
        save_file({k: v.detach().cpu().clone() for k, v in tensors.items()}, os.path.join(tmp, ADAPTER_WEIGHTS))
        atomic_write_text(os.path.join(tmp, META), json.dumps(meta, indent=2) + "\n")
        if peft_config is not None:
            atomic_write_text(os.path.join(tmp, PEFT_CONFIG), json.dumps(peft_config, indent=2) + "\n")


def is_adapter_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, ADAPTER_WEIGHTS))


def read_adapter_config(directory: str) -> tuple[AdaptConfig, dict]:
    """The strategy config and the metadata (head class, labels, base) of an adapter directory, ours or peft's."""
    meta_file, peft_file = os.path.join(directory, META), os.path.join(directory, PEFT_CONFIG)
    if os.path.exists(meta_file):
        with open(meta_file, encoding="utf-8") as fh:
            meta = json.load(fh)
        adapt = dict(meta["adapt"])
        adapt["lora_targets"] = tuple(adapt.get("lora_targets") or ())
        return AdaptConfig(**adapt), meta
    if not os.path.exists(peft_file):
        raise FileNotFoundError(f"{directory} has {ADAPTER_WEIGHTS} but neither {META} nor {PEFT_CONFIG}")
    with open(peft_file, encoding="utf-8") as fh:
        peft = json.load(fh)
    return from_peft_config(peft, peft_file, peft_num_labels(os.path.join(directory, ADAPTER_WEIGHTS)))


def head_overrides(meta: dict, head_class: str) -> dict[str, Any]:
    """The config fields of an adapter's head (label count and names, problem type) for ``from_pretrained``."""
    out: dict[str, Any] = {}
    if meta.get("num_labels") and head_class not in ("BertForMultipleChoice", "BertForQuestionAnswering"):
        out["num_labels"] = meta["num_labels"]
    if meta.get("id2label"):
        out["id2label"] = {int(k): v for k, v in meta["id2label"].items()}
    if meta.get("problem_type"):
        out["problem_type"] = meta["problem_type"]
    return out


def load_adapter(
    model: nn.Module,
    directory: str,
    cfg: AdaptConfig | None = None,
    meta: dict | None = None,
    originals: dict[str, torch.Tensor] | None = None,
) -> None:
    """Insert the adapter of ``directory`` into ``model`` (a head model with the base weights) and load its tensors
    (the head included). ``originals`` receives copies of the base tensors the adapter overwrites (to switch back).
    Raises ValueError naming the file and the tensors that do not fit."""
    from safetensors.torch import load_file

    if cfg is None or meta is None:
        cfg, meta = read_adapter_config(directory)
    file = os.path.join(directory, ADAPTER_WEIGHTS)
    tensors = load_file(file)
    if meta.get("format") == "peft":
        tensors = place_peft(model, cfg, tensors, file)
    else:
        apply_strategy(model, cfg)
    _load_into(model, tensors, file, originals)


def _load_into(
    model: nn.Module, tensors: dict[str, torch.Tensor], file: str, originals: dict[str, torch.Tensor] | None = None
) -> None:
    own = dict(model.named_parameters())
    for name, t in tensors.items():
        if name not in own:
            raise ValueError(f"{file}: tensor {name!r} has no place in a {type(model).__name__} with this strategy")
        if own[name].shape != t.shape:
            raise ValueError(f"{file}: tensor {name!r} is {tuple(t.shape)}, the model's is {tuple(own[name].shape)}")
        if originals is not None and name not in originals:
            originals[name] = own[name].detach().clone()
        with torch.no_grad():
            own[name].copy_(t)


def from_adapter(directory: str, base: str | None = None, **load_kwargs: Any) -> nn.Module:
    """The base model with the adapter of ``directory`` on it, in eval mode. ``base`` replaces the directory's
    pointer (``base_model_name_or_path``), for a base that has moved."""
    cfg, meta = read_adapter_config(directory)
    source = base or meta.get("base_model_name_or_path")
    if not source:
        raise ValueError(f"{directory}: the adapter names no base model; pass base=... (--base)")
    cls = MODEL_CLASSES[meta["head_class"]]
    model = cls.from_pretrained(source, **head_overrides(meta, meta["head_class"]), **load_kwargs)
    load_adapter(model, directory, cfg, meta)
    report = model.load_report
    if report is not None:  # the head came with the adapter: it is not missing any more
        names = {n: torch.empty(1) for n in head_parameter_names(model)}
        head = set(convert.ours_to_hf(names, tied=False, model_type=model.config.model_type))
        report.missing = [n for n in report.missing if n not in head]
    return model.eval()
