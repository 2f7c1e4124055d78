"""Fine-tuning with BERT's recipe for the three task families of its paper, on the training engine.

Recipe (the defaults of ``FinetuneConfig``): AdamW, lr 3e-5, weight decay 0.01 off biases and LayerNorm, 10% linear
warm-up then linear decay, gradient clipping 1.0, batch 32, 3 epochs, max length 128 (384 with doc_stride 128 for QA).
Each task function reads its files, builds the model with its head and the features, and says how to evaluate; the
engine (``engine.fit``) trains: gradient accumulation (``global_batch_size``), ``torchrun`` data parallelism (DDP or
FSDP), bf16 / fp16 with a scaler on CUDA, the non-finite policy, checkpoints after every epoch (and every
``save_interval`` steps) and exact resume (``resume=True`` / ``--resume``).

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
import json
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
from bertforge.adapt.artefact import save_adapter
from bertforge.adapt.freeze import UnfreezeSchedule
from bertforge.adapt.lora import merge_lora
from bertforge.auto import load_model
from bertforge.config import AdaptConfig, DistillConfig, FinetuneConfig
from bertforge.model import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from bertforge.model.pretrained import PreTrainedBert
from bertforge.model.surgery import shrink
from bertforge.tasks import metrics as M
from bertforge.tasks.classification import (
    classification_labels,
    classification_metrics,
    encode_rows,
    name_labels,
    predictions,
)
from bertforge.tasks.features import collate, predict
from bertforge.tasks.ner import label_list, ner_features, word_predictions
from bertforge.tasks.qa import best_answers, qa_features
from bertforge.tasks.readers import IN_MEMORY, in_memory, read_conll, read_squad, read_table
from bertforge.tokenization import BertTokenizer, load_tokenizer
from bertforge.training import checkpoint as ckpt
from bertforge.training import distributed as dist_
from bertforge.training.checkpoint import full_state
from bertforge.training.engine import BatchPlan, Job
from bertforge.training.objectives import DistillObjective, Objective, TaskObjective, check_cosine, load_teacher
from bertforge.training.trainer import fit
from bertforge.utils import atomic_directory, atomic_write_text, logger

TASKS = ("classification", "ner", "qa")
LOWER_IS_BETTER = ("mse",)
"""Validation metrics where a smaller value is the better epoch."""
TRAINING_STATE = "training_state.safetensors"
"""In a fine-tuning checkpoint with inserted modules: the unmerged weights under bertforge's names (exact resume)."""

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


def _copy(model: PreTrainedBert, state: dict, cfg: AdaptConfig) -> PreTrainedBert:
    """A CPU copy of ``model`` (strategy applied, nothing merged) holding ``state`` (bertforge names, as trained).
    Built from the config, so FSDP shards never need copying."""
    copy = type(model)(model.config)
    apply_strategy(copy, cfg)  # a prompt's starting vectors are overwritten by the state: no tokenizer needed
    copy.load_state_dict(state)
    return copy.eval()


def _plain(model: PreTrainedBert, state: dict, cfg: AdaptConfig) -> PreTrainedBert:
    """An ordinary BERT for ``state``: LoRA merged in; for strategies that insert other modules, the base weights and
    the head alone (the inserted modules are in the checkpoint's ``TRAINING_STATE``)."""
    if STRATEGIES[cfg.strategy].mergeable:
        plain = _copy(model, state, cfg)
        merge_lora(plain)
        return plain
    plain = type(model)(model.config)
    own = plain.state_dict()
    plain.load_state_dict({k: v for k, v in state.items() if k in own})
    return plain


def _write_best(copy: PreTrainedBert, cfg: AdaptConfig, tok: BertTokenizer, output_dir: str, base: str) -> None:
    """``adapter/`` (the small artefact, every strategy but full) and ``best/`` (what to load: a Hugging Face
    directory, or the adapter with the tokenizer for strategies that cannot be merged)."""
    if cfg.strategy != "full":
        with atomic_directory(os.path.join(output_dir, "adapter")) as tmp:
            save_adapter(copy, cfg, tmp, base)
    with atomic_directory(os.path.join(output_dir, "best")) as tmp:
        if STRATEGIES[cfg.strategy].mergeable:
            merge_lora(copy)
            copy.save_pretrained(tmp)
        else:
            save_adapter(copy, cfg, tmp, base)
        tok.save_pretrained(tmp)


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


def _write_jsonl(path: str, records: Sequence[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


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
    objective: Objective = TaskObjective()
    if task.teacher is not None:
        if cfg.distill.student_layers is not None and cfg.adapt.strategy in ("adapter", "prompt", "prefix"):
            raise ValueError(
                f"--strategy {cfg.adapt.strategy} saves an adapter for a base model, and a student taken from the "
                "teacher (--student-layers) exists only in this run: use full, head, freeze or lora"
            )
        d = cfg.distill
        check_cosine(d.cosine, task.teacher, model)
        objective = DistillObjective(task.teacher.to(info.device), d.temperature, d.alpha, d.cosine)
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
    if schedule is not None and info.is_main:
        logger.info("gradual unfreezing: %s", schedule.describe())
    if info.is_main:
        logger.info(
            "fine-tuning %s: %d training features, %s trainable parameters (%s), %d steps (%d epochs x %d) of %d on "
            "%s, %s",
            task.describe,
            len(task.train_features),
            f"{trainable:,}",
            cfg.adapt.strategy,
            steps_per_epoch * cfg.task.epochs,
            cfg.task.epochs,
            steps_per_epoch,
            global_batch,
            info.device,
            t.precision,
        )
    if task.teacher is not None and info.is_main:
        d = cfg.distill
        logger.info(
            "distilling from %s (%s parameters): temperature %g, alpha %g (soft targets) + %g (labels)",
            d.teacher,
            f"{task.teacher.num_parameters():,}",
            d.temperature,
            d.alpha,
            1 - d.alpha,
        )
    validation: dict[str, list] = {}

    def evaluate(m) -> dict[str, float]:
        scores, validation["records"] = task.evaluate(m)
        return {f"eval_{k}": v for k, v in scores.items()}

    def on_best(m, scores) -> None:
        state, _ = full_state(m)
        if info.is_main:
            _write_best(_copy(m, state, cfg.adapt), cfg.adapt, tok, output_dir, task.base)
            _write_jsonl(os.path.join(output_dir, "predictions_validation.jsonl"), validation["records"])

    def write_checkpoint(directory: str, state: dict) -> None:
        _plain(model, state, cfg.adapt).save_pretrained(directory)
        tok.save_pretrained(directory)
        if STRATEGIES[cfg.adapt.strategy].inserts_modules:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(directory, TRAINING_STATE))

    def load_checkpoint(checkpoint: str, m) -> None:
        raw = os.path.join(checkpoint, TRAINING_STATE)
        if os.path.exists(raw):
            from safetensors.torch import load_file

            m.load_state_dict(load_file(raw))
            return
        if STRATEGIES[cfg.adapt.strategy].inserts_modules:
            raise ValueError(
                f"{checkpoint} has no {TRAINING_STATE}: it was not written by a run with strategy {cfg.adapt.strategy}"
            )
        ckpt.load_weights(checkpoint, m)

    run_cfg = dataclasses.replace(t, save=output_dir, load=output_dir if resume else None)
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
        train=run_cfg,
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
    )
    trained = fit(job)
    best = trained.best or {}
    result: dict[str, Any] = {
        "best_epoch": round(best.get("epoch", 0)),
        **{k.removeprefix("eval_"): v for k, v in best.items() if k.startswith("eval_")},
        "trainable_parameters": trainable,
        "train_seconds": round(trained.train_seconds, 2),
    }
    if trained.step < job.steps and not trained.stopped_early:
        result["stopped_at_step"] = trained.step  # exit_interval: resume with resume=True / --resume
        return result
    if info.is_main:
        result["total_seconds"] = round(time.perf_counter() - started, 2)
        warnings: list[str] = _did_it_learn(output_dir, cfg)
        for text in warnings:
            logger.warning("%s", text)
        if warnings:
            result["warnings"] = warnings
        _finish(result, cfg, output_dir, task, info)
    return result


def _did_it_learn(output_dir: str, cfg: FinetuneConfig) -> list[str]:
    """What a user should hear about a run that learned nothing: the best epoch predicts one class (or, for NER, no
    entity) for every validation example, or the epochs' mean training loss did not move."""
    from bertforge.training.plot import read_metrics

    warnings = []
    advice = (
        f"try a larger --lr (this run: {cfg.resolved_optim().lr:g}, strategy {cfg.adapt.strategy}), more epochs or "
        "more training data"
    )
    path = os.path.join(output_dir, "predictions_validation.jsonl")
    values: list[str] = []
    words = False
    for r in read_metrics(path) if os.path.exists(path) else []:
        if "answers" in r:  # QA: answers are spans, not classes
            continue
        words = "tokens" in r
        p = r.get("prediction")
        values.extend(p if words and isinstance(p, list) else [json.dumps(p)])
    if len(values) > 1 and len(set(values)) == 1:
        what = "O (no entity) for every word" if words else f"{values[0]} for all {len(values)} validation examples"
        warnings.append(f"the best model predicts {what}: it learned nothing that tells the classes apart; {advice}")
    metrics = os.path.join(output_dir, "metrics.jsonl")
    losses = [r["train_loss"] for r in read_metrics(metrics) if "epoch" in r] if os.path.exists(metrics) else []
    if len(losses) >= 2 and losses[-1] >= 0.98 * losses[0]:
        warnings.append(
            f"the training loss did not move over {len(losses)} epochs ({losses[0]:.4f} -> {losses[-1]:.4f}); {advice}"
        )
    return warnings


def _finish(result: dict, cfg: FinetuneConfig, output_dir: str, task: _Task, info: dist_.DistInfo) -> None:
    """Score the test data once with the best checkpoint when there is one, and write finetune_result.json."""
    if task.test is not None:
        best = load_model(os.path.join(output_dir, "best"), type(task.model)).to(info.device)  # adapters too
        scores, records = task.test(best)
        _write_jsonl(os.path.join(output_dir, "predictions_test.jsonl"), records)
        result.update({f"test_{k}": v for k, v in scores.items()})
    atomic_write_text(
        os.path.join(output_dir, "finetune_result.json"),
        json.dumps(
            {
                "task": task.name,
                "result": result,
                "config": dataclasses.replace(cfg, optim=cfg.resolved_optim()).to_dict(),
            },
            indent=2,
        )
        + "\n",
    )


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


# ---- classification ---------------------------------------------------------------------------------------------
def finetune_classification(
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
    """Fine-tune a BERT checkpoint for sequence classification; returns the best epoch's validation metrics (and the
    test file's, prefixed ``test_``, when one is given).

    ``task_options`` set fields of ``cfg.task`` (``TaskConfig``): text_column, text_pair_column, label_column,
    no_header, regression, multi_label, label_separator, metric. ``multi_label``: each row has any number of labels
    (a JSON list, or a string split on ``label_separator``); one sigmoid output per label, predicted where it is above
    0.5. ``regression``: numeric labels, MSE.
    """
    cfg = _config(cfg, task_options)
    tc = cfg.task
    kind = "regression" if tc.regression else "multi" if tc.multi_label else "single"
    metric = tc.metric or {"regression": "pearson", "multi": "f1_micro", "single": "accuracy"}[kind]
    _seed(cfg.train.seed)
    max_length = tc.length("classification")

    def rows_of(path: str) -> list[dict]:
        return read_table(path, tc.text_column, tc.label_column, tc.text_pair_column, not tc.no_header)

    train_rows = rows_of(train_file)
    train_file = _name(train_file)
    if not train_rows:
        raise ValueError(f"{train_file} holds no rows")
    train_rows, valid_rows, validation_file = _held_out(
        train_rows, validation_file, rows_of, cfg, train_file, lambda r: r["line"]
    )
    train_rows = train_rows[: tc.max_train_examples or None]
    valid_rows = valid_rows[: tc.max_eval_examples or None]
    y_train, label2id = classification_labels(train_rows, train_file, kind, None, tc.label_separator)
    y_valid, _ = classification_labels(valid_rows, validation_file, kind, label2id, tc.label_separator)
    num_labels = 1 if kind == "regression" else len(label2id)
    shown_names = {i: n for n, i in (label2id or {}).items()}
    if tc.label_names and kind != "regression":
        shown_names = name_labels(label2id, tc.label_names, train_file)
    extra: dict[str, Any] = {} if kind == "regression" else {"id2label": shown_names}
    problem = {
        "regression": "regression",
        "multi": "multi_label_classification",
        "single": "single_label_classification",
    }[kind]
    tok, model, teacher = _start(
        model_dir,
        BertForSequenceClassification,
        tokenizer,
        cfg,
        num_labels=num_labels,
        problem_type=problem,
        **extra,
    )
    base = _base_pointer(model_dir if model_dir is not None else cfg.distill.teacher)
    id2label = shown_names

    def evaluate_rows(m, rows, feats, gold):
        logits = np.stack(
            [
                o[0]
                for o in predict(
                    m,
                    feats,
                    tc.eval_batch_size,
                    lambda out: [out.logits],
                    pad_token_id=tok.pad_token_id,
                    bf16=cfg.train.use_bf16,
                )
            ]
        )
        pred = predictions(logits, kind)
        records = []
        for r, p, lg in zip(rows, pred, logits):
            shown = (
                p
                if kind == "regression"
                else ([id2label[k] for k, v in enumerate(p) if v] if kind == "multi" else id2label[p])
            )
            records.append(
                {
                    "line": r["line"],
                    "prediction": shown,
                    "label": r["label"],
                    "logits": [round(float(x), 5) for x in lg],
                }
            )
        return classification_metrics(pred, gold, kind, num_labels), records

    valid_features = encode_rows(tok, valid_rows, max_length, None)  # encoded once, evaluated every epoch

    def test(best):
        rows = rows_of(test_file)
        gold, _ = classification_labels(rows, test_file, kind, label2id, tc.label_separator)
        return evaluate_rows(best, rows, encode_rows(tok, rows, max_length, None), gold)

    task = _Task(
        "classification",
        model,
        tok,
        base,
        encode_rows(tok, train_rows, max_length, y_train),
        lambda m: evaluate_rows(m, valid_rows, valid_features, y_valid),
        metric,
        f"{base} for {kind} classification ({num_labels} outputs)",
        test if test_file else None,
        label_dtype=torch.long if kind == "single" else torch.float,
        metrics=tuple(classification_metrics(y_train[:2], y_train[:2], kind, num_labels)),
        teacher=teacher,
    )
    return _run(task, cfg, output_dir, show_progress, resume)


# ---- NER ------------------------------------------------------------------------------------------------------------
def finetune_ner(
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
    """Fine-tune for token classification on CoNLL column files; entity-level precision / recall / F1 (IOB2 spans,
    as conlleval and seqeval count them) on whole words. ``task_options``: scheme, stride, metric (``TaskConfig``)."""
    cfg = _config(cfg, task_options)
    tc = cfg.task
    _seed(cfg.train.seed)
    max_length = tc.length("ner")
    stride = (max_length - 2) // 4 if tc.stride is None else tc.stride
    train, valid, validation_file = _held_out(
        read_conll(train_file, tc.scheme),
        validation_file,
        lambda f: read_conll(f, tc.scheme),
        cfg,
        train_file,
        lambda s: s["line"],
    )
    train, valid = train[: tc.max_train_examples or None], valid[: tc.max_eval_examples or None]
    labels = label_list([s["tags"] for s in train])
    label2id = {t: i for i, t in enumerate(labels)}
    for s in valid:
        unknown = [t for t in s["tags"] if t not in label2id]
        if unknown:
            raise ValueError(
                f"{validation_file}: line {s['line']}: tag {unknown[0]!r} was not seen in training "
                f"(tags: {', '.join(labels)})"
            )
    tok, model, teacher = _start(
        model_dir,
        BertForTokenClassification,
        tokenizer,
        cfg,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
    )
    base = _base_pointer(model_dir if model_dir is not None else cfg.distill.teacher)

    def features(sentences):
        return ner_features(tok, [s["tokens"] for s in sentences], max_length, stride)

    def evaluate_sentences(m, sentences, feats):
        scores = predict(
            m,
            feats,
            tc.eval_batch_size,
            lambda out: [out.logits],
            pad_token_id=tok.pad_token_id,
            bf16=cfg.train.use_bf16,
            per_token=True,
        )
        words = word_predictions(feats, [s[0] for s in scores], [len(s["tokens"]) for s in sentences])
        pred = [[labels[int(np.argmax(w))] if w is not None else "O" for w in sent] for sent in words]
        records = [
            {"line": s["line"], "tokens": s["tokens"], "prediction": p, "label": s["tags"]}
            for s, p in zip(sentences, pred)
        ]
        return M.entity_scores(pred, [s["tags"] for s in sentences]), records

    valid_features = features(valid)  # encoded once, evaluated every epoch

    def test(best):
        sentences = read_conll(test_file, tc.scheme)
        return evaluate_sentences(best, sentences, features(sentences))

    train_features = ner_features(
        tok, [s["tokens"] for s in train], max_length, stride, [s["tags"] for s in train], label2id
    )
    task = _Task(
        "ner",
        model,
        tok,
        base,
        train_features,
        lambda m: evaluate_sentences(m, valid, valid_features),
        tc.metric or "f1",
        f"{base} for NER ({len(labels)} tags)",
        test if test_file else None,
        token_label_keys=("labels",),
        metrics=tuple(M.entity_scores([labels], [labels])),  # every tag once: every entity type's score
        teacher=teacher,
    )
    return _run(task, cfg, output_dir, show_progress, resume)


# ---- QA -------------------------------------------------------------------------------------------------------------
def finetune_qa(
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
    """Fine-tune for extractive QA on SQuAD-style JSON; EM and F1 with SQuAD's official normalisation.

    ``task_options`` (``TaskConfig``): version_2 (allow the null answer; None: when the training file has
    unanswerable questions), stride (doc_stride), max_query_length, n_best, max_answer_length, null_threshold, metric.
    """
    cfg = _config(cfg, task_options)
    tc = cfg.task
    _seed(cfg.train.seed)
    max_length, stride = tc.length("qa"), 128 if tc.stride is None else tc.stride
    train, valid, validation_file = _held_out(
        read_squad(train_file), validation_file, read_squad, cfg, _name(train_file), lambda ex: ex.title or ex.context
    )  # held out by article: questions about one passage stay on one side
    train, valid = train[: tc.max_train_examples or None], valid[: tc.max_eval_examples or None]
    version_2 = tc.version_2 if tc.version_2 is not None else any(ex.is_impossible for ex in train)
    tok, model, teacher = _start(model_dir, BertForQuestionAnswering, tokenizer, cfg, num_labels=2)
    base = _base_pointer(model_dir if model_dir is not None else cfg.distill.teacher)

    def features(examples):
        return qa_features(tok, examples, max_length, stride, tc.max_query_length)

    def evaluate_examples(m, examples, feats):
        logits = predict(
            m,
            feats,
            tc.eval_batch_size,
            lambda out: [out.start_logits, out.end_logits],
            pad_token_id=tok.pad_token_id,
            bf16=cfg.train.use_bf16,
            per_token=True,
        )
        answers = best_answers(examples, feats, logits, tc.n_best, tc.max_answer_length, version_2, tc.null_threshold)
        predicted = {ex.id: a[0].text for ex, a in zip(examples, answers)}
        scores = M.squad_scores(predicted, {ex.id: ex.answers for ex in examples}, version_2)
        if version_2:
            for name, keep in (("has_ans", lambda e: not e.is_impossible), ("no_ans", lambda e: e.is_impossible)):
                subset = {ex.id: ex.answers for ex in examples if keep(ex)}
                if subset:
                    part = M.squad_scores(predicted, subset, version_2)
                    scores[f"{name}_exact_match"], scores[f"{name}_f1"] = part["exact_match"], part["f1"]
        records = [
            {
                "id": ex.id,
                "prediction": a[0].text,
                "answers": ex.answers,
                "n_best": [{"text": c.text, "score": round(c.score, 4)} for c in a[:5]],
            }
            for ex, a in zip(examples, answers)
        ]
        return scores, records

    valid_features = features(valid)  # encoded once, evaluated every epoch

    def test(best):
        examples = read_squad(test_file)
        return evaluate_examples(best, examples, features(examples))

    task = _Task(
        "qa",
        model,
        tok,
        base,
        qa_features(tok, train, max_length, stride, tc.max_query_length, train=True),
        lambda m: evaluate_examples(m, valid, valid_features),
        tc.metric or "f1",
        f"{base} for {'SQuAD v2.0' if version_2 else 'SQuAD v1.1'} QA",
        test if test_file else None,
        metrics=("exact_match", "f1")
        + (("has_ans_exact_match", "has_ans_f1", "no_ans_exact_match", "no_ans_f1") if version_2 else ()),
        teacher=teacher,
    )
    return _run(task, cfg, output_dir, show_progress, resume)


def finetune(
    task: str, model_dir: str, train_file: str, validation_file: str | None, output_dir: str, **kwargs
) -> dict:
    """``finetune("classification" | "ner" | "qa", ...)``: the function for the task, with its keyword arguments."""
    functions = {"classification": finetune_classification, "ner": finetune_ner, "qa": finetune_qa}
    if task not in functions:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    return functions[task](model_dir, train_file, validation_file, output_dir, **kwargs)
