"""``bertforge tokenizer train|encode``: train a WordPiece vocabulary, or look at how text tokenizes."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from bertforge.cli.fields import number

    p = sub.add_parser(
        "tokenizer",
        help="train a vocabulary (WordPiece or BPE) or encode text",
        description="Train a BERT WordPiece or RoBERTa byte-level BPE vocabulary, or show the tokens of a text.",
    )
    tsub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    t = tsub.add_parser("train", help="train a vocabulary from text files (streamed)")
    t.add_argument("--input", nargs="+", required=True, metavar="FILE", help="UTF-8 text files")
    t.add_argument(
        "--vocab-size", type=number(int, minimum=1), default=30522, help="vocabulary size, special tokens included"
    )
    t.add_argument(
        "--model",
        choices=["wordpiece", "bpe", "unigram"],
        default="wordpiece",
        help="wordpiece (BERT, vocab.txt), bpe (RoBERTa's byte-level BPE, vocab.json + merges.txt, never lowercased) "
        "or unigram (ALBERT's SentencePiece, tokenizer.json)",
    )
    case = t.add_mutually_exclusive_group()
    case.add_argument(
        "--lowercase", dest="lowercase", action="store_true", default=True, help="uncased vocabulary (default)"
    )
    case.add_argument("--cased", dest="lowercase", action="store_false", help="cased vocabulary")
    t.add_argument("--min-frequency", type=int, default=2, help="least count for a piece to be merged")
    t.add_argument(
        "--limit-alphabet", type=number(int, minimum=1), default=1000, help="most distinct initial characters kept"
    )
    t.add_argument(
        "--errors",
        choices=["strict", "replace"],
        default="strict",
        help="non-UTF-8 bytes: fail naming file and offset (strict) or replace with U+FFFD",
    )
    t.add_argument("--output", required=True, help="directory for vocab.txt and tokenizer files")
    t.set_defaults(func=run_train)
    e = tsub.add_parser("encode", help="print the tokens and ids of a text")
    e.add_argument(
        "--model", required=True, help="a tokenizer directory (vocab.txt, vocab.json + merges.txt, or SentencePiece's)"
    )
    e.add_argument("text", nargs="+", help="text (two texts form a pair)")
    e.set_defaults(func=run_encode)


def run_train(args: argparse.Namespace) -> int:
    from bertforge.tokenization import train_vocab

    tok = train_vocab(
        args.input,
        vocab_size=args.vocab_size,
        lowercase=args.lowercase,
        min_frequency=args.min_frequency,
        limit_alphabet=args.limit_alphabet,
        output=args.output,
        errors=args.errors,
        model=args.model,
    )
    if args.model == "bpe":
        print(f"wrote {args.output}/vocab.json and merges.txt: {tok.vocab_size} tokens (byte-level BPE)")
    elif args.model == "unigram":
        case = "uncased" if args.lowercase else "cased"
        print(f"wrote {args.output}/tokenizer.json: {tok.vocab_size} SentencePiece unigram pieces ({case})")
    else:
        print(f"wrote {args.output}/vocab.txt: {tok.vocab_size} tokens ({'uncased' if args.lowercase else 'cased'})")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from bertforge.tokenization import load_tokenizer

    tok = load_tokenizer(args.model)
    pair = args.text[1] if len(args.text) > 1 else None
    enc = tok(args.text[0], pair, return_offsets_mapping=True)
    print(json.dumps({"tokens": enc.tokens(), **{k: v for k, v in enc.items()}}))
    return 0
