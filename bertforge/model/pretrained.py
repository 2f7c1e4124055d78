"""Loading and saving Hugging Face style checkpoint directories: ``from_pretrained`` / ``save_pretrained``.

A directory holds ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``, or sharded files with an
``*.index.json``). Names are translated by ``convert.py``; this module only moves tensors and reports what happened.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from bertforge.model import convert
from bertforge.model.config import BertConfig
from bertforge.utils import atomic_path, logger

WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
HEAD_PREFIXES = ("mlm.", "binary_head.", "head_dense.", "classifier.", "qa_outputs.", "rtd_dense.", "rtd_prediction.")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
ADAPTER_FILE = "adapter_model.safetensors"
"""The weights of a fine-tuning strategy's artefact (``bertforge.adapt.artefact``), named here only to say so."""


@dataclass
class LoadReport:
    """What ``from_pretrained`` did with a checkpoint's tensors, in Hugging Face names."""

    missing: list[str] = field(default_factory=list)
    """bertforge parameters the checkpoint did not have: newly initialized."""
    unexpected: list[str] = field(default_factory=list)
    """Checkpoint tensors that the class does not use (e.g. an MLM head when loading a classifier)."""
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    """(name, checkpoint shape, model shape) re-initialized because of ``ignore_mismatched_sizes``."""


class PreTrainedBert(nn.Module):
    """Base of BertModel and every head: config holder, ``from_pretrained`` and ``save_pretrained``."""

    config: BertConfig

    def __init__(self, config: BertConfig):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"{type(self).__name__} takes a BertConfig, got {type(config).__name__}")
        self.config = config
        self.load_report: LoadReport | None = None
        self.name_or_path: str | None = None
        """The directory (or name) the model was loaded from, as in transformers; None for a model built here."""

    @property
    def architecture(self) -> str:
        """This model's bertforge class name (FSDP puts the model in a subclass of its own, FSDPBertForMaskedLM)."""
        return next(c.__name__ for c in type(self).__mro__ if c.__module__.startswith("bertforge."))

    @property
    def backbone_prefix(self) -> str:
        """'' for BertModel itself, 'bert.' for head classes."""
        return "" if hasattr(self, "embeddings") else "bert."

    def num_parameters(self, trainable_only: bool = False, *, only_trainable: bool = False) -> int:
        """Number of distinct parameters (tied weights counted once); ``only_trainable`` is transformers' name."""
        trainable_only = trainable_only or only_trainable
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---- loading -------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        config: BertConfig | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        ignore_mismatched_sizes: bool = False,
        **config_overrides,
    ):
        """Load a Hugging Face BERT directory (ours or transformers') into this class.

        Checkpoints with or without the ``bert.`` prefix and with or without heads are accepted; weights the class
        has but the checkpoint lacks are newly initialized, and both those and unused checkpoint tensors are logged
        as a warning (and kept in ``model.load_report``). ``config_overrides`` change config fields (for instance
        ``num_labels=3`` or ``id2label=...`` for a fresh classifier); keywords the class's constructor takes (such
        as ``add_pooling_layer``) go to the constructor. ``dtype`` (e.g. ``torch.bfloat16`` for inference) and
        ``device`` move the loaded model.
        """
        from bertforge.hub import resolve_model

        path = resolve_model(path)
        if not os.path.exists(os.path.join(path, "config.json")) and os.path.exists(os.path.join(path, ADAPTER_FILE)):
            raise ValueError(
                f"{path} is a fine-tuning strategy's artefact (an adapter and a pointer to its base model), not a "
                "checkpoint: load it with bertforge.load_model(path), which puts it on its base"
            )
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"{path} is not a directory; from_pretrained takes a checkpoint directory with "
                "config.json and model.safetensors"
            )
        init_params = inspect.signature(cls.__init__).parameters
        init_kwargs = {k: config_overrides.pop(k) for k in list(config_overrides) if k in init_params and k != "config"}
        if config is None:
            config = BertConfig.from_pretrained(path, **config_overrides)
        elif config_overrides:
            config = config.replace(**config_overrides)
        model = cls(config, **init_kwargs)
        state = load_state_dict(path)
        model.load_report = model.load_hf_state_dict(
            state, ignore_mismatched_sizes=ignore_mismatched_sizes, source=path
        )
        model.name_or_path = path
        if dtype is not None or device is not None:
            model.to(device=device, dtype=dtype)
        return model.eval()

    def load_hf_state_dict(
        self, state: dict[str, torch.Tensor], ignore_mismatched_sizes: bool = False, source: str = "checkpoint"
    ) -> LoadReport:
        """Copy a Hugging Face-named state dict into this model; returns (and logs) what was missing or unused."""
        model_type = self.config.model_type
        converted, unused = convert.hf_to_ours(state, model_type, self.config.inner_group_num)
        self._check_layout(converted, source)
        prefix = self.backbone_prefix
        adapted: dict[str, torch.Tensor] = {}
        origin: dict[str, str] = {}  # our name -> the checkpoint's (Hugging Face) name, for the report
        for name, tensor in converted.items():
            has_prefix = name.startswith("bert.")
            if has_prefix or not name.startswith(HEAD_PREFIXES):
                target = prefix + (name[5:] if has_prefix else name)
            elif prefix:
                target = name
            else:
                unused.append(self._hf_name(name, converted))  # a head tensor offered to a bare BertModel
                continue
            adapted[target] = tensor
            origin[target] = self._hf_name(name, converted)
        own = self.state_dict()
        tied = self._tied_names()
        report = LoadReport()
        with torch.no_grad():
            for name, tensor in adapted.items():
                if name not in own:
                    report.unexpected.append(origin[name])
                    continue
                if tuple(own[name].shape) != tuple(tensor.shape):
                    if ignore_mismatched_sizes and not self._in_encoder(name):
                        report.mismatched.append((origin[name], tuple(tensor.shape), tuple(own[name].shape)))
                        continue
                    hint = (
                        "config.json must describe these weights"
                        if self._in_encoder(name)
                        else "check the config, or pass ignore_mismatched_sizes=True to re-initialize it"
                    )
                    raise ValueError(
                        f"{source}: tensor {origin[name]} (bertforge {name}) has shape {tuple(tensor.shape)} in the "
                        f"checkpoint but {tuple(own[name].shape)} in {type(self).__name__}; {hint}"
                    )
                own[name].copy_(tensor.to(own[name].dtype))
        mismatched = {m[0] for m in report.mismatched}
        report.unexpected = sorted(set(report.unexpected) | set(unused))
        absent_ours = [n for n in own if n not in adapted and n not in tied]
        self._refuse_encoder_disagreement(
            source,
            missing=[self._hf_name(n, own) for n in absent_ours if self._in_encoder(n)],
            unexpected=[origin[n] for n in adapted if n not in own and self._in_encoder(n)],
        )
        absent = (self._hf_name(n, own) for n in absent_ours)
        report.missing = sorted(name for name in absent if name not in mismatched)
        if report.missing:
            logger.warning(
                "Some weights of %s were not in %s and are newly initialized: %s",
                type(self).__name__,
                source,
                report.missing,
            )
        if report.unexpected:
            logger.warning("Some weights of %s were not used by %s: %s", source, type(self).__name__, report.unexpected)
        if report.mismatched:
            logger.warning(
                "Some weights of %s had other shapes in %s and are newly initialized: %s",
                type(self).__name__,
                source,
                report.mismatched,
            )
        return report

    def _check_layout(self, converted: dict[str, torch.Tensor], source: str) -> None:
        """Warn when the position table contradicts ``model_type``: RoBERTa's row at its padding id is never read and
        zero in its checkpoints, while BERT reads that row for its second token (BERT weights run as RoBERTa see
        every position shifted by two, and RoBERTa weights run as BERT read a zero vector)."""
        table = converted.get("embeddings.position.weight", converted.get("bert.embeddings.position.weight"))
        pad = self.config.pad_token_id
        if table is None or table.dim() != 2 or self.config.sinusoidal_pos_embds or not 0 < pad < table.shape[0]:
            return
        zero_row = bool((table[pad] == 0).all())
        roberta = self.config.model_type == "roberta"
        if roberta and not zero_row:
            logger.warning(
                "%s: config.json says model_type roberta, but row %d of the position table (RoBERTa's padding "
                "position, zero in RoBERTa checkpoints) holds trained values: these look like BERT weights, whose "
                "positions start at 0; RoBERTa's offset shifts every position by %d. Set model_type to bert if so",
                source,
                pad,
                pad + 1,
            )
        elif not roberta and zero_row and self.config.model_type == "bert":
            logger.warning(
                "%s: config.json says model_type bert, but row %d of the position table is all zeros, as RoBERTa "
                "checkpoints have it (their padding position); BERT reads that row for the second token. Set "
                "model_type to roberta if these are RoBERTa weights",
                source,
                pad,
            )

    def _in_encoder(self, name: str) -> bool:
        """Whether a (bertforge) state-dict name belongs to the encoder itself: embeddings and layers, not the pooler
        or a head, which alone may start from fresh weights."""
        return name.startswith((self.backbone_prefix + "embeddings.", self.backbone_prefix + "layers."))

    def _refuse_encoder_disagreement(self, source: str, missing: list[str], unexpected: list[str]) -> None:
        """A checkpoint whose encoder tensors do not match the config (a layer count or size missing from
        config.json, say) would load as a partly random model: that is an error, not a warning."""
        if not missing and not unexpected:
            return
        parts = []
        if missing:
            parts.append(f"{len(missing)} encoder tensor(s) the config needs are missing ({', '.join(missing[:3])})")
        if unexpected:
            parts.append(
                f"{len(unexpected)} encoder tensor(s) the config has no place for ({', '.join(unexpected[:3])})"
            )
        raise ValueError(
            f"{source}: the weights and config.json disagree on the encoder: {'; '.join(parts)}; "
            f"config.json says {self.config.num_hidden_layers} layers of width {self.config.hidden_size}: "
            "fix config.json (num_hidden_layers, hidden_size, ...) to describe these weights"
        )

    def _hf_name(self, name: str, context=None) -> str:
        """The Hugging Face name of one bertforge parameter (of a model whose names are ``context``), for messages."""
        try:
            names = convert.ours_to_hf(
                {name: torch.empty(3)},
                tied=False,
                model_type=self.config.model_type,
                context=context,
                inner_group_num=self.config.inner_group_num,
            )
        except KeyError:
            return name
        return ", ".join(names)

    def _tied_names(self) -> set[str]:
        """State-dict names that alias another parameter (the tied MLM decoder)."""
        return {"mlm.decoder.weight"} if self.config.tie_word_embeddings and hasattr(self, "mlm") else set()

    # ---- saving --------------------------------------------------------------------------------------------------
    def hf_state_dict(self, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """This model's weights (or ``state_dict``, e.g. gathered from shards) under Hugging Face names."""
        own = {k: v.detach() for k, v in (state_dict if state_dict is not None else self.state_dict()).items()}
        return convert.ours_to_hf(
            own,
            tied=self.config.tie_word_embeddings,
            model_type=self.config.model_type,
            architecture=self.architecture,
            inner_group_num=self.config.inner_group_num,
        )

    def save_pretrained(
        self,
        directory: str | os.PathLike,
        safe_serialization: bool = True,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Write config.json (with ``architectures``) and model.safetensors that transformers loads as is.

        ``state_dict`` replaces the module's own tensors (for a model whose parameters are sharded).

        Each file is written to a temporary name and renamed, so a crash leaves the previous files intact.
        """
        from safetensors.torch import save_file

        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        tensors = {k: v.contiguous().cpu() for k, v in self.hf_state_dict(state_dict).items()}
        if safe_serialization:
            with atomic_path(os.path.join(directory, "model.safetensors")) as tmp:
                save_file(tensors, tmp, metadata={"format": "pt"})
            stale = os.path.join(directory, "pytorch_model.bin")
        else:
            with atomic_path(os.path.join(directory, "pytorch_model.bin")) as tmp:
                torch.save(tensors, tmp)
            stale = os.path.join(directory, "model.safetensors")
        if os.path.exists(stale):
            os.remove(stale)  # never leave weights of an older save beside the new ones
        config = self.config.replace(architectures=[convert.hf_architecture(self.architecture, self.config.model_type)])
        config.save_pretrained(directory)


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory: safetensors preferred, then pytorch_model.bin, then sharded files."""
    for name in WEIGHTS_FILES:
        file = os.path.join(path, name)
        if os.path.exists(file):
            return _load_file(file)
    for name in INDEX_FILES:
        index = os.path.join(path, name)
        if os.path.exists(index):
            with open(index, encoding="utf-8") as fh:
                shards = sorted(set(json.load(fh)["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(_load_file(os.path.join(path, shard)))
            return state
    raise FileNotFoundError(f"{path} holds no weights: expected one of {', '.join(WEIGHTS_FILES + INDEX_FILES)}")


def _load_file(file: str) -> dict[str, torch.Tensor]:
    if file.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(file, device="cpu")
        except Exception as e:  # safetensors raises its own error types for truncated or corrupt headers
            raise ValueError(f"{file}: not a readable safetensors file ({e})") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{file}: not a readable PyTorch weights file ({e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{file}: expected a dict of tensors, found {type(state).__name__}")
    return state
