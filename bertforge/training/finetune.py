"""Fine-tuning with BERT's recipe for the three task families of its paper, on the training engine.

Recipe (the defaults of ``FinetuneConfig``): AdamW, lr 3e-5, weight decay 0.01 off biases and LayerNorm, 10% linear
warm-up then linear decay, gradient clipping 1.0, batch 32, 3 epochs, max length 128 (384 with doc_stride 128 for QA).
One driver (``finetune``) runs every task family (``tasks/families.py``: each reads its files, learns its labels,
makes features and evaluates); the trainer (``trainer.fit``) trains: gradient accumulation (``global_batch_size``),
``torchrun`` data parallelism (DDP or FSDP), bf16 / fp16 with a scaler on CUDA, the non-finite policy, checkpoints
after every epoch (and every ``save_interval`` steps) and exact resume (``resume=True`` / ``--resume``).

Each epoch ends with an evaluation on the validation file; the best epoch by the task metric is written to
``OUTPUT/best`` as a Hugging Face directory (config with id2label/label2id, weights, tokenizer files), LoRA merged in;
metrics go to ``OUTPUT/metrics.jsonl`` (training log lines, and one line per epoch with its evaluation), curves to
``OUTPUT/curves.png``, and the best epoch's validation predictions to ``OUTPUT/predictions_validation.jsonl``. A test
file, when given, is scored once with the best checkpoint.

- ``finetune_classification``: single texts or pairs; single-label, multi-label (sigmoid, one output per label) or
  regression (one output, MSE).
- ``finetune_ner``: CoNLL files (IOB1 converted to IOB2), first sub-word piece labelled, windows between words.
- ``finetune_qa``: SQuAD v1.1 / v2.0 JSON, windows with doc_stride, n-best span search, the null answer for v2.0.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bertforge.adapt import STRATEGIES
from bertforge.adapt.apply import apply_strategy
from bertforge.adapt.freeze import UnfreezeSchedule
from bertforge.auto import load_model
from bertforge.config import DistillConfig, FinetuneConfig
from bertforge.model import BertForQuestionAnswering
from bertforge.model.pretrained import PreTrainedBert
from bertforge.model.surgery import shrink
from bertforge.tasks.base import TaskFamily
from bertforge.tasks.families import FAMILIES
from bertforge.tasks.features import collate
from bertforge.tasks.readers import IN_MEMORY, in_memory
from bertforge.tokenization import BertTokenizer, load_tokenizer
from bertforge.training import distributed as dist_
from bertforge.training.checkpoint import full_state
from bertforge.training.engine import BatchPlan, Job
from bertforge.training.finetune_output import (
    checkpoint_files,
    copy_with_state,
    did_it_learn,
    write_best,
    write_jsonl,
    write_result,
)
from bertforge.training.objectives import DistillObjective, Objective, TaskObjective, check_cosine, load_teacher
from bertforge.training.tracking import FINETUNE_TAGS, check_installed
from bertforge.training.trainer import fit
from bertforge.utils import logger

TASKS = tuple(FAMILIES)
LOWER_IS_BETTER = ("mse",)
"""Validation metrics where a smaller value is the better epoch."""

__all__ = ["FinetuneConfig", "TASKS", "finetune", "finetune_classification", "finetune_ner", "finetune_qa"]


class FeatureStream:
    """Stream position p -> training feature: epoch p // N visits the N features in an order drawn from
    (seed, epoch), so a run resumes from its step alone and any number of ranks reads the same batches."""

    def __init__(self, features: Sequence[dict], seed: int):
        self.features, self.seed = features, seed

    @functools.lru_cache(maxsize=2)
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.features))

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, position: int) -> dict:
        epoch, i = divmod(int(position), len(self.features))
        return self.features[int(self._order(epoch)[i])]


def _start(
    model: Any, cls: type[PreTrainedBert], tokenizer: Any, cfg: FinetuneConfig, **head: Any
) -> tuple[BertTokenizer, PreTrainedBert, PreTrainedBert | None]:
    """(tokenizer, the task model, the teacher or None) from a checkpoint directory or model name, or from a model
    object in memory (any bertforge BERT class: its encoder weights are copied into ``cls`` with the task's head fresh
    where it differs). ``tokenizer``: a BertTokenizer or a directory; by default the checkpoint's, or the directory
    the object was loaded from. With ``distill.teacher`` the teacher is loaded (its labels must be the task's), and
    with ``distill.student_layers`` the model is built from it (``model`` then stays None). A --max-length given must
    fit the model's position table."""
    tok, task_model, teacher = _models(model, cls, tokenizer, cfg.distill, **head)
    length, limit = cfg.task.max_length, task_model.config.max_tokens
    if length is not None and length > limit:
        raise ValueError(
            f"--max-length {length} exceeds the {limit} tokens the model's position table covers "
            f"(max_position_embeddings {task_model.config.max_position_embeddings}); give --max-length {limit} or less"
        )
    return tok, task_model, teacher


def _models(
    model: Any, cls: type[PreTrainedBert], tokenizer: Any, distill: DistillConfig, **head: Any
) -> tuple[BertTokenizer, PreTrainedBert, PreTrainedBert | None]:
    """``_start``'s models, before the length check."""
    if distill.teacher is None:
        return (*_load(model, cls, tokenizer, **head), None)

    teacher = load_teacher(
        distill.teacher, cls, "is not fine-tuned for this task", "fine-tune it first (bertforge finetune)"
    )
    wanted = head.get("num_labels")
    if wanted is not None and teacher.config.num_labels != wanted:
        raise ValueError(
            f"teacher {distill.teacher} has {teacher.config.num_labels} outputs, this task's data {wanted}: "
            "distil on the data the teacher was fine-tuned on"
        )
    names, theirs = head.get("id2label"), teacher.config.id2label
    if names and cls is not BertForQuestionAnswering and not _default_names(theirs) and theirs != names:
        raise ValueError(f"teacher {distill.teacher} labels {theirs}, this task's data {names}; they must match")
    if distill.student_layers is not None:
        if model is not None:
            raise ValueError("give the student as --model or build it with --student-layers, not both")
        tok, student = _load(shrink(teacher, distill.student_layers), cls, tokenizer or distill.teacher, **head)
        return tok, student, teacher
    if model is None:
        raise ValueError("distillation needs a student: --model DIR, or --student-layers K to take it from the teacher")
    return (*_load(model, cls, tokenizer, **head), teacher)


def _default_names(id2label: dict | None) -> bool:
    return not id2label or all(v == f"LABEL_{k}" for k, v in id2label.items())


def _load(model: Any, cls: type[PreTrainedBert], tokenizer: Any, **head: Any) -> tuple[BertTokenizer, PreTrainedBert]:
    """(tokenizer, the task model) of ``_start``, without a teacher."""
    if isinstance(model, PreTrainedBert):
        source = tokenizer if tokenizer is not None else model.name_or_path
        if source is None:
            raise ValueError(
                f"a {type(model).__name__} object built in memory has no tokenizer: pass tokenizer= "
                "(a BertTokenizer or a directory with vocab.txt)"
            )
        tok = source if isinstance(source, BertTokenizer) else load_tokenizer(source)
        if "num_labels" in head and "id2label" not in head:
            head.update(id2label=None, label2id=None)  # labels of another count: named again
        task_model = cls(model.config.replace(**head))
        task_model.load_report = task_model.load_hf_state_dict(
            model.hf_state_dict(), ignore_mismatched_sizes=True, source=f"the {type(model).__name__} object"
        )
        task_model.name_or_path = model.name_or_path
        weight = next(model.parameters())
        return tok, task_model.to(device=weight.device, dtype=weight.dtype)
    tok = tokenizer if isinstance(tokenizer, BertTokenizer) else load_tokenizer(tokenizer or model)
    return tok, cls.from_pretrained(model, ignore_mismatched_sizes=True, **head)


def _base_pointer(model_dir: Any) -> str:
    """How an adapter names its base: an absolute path for a local directory, else the name as given."""
    if isinstance(model_dir, PreTrainedBert):
        model_dir = model_dir.name_or_path or "a model object"
    text = os.fspath(model_dir)
    return os.path.abspath(text) if os.path.isdir(text) else text


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class _Task:
    """What a task function hands the common driver."""

    name: str
    model: PreTrainedBert
    tokenizer: BertTokenizer
    base: str
    """The base model as given (a directory or a name): the adapter's pointer."""
    train_features: list[dict]
    evaluate: Callable[[torch.nn.Module], tuple[dict, list]]
    """model -> (validation metrics, prediction records)."""
    metric: str
    describe: str
    test: Callable[[torch.nn.Module], tuple[dict, list]] | None = None
    token_label_keys: tuple[str, ...] = ()
    label_dtype: torch.dtype = torch.long
    metrics: tuple[str, ...] = ()
    """The names of the validation metrics this task computes (checked against ``metric`` before training)."""
    teacher: PreTrainedBert | None = None
    """Distillation's teacher (``cfg.distill``): the objective becomes ``DistillObjective``."""
    baseline: dict | None = None
    """``{name: validation metrics}`` of the baseline asked for (``--baseline``), reported beside the model."""


def _run(task: _Task, cfg: FinetuneConfig, output_dir: str, show_progress: bool, resume: bool) -> dict:
    t = cfg.train
    with dist_.process_group(t.device, t.distributed_backend) as info:
        return _train(task, cfg, output_dir, show_progress, resume, info)


def _train(
    task: _Task, cfg: FinetuneConfig, output_dir: str, show_progress: bool, resume: bool, info: dist_.DistInfo
) -> dict:
    if not task.train_features:
        raise ValueError("no training examples")
    if task.metrics and task.metric not in task.metrics:
        raise ValueError(
            f"--metric {task.metric!r} is not one this task computes; choose one of {', '.join(task.metrics)}"
        )
    t = cfg.train
    started = time.perf_counter()
    model, tok = task.model, task.tokenizer
    objective = _objective(task, cfg, info)
    trainable = apply_strategy(model, cfg.adapt, tok)
    model.bert.gradient_checkpointing = t.recompute_activations  # type: ignore[union-attr]
    model.to(info.device)
    accumulation = t.gradient_accumulation(info.world_size)
    global_batch = t.micro_batch_size * info.world_size * accumulation
    plan = BatchPlan(
        global_batch, t.micro_batch_size, accumulation, info.rank, info.world_size, epoch_size=len(task.train_features)
    )
    steps_per_epoch = plan.steps_per_epoch or 1
    schedule = UnfreezeSchedule(model, cfg.adapt, steps_per_epoch) if cfg.adapt.unfreeze != "none" else None
    if info.is_main:
        _announce(task, cfg, info, trainable, steps_per_epoch, global_batch, schedule)
    validation: dict[str, list] = {}

    def evaluate(m) -> dict[str, float]:
        scores, validation["records"] = task.evaluate(m)
        return {f"eval_{k}": v for k, v in scores.items()}

    def on_best(m, scores) -> None:
        state, _ = full_state(m)
        if info.is_main:
            write_best(copy_with_state(m, state, cfg.adapt), cfg.adapt, tok, output_dir, task.base)
            write_jsonl(os.path.join(output_dir, "predictions_validation.jsonl"), validation["records"])

    write_checkpoint, load_checkpoint = checkpoint_files(model, tok, cfg.adapt)
    job = Job(
        model=model,
        objective=objective,
        dataset=FeatureStream(task.train_features, t.seed),
        collate=functools.partial(
            collate, pad_token_id=tok.pad_token_id, token_label_keys=task.token_label_keys, label_dtype=task.label_dtype
        ),
        plan=plan,
        steps=steps_per_epoch * cfg.task.epochs,
        optim=cfg.resolved_optim(),
        train=dataclasses.replace(t, save=output_dir, load=output_dir if resume else None),
        info=info,
        run_dir=output_dir,
        config_yaml=cfg.to_yaml(),
        write_checkpoint=write_checkpoint,
        load_checkpoint=load_checkpoint,
        evaluate=evaluate,
        eval_every=steps_per_epoch,
        best_metric=f"eval_{task.metric}",
        best_lower=task.metric in LOWER_IS_BETTER,
        on_best=on_best,
        patience=cfg.task.early_stopping_patience,
        save_at_eval=True,
        desc=f"fine-tune {task.name}" if show_progress else "",
        frozen_at=schedule.frozen_at if schedule is not None else None,
        tracking=cfg.tracking,
        tags=FINETUNE_TAGS,
    )
    trained = fit(job)
    return _result(trained, job, task, cfg, output_dir, info, trainable, started)


def _objective(task: _Task, cfg: FinetuneConfig, info: dist_.DistInfo) -> Objective:
    """The task's own loss, or with a teacher the distillation objective (its checks first)."""
    if task.teacher is None:
        return TaskObjective()
    d = cfg.distill
    if d.student_layers is not None and not STRATEGIES[cfg.adapt.strategy].mergeable:
        raise ValueError(
            f"--strategy {cfg.adapt.strategy} saves an adapter for a base model, and a student taken from the "
            "teacher (--student-layers) exists only in this run: use full, head, freeze or lora"
        )
    check_cosine(d.cosine, task.teacher, task.model)
    if info.is_main:
        logger.info(
            "distilling from %s (%s parameters): temperature %g, alpha %g (soft targets) + %g (labels)",
            d.teacher,
            f"{task.teacher.num_parameters():,}",
            d.temperature,
            d.alpha,
            1 - d.alpha,
        )
    return DistillObjective(task.teacher.to(info.device), d.temperature, d.alpha, d.cosine)


def _announce(task, cfg, info, trainable: int, steps_per_epoch: int, global_batch: int, schedule) -> None:
    if schedule is not None:
        logger.info("gradual unfreezing: %s", schedule.describe())
    logger.info(
        "fine-tuning %s: %d training features, %s trainable parameters (%s), %d steps (%d epochs x %d) of %d on %s, %s",
        task.describe,
        len(task.train_features),
        f"{trainable:,}",
        cfg.adapt.strategy,
        steps_per_epoch * cfg.task.epochs,
        cfg.task.epochs,
        steps_per_epoch,
        global_batch,
        info.device,
        cfg.train.precision,
    )


def _result(trained, job: Job, task: _Task, cfg, output_dir: str, info, trainable: int, started: float) -> dict:
    """The run's result: the best evaluation, and (a finished run) the test scores, warnings, finetune_result.json."""
    best = trained.best or {}
    result: dict[str, Any] = {
        "best_epoch": round(best.get("epoch", 0)),
        **{k.removeprefix("eval_"): v for k, v in best.items() if k.startswith("eval_")},
        "trainable_parameters": trainable,
        "train_seconds": round(trained.train_seconds, 2),
    }
    if task.baseline:
        result["baseline"] = task.baseline
    if trained.step < job.steps and not trained.stopped_early:
        result["stopped_at_step"] = trained.step  # exit_interval: resume with resume=True / --resume
        return result
    if info.is_main:
        result["total_seconds"] = round(time.perf_counter() - started, 2)
        warnings: list[str] = did_it_learn(output_dir, cfg)
        for text in warnings:
            logger.warning("%s", text)
        if warnings:
            result["warnings"] = warnings
        _finish(result, cfg, output_dir, task, info)
    return result


def _finish(result: dict, cfg: FinetuneConfig, output_dir: str, task: _Task, info: dist_.DistInfo) -> None:
    """Score the test data once with the best checkpoint when there is one, and write finetune_result.json."""
    if task.test is not None:
        best = load_model(os.path.join(output_dir, "best"), type(task.model)).to(info.device)  # adapters too
        scores, records = task.test(best)
        write_jsonl(os.path.join(output_dir, "predictions_test.jsonl"), records)
        result.update({f"test_{k}": v for k, v in scores.items()})
    write_result(output_dir, task.name, result, cfg)


def _held_out(
    items: list,
    validation_file: str | None,
    read: Callable[[str], list],
    cfg: FinetuneConfig,
    train_file: Any,
    group: Callable[[Any], Any],
) -> tuple[list, list, str]:
    """(training items, validation items, the validation data's name): the validation file when there is one, else
    ``validation_split`` of the training groups (a row, a sentence, an article) drawn with the run's seed."""
    fraction = cfg.task.validation_split
    if validation_file is not None:
        if fraction is not None:
            raise ValueError("give a validation file or --validation-split, not both")
        return items, read(validation_file), _name(validation_file)
    if fraction is None:
        raise ValueError("no validation data: give a validation file (--validation) or --validation-split 0.1")
    groups = list(dict.fromkeys(group(x) for x in items))
    n_valid = max(1, round(fraction * len(groups)))
    if n_valid >= len(groups):
        raise ValueError(f"--validation-split {fraction} of {len(groups)} training groups leaves no training data")
    order = np.random.default_rng([cfg.train.seed, 0x5B11]).permutation(len(groups))
    held = {groups[i] for i in order[:n_valid]}
    return (
        [x for x in items if group(x) not in held],
        [x for x in items if group(x) in held],
        f"{train_file} (held out: {fraction:g} of {len(groups)})",
    )


def _name(source: Any) -> str:
    """How messages name training data: its path, or "rows in memory" for a list, DataFrame or Dataset."""
    return IN_MEMORY if in_memory(source) else str(source)


def _config(cfg: FinetuneConfig | None, task_options: dict[str, Any]) -> FinetuneConfig:
    cfg = cfg or FinetuneConfig()
    if task_options:
        cfg = cfg.merged({"task": task_options})
    return cfg


def finetune(
    task: str,
    model_dir: Any,
    train_file: Any,
    validation_file: Any,
    output_dir: str,
    *,
    tokenizer: Any = None,
    test_file: str | None = None,
    cfg: FinetuneConfig | None = None,
    show_progress: bool = True,
    resume: bool = False,
    **task_options: Any,
) -> dict:
    """Fine-tune a BERT checkpoint for ``task`` (classification, ner or qa: a family of ``tasks/families.py``);
    returns the best epoch's validation metrics (and the test file's, prefixed ``test_``, when one is given).
    ``task_options`` set fields of ``cfg.task`` (``TaskConfig``)."""
    if task not in FAMILIES:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    cfg = _config(cfg, task_options)
    check_installed(cfg.tracking)
    family = FAMILIES[task](cfg.task, cfg.train.use_bf16)
    _seed(cfg.train.seed)
    items, train_name = family.read(train_file), _name(train_file)
    if not items:
        raise ValueError(f"{train_name} holds no {family.unit}")
    train, valid, valid_name = _held_out(items, validation_file, family.read, cfg, train_name, family.group)
    train, valid = train[: cfg.task.max_train_examples or None], valid[: cfg.task.max_eval_examples or None]
    head = family.prepare(train, valid, train_name, valid_name)
    test_items = family.read(test_file) if test_file is not None else None  # read once, before training: fails early
    baseline = _baseline(family, cfg.task.baseline, train, valid, valid_name, test_items, test_file)
    tok, model, teacher = _start(model_dir, family.model_class, tokenizer, cfg, **head)
    base = _base_pointer(model_dir if model_dir is not None else cfg.distill.teacher)
    valid_features = family.features(tok, valid)  # encoded once, evaluated every epoch

    def test(best) -> tuple[dict, list]:
        assert test_items is not None
        return family.evaluate(best, tok, test_items, family.features(tok, test_items), str(test_file))

    job = _Task(
        family.name,
        model,
        tok,
        base,
        family.features(tok, train, train=True),
        lambda m: family.evaluate(m, tok, valid, valid_features, valid_name),
        cfg.task.metric or family.default_metric,
        family.describe(base),
        test if test_file else None,
        token_label_keys=family.label_keys,
        label_dtype=family.label_dtype,
        metrics=family.metric_names(),
        teacher=teacher,
        baseline=baseline,
    )
    return _run(job, cfg, output_dir, show_progress, resume)


def _baseline(
    family: TaskFamily, name: str | None, train: list, valid: list, valid_name: str, test: list | None, test_file
) -> dict | None:
    """``{name: metrics}`` of the baseline asked for (``--baseline``), fitted on the same training rows, scored on the
    validation rows (and ``test_``-prefixed, on the test file's); logged."""
    if name is None:
        return None
    scores = family.baseline(name, train, valid, valid_name)
    if test is not None:
        scores.update({f"test_{k}": v for k, v in family.baseline(name, train, test, str(test_file)).items()})
    logger.info("baseline %s on the validation data: %s", name, ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return {name: scores}


def finetune_classification(model_dir: Any, train_file: Any, validation_file: Any, output_dir: str, **kw: Any) -> dict:
    """Sequence classification from CSV / TSV / JSON-lines / Parquet rows or rows in memory: single texts or pairs;
    single-label, multi-label (``multi_label``: any number of labels per row, a JSON list or a string split on
    ``label_separator``; one sigmoid output per label, predicted above 0.5) or regression (``regression``: numeric
    labels, MSE). Task options: text_column, text_pair_column, label_column, no_header, label_names, metric."""
    return finetune("classification", model_dir, train_file, validation_file, output_dir, **kw)


def finetune_ner(model_dir: Any, train_file: Any, validation_file: Any, output_dir: str, **kw: Any) -> dict:
    """Token classification on CoNLL column files (IOB1 / IOBES read as IOB2); entity-level precision / recall / F1 on
    whole words. Task options: scheme, stride, metric."""
    return finetune("ner", model_dir, train_file, validation_file, output_dir, **kw)


def finetune_qa(model_dir: Any, train_file: Any, validation_file: Any, output_dir: str, **kw: Any) -> dict:
    """Extractive QA on SQuAD-style JSON; EM and F1 with SQuAD's official normalisation. Task options: version_2
    (allow the null answer; None: when the training file has unanswerable questions), stride (doc_stride),
    max_query_length, n_best, max_answer_length, null_threshold, metric."""
    return finetune("qa", model_dir, train_file, validation_file, output_dir, **kw)
