"""``bertforge info DIR`` / ``bertforge info --preset NAME``: what a checkpoint holds, or what a preset would be
(config, class, parameter count: counted as ``model.num_parameters()`` counts them, as ``demo`` does).
``bertforge info --variants``: the variants table measured (each family's best-known shape: parameters, embedding
parameters, inference speed relative to bert-base)."""

from __future__ import annotations

import argparse

from bertforge.cli.fields import number
from bertforge.evaluation.variants import base_configs, count, format_table, measure
from bertforge.model import MODEL_CLASSES, PRESETS, BertConfig, BertModel, preset
from bertforge.model.pretrained import load_state_dict


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe a BERT checkpoint directory or a preset",
        description="Print the config, architecture and parameter count of a checkpoint directory (or model name), "
        "or, with --preset, of a named size without any checkpoint.",
    )
    p.add_argument("model", nargs="?", help="checkpoint directory, installed model package or Hub name")
    p.add_argument("--preset", choices=list(PRESETS), help="describe this preset instead (no checkpoint needed)")
    p.add_argument(
        "--variants",
        action="store_true",
        help="measure the variants table: bert-base, roberta-base, distilbert-base, electra-base and albert-base-v2 "
        "at their true shapes (random weights, nothing downloaded): parameters, embedding parameters, speed",
    )
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="--variants: the dtype timed")
    p.add_argument("--batch-size", type=number(int, minimum=1), default=8, help="--variants: sequences per batch")
    p.add_argument("--seq-length", type=number(int, minimum=8, maximum=512), default=128, help="--variants: tokens")
    p.add_argument("--rounds", type=number(int, minimum=1), default=5, help="--variants: timed batches per model")
    p.set_defaults(func=run)


def _count(cls: type, config: BertConfig) -> tuple[int, int]:
    """(parameters of the whole class, of the encoder alone), built on the meta device: shapes only, no memory."""
    import torch

    with torch.device("meta"):
        whole = cls(config).num_parameters()
        encoder = BertModel(config).num_parameters() if cls is not BertModel else whole
    return whole, encoder


def _describe(config: BertConfig, arch: str) -> None:
    known = arch in MODEL_CLASSES
    print(f"architecture {arch}{'' if known else ' (not a bertforge class; load as BertModel)'}")
    print(
        f"size         {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads, intermediate {config.intermediate_size}, vocab {config.vocab_size}, "
        f"max positions {config.max_position_embeddings}"
    )
    if config.num_layer_modules != config.num_hidden_layers or config.inner_group_num != 1:
        groups, inner = config.num_hidden_groups, config.inner_group_num
        print(
            f"sharing      {config.num_hidden_layers} layers run {groups} shared group(s) of {inner} layer(s): "
            f"{config.num_layer_modules} distinct layer(s)"
        )
    whole, encoder = _count(MODEL_CLASSES[arch] if known else BertModel, config)
    head = f" ({encoder:,} in the encoder with its pooler, {whole - encoder:,} in the head)" if whole != encoder else ""
    print(f"parameters   {whole:,}{head}")
    embedding = count(config)[1]
    width = f", width {config.embedding_width}" if config.embedding_width != config.hidden_size else ""
    print(f"embeddings   {embedding:,} parameters ({embedding / max(encoder, 1):.0%} of the encoder{width})")


def _variants(args: argparse.Namespace) -> int:
    import torch

    from bertforge.utils import logger

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(
        f"timing each encoder's forward pass on {args.batch_size} x {args.seq_length} random ids, {args.dtype}, "
        f"{args.rounds} rounds, {torch.get_num_threads()} threads"
    )
    results = measure(
        base_configs(),
        (dtype,),
        args.batch_size,
        args.seq_length,
        args.rounds,
        lambda m: logger.info("variants: %s", m),
    )
    print(format_table(results[dtype], dtype))
    return 0


def run(args: argparse.Namespace) -> int:
    if sum((args.model is not None, args.preset is not None, args.variants)) != 1:
        raise ValueError(
            "give one of a checkpoint (bertforge info DIR), a preset (bertforge info --preset base) and --variants"
        )
    if args.variants:
        return _variants(args)
    if args.preset is not None:
        print(f"preset       {args.preset}")
        _describe(preset(args.preset), "BertModel")
        return 0
    from bertforge.hub import resolve_model

    args.model = resolve_model(args.model)
    config = BertConfig.from_pretrained(args.model)
    state = load_state_dict(args.model)
    arch = config.class_name
    print(f"checkpoint   {args.model}")
    print(
        f"family       {config.model_type}" + (f" (saved as {config.architectures[0]})" if config.architectures else "")
    )
    _describe(config, arch)
    numbers = sum(t.numel() for t in state.values())
    print(f"file         {len(state)} tensors holding {numbers:,} numbers (buffers included)")
    if arch in ("BertForSequenceClassification", "BertForTokenClassification"):
        print(f"labels       {config.id2label}")
    return 0
