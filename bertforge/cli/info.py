"""``bertforge info DIR`` / ``bertforge info --preset NAME``: what a checkpoint holds, or what a preset would be
(config, class, parameter count: counted as ``model.num_parameters()`` counts them, as ``demo`` does)."""

from __future__ import annotations

import argparse

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
    whole, encoder = _count(MODEL_CLASSES[arch] if known else BertModel, config)
    head = f" ({encoder:,} in the encoder with its pooler, {whole - encoder:,} in the head)" if whole != encoder else ""
    print(f"parameters   {whole:,}{head}")


def run(args: argparse.Namespace) -> int:
    if (args.model is None) == (args.preset is None):
        raise ValueError("give one of a checkpoint (bertforge info DIR) and a preset (bertforge info --preset base)")
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
