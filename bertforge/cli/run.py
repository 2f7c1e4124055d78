"""``bertforge run TASK --model DIR [TEXT ...] [--input FILE.jsonl]``: a pipeline from the command line.

Each result is printed as one JSON line (or written to --output), in input order. JSON-lines input: one object per
line with ``text`` (and ``text_pair`` for pairs), or ``question`` and ``context`` for question-answering; a line that
is a bare JSON string is a text.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from bertforge.cli.fields import number
    from bertforge.pipelines import TASKS

    count, at_least_0 = number(int, minimum=1), number(int, minimum=0)

    p = sub.add_parser(
        "run",
        help="run a pipeline: fill-mask, text-classification, ner, question-answering, "
        "zero-shot-classification, feature-extraction, text-generation",
        description="Run a pipeline on texts given as arguments or in a JSON-lines file; results are "
        "JSON lines in input order.",
    )
    p.add_argument("task", choices=TASKS)
    p.add_argument("texts", nargs="*", help="texts (for question-answering: use --question/--context or --input)")
    p.add_argument(
        "--model", required=True, help="Hugging Face BERT directory with the task's head (or an adapter directory)"
    )
    p.add_argument(
        "--adapter", default=None, help="a fine-tuning strategy's artefact (OUT/adapter) to run on the base --model"
    )
    p.add_argument("--input", default=None, help="JSON-lines file of inputs (shows a progress bar)")
    p.add_argument("--output", default=None, help="write JSON lines here instead of stdout")
    p.add_argument("--batch-size", type=count, default=32)
    p.add_argument(
        "--max-length", type=number(int, minimum=4), default=None, help="tokens per window (longer inputs are windowed)"
    )
    p.add_argument("--device", default=None)
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=["fp32", "bf16", "fp16", "auto", "int8"],
        help="weights' dtype: fp32 (default: the same numbers as transformers); auto = bf16 where the machine runs "
        "it natively, else fp32; int8 = dynamic quantization of the linear layers (CPU); see the README for each "
        "one's speed and agreement",
    )
    p.add_argument(
        "--top-k",
        type=at_least_0,
        default=None,
        help="fill-mask (5), text-classification (1), qa (1), text-generation (0: off)",
    )
    p.add_argument("--targets", default=None, help="fill-mask: comma-separated candidate tokens")
    p.add_argument("--function-to-apply", default=None, choices=["softmax", "sigmoid", "none"])
    p.add_argument(
        "--aggregation-strategy",
        default="simple",
        choices=["none", "simple", "first", "average", "max"],
        help="token-classification",
    )
    p.add_argument("--stride", type=at_least_0, default=None, help="overlap of windows of long inputs, in tokens")
    p.add_argument("--question", default=None)
    p.add_argument("--context", default=None)
    p.add_argument("--doc-stride", type=at_least_0, default=128)
    p.add_argument("--max-answer-len", type=count, default=15)
    p.add_argument("--handle-impossible-answer", action="store_true")
    p.add_argument("--candidate-labels", default=None, help="zero-shot: comma-separated labels")
    p.add_argument("--hypothesis-template", default="This example is {}.")
    p.add_argument("--multi-label", action="store_true")
    p.add_argument(
        "--pooling",
        default="default",
        choices=["default", "mean", "cls", "none"],
        help="feature-extraction (default none; mean for sentence-embedding)",
    )
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None)
    g = p.add_argument_group("text-generation (causal checkpoints)")
    g.add_argument("--max-new-tokens", type=count, default=32)
    g.add_argument("--do-sample", action="store_true", help="sample (default: greedy)")
    g.add_argument("--temperature", type=number(float, minimum=1e-6), default=1.0)
    g.add_argument(
        "--top-p",
        type=number(float, minimum=1e-6, maximum=1.0),
        default=1.0,
        help="nucleus sampling: keep the smallest set reaching P",
    )
    g.add_argument(
        "--seed",
        type=number(int, minimum=0, maximum=2**32 - 1),
        default=None,
        help="seed of the sampler (prompt i uses seed + i)",
    )
    g.add_argument("--no-cache", action="store_true", help="recompute every position each step (for comparison)")
    p.set_defaults(func=run)


def _read_inputs(path: str, task: str) -> list:
    from bertforge.tasks.readers import read_jsonl

    items: list = []
    for number, obj in read_jsonl(path):
        if task == "question-answering":
            if not isinstance(obj, dict) or "question" not in obj or "context" not in obj:
                raise ValueError(f"{path}: line {number}: needs 'question' and 'context'")
            items.append({"question": obj["question"], "context": obj["context"]})
        elif isinstance(obj, str):
            items.append(obj)
        elif isinstance(obj, dict) and "text" in obj:
            items.append(
                {"text": obj["text"], "text_pair": obj["text_pair"]}
                if obj.get("text_pair") is not None
                else obj["text"]
            )
        else:
            raise ValueError(f"{path}: line {number}: needs a 'text' field (or a JSON string)")
    if not items:
        raise ValueError(f"{path} holds no inputs")
    return items


def _jsonable(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def run(args: argparse.Namespace) -> int:
    from bertforge.pipelines import ALIASES, pipeline

    task = ALIASES.get(args.task, args.task)
    kwargs = dict(
        batch_size=args.batch_size,
        max_length=args.max_length,
        device=args.device,
        dtype=args.dtype,
        show_progress=args.input is not None,
    )
    if task == "feature-extraction":
        if args.pooling != "default":
            kwargs["pooling"] = None if args.pooling == "none" else args.pooling
        if args.normalize is not None:
            kwargs["normalize"] = args.normalize
    if args.adapter:
        kwargs["adapter"] = args.adapter
    pipe = pipeline(args.task, model=args.model, **kwargs)
    if args.input:
        inputs = _read_inputs(args.input, task)
    elif task == "question-answering":
        if not args.question or not args.context:
            raise ValueError("question-answering needs --question and --context (or --input FILE.jsonl)")
        inputs = [{"question": args.question, "context": args.context}]
    else:
        inputs = args.texts
    if not inputs:
        raise ValueError("no input: give texts as arguments or --input FILE.jsonl")
    call: dict = {}
    if task == "fill-mask":
        call = {"top_k": args.top_k or 5}
        if args.targets:
            call["targets"] = args.targets.split(",")
    elif task == "text-classification":
        call = {"top_k": args.top_k or 1, "function_to_apply": args.function_to_apply, "stride": args.stride}
    elif task == "token-classification":
        call = {"aggregation_strategy": args.aggregation_strategy, "stride": args.stride}
    elif task == "question-answering":
        call = {
            "top_k": args.top_k or 1,
            "doc_stride": args.doc_stride,
            "max_answer_len": args.max_answer_len,
            "handle_impossible_answer": args.handle_impossible_answer,
        }
    elif task == "zero-shot-classification":
        if not args.candidate_labels:
            raise ValueError("zero-shot-classification needs --candidate-labels a,b,c")
        call = {
            "candidate_labels": args.candidate_labels,
            "hypothesis_template": args.hypothesis_template,
            "multi_label": args.multi_label,
        }
    elif task == "feature-extraction":
        call = {"stride": args.stride}
    elif task == "text-generation":
        call = {
            "max_new_tokens": args.max_new_tokens,
            "do_sample": args.do_sample,
            "temperature": args.temperature,
            "top_k": args.top_k or 0,
            "top_p": args.top_p,
            "seed": args.seed,
            "use_cache": not args.no_cache,
        }
    results = pipe(list(inputs), **call)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for item, result in zip(inputs, results):
            out.write(json.dumps({"input": item, "result": _jsonable(result)}, ensure_ascii=False) + "\n")
    finally:
        if args.output:
            out.close()
    return 0
