"""``bertforge preprocess``: text / JSON lines -> Megatron MMIDIDX datasets (flag names as Megatron-LM's
tools/preprocess_data.py)."""

from __future__ import annotations

import argparse

from bertforge.tokenization.tokenizer import TOKENIZER_TYPES


def register(sub: argparse._SubParsersAction) -> None:
    from bertforge.cli.fields import number

    p = sub.add_parser(
        "preprocess",
        help="tokenize a corpus into Megatron .bin/.idx files",
        description="Tokenize text into Megatron-LM MMIDIDX datasets ({prefix}_{key}_sentence.bin/.idx)."
        " Streams with constant memory; output is written atomically.",
    )
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="FILE",
        help="JSON lines (.jsonl/.json, one document per line) or plain text files",
    )
    p.add_argument("--json-keys", nargs="+", default=["text"], help="JSON fields to tokenize (one dataset each)")
    p.add_argument("--output-prefix", required=True, help="path prefix of the output files")
    p.add_argument(
        "--vocab-file",
        "--tokenizer-model",
        required=True,
        help="BERT vocab.txt (RoBERTa's vocab.json with GPT2BPETokenizer; a spiece.model or tokenizer directory with "
        "SentencePieceTokenizer)",
    )
    p.add_argument("--merge-file", default=None, help="merges.txt of a byte-level BPE vocabulary (GPT2BPETokenizer)")
    p.add_argument(
        "--tokenizer-type",
        default="BertWordPieceLowerCase",
        choices=sorted(TOKENIZER_TYPES),
        help="uncased (BertWordPieceLowerCase), cased (BertWordPieceCase), byte-level BPE (GPT2BPETokenizer, "
        "RoBERTa's; needs --merge-file) or SentencePiece unigram (SentencePieceTokenizer, ALBERT's)",
    )
    split = p.add_mutually_exclusive_group()
    split.add_argument(
        "--split-sentences",
        dest="split_sentences",
        action="store_true",
        default=True,
        help="one sequence per sentence (the default; BERT's sentence pairs need it)",
    )
    split.add_argument(
        "--no-split-sentences",
        dest="split_sentences",
        action="store_false",
        help="one sequence per document (Megatron's default without --split-sentences)",
    )
    p.add_argument("--workers", type=number(int, minimum=1), default=1, help="tokenizer processes")
    p.add_argument("--append-eod", action="store_true", help="append [SEP] to each document's last sentence")
    p.add_argument(
        "--document-per-file",
        action="store_true",
        help="plain text: each file is one document (default: each blank-line-separated block)",
    )
    p.add_argument(
        "--errors",
        choices=["strict", "replace"],
        default="strict",
        help="non-UTF-8 bytes: fail naming file, line and offset (strict) or replace with U+FFFD",
    )
    p.set_defaults(func=run)


def _merges(args: argparse.Namespace) -> str | None:
    if args.tokenizer_type == "GPT2BPETokenizer" and not args.merge_file:
        raise ValueError("--tokenizer-type GPT2BPETokenizer needs --merge-file (merges.txt) with --vocab-file")
    if args.merge_file and args.tokenizer_type != "GPT2BPETokenizer":
        raise ValueError("--merge-file is for byte-level BPE: add --tokenizer-type GPT2BPETokenizer")
    return args.merge_file


def run(args: argparse.Namespace) -> int:
    from bertforge.data.preprocess import preprocess

    stats = preprocess(
        args.input,
        args.output_prefix,
        args.vocab_file,
        lowercase=bool(TOKENIZER_TYPES[args.tokenizer_type]),
        merge_file=_merges(args),
        json_keys=args.json_keys,
        split_sentences_=args.split_sentences,
        workers=args.workers,
        append_eod=args.append_eod,
        document_per_file=args.document_per_file,
        errors=args.errors,
    )
    print(stats.summary())
    for prefix in stats.outputs:
        print(f"wrote {prefix}.bin and {prefix}.idx")
    return 0
