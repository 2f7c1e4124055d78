"""Serving on CPUs: int8 dynamic quantization and ONNX export.

- ``quantize_int8(model)``: every ``nn.Linear`` of the encoder and head becomes a dynamically quantized int8 linear
  layer (weights int8 with one scale per output row, activations quantized per batch at run time; torch's
  ``quantize_dynamic``): per-row scales lose less accuracy than one scale per matrix at the same speed
  (benchmarks/README.md). Embedding tables, LayerNorm and the tied MLM decoder stay fp32. CPU only; the model is
  copied, not changed.
- ``export_onnx(model, path)``: an ONNX graph of any head with dynamic batch and sequence axes (and choices, for
  multiple choice), inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the family has them),
  outputs under transformers' names. The graph runs the padded path (padding-free execution packs by data-dependent
  indices, which a static graph cannot hold); the export is checked against bertforge on a second batch of another
  shape, and the largest difference is returned.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn

from bertforge.model.pretrained import PreTrainedBert

OUTPUT_NAMES = {
    "BertModel": ("last_hidden_state", "pooler_output"),
    "BertForPreTraining": ("prediction_logits", "seq_relationship_logits"),
    "BertForQuestionAnswering": ("start_logits", "end_logits"),
}
"""The output fields each class's graph returns (every other head: ``logits``)."""


def quantize_int8(model: PreTrainedBert) -> PreTrainedBert:
    """A copy of ``model`` (fp32, on the CPU) with int8 dynamically quantized linear layers (see the module notes)."""
    weight = next(model.parameters())
    if weight.device.type != "cpu":
        raise ValueError(f"int8 dynamic quantization runs on the CPU; the model is on {weight.device}")
    if weight.dtype != torch.float32:
        raise ValueError(f"int8 quantization starts from fp32 weights; the model is {weight.dtype}")
    import warnings

    with warnings.catch_warnings():  # torch marks torch.ao.quantization as deprecated in favour of torchao
        warnings.simplefilter("ignore")
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig  # one scale per output row
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).eval(), {nn.Linear: qconfig}, dtype=torch.qint8
        )
    quantized.quantized = True
    return quantized


class _Graph(nn.Module):
    """The model as the graph sees it: positional tensor inputs in, a tuple of output tensors out."""

    def __init__(self, model: PreTrainedBert, names: tuple[str, ...], types: bool):
        super().__init__()
        self.model, self.names, self.types = model, names, types

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.types:
            kwargs["token_type_ids"] = token_type_ids
        out = self.model(**kwargs)
        return tuple(getattr(out, n) for n in self.names)


def _sample(model: PreTrainedBert, batch: int, seq: int, choices: int | None, seed: int) -> dict[str, torch.Tensor]:
    """Random inputs of a shape (right-padded rows of different lengths), token ids clear of the special ids."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, choices, seq) if choices else (batch, seq)
    ids = torch.randint(5, model.config.vocab_size, shape, generator=g)
    mask = torch.ones_like(ids)
    mask[..., max(2, seq - 3) :][(torch.arange(batch) % 2 == 1)] = 0
    ids = ids.masked_fill(mask == 0, model.config.pad_token_id)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def export_onnx(model: PreTrainedBert, path: str | os.PathLike, opset: int = 18) -> dict[str, Any]:
    """Write ``model`` as an ONNX graph to ``path`` (atomically); returns the input and output names and the largest
    absolute difference to bertforge on a check batch of another shape than the one traced."""
    import importlib.util

    from bertforge.utils import atomic_path

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"ONNX export needs {' and '.join(missing)}: pip install 'bertforge[onnx]'")
    if getattr(model, "quantized", False):
        raise ValueError("export the fp32 model: int8 for ONNX is onnxruntime's own quantization of the exported graph")
    name = type(model).__name__
    names = OUTPUT_NAMES.get(name, ("logits",))
    if name == "BertModel" and getattr(model, "pooler", None) is None:
        names = ("last_hidden_state",)
    types = model.config.has_token_types
    choices = 2 if name == "BertForMultipleChoice" else None
    model = copy.deepcopy(model).float().cpu().eval()
    encoder: Any = model if hasattr(model, "embeddings") else model.bert
    encoder.padding_free = False
    graph = _Graph(model, names, types).eval()
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if types else [])
    axes = {0: "batch", 1: "choices", 2: "sequence"} if choices else {0: "batch", 1: "sequence"}
    dynamic = {k: axes for k in inputs}
    example = _sample(model, 2, 9, choices, 0)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    import warnings

    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            tuple(example[k] for k in inputs),
            tmp,
            input_names=inputs,
            output_names=list(names),
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    check = _sample(model, 3, 13, choices, 1)
    difference = None
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(None, {k: check[k].numpy() for k in inputs})
        with torch.no_grad():
            want = graph(*(check[k] for k in inputs))
        # both run the padded path, so padded positions agree too
        difference = max(float((torch.from_numpy(g_) - w).abs().max()) for g_, w in zip(got, want))
    return {"inputs": inputs, "outputs": list(names), "max_abs_difference": difference, "opset": opset}
