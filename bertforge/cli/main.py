"""The ``bertforge`` command: one sub-command per job, each a thin layer over a public function.

Each sub-command module exposes ``register(subparsers)``, which adds its parser and sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import bertforge

# Sub-command modules, in the order --help lists them.
COMMANDS = ["pretrain", "preprocess", "tokenizer", "finetune", "run", "models", "convert", "demo", "info"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
