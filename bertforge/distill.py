"""Knowledge distillation: a smaller student trained on a teacher's outputs.

- ``shrink(teacher, layers)``: a student of the teacher's class with K of its layers (evenly spaced from the first:
  half the depth is every other layer, as DistilBERT was initialised), its embeddings and its head.
- ``DistillObjective``: the fine-tuning objective of ``bertforge distill``: alpha x the soft-target loss (the
  teacher's outputs at temperature T, scaled by T^2 as in Hinton et al. 2015) + (1 - alpha) x the head's own loss on
  the labels. The soft loss per head: KL divergence of the class distributions (sequence classification), of each
  labelled token's tag distribution (NER), of the start and the end distributions over the real tokens (QA); mean
  squared error for regression, and binary cross-entropy against the teacher's probabilities for multi-label heads.
  ``cosine`` adds DistilBERT's cosine loss between the student's and the teacher's last hidden states.
- ``MLMDistillObjective``: DistilBERT's pretraining loss on a corpus (``bertforge pretrain --teacher``): alpha x soft
  MLM targets at the masked positions + (1 - alpha) x MLM on the labels + cosine x (1 - cos) of the last hidden
  states on every real token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from bertforge.constants import IGNORE_INDEX
from bertforge.model.pretrained import PreTrainedBert
from bertforge.training.engine import Objective
from bertforge.utils import logger

LABEL_KEYS = ("labels", "start_positions", "end_positions", "next_sentence_label")


def layers_to_keep(total: int, keep: int) -> list[int]:
    """``keep`` layer indices of ``total``, evenly spaced from the first: 6 -> 3 is [0, 2, 4], 6 -> 2 is [0, 3]."""
    if not 1 <= keep <= total:
        raise ValueError(f"a student of {keep} layers cannot be taken from a teacher of {total}")
    return [i * total // keep for i in range(keep)]


def shrink(teacher: PreTrainedBert, layers: int | Sequence[int]) -> PreTrainedBert:
    """A student of the teacher's class with the teacher's layers ``layers`` (a count, or the indices), its
    embeddings, pooler and head copied; the teacher is not changed."""
    total = teacher.config.num_hidden_layers
    keep = layers_to_keep(total, layers) if isinstance(layers, int) else list(layers)
    if not keep or any(not 0 <= i < total for i in keep):
        raise ValueError(f"student layers {keep} must be indices of the teacher's {total} layers")
    student = type(teacher)(teacher.config.replace(num_hidden_layers=len(keep)))
    renumber = {f"bert.layers.{old}.": f"bert.layers.{new}." for new, old in enumerate(keep)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        if name.startswith("bert.layers."):
            prefix = ".".join(name.split(".")[:3]) + "."
            if prefix not in renumber:
                continue
            name = renumber[prefix] + name[len(prefix) :]
        state[name] = tensor.clone()
    student.load_state_dict(state)
    student.name_or_path = teacher.name_or_path
    logger.info("student: %d of the teacher's %d layers (%s)", len(keep), total, ", ".join(map(str, keep)))
    return student


def _inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in LABEL_KEYS}


def cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, batch: dict) -> torch.Tensor:
    """Mean (1 - cosine similarity) of the two last hidden states over the real tokens (all of a packed batch)."""
    mask = batch.get("attention_mask")
    s, t = student_hidden.float(), teacher_hidden.float()
    if mask is not None and s.dim() == 3:
        s, t = s[mask.bool()], t[mask.bool()]
    return (1.0 - F.cosine_similarity(s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1]), dim=-1)).mean()


def load_teacher(path: str, cls: type[PreTrainedBert], lacking: str, advice: str) -> PreTrainedBert:
    """A teacher checkpoint as ``cls``, refused in one line (``lacking``, the missing weights, ``advice``) when it lacks
    the head the objective reads."""
    teacher = cls.from_pretrained(path)
    if teacher.load_report is not None and teacher.load_report.missing:
        raise ValueError(f"teacher {path} {lacking} ({', '.join(teacher.load_report.missing)} missing): {advice}")
    return teacher


def soft_loss(student_out: Any, teacher_out: Any, batch: dict, temperature: float, problem: str | None) -> torch.Tensor:
    """The soft-target loss of one batch for the head whose outputs these are (see the module notes)."""
    T = temperature
    if hasattr(student_out, "start_logits"):  # QA: start and end distributions over the real tokens
        mask = batch.get("attention_mask")
        losses = []
        for key in ("start_logits", "end_logits"):
            s, t = getattr(student_out, key).float(), getattr(teacher_out, key).float()
            if mask is not None:
                s = s.masked_fill(mask == 0, torch.finfo(s.dtype).min)
                t = t.masked_fill(mask == 0, torch.finfo(t.dtype).min)
            losses.append(_kl(s, t, T))
        return sum(losses) / 2  # type: ignore[return-value]
    s, t = student_out.logits.float(), teacher_out.logits.float()
    if s.dim() == 3:  # token classification: the labelled tokens (each word's first piece)
        keep = batch["labels"] != IGNORE_INDEX if "labels" in batch else batch["attention_mask"].bool()
        return _kl(s[keep], t[keep], T)
    if problem == "regression" or s.shape[-1] == 1:
        return F.mse_loss(s, t)
    if problem == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(s / T, torch.sigmoid(t / T)) * T * T
    return _kl(s, t, T)


def _kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """KL(teacher || student) of the rows' distributions at temperature T, averaged over rows, times T^2."""
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    log_s = F.log_softmax(student_logits / T, dim=-1)
    log_t = F.log_softmax(teacher_logits / T, dim=-1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * T * T


class DistillObjective(Objective):
    """alpha x soft-target loss + (1 - alpha) x the head's loss on the labels; logs the soft loss as ``distill``."""

    n_stats = 2

    def __init__(self, teacher: PreTrainedBert, temperature: float = 2.0, alpha: float = 0.5, cosine: float = 0.0):
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.temperature, self.alpha, self.cosine = temperature, alpha, cosine

    def forward(self, model, batch: dict):
        hidden = {"output_hidden_states": True} if self.cosine else {}
        out = model(**batch, **hidden)
        with torch.no_grad():
            teacher_out = self.teacher(**_inputs(batch), **hidden)
        problem = getattr(model, "config", None) and model.config.problem_type
        soft = soft_loss(out, teacher_out, batch, self.temperature, problem)
        loss = self.alpha * soft + (1 - self.alpha) * out.loss if out.loss is not None else soft
        if self.cosine:
            loss = loss + self.cosine * cosine_loss(out.hidden_states[-1], teacher_out.hidden_states[-1], batch)
        self._soft = soft.detach()
        return dataclasses.replace(out, loss=loss)

    def accumulate(self, stats: torch.Tensor, out: Any, batch: dict) -> None:
        stats[0] += self._soft.to(stats.dtype)
        stats[1] += 1

    def summarize(self, sums: list[float], micro_batches: float) -> dict[str, float]:
        return {"distill": sums[0] / max(sums[1], 1.0)}


class MLMDistillObjective(DistillObjective):
    """DistilBERT's pretraining loss (see the module notes), with the MLM metrics of ``MLMObjective`` and the soft and
    cosine losses logged as ``distill`` and ``cosine``."""

    def __init__(self, teacher: PreTrainedBert, temperature: float = 2.0, alpha: float = 0.5, cosine: float = 0.0):
        from bertforge.training.pretrain import MLMObjective

        super().__init__(teacher, temperature, alpha, cosine)
        self.mlm = MLMObjective("none")
        self.n_stats = self.mlm.n_stats + 3

    def forward(self, model, batch: dict):
        from bertforge.training.pretrain import _inputs as model_inputs

        inputs = model_inputs(batch)
        hidden = {"output_hidden_states": True} if self.cosine else {}
        out = model(**inputs, labels=batch["labels"], **hidden)
        with torch.no_grad():
            teacher_out = self.teacher(**inputs, **hidden)
        soft = _kl(out.logits.float(), teacher_out.logits.float(), self.temperature)  # the masked positions
        loss = self.alpha * soft + (1 - self.alpha) * out.loss
        cos = torch.zeros((), device=soft.device)
        if self.cosine:
            cos = cosine_loss(out.hidden_states[-1], teacher_out.hidden_states[-1], batch)
            loss = loss + self.cosine * cos
        self._parts = (soft.detach(), cos.detach())
        return _WithMLMLoss(out, loss)

    def accumulate(self, stats: torch.Tensor, out: Any, batch: dict) -> None:
        n = self.mlm.n_stats
        self.mlm.accumulate(stats[:n], out, batch)
        stats[n] += self._parts[0].to(stats.dtype)
        stats[n + 1] += self._parts[1].to(stats.dtype)
        stats[n + 2] += 1

    def summarize(self, sums: list[float], micro_batches: float) -> dict[str, float]:
        n = self.mlm.n_stats
        record = self.mlm.summarize(sums[:n], micro_batches)
        record["distill"] = sums[n] / max(sums[n + 2], 1.0)
        if self.cosine:
            record["cosine"] = sums[n + 1] / max(sums[n + 2], 1.0)
        return record

    def tokens(self, batch: dict):
        return self.mlm.tokens(batch)


@dataclasses.dataclass
class _WithMLMLoss:
    """A masked-LM output whose ``loss`` is the distillation loss, keeping the MLM loss for the metrics."""

    out: Any
    loss: torch.Tensor

    @property
    def mlm_loss(self) -> torch.Tensor:
        return self.out.loss

    @property
    def logits(self) -> torch.Tensor:
        return self.out.logits
