"""Loading at the boundary: a model name or path resolves once (``hub.resolve_model``: a directory, an installed model
package, the Hugging Face cache or the Hub) and the directory's kind picks what loads it -- a checkpoint into its
class, a fine-tuning strategy's artefact onto its base model, WordPiece or byte-level BPE vocabulary files into their
tokenizer. The layers below take paths and load one kind each."""

from __future__ import annotations

import os
from typing import Any

from bertforge.adapt.artefact import from_adapter, is_adapter_dir
from bertforge.hub import resolve_model
from bertforge.model import MODEL_CLASSES, BertConfig
from bertforge.model.pretrained import PreTrainedBert
from bertforge.tokenization.auto import load_tokenizer


def load_model(
    name_or_path: str | os.PathLike, cls: type[PreTrainedBert] | None = None, **kwargs: Any
) -> PreTrainedBert:
    """The model of a checkpoint directory or name, as ``cls`` (default: the class it was saved from), or of a
    strategy's artefact (``OUTPUT/adapter``, ``OUTPUT/best`` of an adapter run): its base with the adapter on it.
    ``kwargs`` go to ``from_pretrained`` (``num_labels=3``, ``dtype=...``, ``device=...``)."""
    path = resolve_model(name_or_path)
    if not is_adapter_dir(path):
        if cls is not None:
            return cls.from_pretrained(path, **kwargs)
        config = BertConfig.from_pretrained(path)  # read once: it names the class and builds it
        return MODEL_CLASSES[config.class_name].from_pretrained(path, config=config, **kwargs)
    dtype, device = kwargs.pop("dtype", None), kwargs.pop("device", None)
    if kwargs:
        raise ValueError(f"{path} is an adapter directory: its head and labels come with it (no {', '.join(kwargs)})")
    model: Any = from_adapter(path)
    if cls is not None and not isinstance(model, cls):
        raise ValueError(f"{path} holds an adapter for a {type(model).__name__}, not a {cls.__name__}")
    model.name_or_path = path
    return model.to(device=device, dtype=dtype) if dtype is not None or device is not None else model


__all__ = ["load_model", "load_tokenizer"]
