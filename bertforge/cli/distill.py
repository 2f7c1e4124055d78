"""``bertforge distill classification|ner|qa``: a smaller, faster student trained on a fine-tuned teacher's outputs.

The same run as ``bertforge finetune`` (files, task, optimizer, training and strategy flags, outputs), with the
distillation flags of ``DistillConfig`` (``config/sections.py``): --teacher, --student-layers, --temperature, --alpha.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from bertforge.cli.finetune import TASKS, _add_flags
    from bertforge.config import FinetuneConfig

    about = (
        "Distil a fine-tuned teacher into a student: the student learns from the teacher's outputs at a temperature "
        "(soft targets, scaled by T^2) and from the labels, weighted alpha and 1 - alpha. The student is --model, or "
        "K of the teacher's layers with --student-layers K (every other layer for half the depth, as DistilBERT was "
        "initialised). Outputs as bertforge finetune: OUTPUT/best, metrics.jsonl, curves.png, checkpoints."
    )
    p = sub.add_parser("distill", help="distil a fine-tuned teacher into a smaller student", description=about)
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    defaults = FinetuneConfig()
    for task, data in TASKS.items():
        t = tasks.add_parser(task, help=data, description=f"{about} Data: {data}.", allow_abbrev=False)
        _add_flags(t, task, defaults, distill=True)
        t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertforge.cli import finetune

    if getattr(args, "distill.teacher", None) is None:
        raise ValueError("distillation needs a fine-tuned teacher: --teacher DIR")
    return finetune.run(args)
