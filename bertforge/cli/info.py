"""``bertforge info DIR``: what a checkpoint directory holds (config, class, parameter counts)."""

from __future__ import annotations

import argparse

from bertforge.model import MODEL_CLASSES, BertConfig
from bertforge.model.pretrained import load_state_dict


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe a BERT checkpoint directory",
        description="Print the config, architecture and parameter count of a checkpoint directory.",
    )
    p.add_argument("model", help="checkpoint directory (config.json + model.safetensors or pytorch_model.bin)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertforge.hub import resolve_model

    args.model = resolve_model(args.model)
    config = BertConfig.from_pretrained(args.model)
    state = load_state_dict(args.model)
    arch = (config.architectures or ["BertModel"])[0]
    print(f"checkpoint   {args.model}")
    print(f"architecture {arch}{'' if arch in MODEL_CLASSES else ' (not a bertforge class; load as BertModel)'}")
    print(
        f"size         {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads, intermediate {config.intermediate_size}, vocab {config.vocab_size}, "
        f"max positions {config.max_position_embeddings}"
    )
    print(f"tensors      {len(state)} holding {sum(t.numel() for t in state.values()):,} numbers")
    if arch in ("BertForSequenceClassification", "BertForTokenClassification"):
        print(f"labels       {config.id2label}")
    return 0
