"""What a training job computes on a micro-batch: the objectives, each a forward pass with its loss and the metric
slots it logs, never a loop (the loop is ``engine.py``'s).

- ``MLMObjective``: BERT's masked language modelling with the NSP / SOP head (or MLM only).
- ``CLMObjective``: next-token prediction with causal attention (GPT's objective on the same blocks).
- ``TaskObjective``: a fine-tuning head's own loss.
- ``DistillObjective``: the fine-tuning objective of ``bertforge distill``: alpha x the soft-target loss (the
  teacher's outputs at temperature T, scaled by T^2 as in Hinton et al. 2015) + (1 - alpha) x the head's own loss on
  the labels. The soft loss per head: KL divergence of the class distributions (sequence classification), of each
  labelled token's tag distribution (NER), of the start and the end distributions over the real tokens (QA); mean
  squared error for regression, and binary cross-entropy against the teacher's probabilities for multi-label heads.
  ``cosine`` adds DistilBERT's cosine loss between the student's and the teacher's last hidden states.
- ``MLMDistillObjective``: DistilBERT's pretraining loss on a corpus (``bertforge pretrain --teacher``): alpha x soft
  MLM targets at the masked positions + (1 - alpha) x MLM on the labels + cosine x (1 - cos) of the last hidden
  states on every real token.
- ``load_teacher``: the one distillation set-up of pretraining and fine-tuning: the teacher checkpoint, refused when it
  lacks the head the objective reads, and the student cut from it (``model/surgery.py``) when asked.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.model.heads import next_token_targets
from bertforge.model.pretrained import PreTrainedBert


class Objective:
    """What a job computes on a micro-batch. Subclasses override ``forward`` (must return an output with ``.loss``),
    and may add metric slots (``n_stats``) filled by ``accumulate`` and read by ``summarize``."""

    n_stats = 0

    def forward(self, model: nn.Module, batch: dict) -> Any:
        raise NotImplementedError

    def accumulate(self, stats: torch.Tensor, out: Any, batch: dict) -> None:
        """Add this micro-batch's metrics into ``stats`` (this objective's slots, on the device; no host sync)."""

    def summarize(self, sums: list[float], micro_batches: float) -> dict[str, float]:
        """Log fields from the slots summed over ranks and steps since the last log line."""
        return {}

    def tokens(self, batch: dict) -> torch.Tensor | int:
        """Real tokens in a batch (for tokens/s)."""
        return batch["input_ids"].numel() if "cu_seqlens" in batch else batch["attention_mask"].sum()


def model_inputs(batch: dict, masked_lm: bool = True) -> dict:
    """The model's keyword arguments of a padded or a packed (cu_seqlens) batch, labels left out (``mlm_positions``
    kept for masked LM): what every objective, and a distillation teacher, feeds the model."""
    keys = ("cu_seqlens", "max_seqlen", "position_ids") if "cu_seqlens" in batch else ("attention_mask",)
    keys += ("mlm_positions",) if masked_lm else ()
    return {k: batch[k] for k in ("input_ids", "token_type_ids", *keys)}


def mlm_logits_labels(out, batch):
    logits = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits
    labels = batch["labels"].flatten().index_select(0, batch["mlm_positions"])
    return logits, labels


class MLMObjective(Objective):
    """Masked language modelling with the NSP/SOP head (or MLM only): BERT's pretraining loss and its metrics."""

    # slots: mlm loss x micro, binary loss x micro, mlm correct, mlm count, binary correct, binary count
    n_stats = 6

    def __init__(self, binary_head: str):
        self.binary_head = binary_head

    def forward(self, model, batch: dict):
        extra = (
            {"next_sentence_label": batch["next_sentence_label"]}
            if "next_sentence_label" in batch and self.binary_head != "none"
            else {}
        )
        return model(**model_inputs(batch), labels=batch["labels"], **extra)

    def accumulate(self, stats: torch.Tensor, out, batch: dict) -> None:
        logits, labels = mlm_logits_labels(out, batch)
        stats[0] += (out.mlm_loss if hasattr(out, "mlm_loss") else out.loss).detach().float()
        stats[2] += (logits.argmax(-1) == labels).sum()
        stats[3] += labels.numel()
        if getattr(out, "binary_loss", None) is not None:
            stats[1] += out.binary_loss.detach().float()
            stats[4] += (out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum()
            stats[5] += batch["next_sentence_label"].numel()

    def summarize(self, s: list[float], micro_batches: float) -> dict[str, float]:
        record = {"mlm_loss": s[0] / micro_batches, "mlm_accuracy": s[2] / max(s[3], 1.0)}
        if s[5] > 0:
            record["binary_loss"] = s[1] / micro_batches
            record["binary_accuracy"] = s[4] / s[5]
        return record


class CLMObjective(Objective):
    """Next-token prediction with causal attention (GPT's objective): the loss and accuracy over every position that
    has a next token in its sequence."""

    # slots: loss x micro, correct, count
    n_stats = 3

    def forward(self, model, batch: dict):
        return model(**model_inputs(batch, masked_lm=False), labels=batch["labels"])

    def accumulate(self, stats: torch.Tensor, out, batch: dict) -> None:
        logits, targets = next_token_targets(out.logits, batch["labels"], batch.get("cu_seqlens"))
        real = targets != IGNORE_INDEX
        stats[0] += out.loss.detach().float()
        stats[1] += (logits.argmax(-1) == targets)[real].sum()
        stats[2] += real.sum()

    def summarize(self, s: list[float], micro_batches: float) -> dict[str, float]:
        return {"clm_loss": s[0] / micro_batches, "next_token_accuracy": s[1] / max(s[2], 1.0)}


class TaskObjective(Objective):
    """A fine-tuning head's own loss (``model(**batch).loss``): CE, BCE, MSE, token CE or span CE."""

    def forward(self, model, batch: dict):
        return model(**batch)


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


def check_cosine(cosine: float, teacher: PreTrainedBert, student: PreTrainedBert) -> None:
    """DistilBERT's cosine loss compares the two last hidden states: they must have the same width."""
    wide, narrow = teacher.config.hidden_size, student.config.hidden_size
    if cosine and wide != narrow:
        raise ValueError(
            f"--cosine compares hidden states: the teacher's width is {wide}, the student's {narrow} "
            f"(use --student-layers, or a student of width {wide})"
        )


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
            teacher_out = self.teacher(**model_inputs(batch, masked_lm=False), **hidden)
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
        super().__init__(teacher, temperature, alpha, cosine)
        self.mlm = MLMObjective("none")
        self.n_stats = self.mlm.n_stats + 3

    def forward(self, model, batch: dict):
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
