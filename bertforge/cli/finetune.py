"""``bertforge finetune classification|ner|qa``: fine-tune a BERT checkpoint with BERT's recipe."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a checkpoint: classification, ner or qa",
                       description="Fine-tune a BERT checkpoint with BERT's recipe (AdamW, lr 3e-5, 10%% warm-up then "
                                   "linear decay, weight decay 0.01, clipping 1.0, batch 32, 3 epochs). Each epoch is "
                                   "evaluated; the best is written to OUTPUT/best as a Hugging Face directory with "
                                   "id2label and the tokenizer; metrics per epoch go to OUTPUT/metrics.jsonl.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("task", choices=["classification", "ner", "qa"],
                   help="classification: CSV/TSV/JSONL (single-label, --multi-label, --regression; texts or pairs); "
                        "ner: CoNLL column files (IOB1 or IOB2); qa: SQuAD v1.1/v2.0 JSON")
    p.add_argument("--model", required=True, help="Hugging Face BERT directory")
    p.add_argument("--train", required=True, help="training file")
    p.add_argument("--validation", required=True, help="file evaluated after each epoch (picks the best epoch)")
    p.add_argument("--test", default=None, help="file scored once with the best checkpoint")
    p.add_argument("--output", required=True, help="output directory")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--lr", type=float, default=3e-5)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--eval-batch-size", type=int, default=64)
    g.add_argument("--max-length", type=int, default=None, help="tokens per window (default 128; 384 for qa)")
    g.add_argument("--warmup-ratio", type=float, default=0.1)
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--clip-grad", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--bf16", action="store_true", help="bf16 autocast (fast on CPUs with AMX and on GPUs)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available)")
    g.add_argument("--early-stopping-patience", type=int, default=None,
                   help="stop after N epochs without improvement of the metric")
    g.add_argument("--metric", default=None,
                   help="metric that picks the best epoch (default accuracy / f1_micro / pearson; f1 for ner and qa)")
    g.add_argument("--max-train-examples", type=int, default=None)
    g.add_argument("--max-eval-examples", type=int, default=None)
    g = p.add_argument_group("parameter-efficient training")
    g.add_argument("--freeze-encoder", action="store_true", help="train the task head only")
    g.add_argument("--lora-r", type=int, default=None, help="LoRA rank (enables LoRA)")
    g.add_argument("--lora-alpha", type=float, default=16.0)
    g.add_argument("--lora-dropout", type=float, default=0.0)
    g.add_argument("--lora-targets", default="query,value",
                   help="comma list of query,key,value,qkv,output,ffn_in,ffn_out")
    g = p.add_argument_group("classification")
    g.add_argument("--text-column", default="sentence")
    g.add_argument("--text-pair-column", default=None)
    g.add_argument("--label-column", default="label")
    g.add_argument("--no-header", action="store_true", help="the files have no header row: name columns by index")
    g.add_argument("--regression", action="store_true", help="numeric labels, MSE loss, Pearson/Spearman")
    g.add_argument("--multi-label", action="store_true",
                   help="any number of labels per row (JSON list or separated string), sigmoid outputs")
    g.add_argument("--label-separator", default=",", help="separator of labels in a multi-label cell")
    g = p.add_argument_group("ner")
    g.add_argument("--scheme", default="auto", choices=["auto", "iob1", "iob2"], help="tag scheme of the files")
    g.add_argument("--stride", type=int, default=None,
                   help="overlap in tokens of windows of long inputs (ner: (max_length-2)//4; qa: 128)")
    g = p.add_argument_group("qa")
    g.add_argument("--doc-stride", type=int, default=None, help="alias of --stride for qa")
    g.add_argument("--max-query-length", type=int, default=64)
    g.add_argument("--n-best", type=int, default=20)
    g.add_argument("--max-answer-length", type=int, default=30)
    g.add_argument("--version-2", action=argparse.BooleanOptionalAction, default=None,
                   help="allow no answer (default: when the training file has unanswerable questions)")
    g.add_argument("--null-threshold", type=float, default=0.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertforge.tasks.finetune import FinetuneConfig, finetune

    stride = args.doc_stride if args.doc_stride is not None else args.stride
    cfg = FinetuneConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         eval_batch_size=args.eval_batch_size, max_length=args.max_length,
                         warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, clip_grad=args.clip_grad,
                         seed=args.seed, bf16=args.bf16, device=args.device,
                         early_stopping_patience=args.early_stopping_patience, freeze_encoder=args.freeze_encoder,
                         lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                         lora_targets=tuple(args.lora_targets.split(",")), max_train_examples=args.max_train_examples,
                         max_eval_examples=args.max_eval_examples, stride=stride,
                         max_query_length=args.max_query_length, n_best=args.n_best,
                         max_answer_length=args.max_answer_length, null_threshold=args.null_threshold)
    kwargs: dict = {"cfg": cfg, "test_file": args.test}
    if args.task == "classification":
        kwargs.update(text_column=args.text_column, label_column=args.label_column,
                      text_pair_column=args.text_pair_column, has_header=not args.no_header,
                      regression=args.regression, multi_label=args.multi_label, label_separator=args.label_separator,
                      metric=args.metric)
    elif args.task == "ner":
        kwargs.update(scheme=args.scheme, metric=args.metric or "f1")
    else:
        kwargs.update(version_2=args.version_2, metric=args.metric or "f1")
    result = finetune(args.task, args.model, args.train, args.validation, args.output, **kwargs)
    print(json.dumps(result, indent=2))
    print(f"best model: {args.output}/best")
    return 0
