"""The ``bertforge`` command: one sub-command per job, each a thin layer over a public function.

Each sub-command module exposes ``register(subparsers)``, which adds its parser and sets ``func``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys
from typing import NoReturn

import bertforge

# Sub-command modules, in the order --help lists them.
COMMANDS = [
    "pretrain",
    "preprocess",
    "tokenizer",
    "finetune",
    "distill",
    "evaluate",
    "run",
    "serve",
    "models",
    "convert",
    "export",
    "demo",
    "info",
]


# Megatron-LM pretrain_bert.py flags that bertforge does not implement (model/pipeline parallelism, Megatron's own
# kernels and optimizer sharding): named as such instead of "unrecognized".
MEGATRON_ONLY = {
    "--use-flash-attn",
    "--sequence-parallel",
    "--use-distributed-optimizer",
    "--overlap-grad-reduce",
    "--overlap-param-gather",
    "--context-parallel-size",
    "--virtual-pipeline-model-parallel-size",
    "--use-mcore-models",
    "--transformer-impl",
    "--tokenizer-model",
    "--data-impl",
    "--mmap-warmup",
    "--loss-scale",
    "--initial-loss-scale",
    "--accumulate-allreduce-grads-in-fp32",
    "--attention-softmax-in-fp32",
    "--no-masked-softmax-fusion",
    "--no-bias-gelu-fusion",
    "--no-bias-dropout-fusion",
    "--rampup-batch-size",
    "--use-checkpoint-args",
    "--no-load-optim",
    "--no-load-rng",
    "--finetune",
    "--dataloader-type",
    "--distributed-timeout-minutes",
    "--num-layers-per-virtual-pipeline-stage",
}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage block is what ``--help`` is for)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _unknown(extra: list[str], parser: argparse.ArgumentParser) -> str:
    """``unrecognized arguments: ...`` with what each unknown flag is: a Megatron flag bertforge does not implement,
    or a near miss of one that exists."""
    known = [s for action in parser._actions for s in action.option_strings]
    notes = []
    for flag in (x.split("=", 1)[0] for x in extra if x.startswith("--")):
        if flag in MEGATRON_ONLY:
            notes.append(f"{flag} is a Megatron-LM flag that bertforge does not implement")
        elif close := difflib.get_close_matches(flag, known, n=1, cutoff=0.75):
            notes.append(f"{flag}: did you mean {close[0]}?")
    return f"unrecognized arguments: {' '.join(extra)}" + (f" ({'; '.join(notes)})" if notes else "")


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost parser the command line selected (``bertforge finetune ner`` -> the ner parser)."""
    while True:
        subs = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, subs.dest, None) if subs is not None else None
        if subs is None or name not in subs.choices:
            return parser
        parser = subs.choices[name]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bertforge",
        description="Pretrain, fine-tune and run BERT encoders (Hugging Face and Megatron-LM compatible).",
    )
    parser.add_argument("--version", action="version", version=f"bertforge {bertforge.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"bertforge.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from bertforge.utils import tune_malloc

    tune_malloc()  # keep freed batch buffers in the heap (BERTFORGE_NO_MALLOC_TUNING=1 turns it off)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) == "run" and not any(x.startswith("-") for x in extra):
        args.texts = list(args.texts) + extra  # texts after the options: bertforge run TASK --model M TEXT...
    elif extra:
        chosen = _chosen(parser, args)
        chosen.error(_unknown(extra, chosen))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as e:
        # User errors (bad file, bad field, bad flag value) end with one clear line, not a traceback.
        print(f"bertforge {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
