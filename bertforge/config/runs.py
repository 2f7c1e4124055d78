"""The configs of a run, nesting the sections: ``PretrainConfig`` (``bertforge pretrain``) and ``FinetuneConfig``
(``bertforge finetune``, with BERT's fine-tuning defaults); dict and YAML round trips with unknown names refused; the
recipes that ship with bertforge."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from bertforge.adapt.registry import STRATEGIES
from bertforge.config.sections import (
    AdaptConfig,
    DataConfig,
    DistillConfig,
    OptimConfig,
    PhaseConfig,
    TaskConfig,
    TrackingConfig,
    TrainConfig,
)
from bertforge.model.config import BertConfig
from bertforge.model.families import family

RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")
RECIPES = ("roberta", "crammed", "main-job", "bert-paper", "nvidia-lamb")
"""Recipes that ship with bertforge (``bertforge/recipes/NAME.yaml``), for --config NAME. A recipe's ``base: NAME``
sets another recipe's fields first."""


def recipe_path(name: str) -> str:
    """A recipe file: ``name`` itself when it exists, else the shipped recipe of that name; one line otherwise."""
    if os.path.exists(name) or os.sep in name or name.endswith((".yaml", ".yml")):
        if not os.path.exists(name):
            raise FileNotFoundError(f"recipe file {name} does not exist; shipped recipes: {', '.join(RECIPES)}")
        return name
    if name in RECIPES:
        return os.path.join(RECIPES_DIR, f"{name}.yaml")
    raise FileNotFoundError(f"no recipe file {name!r} here, and no shipped recipe of that name ({', '.join(RECIPES)})")


def _phases(values: Any) -> tuple[PhaseConfig, ...]:
    """``phases:`` of a recipe: a list of mappings of PhaseConfig fields (unknown names refused by name)."""
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise ValueError("phases must be a list of mappings (fraction, seq_length, global_batch_size, ...)")
    known = {f.name for f in dataclasses.fields(PhaseConfig)}
    for k, phase in enumerate(values, 1):
        if set(phase) - known:
            raise ValueError(f"phase {k}: unknown field(s) {sorted(set(phase) - known)}; known: {sorted(known)}")
    return tuple(PhaseConfig(**phase) for phase in values)


class _Sections:
    """Shared behaviour of the nested configs: dict / YAML round trips with unknown names refused by name."""

    SECTIONS: tuple[str, ...] = ()
    LISTS: tuple[str, ...] = ()
    """Top-level keys that hold a list rather than a section (PretrainConfig's ``phases``)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.SECTIONS:
            section = getattr(self, name)
            out[name] = (
                section.to_dict()
                if isinstance(section, BertConfig)
                else {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(section).items()}
            )
        if "phases" in self.LISTS and self.phases:  # type: ignore[attr-defined]
            out["phases"] = [
                {k: v for k, v in dataclasses.asdict(p).items() if v is not None}
                for p in self.phases  # type: ignore[attr-defined]
            ]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return cls().merged(data)

    def merged(self, data: dict[str, Any]):
        """A copy with the fields given in ``data`` ({section: {field: value}}) set; unknown names are errors."""
        unknown = set(data) - set(self.SECTIONS) - set(self.LISTS)
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; use {', '.join(self.SECTIONS)}")
        parts: dict[str, Any] = {}
        if "phases" in self.LISTS:
            parts["phases"] = _phases(data["phases"]) if "phases" in data else self.phases  # type: ignore[attr-defined]
        for name in self.SECTIONS:
            section = getattr(self, name)
            values = data.get(name) or {}
            if not isinstance(values, dict):
                raise ValueError(f"config section {name!r} must be a mapping of fields, got {type(values).__name__}")
            defaulted = getattr(self, "family_defaulted", ()) if name == "data" else ()
            if defaulted:  # the family (perhaps a new one) decides again
                section = dataclasses.replace(section, **{k: None for k in defaulted if k not in values})
            fields = {f.name for f in dataclasses.fields(section)} - {"extra"}
            if isinstance(section, BertConfig):  # in bertforge's names or the family's own (config.json's)
                model_type = str(values.get("model_type", section.model_type))
                theirs = family(model_type).config_names
                written = set(BertConfig(model_type=model_type).to_dict()) | set(section.extra)
                bad = {k for k in values if theirs.get(k, k) not in fields and k not in written}
                if bad:
                    raise ValueError(
                        f"unknown field(s) {sorted(bad)} in config section 'model'; known: {sorted(fields)}"
                    )
                parts[name] = BertConfig.from_dict({**section.to_dict(), **values}) if values else section
                continue
            bad = set(values) - fields
            if bad:
                raise ValueError(f"unknown field(s) {sorted(bad)} in config section {name!r}; known: {sorted(fields)}")
            parts[name] = dataclasses.replace(section, **values)
        return type(self)(**parts)

    @classmethod
    def from_yaml(cls, path: str):
        return cls().merged_yaml(path)

    def merged_yaml(self, path: str, _seen: tuple[str, ...] = ()):
        """This config with a YAML recipe's fields set over it: a file, or the name of a recipe that ships with
        bertforge (``RECIPES``). ``base: RECIPE`` in the file sets that recipe's fields first."""
        path = recipe_path(path)
        with open(path, encoding="utf-8") as fh:
            try:
                data = yaml.safe_load(fh) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping with sections {', '.join(self.SECTIONS)}")
        base, config = data.pop("base", None), self
        if base is not None:
            if not isinstance(base, str) or base in _seen:
                raise ValueError(f"{path}: base {base!r} must name another recipe (a file or one of {RECIPES})")
            config = self.merged_yaml(base, (*_seen, base))
        try:
            return config.merged(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


@dataclass(kw_only=True)
class PretrainConfig(_Sections):
    """Pretraining: the model, its data, the optimizer and the loop."""

    SECTIONS = ("model", "data", "optim", "train", "distill", "tracking")
    LISTS = ("phases",)
    model: BertConfig = field(default_factory=BertConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Pretraining distillation (DistilBERT's): a masked-LM teacher's soft targets (+ cosine on hidden states)."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    phases: tuple[PhaseConfig, ...] = ()
    """A multi-phase run (``phases:`` in a recipe, a list of ``PhaseConfig`` fields); empty: one phase."""
    family_defaulted: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    """The data fields the model family chose (the run named none), chosen again when a merge changes the family."""

    def __post_init__(self) -> None:
        self._family_defaults()
        t = self.train
        if self.optim.lr is None:
            raise ValueError("optim.lr must be set for pretraining (--lr)")
        if self.distill.teacher is not None and (self.data.objective != "mlm" or self.data.binary_head != "none"):
            raise ValueError("pretraining distillation (--teacher) is masked LM only: use --binary-head none")
        if t.init_model is not None and self.distill.student_layers is not None:
            raise ValueError(
                "--init-model and --student-layers both choose the starting weights (a model's, or the teacher's "
                "layers): give one"
            )
        if self.data.objective == "electra" and (t.init_model is not None or t.fsdp):
            raise ValueError(
                "--objective electra trains a generator and a discriminator from random weights with DDP: "
                f"{'--init-model' if t.init_model is not None else '--fsdp'} is not supported with it"
            )
        if self.data.seq_length > self.model.max_tokens and t.init_model is None:  # else: the checkpoint's limit
            raise ValueError(
                f"data.seq_length ({self.data.seq_length}) exceeds the {self.model.max_tokens} tokens that "
                f"model.max_position_embeddings ({self.model.max_position_embeddings}) covers"
            )
        for name in ("micro_batch_size", "train_iters", "log_interval", "eval_interval"):
            if getattr(t, name) <= 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(t, name)}")
        if self.phases:
            self._check_phases()

    def _family_defaults(self) -> None:
        """The objective and sentence-pair head the model family pretrains with, where the run names none."""
        d, family = self.data, self.model.family
        if d.objective is None or d.binary_head is None:
            self.family_defaulted = tuple(k for k in ("objective", "binary_head") if getattr(d, k) is None)
            objective = d.objective or family.objective
            head = d.binary_head or ("none" if objective != "mlm" else family.binary_head)
            self.data = dataclasses.replace(d, objective=objective, binary_head=head)

    def _check_phases(self) -> None:
        if self.train.train_time is not None:
            raise ValueError("phases divide the run's steps: give --train-iters, not --train-time, with phases")
        shares = [p.fraction for p in self.phases]
        if any(f is None for f in shares[:-1]) or sum(f or 0.0 for f in shares) > 1.0 + 1e-9:
            raise ValueError(
                "phases: every phase but the last needs a fraction of the steps, and together they cannot exceed 1 "
                f"(got {shares})"
            )
        for k, phase in enumerate(self.phases, 1):
            if (phase.seq_length or 0) > self.model.max_tokens and self.train.init_model is None:
                raise ValueError(
                    f"phase {k}: seq_length {phase.seq_length} exceeds the {self.model.max_tokens} tokens that "
                    f"model.max_position_embeddings ({self.model.max_position_embeddings}) covers"
                )

    def phase_runs(self) -> list[tuple[int, int, PretrainConfig]]:
        """(first step, end step, the config of that phase) for each phase: the phase's length, batch and micro-batch
        set on the run's config (its schedule is the caller's); one entry covering the run without phases."""
        if not self.phases:
            return [(0, self.train.train_iters, self)]
        runs, start, total = [], 0, self.train.train_iters
        for phase in self.phases:
            if phase.fraction is None:  # the last phase (``_check_phases``): the steps that are left
                end = total
            else:
                end = min(total, start + round(phase.fraction * total))
            data = {"seq_length": phase.seq_length} if phase.seq_length else {}
            train = {
                name: getattr(phase, name)
                for name in ("global_batch_size", "micro_batch_size")
                if getattr(phase, name) is not None
            }
            config = dataclasses.replace(self.merged({"data": data, "train": train}), phases=())
            runs.append((start, end, config))
            start = end
        return runs

    def gradient_accumulation(self, world_size: int) -> int:
        return self.train.gradient_accumulation(world_size)


RunConfig = PretrainConfig
"""The earlier name of ``PretrainConfig``, kept for code written against it."""


def _finetune_optim() -> OptimConfig:
    return OptimConfig(lr=None, lr_warmup_fraction=0.1, lr_decay_style="linear", weight_decay=0.01, clip_grad=1.0)


def _finetune_train() -> TrainConfig:
    return TrainConfig(micro_batch_size=32, seed=42, log_interval=50, keep_last=1, eval_iters=1)


@dataclass(kw_only=True)
class FinetuneConfig(_Sections):
    """Fine-tuning with BERT's recipe: AdamW, weight decay 0.01 off biases and LayerNorm, 10% warm-up then linear
    decay, clipping 1.0, batch 32, 3 epochs, 128 tokens (384 for QA); lr 3e-5 for full fine-tuning, and each other
    strategy's own when none is given (``adapt/registry.py``)."""

    SECTIONS = ("optim", "train", "task", "adapt", "distill", "tracking")
    optim: OptimConfig = field(default_factory=_finetune_optim)
    """optim.lr None: the strategy's default (``adapt/registry.py``)."""
    train: TrainConfig = field(default_factory=_finetune_train)
    task: TaskConfig = field(default_factory=TaskConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def resolved_optim(self) -> OptimConfig:
        """The optimizer settings with the learning rate resolved (the strategy's default when none was given)."""
        if self.optim.lr is not None:
            return self.optim
        return dataclasses.replace(self.optim, lr=STRATEGIES[self.adapt.strategy].lr)

    @classmethod
    def build(cls, **values: Any) -> FinetuneConfig:
        """A config from flat field names (``FinetuneConfig.build(lr=1e-3, epochs=1, lora_r=4)``): each name is
        looked up in the sections, which declare it once; ``batch_size`` and ``warmup_ratio`` are the CLI aliases of
        train.micro_batch_size and optim.lr_warmup_fraction, ``freeze_encoder=True`` of adapt.strategy="head"."""
        aliases = {"batch_size": "micro_batch_size", "warmup_ratio": "lr_warmup_fraction"}
        base = cls()
        nested: dict[str, dict[str, Any]] = {name: {} for name in cls.SECTIONS}
        for key, value in values.items():
            if key == "freeze_encoder":
                if value:
                    nested["adapt"]["strategy"] = "head"
                continue
            key = aliases.get(key, key)
            owners = [s for s in cls.SECTIONS if key in {f.name for f in dataclasses.fields(getattr(base, s))}]
            if not owners:
                raise ValueError(f"unknown fine-tuning option {key!r}")
            nested[owners[0]][key] = value
        return base.merged(nested)
