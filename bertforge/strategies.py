"""Fine-tuning strategies: which parameters train, which modules go into the encoder, and the small artefact a
strategy run saves.

``apply_strategy(model, cfg)`` turns a task model (``BertFor*``) into what the strategy trains; the task head (every
parameter outside ``model.bert``) always trains:

========  ===================================================================================================
full      every weight
head      the head only (the encoder, pooler included, frozen)
freeze    embeddings and the bottom ``freeze_layers`` layers frozen; ``unfreeze`` epoch|steps: gradual
          unfreezing (ULMFiT): the top layer first, one more layer down every epoch / ``unfreeze_steps`` steps
lora      low-rank updates on the chosen projections (``model/lora.py``)
adapter   bottleneck adapters after attention and feed-forward (Houlsby) or feed-forward only (Pfeiffer)
prompt    ``prompt_tokens`` soft tokens in front of the input (prompt tuning)
prefix    ``prefix_tokens`` trained keys/values in every layer (prefix tuning / P-tuning v2)
========  ===================================================================================================

The artefact (``save_adapter``): ``adapter_model.safetensors`` with the trained parameters and the head, and
``bertforge_adapter.json`` (the strategy, the head class and its labels, and ``base_model_name_or_path``, the pointer
to the base model). For the methods peft has (LoRA, prompt tuning, prefix tuning) the tensors carry peft's names and an
``adapter_config.json`` is written as peft writes it, so peft loads the directory onto transformers' ``BertFor*`` (and
``load_adapter`` reads a directory peft wrote). The prefix reparameterisation is folded into its table when saved.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import torch
from torch import nn

from bertforge.config import AdaptConfig
from bertforge.model.adapters import BottleneckAdapter, PrefixEncoder, SoftPrompt
from bertforge.model.convert import PEFT_LORA_MODULES
from bertforge.model.lora import LoRALinear, apply_lora
from bertforge.utils import atomic_write_text, logger

ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
META = "bertforge_adapter.json"
PEFT_TYPES = {"lora": "LORA", "prompt": "PROMPT_TUNING", "prefix": "PREFIX_TUNING"}
PEFT_TASK_TYPES = {
    "BertForSequenceClassification": "SEQ_CLS",
    "BertForTokenClassification": "TOKEN_CLS",
    "BertForQuestionAnswering": "QUESTION_ANS",
}
"""peft's task types of our head classes (multiple choice has none in peft: the head is saved as modules_to_save)."""


def head_parameter_names(model: nn.Module) -> list[str]:
    """The task head's parameters: everything outside the encoder ``model.bert``."""
    return [n for n, _ in model.named_parameters() if not n.startswith("bert.")]


def apply_strategy(model: nn.Module, cfg: AdaptConfig, tokenizer: Any = None) -> int:
    """Insert the strategy's modules and freeze what it does not train; returns the number of trainable parameters.

    ``tokenizer`` is needed only for a prompt started from a text (``prompt_init`` text)."""
    backbone: Any = model.bert
    config = backbone.config
    if cfg.strategy != "full":
        for p in backbone.parameters():
            p.requires_grad_(False)
    if cfg.strategy == "freeze":
        L = len(backbone.layers)
        if cfg.freeze_layers >= L:
            raise ValueError(
                f"adapt.freeze_layers {cfg.freeze_layers} freezes every layer of this {L}-layer model; use a number "
                "below it, or strategy head"
            )
        for layer in backbone.layers[cfg.freeze_layers :]:
            layer.requires_grad_(True)
        if backbone.pooler is not None:
            backbone.pooler.requires_grad_(True)
    elif cfg.strategy == "lora":
        apply_lora(model, cfg.lora_r or 8, cfg.lora_alpha, cfg.lora_dropout, tuple(cfg.lora_targets))
    elif cfg.strategy == "adapter":
        for layer in backbone.layers:
            if cfg.adapter_placement == "houlsby":
                layer.adapter_attn = BottleneckAdapter(config.hidden_size, cfg.adapter_size)
            layer.adapter_ffn = BottleneckAdapter(config.hidden_size, cfg.adapter_size)
    elif cfg.strategy == "prompt":
        backbone.prompt = SoftPrompt(cfg.prompt_tokens, config.hidden_size, _prompt_init(backbone, cfg, tokenizer))
    elif cfg.strategy == "prefix":
        backbone.prefix = PrefixEncoder(
            cfg.prefix_tokens,
            config.num_hidden_layers,
            config.num_attention_heads,
            config.hidden_size,
            cfg.prefix_projection or None,
        )
    for name in head_parameter_names(model):
        model.get_parameter(name).requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _prompt_init(backbone: Any, cfg: AdaptConfig, tokenizer: Any) -> torch.Tensor | None:
    """The starting prompt vectors: word embeddings of random vocabulary tokens, or of a text's tokens repeated to the
    prompt length; None (random) for ``prompt_init`` random."""
    table = backbone.embeddings.token.weight.detach()
    P = cfg.prompt_tokens
    if cfg.prompt_init == "random":
        return None
    if cfg.prompt_init == "vocab":
        ids = torch.randint(0, table.shape[0], (P,))
    else:
        if tokenizer is None:
            raise ValueError("adapt.prompt_init text needs the model's tokenizer")
        pieces = tokenizer.encode(cfg.prompt_init_text, add_special_tokens=False)
        if not pieces:
            raise ValueError(f"adapt.prompt_init_text {cfg.prompt_init_text!r} has no tokens")
        ids = torch.tensor((pieces * (P // len(pieces) + 1))[:P])
    return table[ids.to(table.device)].clone()


class UnfreezeSchedule:
    """Gradual unfreezing for strategy freeze: at step s the top ``1 + s // interval`` trainable layers train (the
    others' gradients are dropped before the update, so they stay bit-identical; requires_grad is never toggled, which
    keeps DDP's and FSDP's parameter sets fixed)."""

    def __init__(self, model: nn.Module, cfg: AdaptConfig, steps_per_epoch: int):
        backbone: Any = model.bert
        self.layers = list(range(len(backbone.layers) - 1, cfg.freeze_layers - 1, -1))  # top first
        self.interval = steps_per_epoch if cfg.unfreeze == "epoch" else cfg.unfreeze_steps
        self.backbone = backbone
        self.active = 0

    def plan(self) -> list[tuple[int, int]]:
        """(layer index, first step it trains) in unfreezing order."""
        return [(layer, k * self.interval) for k, layer in enumerate(self.layers)]

    def frozen_at(self, step: int) -> list[torch.Tensor]:
        """Parameters that must not change at (0-based) ``step``; logs each unfreezing."""
        n = min(len(self.layers), 1 + step // self.interval)
        if n != self.active:
            newly = self.layers[self.active : n]
            logger.info("step %d: training layer(s) %s (gradual unfreezing)", step, ", ".join(map(str, newly)))
            self.active = n
        return [p for i in self.layers[n:] for p in self.backbone.layers[i].parameters()]

    def describe(self) -> str:
        return ", ".join(f"layer {layer} from step {step}" for layer, step in self.plan())


# ---- the artefact ----------------------------------------------------------------------------------------------


def trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors of ``model`` under bertforge's names."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def save_adapter(model: nn.Module, cfg: AdaptConfig, directory: str, base: str | None) -> None:
    """Write the strategy's artefact for ``model`` (unwrapped, on any device): see the module notes."""
    from safetensors.torch import save_file

    from bertforge.utils import atomic_directory

    head_class = type(model).__name__
    config: Any = model.config
    adapt = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    adapt["prefix_projection"] = 0  # saved folded: the table itself
    meta = {
        "strategy": cfg.strategy,
        "adapt": adapt,
        "head_class": head_class,
        "num_labels": config.num_labels,
        "id2label": {str(k): v for k, v in (config.id2label or {}).items()},
        "problem_type": config.problem_type,
        "base_model_name_or_path": base,
        "format": "peft" if cfg.strategy in PEFT_TYPES else "bertforge",
    }
    if cfg.strategy in PEFT_TYPES:
        tensors, peft_config = _to_peft(model, cfg, base)
    else:
        tensors, peft_config = trained_state(model), None
    with atomic_directory(directory) as tmp:
        save_file({k: v.detach().cpu().clone() for k, v in tensors.items()}, os.path.join(tmp, ADAPTER_WEIGHTS))
        atomic_write_text(os.path.join(tmp, META), json.dumps(meta, indent=2) + "\n")
        if peft_config is not None:
            atomic_write_text(os.path.join(tmp, PEFT_CONFIG), json.dumps(peft_config, indent=2) + "\n")


def _head_tensors(model: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    from bertforge.model import convert

    own = {n: model.get_parameter(n).detach() for n in head_parameter_names(model)}
    model_type: str = model.bert.config.model_type  # type: ignore[union-attr, assignment]
    return {prefix + k: v for k, v in convert.ours_to_hf(own, tied=False, model_type=model_type).items()}


def _lora_modules(model_type: str) -> tuple[str, dict[str, str]]:
    """(the path of the layers, our LoRA target -> peft's module under a layer) of a family's transformers model."""
    return PEFT_LORA_MODULES[model_type]


def _peft_lora_key(model_type: str) -> re.Pattern:
    """peft's LoRA tensor names of a family: base_model.model.<layers>.<i>.<module>.lora_A|B[.default].weight."""
    layers, modules = _lora_modules(model_type)
    return re.compile(
        r"base_model\.model\."
        + re.escape(layers)
        + r"\.(\d+)\.("
        + "|".join(re.escape(m) for m in modules.values())
        + r")\.lora_([AB])(?:\.[^.]+)?\.weight"
    )


def _head_modules(model: nn.Module) -> list[str]:
    return sorted({n.split(".")[0] for n in head_parameter_names(model)})


def _lora_wrappers(backbone: Any):
    """(layer index, LoRA wrapper, the target names of its rows) of every wrapped projection."""
    for i, layer in enumerate(backbone.layers):
        for module, names in (
            (layer.attn.qkv_proj, ("query", "key", "value")),
            (layer.attn.out_proj, ("output",)),
            (layer.ffn.ffn_in, ("ffn_in",)),
            (layer.ffn.ffn_out, ("ffn_out",)),
        ):
            if isinstance(module, LoRALinear):
                yield i, module, names


def _to_peft(model: nn.Module, cfg: AdaptConfig, base: str | None) -> tuple[dict[str, torch.Tensor], dict]:
    backbone: Any = model.bert
    config = backbone.config
    H = config.hidden_size
    common = {
        "peft_type": PEFT_TYPES[cfg.strategy],
        "task_type": PEFT_TASK_TYPES.get(type(model).__name__),
        "base_model_name_or_path": base,
        "inference_mode": True,
        "modules_to_save": _head_modules(model),
        "revision": None,
    }
    if cfg.strategy == "lora":
        tensors = _head_tensors(model, "base_model.model.")
        targets: set[str] = set()
        layers, lora_modules = _lora_modules(config.model_type)
        for i, module, names in _lora_wrappers(backbone):
            for (row0, row1), a, b in zip(module.slices, module.lora_A, module.lora_B):
                # the fused q|k|v projection: each H-row block is one of peft's modules (a whole-qkv update
                # shares its A between the three)
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
        peft_config = {
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
        return tensors, peft_config
    tensors = _head_tensors(model, "base_model.")
    prompt_common = {
        **common,
        "num_virtual_tokens": cfg.prompt_tokens if cfg.strategy == "prompt" else cfg.prefix_tokens,
        "token_dim": H,
        "num_transformer_submodules": 1,
        "num_attention_heads": config.num_attention_heads,
        "num_layers": config.num_hidden_layers,
    }
    if cfg.strategy == "prompt":
        tensors["prompt_embeddings"] = backbone.prompt().detach()
        return tensors, {
            **prompt_common,
            "prompt_tuning_init": "RANDOM",
            "prompt_tuning_init_text": None,
            "tokenizer_name_or_path": None,
            "tokenizer_kwargs": None,
        }
    tensors["prompt_embeddings"] = backbone.prefix().detach()  # the reparameterisation folded in
    return tensors, {**prompt_common, "encoder_hidden_size": H, "prefix_projection": False}


def remove_strategy(model: nn.Module) -> None:
    """Take every inserted module out of ``model`` (LoRA unmerged first): the base encoder again."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                child.unmerge()
                setattr(module, name, child.base)
    backbone: Any = model.bert
    backbone.prompt = backbone.prefix = None
    for layer in backbone.layers:
        layer.adapter_attn = layer.adapter_ffn = None


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
    kind = {v: k for k, v in PEFT_TYPES.items()}.get(peft.get("peft_type"))
    if kind is None:
        raise ValueError(
            f"{peft_file}: peft_type {peft.get('peft_type')!r} is not one bertforge reads "
            f"({', '.join(PEFT_TYPES.values())})"
        )
    head_class = {v: k for k, v in PEFT_TASK_TYPES.items()}.get(peft.get("task_type"), "BertForMultipleChoice")
    meta = {
        "head_class": head_class,
        "base_model_name_or_path": peft.get("base_model_name_or_path"),
        "format": "peft",
        "num_labels": _peft_num_labels(os.path.join(directory, ADAPTER_WEIGHTS)),
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


def _peft_num_labels(file: str) -> int | None:
    """The rows of a peft adapter's classifier (its label count), read from the safetensors header alone."""
    from safetensors import safe_open

    with safe_open(file, "pt") as f:
        for key in f.keys():
            if re.search(r"classifier(\.modules_to_save(\.default)?)?\.weight$", key):
                return int(f.get_slice(key).get_shape()[0])
    return None


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

    from bertforge.model import convert

    if cfg is None or meta is None:
        cfg, meta = read_adapter_config(directory)
    file = os.path.join(directory, ADAPTER_WEIGHTS)
    tensors = load_file(file)
    if meta.get("format") != "peft":
        apply_strategy(model, cfg)
        _load_into(model, tensors, file, originals)
        return
    backbone: Any = model.bert
    H = backbone.config.hidden_size
    model_type = backbone.config.model_type
    _, lora_modules = _lora_modules(model_type)
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
        elif key.startswith("base_model.model.") or key.startswith("base_model."):
            name = key.removeprefix("base_model.model.") if key.startswith("base_model.model.") else key[11:]
            name = name.replace(".modules_to_save.default", "").replace(".modules_to_save", "")
            head[name] = t
        else:
            raise ValueError(f"{file}: tensor {key!r} is not one bertforge knows how to place")
    if cfg.strategy == "lora":
        targets = tuple(sorted({t for _, t in lora}, key=list(lora_modules).index))
        if not targets:
            raise ValueError(f"{file}: a LoRA adapter without lora_A / lora_B tensors")
        cfg.lora_targets = targets
        apply_lora(model, cfg.lora_r or 8, cfg.lora_alpha, cfg.lora_dropout, targets)
        for i, module, names in _lora_wrappers(backbone):
            for j, (row0, _) in enumerate(module.slices):
                name = names[row0 // H] if len(names) > 1 else names[0]
                pair = lora.get((i, name))
                if pair is None or set(pair) != {"A", "B"}:
                    raise ValueError(f"{file}: layer {i} {name} lacks its lora_A / lora_B tensors")
                with torch.no_grad():
                    module.lora_A[j].copy_(pair["A"])
                    module.lora_B[j].copy_(pair["B"])
    else:
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
    converted, unused = convert.hf_to_ours(head, model_type)
    if unused:
        raise ValueError(f"{file}: head tensors {unused} do not belong to a {model_type} head")
    _load_into(model, converted, file, originals)


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
    import bertforge.model as models

    cfg, meta = read_adapter_config(directory)
    source = base or meta.get("base_model_name_or_path")
    if not source:
        raise ValueError(f"{directory}: the adapter names no base model; pass base=... (--base)")
    cls = getattr(models, meta["head_class"])
    model = cls.from_pretrained(source, **head_overrides(meta, meta["head_class"]), **load_kwargs)
    load_adapter(model, directory, cfg, meta)
    report = model.load_report
    if report is not None:  # the head came with the adapter: it is not missing any more
        from bertforge.model import convert

        names = {n: torch.empty(1) for n in head_parameter_names(model)}
        head = set(convert.ours_to_hf(names, tied=False, model_type=model.config.model_type))
        report.missing = [n for n in report.missing if n not in head]
    return model.eval()
