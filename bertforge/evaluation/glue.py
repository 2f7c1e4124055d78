"""``bertforge evaluate glue``: what a pretrained model is worth downstream, in GLUE's metrics.

Each GLUE task found in the data directory (the layout of ``download_glue_data.py``: ``<TASK>/train.tsv`` and
``dev.tsv``) is fine-tuned from the model with one recipe for all (``GlueSettings``: AdamW, batch 32, 3 epochs, 128
tokens, 10% warm-up) at each learning rate of a small grid, and scored on its dev set, the best epoch by the task's
GLUE metric: CoLA Matthews correlation, SST-2 accuracy, MRPC F1 and accuracy, STS-B Pearson and Spearman, RTE / QNLI
accuracy. The grid: 2e-5, 3e-5, 5e-5 for bert-base's width and wider (the BERT paper's, less 4e-5); 1e-4, 3e-4, 1e-3
below it (the top of Google's miniatures' grid, 3e-4 and 1e-4, and 1e-3: a 2 x 128 model pretrained for an hour scored
SST-2 69.0 at 1e-4 and 75.9 at 1e-3, so one rate for all widths misjudges the small ones). For each system and task
the table reports the rate whose median over the seeds scores best on dev, as those papers did; ``lrs`` with one value
fixes it. A task without a train file (QNLI here ships dev only) is reported as skipped. An output directory that
holds an evaluation of the same model and settings is extended, not redone: its runs are kept and only the missing
(system, task, rate, seed) runs are made, so an interrupted evaluation resumes and ``seeds``, tasks or ``scratch``
can be added later; one of another model or other settings is refused, never overwritten. ``scratch`` adds the same
architecture from random weights (the tokenizer kept), the baseline that shows what pretraining bought; it gets the
same grid. The average is GLUE's: each task's score is the mean of its metrics, then the mean over tasks.

Writes ``OUT/glue.json`` (every run and the summary), ``OUT/glue.md`` (the table) and ``OUT/glue.png``.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
from dataclasses import dataclass, field
from typing import Any

from bertforge.constants import BASELINES
from bertforge.utils import atomic_write_text, logger


@dataclass(frozen=True)
class GlueTask:
    directory: str
    text: str
    pair: str | None
    label: str
    metrics: tuple[str, ...]
    """GLUE's metrics for the task, the first picks the best epoch."""
    header: bool = True
    regression: bool = False


GLUE_TASKS = {
    "cola": GlueTask("CoLA", "3", None, "1", ("matthews",), header=False),  # no header: columns by index
    "sst2": GlueTask("SST-2", "sentence", None, "label", ("accuracy",)),
    "mrpc": GlueTask("MRPC", "#1 String", "#2 String", "Quality", ("f1", "accuracy")),
    "stsb": GlueTask("STS-B", "sentence1", "sentence2", "score", ("pearson", "spearman"), regression=True),
    "rte": GlueTask("RTE", "sentence1", "sentence2", "label", ("accuracy",)),
    "qnli": GlueTask("QNLI", "question", "sentence", "label", ("accuracy",)),
}
DEFAULT_TASKS = ("cola", "sst2", "mrpc", "stsb", "rte", "qnli")


WIDE_LRS = (2e-5, 3e-5, 5e-5)
"""The learning rates tried for bert-base's width (768) and wider: the BERT paper's grid, less 4e-5."""
NARROW_LRS = (1e-4, 3e-4, 1e-3)
"""The learning rates tried below it (Google's miniatures went up to 3e-4; 2 x 128 models are best at 1e-3 here)."""


def default_lrs(hidden_size: int) -> tuple[float, ...]:
    """The learning-rate grid for a model of this width."""
    return WIDE_LRS if hidden_size >= 768 else NARROW_LRS


@dataclass
class GlueSettings:
    """The one fine-tuning recipe of every task (``lrs`` empty: ``default_lrs`` of the model's width)."""

    epochs: int = 3
    lrs: tuple[float, ...] = ()
    batch_size: int = 32
    max_length: int = 128
    max_train_examples: int | None = None
    seeds: int = 3
    extra: dict[str, Any] = field(default_factory=dict)
    """More FinetuneConfig fields (bf16, device, ...)."""


def evaluate_glue(
    model: str,
    data_dir: str,
    output_dir: str,
    tasks: tuple[str, ...] = DEFAULT_TASKS,
    settings: GlueSettings | None = None,
    scratch: bool = False,
    show_progress: bool = True,
    baseline: str | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` on each GLUE task of ``data_dir`` and score it (and, with ``scratch``, the same
    architecture from random weights; with ``baseline="tfidf"``, a TF-IDF + linear model on the same rows); returns
    the summary written to ``OUT/glue.json``."""
    from bertforge.hub import resolve_model
    from bertforge.model import BertConfig

    settings = settings or GlueSettings()
    unknown = [t for t in tasks if t not in GLUE_TASKS]
    if unknown:
        raise ValueError(f"unknown GLUE task(s) {', '.join(unknown)}; choose from {', '.join(GLUE_TASKS)}")
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"--data-dir {data_dir} is not a directory (GLUE's layout: <TASK>/train.tsv, dev.tsv)")
    model = resolve_model(model)
    lrs = tuple(settings.lrs) or default_lrs(BertConfig.from_pretrained(model).hidden_size)
    if any(not lr > 0 for lr in lrs):
        raise ValueError(f"--lr: learning rates must be positive, got {', '.join(map(str, lrs))}")
    chosen = {**settings.__dict__, "lrs": list(lrs)}
    earlier = earlier_runs(os.path.join(output_dir, "glue.json"), model, chosen)  # before anything is written
    os.makedirs(output_dir, exist_ok=True)
    systems = {"pretrained": model}
    if scratch:
        systems["scratch"] = scratch_copy(model, os.path.join(output_dir, "scratch_init"))
    record: dict[str, Any] = {
        "model": model,
        "settings": {**chosen, "seeds": max([settings.seeds] + [r["seed"] + 1 for r in earlier])},
        "runs": earlier,
        "skipped": {},
    }
    done = {(r["system"], r["task"], r["lr"], r["seed"]) for r in earlier}
    if done:
        logger.info("GLUE: %d runs of an earlier evaluation in %s are kept, not run again", len(done), output_dir)
    for name in tasks:
        task = GLUE_TASKS[name]
        train, dev = (os.path.join(data_dir, task.directory, f) for f in ("train.tsv", "dev.tsv"))
        if not (os.path.exists(train) and os.path.exists(dev)):
            missing = [os.path.basename(f) for f in (train, dev) if not os.path.exists(f)]
            record["skipped"][name] = f"no {' or '.join(missing)} in {os.path.join(data_dir, task.directory)}"
            logger.info("GLUE %s skipped: %s", name, record["skipped"][name])
            continue
        for (system, source), lr, seed in itertools.product(systems.items(), lrs, range(settings.seeds)):
            if (system, name, lr, seed) not in done:
                out = os.path.join(output_dir, system, name, f"lr{lr:g}", f"seed{seed}")
                scores = _finetuned(task, source, train, dev, out, lr, seed, settings, show_progress)
                record["runs"].append({"system": system, "task": name, "lr": lr, "seed": seed, **scores})
                logger.info("GLUE %s %s lr %g seed %d: %s", system, name, lr, seed, scores)
                _write(record, output_dir)  # after every run: an interrupted evaluation still reports, and resumes
        if baseline and (baseline, name, 0.0, 0) not in done:
            scores = baseline_scores(baseline, task, train, dev, settings.max_train_examples)
            record["runs"].append({"system": baseline, "task": name, "lr": 0.0, "seed": 0, **scores})
            logger.info("GLUE %s %s: %s", baseline, name, scores)
            _write(record, output_dir)
    return _write(record, output_dir)


def _finetuned(
    task: GlueTask, source: str, train: str, dev: str, out: str, lr: float, seed: int, settings, show_progress: bool
) -> dict:
    """GLUE's metrics of ``source`` fine-tuned on one task at one rate and seed (its run in ``out``)."""
    from bertforge.config import FinetuneConfig
    from bertforge.training.finetune import finetune_classification

    cfg = FinetuneConfig.build(
        epochs=settings.epochs,
        lr=lr,
        batch_size=settings.batch_size,
        max_length=settings.max_length,
        seed=seed,
        max_train_examples=settings.max_train_examples,
        metric=task.metrics[0],
        overwrite=True,
        **settings.extra,
    )
    result = finetune_classification(
        source,
        train,
        dev,
        out,
        cfg=cfg,
        text_column=task.text,
        text_pair_column=task.pair,
        label_column=task.label,
        no_header=not task.header,
        regression=task.regression,
        show_progress=show_progress,
    )
    return {m: float(result[m]) for m in task.metrics}


def baseline_scores(baseline: str, task: GlueTask, train: str, dev: str, max_train_examples: int | None) -> dict:
    """GLUE's metrics of ``baseline`` (TF-IDF + a linear model) fitted on the task's training rows (the same first
    ``max_train_examples`` the models see) and scored on its dev set."""
    from bertforge.config import TaskConfig
    from bertforge.tasks.classification import ClassificationTask

    family = ClassificationTask(
        TaskConfig(
            text_column=task.text,
            text_pair_column=task.pair,
            label_column=task.label,
            no_header=not task.header,
            regression=task.regression,
        )
    )
    rows, dev_rows = family.read(train)[: max_train_examples or None], family.read(dev)
    family.prepare(rows, dev_rows, train, dev)
    scores = family.baseline(baseline, rows, dev_rows, dev)
    return {m: float(scores[m]) for m in task.metrics}


def earlier_runs(path: str, model: str, settings: dict[str, Any]) -> list[dict]:
    """The runs of an earlier evaluation written to ``path`` (OUT/glue.json) for the same model and settings, the
    number of seeds aside (more seeds, tasks or ``--scratch`` extend it; an interrupted one resumes); [] without one.
    One of another model or other settings is never overwritten: an error says to choose another output."""
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as fh:
            old = json.load(fh)
        old_model, old_settings, runs = old["model"], old["settings"], list(old["runs"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a GLUE report this version can extend ({e}); give another --output") from None
    differ = sorted(k for k in settings if k != "seeds" and old_settings.get(k) != settings[k])
    if old_model != model or differ:
        changes = ", ".join(f"{k} {old_settings.get(k)!r} (now {settings[k]!r})" for k in differ)
        what = f"of another model ({old_model})" if old_model != model else f"with other settings: {changes}"
        raise ValueError(
            f"{os.path.dirname(path) or '.'} holds a GLUE evaluation {what}; give another --output (an evaluation "
            "is extended only by the same model and settings: more seeds, tasks or --scratch)"
        )
    return runs


def scratch_copy(model: str, directory: str) -> str:
    """The model's architecture with fresh random weights (seeded), saved with its tokenizer."""
    import torch

    from bertforge.model import BertConfig, BertModel
    from bertforge.tokenization import load_tokenizer

    torch.manual_seed(0)
    BertModel(BertConfig.from_pretrained(model)).save_pretrained(directory)
    load_tokenizer(model).save_pretrained(directory)
    return directory


def summarize(runs: list[dict], systems, tasks) -> dict[str, Any]:
    """Per system and task: the learning rate whose median over the seeds scores best on the task's first metric;
    at that rate the median (and min, max) of each metric, the task's score (the mean of its metrics) and the median
    first metric of every rate tried (``by_lr``); then the average of the task scores."""
    out: dict[str, Any] = {}
    for system in systems:
        per_task: dict[str, Any] = {}
        for name in tasks:
            rows = [r for r in runs if r["system"] == system and r["task"] == name]
            if not rows:
                continue
            first = GLUE_TASKS[name].metrics[0]
            by_lr = {
                lr: statistics.median(r[first] for r in rows if r["lr"] == lr) for lr in sorted({r["lr"] for r in rows})
            }
            best = max(by_lr, key=lambda lr: by_lr[lr])
            rows = [r for r in rows if r["lr"] == best]
            metrics = {
                m: {
                    "median": statistics.median(r[m] for r in rows),
                    "min": min(r[m] for r in rows),
                    "max": max(r[m] for r in rows),
                }
                for m in GLUE_TASKS[name].metrics
            }
            score = statistics.fmean(v["median"] for v in metrics.values())
            per_task[name] = {
                "metrics": metrics,
                "score": score,
                "seeds": len(rows),
                "lr": best,
                "by_lr": {f"{lr:g}": v for lr, v in by_lr.items()},
            }
        if per_task:
            out[system] = {"tasks": per_task, "average": statistics.fmean(t["score"] for t in per_task.values())}
    return out


def _write(record: dict, output_dir: str) -> dict:
    """The report of every run so far (this evaluation's and the earlier ones it extends): JSON, markdown, plot."""
    runs = record["runs"]
    systems = [s for s in ("pretrained", "scratch", *BASELINES) if any(r["system"] == s for r in runs)]
    tasks = [t for t in GLUE_TASKS if any(r["task"] == t for r in runs)]
    record["summary"] = summarize(runs, systems, tasks)
    atomic_write_text(os.path.join(output_dir, "glue.json"), json.dumps(record, indent=1) + "\n")
    atomic_write_text(os.path.join(output_dir, "glue.md"), table(record))
    _plot(record, os.path.join(output_dir, "glue.png"))
    return record


def table(record: dict) -> str:
    """The markdown table: one row per task and the average, one column per system (median over seeds, x100)."""
    summary = record["summary"]
    systems = list(summary)
    lines = ["| task | metric | " + " | ".join(systems) + " |", "|---|---|" + "---|" * len(systems)]
    tasks = [t for t in GLUE_TASKS if any(t in summary[s]["tasks"] for s in systems)]
    for name in tasks:
        metric = "/".join(GLUE_TASKS[name].metrics)
        cells = []
        for s in systems:
            task = summary[s]["tasks"].get(name)
            if task is None:
                cells.append("-")
                continue
            values = [task["metrics"][m] for m in GLUE_TASKS[name].metrics]
            if s in BASELINES:  # one fit, no rate
                cells.append("/".join(f"{100 * v['median']:.1f}" for v in values))
                continue
            spread = "; ".join(f"{100 * v['min']:.1f}..{100 * v['max']:.1f}" for v in values)
            cells.append("/".join(f"{100 * v['median']:.1f}" for v in values) + f" ({spread}; lr {task['lr']:g})")
        lines.append(f"| {GLUE_TASKS[name].directory} | {metric} | " + " | ".join(cells) + " |")
    lines.append("| average | GLUE | " + " | ".join(f"{100 * summary[s]['average']:.1f}" for s in systems) + " |")
    for name, why in record.get("skipped", {}).items():
        lines.append(f"\n{GLUE_TASKS[name].directory}: skipped ({why})")
    return "\n".join(lines) + "\n"


def _plot(record: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the table and JSON are the record; the plot is a view of them
        return
    summary = record["summary"]
    systems = list(summary)
    tasks = [t for t in GLUE_TASKS if any(t in summary[s]["tasks"] for s in systems)]
    if not tasks:
        return
    fig, ax = plt.subplots(figsize=(1.4 * len(tasks) + 2, 3.5))
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        scores = [100 * summary[s]["tasks"][t]["score"] if t in summary[s]["tasks"] else 0 for t in tasks]
        ax.bar([x + i * width for x in range(len(tasks))], scores, width, label=s)
    ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(tasks))])
    ax.set_xticklabels([GLUE_TASKS[t].directory for t in tasks])
    ax.set_ylabel("dev score (x100)")
    ax.legend()
    fig.tight_layout()
    from bertforge.utils import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
