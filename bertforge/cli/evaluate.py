"""``bertforge evaluate glue``: fine-tune a model on each GLUE task found locally and report GLUE's metrics."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from bertforge.cli.fields import number
    from bertforge.constants import BASELINES
    from bertforge.evaluation import DEFAULT_TASKS, GLUE_TASKS

    p = sub.add_parser(
        "evaluate",
        help="what a model is worth downstream: GLUE",
        description="Fine-tune a model on each GLUE task of --data-dir (one recipe for all: AdamW, batch 32, 3 "
        "epochs, 128 tokens; the best of the learning rates 1e-4, 3e-4, 1e-3 below bert-base's width, else 2e-5, "
        "3e-5, 5e-5) and score its dev set in GLUE's metrics; --scratch adds the same architecture from random "
        "weights, --baseline tfidf a TF-IDF + linear baseline. Writes OUTPUT/glue.json, glue.md and glue.png.",
    )
    bench = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    g = bench.add_parser("glue", help="CoLA, SST-2, MRPC, STS-B, RTE, QNLI (those with a train file)")
    g.add_argument("--model", required=True, help="checkpoint directory or model name")
    g.add_argument("--data-dir", default="glue_data", help="GLUE's layout: <TASK>/train.tsv, dev.tsv")
    g.add_argument("--output", required=True, help="directory for the runs and the report")
    g.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help=f"comma list of {', '.join(GLUE_TASKS)}")
    g.add_argument(
        "--seeds", type=number(int, minimum=1), default=3, help="runs per task (the table shows the median and spread)"
    )
    g.add_argument("--scratch", action="store_true", help="also the same architecture from random weights")
    g.add_argument(
        "--baseline",
        choices=BASELINES,
        default=None,
        help="also a baseline fitted on the same rows: tfidf (TF-IDF + logistic or ridge regression; scikit-learn)",
    )
    g.add_argument(
        "--max-train-examples", type=number(int, minimum=1), default=None, help="the first N training rows of each task"
    )
    g.add_argument("--epochs", type=number(int, minimum=1), default=3)
    g.add_argument(
        "--lr",
        default=None,
        help="learning rate(s), comma list: each task reports the best (default: 1e-4,3e-4,1e-3 below hidden size "
        "768, else 2e-5,3e-5,5e-5)",
    )
    g.add_argument("--batch-size", type=number(int, minimum=1), default=32)
    g.add_argument("--max-length", type=number(int, minimum=8), default=128)
    g.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: where the machine runs it natively; --no-bf16 for fp32)",
    )
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertforge.evaluation import GlueSettings, evaluate_glue, table

    if args.seeds < 1 or args.epochs < 1:
        raise ValueError("--seeds and --epochs must be at least 1")
    try:
        lrs = tuple(float(v) for v in args.lr.split(",")) if args.lr else ()
    except ValueError:
        raise ValueError(f"--lr {args.lr}: give learning rates as numbers, comma-separated (1e-4,3e-4)") from None
    settings = GlueSettings(
        epochs=args.epochs,
        lrs=lrs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_train_examples=args.max_train_examples,
        seeds=args.seeds,
        extra={} if args.bf16 is None else {"bf16": args.bf16},
    )
    tasks = tuple(t.strip().lower().replace("-", "") for t in args.tasks.split(",") if t.strip())
    record = evaluate_glue(
        args.model, args.data_dir, args.output, tasks, settings, scratch=args.scratch, baseline=args.baseline
    )
    print(table(record))
    print(f"report: {args.output}/glue.md, glue.json, glue.png")
    return 0
