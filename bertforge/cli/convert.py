"""``bertforge convert SRC --output DIR``: write a clean Hugging Face directory (config.json, model.safetensors,
tokenizer files) from a training checkpoint, a run directory (its newest checkpoint), or any BERT directory (for
instance one with pytorch_model.bin or TensorFlow-era gamma/beta names)."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="training checkpoint / run / BERT dir -> clean Hugging Face directory", description=__doc__
    )
    p.add_argument("source", help="checkpoint directory, run directory, or Hugging Face BERT directory")
    p.add_argument("--output", required=True, help="directory to write")
    p.add_argument(
        "--architecture", default=None, help="class to save as (default: the one in config.json), e.g. BertForMaskedLM"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertforge.hub import resolve_model
    from bertforge.model import MODEL_CLASSES, BertConfig
    from bertforge.model.convert import our_architecture
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.checkpoint import has_checkpoint, resolve_checkpoint

    source = resolve_checkpoint(args.source) if has_checkpoint(args.source) else resolve_model(args.source)
    config = BertConfig.from_pretrained(source)
    arch = our_architecture(args.architecture) if args.architecture else config.class_name
    if arch not in MODEL_CLASSES:
        raise ValueError(f"architecture {arch!r} is not one of {', '.join(MODEL_CLASSES)}")
    model = MODEL_CLASSES[arch].from_pretrained(source)
    if os.path.abspath(args.output) == os.path.abspath(source):
        raise ValueError("--output must differ from the source directory")
    model.save_pretrained(args.output)
    tokenizer = "no tokenizer files found"
    if os.path.exists(os.path.join(source, "vocab.txt")) or os.path.exists(os.path.join(source, "tokenizer.json")):
        load_tokenizer(source).save_pretrained(args.output)
        tokenizer = "tokenizer files written"
    print(f"wrote {args.output}: {arch}, {model.num_parameters():,} parameters, from {source}; {tokenizer}")
    return 0
