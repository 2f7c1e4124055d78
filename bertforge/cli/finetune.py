"""``bertforge finetune TASK``: fine-tune a BERT checkpoint with BERT's recipe (classification so far)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a checkpoint (classification)",
                       description="Fine-tune a BERT checkpoint; the best epoch is written to OUTPUT/best as a Hugging "
                                   "Face directory with id2label and the tokenizer.")
    p.add_argument("task", choices=["classification"], help="task family (ner and qa are not implemented yet)")
    p.add_argument("--model", required=True, help="Hugging Face BERT directory")
    p.add_argument("--train", required=True, help="CSV / TSV / JSONL with named columns")
    p.add_argument("--validation", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--text-column", default="sentence")
    p.add_argument("--text-pair-column", default=None)
    p.add_argument("--label-column", default="label")
    p.add_argument("--no-header", action="store_true", help="the files have no header row: name columns by index")
    p.add_argument("--regression", action="store_true", help="numeric labels, MSE loss, Pearson/Spearman")
    p.add_argument("--metric", default=None, help="metric that picks the best epoch (default accuracy / pearson)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--early-stopping-patience", type=int, default=None)
    p.add_argument("--max-train-examples", type=int, default=None)
    p.add_argument("--freeze-encoder", action="store_true", help="train the classification head only")
    p.add_argument("--lora-r", type=int, default=None)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--lora-targets", default="query,value", help="comma list of query,key,value,qkv,output,ffn_in,ffn_out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertforge.tasks.finetune import FinetuneConfig, finetune_classification

    cfg = FinetuneConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         eval_batch_size=args.eval_batch_size, max_length=args.max_length,
                         warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, seed=args.seed,
                         bf16=args.bf16, early_stopping_patience=args.early_stopping_patience,
                         freeze_encoder=args.freeze_encoder, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                         lora_dropout=args.lora_dropout, lora_targets=tuple(args.lora_targets.split(",")),
                         max_train_examples=args.max_train_examples)
    result = finetune_classification(args.model, args.train, args.validation, args.output,
                                     text_column=args.text_column, label_column=args.label_column,
                                     text_pair_column=args.text_pair_column, has_header=not args.no_header,
                                     regression=args.regression, metric=args.metric, cfg=cfg)
    print(json.dumps(result, indent=2))
    print(f"best model: {args.output}/best")
    return 0
