"""``bertforge export onnx``: a checkpoint as an ONNX graph (dynamic batch and sequence axes, any head)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from bertforge.cli.fields import number

    p = sub.add_parser(
        "export",
        help="export a checkpoint for serving (ONNX)",
        description="Write a checkpoint as an ONNX graph that onnxruntime runs: dynamic batch and sequence axes, "
        "inputs input_ids, attention_mask (and token_type_ids), outputs under transformers' names; checked against "
        "bertforge on a batch of another shape when onnxruntime is installed.",
    )
    fmt = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    o = fmt.add_parser("onnx", help="an ONNX graph (torch.onnx, opset 18)")
    o.add_argument("--model", required=True, help="checkpoint directory or model name")
    o.add_argument("--output", required=True, help="the .onnx file to write")
    o.add_argument("--architecture", default=None, help="the class to export (default: the saved architecture)")
    o.add_argument("--opset", type=number(int, minimum=7), default=18, help="ONNX opset version (default: 18)")
    o.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertforge.deploy import export_onnx
    from bertforge.hub import resolve_model
    from bertforge.model import MODEL_CLASSES, BertConfig
    from bertforge.model.convert import our_architecture

    path = resolve_model(args.model)
    arch = our_architecture(args.architecture) if args.architecture else BertConfig.from_pretrained(path).class_name
    if arch not in MODEL_CLASSES:
        raise ValueError(f"architecture {arch!r} is not one of {', '.join(MODEL_CLASSES)}")
    report = export_onnx(MODEL_CLASSES[arch].from_pretrained(path), args.output, opset=args.opset)
    print(json.dumps({"output": args.output, "architecture": arch, **report}))
    return 0
