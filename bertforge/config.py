"""Run configuration: one dataclass per concern, nested in ``RunConfig``; YAML recipes and the CLI set their fields.

The model's own config is ``BertConfig`` (Hugging Face names). Units are stated per field: tokens, sequences (samples),
steps (optimizer iterations).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from bertforge.model.config import BertConfig

DECAY_STYLES = ("linear", "cosine", "constant")
OPTIMIZERS = ("adamw", "lamb")
NONFINITE = ("stop", "skip")


@dataclass(kw_only=True)
class DataConfig:
    data_path: list[str] | None = None
    """Megatron --data-path: one prefix, or weight/prefix pairs. None: the embedded default corpus."""
    vocab_file: str | None = None
    """BERT vocab.txt. None with the default corpus: a vocabulary is trained."""
    tokenizer_type: str = "BertWordPieceLowerCase"
    """BertWordPieceLowerCase (uncased) or BertWordPieceCase."""
    split: str = "969,30,1"
    """Train/valid/test proportions of each dataset's documents."""
    seq_length: int = 512
    """Longest sample, in tokens, specials included."""
    mask_prob: float = 0.15
    """Share of (non-special) tokens predicted."""
    mask_token_prob: float = 0.8
    """Share of predicted tokens replaced by [MASK]."""
    random_token_prob: float = 0.1
    """Share of predicted tokens replaced by a random token (the rest stay)."""
    short_seq_prob: float = 0.1
    """Probability of a shorter target length for a sample."""
    binary_head: str = "nsp"
    """nsp, sop or none."""
    whole_word_mask: bool = False
    """Mask whole words (all ## pieces together)."""
    max_ngram: int = 1
    """Mask spans of up to n words (probability 1/n each)."""
    num_workers: int = 1
    """DataLoader worker processes per rank."""
    pack_sequences: bool = False
    """Batches as packed token rows with cu_seqlens (no padding stored, no device sync to unpack) instead of padded."""


@dataclass(kw_only=True)
class OptimConfig:
    optimizer: str = "adamw"
    """adamw (torch's fused / foreach implementation) or lamb."""
    lr: float = 1e-4
    """Peak learning rate."""
    min_lr: float = 0.0
    """Learning rate at the end of decay."""
    lr_decay_style: str = "linear"
    """linear, cosine or constant."""
    lr_warmup_iters: int = 0
    """Warm-up steps (overridden by lr_warmup_fraction)."""
    lr_warmup_fraction: float | None = None
    """Warm-up as a fraction of the decay steps."""
    lr_decay_iters: int | None = None
    """Steps over which the rate decays; None means train_iters."""
    weight_decay: float = 0.01
    """Decoupled weight decay (not on biases and LayerNorm)."""
    clip_grad: float = 1.0
    """Global gradient-norm clip; 0 disables."""
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8

    def warmup_steps(self, train_iters: int) -> int:
        decay = self.lr_decay_iters or train_iters
        if self.lr_warmup_fraction is not None:
            return int(self.lr_warmup_fraction * decay)
        return self.lr_warmup_iters


@dataclass(kw_only=True)
class TrainConfig:
    micro_batch_size: int = 8
    """Sequences per forward pass per rank."""
    global_batch_size: int | None = None
    """Sequences per optimizer step over all ranks; None means micro x ranks (no accumulation)."""
    train_iters: int = 1000
    """Optimizer steps."""
    seed: int = 1234
    bf16: bool = False
    """bf16 autocast (CPU and CUDA)."""
    fp16: bool = False
    """fp16 autocast with a gradient scaler (CUDA)."""
    save: str | None = None
    """Run directory: checkpoints, metrics, plots."""
    load: str | None = None
    """Checkpoint (directory) or run directory to resume from."""
    save_interval: int | None = None
    """Steps between checkpoints; None: only at the end."""
    keep_last: int = 3
    """Checkpoints kept."""
    eval_interval: int = 1000
    """Steps between evaluations on the validation split."""
    eval_iters: int = 100
    """Micro-batches per evaluation."""
    log_interval: int = 100
    """Steps between log lines and metric records."""
    export_hf: bool = True
    """Write a Hugging Face directory (run/hf) at every save."""
    on_nonfinite: str = "stop"
    """What a NaN/inf loss does: stop the run, or skip the step."""
    recompute_activations: bool = False
    """Activation (gradient) checkpointing of every layer."""
    fsdp: bool = False
    """Shard parameters with torch's fully_shard instead of DDP."""
    compile: bool = False
    """torch.compile the training model (the first steps pay the compile time, logged)."""
    device: str | None = None
    """cpu, cuda, cuda:N; None picks cuda when available."""
    distributed_backend: str | None = None
    """gloo or nccl; None picks nccl on CUDA, gloo on CPU."""


@dataclass(kw_only=True)
class RunConfig:
    model: BertConfig = field(default_factory=BertConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        d, o, t = self.data, self.optim, self.train
        if d.binary_head not in ("nsp", "sop", "none"):
            raise ValueError(f"data.binary_head {d.binary_head!r} must be nsp, sop or none")
        if o.optimizer not in OPTIMIZERS:
            raise ValueError(f"optim.optimizer {o.optimizer!r} must be one of {OPTIMIZERS}")
        if o.lr_decay_style not in DECAY_STYLES:
            raise ValueError(f"optim.lr_decay_style {o.lr_decay_style!r} must be one of {DECAY_STYLES}")
        if t.on_nonfinite not in NONFINITE:
            raise ValueError(f"train.on_nonfinite {t.on_nonfinite!r} must be one of {NONFINITE}")
        if t.bf16 and t.fp16:
            raise ValueError("choose one of --bf16 and --fp16")
        for name in ("micro_batch_size", "train_iters", "log_interval", "eval_interval"):
            if getattr(t, name) <= 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(t, name)}")
        if d.seq_length > self.model.max_position_embeddings:
            raise ValueError(f"data.seq_length ({d.seq_length}) exceeds model.max_position_embeddings "
                             f"({self.model.max_position_embeddings})")

    def gradient_accumulation(self, world_size: int) -> int:
        """Micro-batches per rank per step: global / (micro x ranks), which must divide exactly."""
        t = self.train
        global_batch = t.global_batch_size or t.micro_batch_size * world_size
        per_step = t.micro_batch_size * world_size
        if global_batch % per_step:
            raise ValueError(f"--global-batch-size ({global_batch}) must be a multiple of --micro-batch-size "
                             f"({t.micro_batch_size}) x data-parallel ranks ({world_size}) = {per_step}")
        return global_batch // per_step

    # ---- serialisation -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "data": dataclasses.asdict(self.data),
                "optim": dataclasses.asdict(self.optim), "train": dataclasses.asdict(self.train)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls().merged(data)

    def merged(self, data: dict[str, Any]) -> RunConfig:
        """A copy with the fields given in ``data`` ({section: {field: value}}) set; unknown names are errors."""
        unknown = set(data) - {"model", "data", "optim", "train"}
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; use model, data, optim, train")
        parts = {}
        for name in ("data", "optim", "train"):
            section = getattr(self, name)
            values = data.get(name) or {}
            fields = {f.name for f in dataclasses.fields(section)}
            bad = set(values) - fields
            if bad:
                raise ValueError(f"unknown field(s) {sorted(bad)} in config section {name!r}; known: {sorted(fields)}")
            parts[name] = dataclasses.replace(section, **values)
        model_values = data.get("model") or {}
        model = BertConfig.from_dict({**self.model.to_dict(), **model_values}) if model_values else self.model
        return RunConfig(model=model, **parts)

    @classmethod
    def from_yaml(cls, path: str) -> RunConfig:
        return cls().merged_yaml(path)

    def merged_yaml(self, path: str) -> RunConfig:
        """This config with a YAML recipe's fields set over it."""
        with open(path, encoding="utf-8") as fh:
            try:
                data = yaml.safe_load(fh) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping with sections model, data, optim, train")
        try:
            return self.merged(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None
