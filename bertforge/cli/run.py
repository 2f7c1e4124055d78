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
    p.add_argument("--output", default=None, help="write the results here instead of stdout")
    p.add_argument(
        "--format",
        choices=["jsonl", "html"],
        default="jsonl",
        help="jsonl: one JSON line per input; html (ner): one page, each entity marked in its type's colour "
        "(displaCy's layout)",
    )
    p.add_argument("--question", default=None, help="question-answering: the question (with --context)")
    p.add_argument("--context", default=None, help="question-answering: the passage the answer is in")
    p.add_argument("--batch-size", type=number(int, minimum=1), default=32)
    p.add_argument(
        "--max-length", type=number(int, minimum=4), default=None, help="tokens per window (longer inputs are windowed)"
    )
    p.add_argument("--device", default=None)
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=["fp32", "bf16", "fp16", "auto", "int8"],
        help="weights' dtype: fp32 (default: the same numbers as transformers); auto = bf16 where the machine runs "
        "it natively, else fp32; int8 = dynamic quantization of the linear layers (CPU); each one's speed and "
        "agreement: benchmarks/README.md",
    )
    _add_task_options(p)
    p.set_defaults(func=run)


def _task_options() -> dict[str, list]:
    """flag -> [(task, its Option)] over every pipeline's declared options."""
    from bertforge.pipelines import PIPELINES

    found: dict[str, list] = {}
    for task, cls in PIPELINES.items():
        for option in cls.cli_options:
            found.setdefault(option.flag, []).append((task, option))
    return found


def _add_task_options(p: argparse.ArgumentParser) -> None:
    """One flag per option the pipelines declare; a flag several pipelines share is added once, its help naming each
    task's use, its range the widest (each task's own is checked when the task is known)."""
    from bertforge.cli.fields import number

    g = p.add_argument_group("task options (each pipeline's own)")
    for flag, uses in _task_options().items():
        first = uses[0][1]
        kw: dict = {"dest": first.dest, "default": argparse.SUPPRESS}
        kw["help"] = "; ".join(f"{task}: {o.help}" for task, o in uses).replace("%", "%%")
        if first.kind is bool:
            kw["action"] = argparse.BooleanOptionalAction if first.negatable else "store_true"
        elif first.choices:
            kw["choices"] = first.choices
        elif first.kind in (int, float):
            low = min((o.minimum for _, o in uses if o.minimum is not None), default=None)
            high = max((o.maximum for _, o in uses if o.maximum is not None), default=None)
            kw.update(type=number(first.kind, low, high), metavar="N" if first.kind is int else "X")
        else:
            kw["metavar"] = "TEXT"
        g.add_argument(flag, **kw)


def _task_call(args: argparse.Namespace, task: str) -> dict:
    """The call's keywords from the flags given for ``task`` (and its command-line defaults); a flag of another
    task, a value outside this task's range or a required flag missing is one line naming the flag."""
    from bertforge.pipelines import PIPELINES

    own = {o.flag: o for o in PIPELINES[task].cli_options}
    given = vars(args)
    for flag, uses in _task_options().items():
        if uses[0][1].dest in given and flag not in own:
            raise ValueError(f"{flag} is an option of {', '.join(t for t, _ in uses)}, not of {task}")
    call = {}
    for option in own.values():
        if option.dest not in given:
            if option.required:
                raise ValueError(f"{task} needs {option.flag}")
            if option.default is None:
                continue
        value = given.get(option.dest, option.default)
        if option.minimum is not None and value < option.minimum:
            raise ValueError(f"{option.flag} must be >= {option.minimum} for {task}, got {value}")
        call[option.keyword or option.dest] = option.call_value(value)
    return call


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
    from bertforge.utils import atomic_write_text

    task = ALIASES.get(args.task, args.task)
    call = _task_call(args, task)  # flag errors before the model loads
    if args.format == "html" and task != "token-classification":
        raise ValueError(f"--format html draws entities: it is for ner (token-classification), not {args.task}")
    kwargs = dict(
        batch_size=args.batch_size,
        max_length=args.max_length,
        device=args.device,
        dtype=args.dtype,
        show_progress=args.input is not None,
    )
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
    results = pipe(list(inputs), **call)
    if args.format == "html":
        from bertforge.pipelines.render import render

        text = render([r.to_displacy() for r in results], page=True)
    else:
        text = "".join(
            json.dumps({"input": item, "result": _jsonable(result)}, ensure_ascii=False) + "\n"
            for item, result in zip(inputs, results)
        )
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0
