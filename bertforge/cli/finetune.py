"""``bertforge finetune classification|ner|qa``: fine-tune a BERT checkpoint with BERT's recipe.

The options are generated from ``FinetuneConfig``'s sections (``config/``): optimizer and schedule, training,
task, adaptation; only the files, ``--resume`` and ``--freeze-encoder`` (an alias of ``--strategy head``) are
written here.
"""

from __future__ import annotations

import argparse
import json

# Training fields that fine-tuning does not take: it counts epochs, evaluates once per epoch, and its run directory
# is --output (resumed with --resume).
NOT_FOR_FINETUNING = frozenset(
    {"train_iters", "train_time", "save", "load", "init_model", "eval_interval", "eval_iters", "export_hf"}
)


TASKS = {
    "classification": "CSV/TSV/JSONL/Parquet rows: single-label, --multi-label or --regression; texts or pairs",
    "ner": "CoNLL column files (IOB1, IOB2 or IOBES tags)",
    "qa": "SQuAD v1.1/v2.0 JSON",
}


def register(sub: argparse._SubParsersAction) -> None:
    from bertforge.config import FinetuneConfig

    recipe = (
        "Fine-tune a BERT checkpoint with BERT's recipe (AdamW, lr 3e-5, 10% warm-up then "
        "linear decay, weight decay 0.01, clipping 1.0, batch 32, 3 epochs). Each epoch is "
        "evaluated; the best is written to OUTPUT/best as a Hugging Face directory with "
        "id2label and the tokenizer (LoRA merged in; for adapter, prompt and prefix it is the adapter with "
        "the tokenizer), and every strategy but full also writes the small artefact OUTPUT/adapter (trained "
        "tensors + head, peft's layout for lora/prompt/prefix, a pointer to the base model); metrics go to "
        "OUTPUT/metrics.jsonl, checkpoints to OUTPUT/checkpoints (--resume continues from the newest)."
    )
    p = sub.add_parser(
        "finetune",
        help="fine-tune a checkpoint: classification, ner or qa",
        description=recipe + " Each task's flags: bertforge finetune TASK --help.",
        allow_abbrev=False,
    )
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    defaults = FinetuneConfig()
    for task, data in TASKS.items():
        t = tasks.add_parser(task, help=data, description=f"{recipe} Data: {data}.", allow_abbrev=False)
        _add_flags(t, task, defaults)
        t.set_defaults(func=run)


def _add_flags(p: argparse.ArgumentParser, task: str, defaults, distill: bool = False) -> None:
    """The flags of ``bertforge finetune TASK`` (``distill``: of ``bertforge distill TASK``): files, then the config
    sections, with only this task's task flags."""
    import dataclasses

    from bertforge.cli.fields import add_section

    if distill:
        add_section(p.add_argument_group("distillation"), "distill", defaults.distill)
        p.add_argument("--model", default=None, help="the student (a directory or name); or --student-layers K")
    else:
        p.add_argument("--model", required=True, help="model: a directory, an installed model package or a Hub name")
    p.add_argument("--train", required=True, help="training file")
    p.add_argument(
        "--validation",
        default=None,
        help="file evaluated after each epoch (picks the best epoch); without it, --validation-split holds out "
        "a share of the training data",
    )
    p.add_argument("--test", default=None, help="file scored once with the best checkpoint")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue the run in OUTPUT from its newest checkpoint")
    others = {f.name for f in dataclasses.fields(defaults.task) if task not in (f.metadata.get("tasks") or (task,))}
    add_section(p.add_argument_group("task"), "task", defaults.task, skip=others)
    add_section(p.add_argument_group("optimizer and schedule"), "optim", defaults.optim)
    add_section(p.add_argument_group("training"), "train", defaults.train, skip=NOT_FOR_FINETUNING)
    add_section(
        p.add_argument_group("experiment tracking (TensorBoard, Weights & Biases)"), "tracking", defaults.tracking
    )
    g = p.add_argument_group("adaptation (which parameters train)")
    add_section(g, "adapt", defaults.adapt)
    g.add_argument(
        "--freeze-encoder",
        action="store_true",
        default=argparse.SUPPRESS,
        help="train the task head only (= --strategy head)",
    )


def build_config(args: argparse.Namespace):
    """FinetuneConfig from the parsed flags (BERT's recipe where a flag is not given)."""
    from bertforge.cli.fields import section_values
    from bertforge.config import FinetuneConfig

    values = section_values(args)
    if getattr(args, "freeze_encoder", False):
        values.setdefault("adapt", {})["strategy"] = "head"
    return FinetuneConfig().merged(values)


def run(args: argparse.Namespace) -> int:
    from bertforge.training.finetune import finetune

    cfg = build_config(args)
    result = finetune(
        args.task,
        args.model,
        args.train,
        args.validation,
        args.output,
        cfg=cfg,
        test_file=args.test,
        resume=args.resume,
    )
    print(json.dumps(result, indent=2))
    print(f"best model: {args.output}/best")
    return 0
