"""The model a server holds: one base loaded once; the views each request runs on (the checkpoint's own head, and
each adapter's head over the same encoder); tokenization with TEI's truncation rules; one padding-free forward pass
per batch. Every model call happens on the batcher's one worker thread, which is what makes switching adapters on
the shared encoder safe."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bertforge.adapt.apply import remove_strategy
from bertforge.adapt.artefact import head_overrides, load_adapter, read_adapter_config
from bertforge.auto import load_model, load_tokenizer
from bertforge.hub import resolve_model
from bertforge.model import MODEL_CLASSES, BertModel
from bertforge.model.pretrained import PreTrainedBert
from bertforge.pipelines import PIPELINES
from bertforge.pipelines.base import Pipeline, resolve_dtype
from bertforge.tasks.features import predict
from bertforge.utils import default_device

log = logging.getLogger("bertforge.serve")

ROUTES_OF_CLASS = {
    "BertForSequenceClassification": ("classify", "rerank", "zero-shot-classification"),
    "BertForTokenClassification": ("ner",),
    "BertForQuestionAnswering": ("question-answering",),
    "BertForMaskedLM": ("fill-mask",),
    "BertForPreTraining": ("fill-mask",),
    "BertLMHeadModel": ("generate",),
}
"""What each head serves besides embeddings (every view has an encoder, so every view embeds)."""

PIPELINE_OF_ROUTE = {
    "fill-mask": "fill-mask",
    "ner": "token-classification",
    "question-answering": "question-answering",
    "zero-shot-classification": "zero-shot-classification",
    "generate": "text-generation",
}

POOLINGS = ("mean", "cls", "max", "lasttoken")

KERNEL_CACHE = "16"
"""oneDNN's cache of compiled kernels, one per input shape (default 1024). Padding-free batches give a new shape to
almost every batch (their total token count), so a server's cache would only fill, and resident memory with it; a
small cache keeps it level at no cost in speed (benchmarks/README.md has the measurements)."""


def bound_kernel_cache() -> None:
    """Cap oneDNN's kernel cache unless the user set ONEDNN_PRIMITIVE_CACHE_CAPACITY; read when the first kernel is
    built, so this must run before the model's first forward pass in the process."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", KERNEL_CACHE)


class InputError(ValueError):
    """A request's input the model cannot take: ``kind`` is TEI's error type (validation, tokenizer, empty)."""

    def __init__(self, message: str, kind: str = "validation", status: int = 422):
        super().__init__(message)
        self.kind, self.status = kind, status


@dataclass
class View:
    """A head the server runs: the base checkpoint's (``name`` None) or an adapter's over the shared encoder."""

    name: str | None
    model: PreTrainedBert
    directory: str | None = None
    cfg: Any = None
    meta: dict = field(default_factory=dict)
    originals: dict[str, torch.Tensor] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)

    @property
    def encoder(self) -> BertModel:
        return self.model if isinstance(self.model, BertModel) else self.model.bert  # type: ignore[return-value]

    @property
    def routes(self) -> tuple[str, ...]:
        return ("embed", *ROUTES_OF_CLASS.get(type(self.model).__name__, ()))


@dataclass
class Encoded:
    """Token ids of a request's inputs, ready for a batch: one feature per input."""

    features: list[dict]
    tokens: list[list[str]] | None = None
    offsets: list[list[tuple[int, int]]] | None = None
    specials: list[list[int]] | None = None

    @property
    def lengths(self) -> list[int]:
        return [len(f["input_ids"]) for f in self.features]


def sentence_transformers_settings(path: str) -> dict[str, Any]:
    """The pooling, prompts and input limit a sentence-transformers directory declares (empty for other models)."""
    out: dict[str, Any] = {}
    modules = os.path.join(path, "modules.json")
    if os.path.exists(modules):
        for module in _read_json(modules):
            if str(module.get("type", "")).endswith("Pooling"):
                pooling = _read_json(os.path.join(path, module.get("path", ""), "config.json"))
                modes = [
                    m
                    for m in POOLINGS
                    if pooling.get(f"pooling_mode_{m}_token")
                    or pooling.get(f"pooling_mode_{m}_tokens")
                    or pooling.get(f"pooling_mode_{m}")
                ]
                if not modes:
                    raise ValueError(f"{modules}: the pooling module uses none of {', '.join(POOLINGS)}")
                out["pooling"] = modes[0]
    settings = os.path.join(path, "sentence_bert_config.json")
    if os.path.exists(settings) and _read_json(settings).get("max_seq_length"):
        out["max_seq_length"] = int(_read_json(settings)["max_seq_length"])
    prompts = os.path.join(path, "config_sentence_transformers.json")
    if os.path.exists(prompts):
        out["prompts"] = dict(_read_json(prompts).get("prompts") or {})
    return out


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot be read as JSON ({e})") from None


class ModelHost:
    """The base model, its tokenizer and the adapters' views, loaded once.

    Args:
        model: a checkpoint directory or name (as everywhere in bertforge).
        dtype: fp32 (default), bf16, auto (bf16 where the device runs it natively), int8 (dynamic quantization).
        adapters: {name: directory} of fine-tuning artefacts to serve on the base.
        pooling: how embeddings pool token vectors (default: the sentence-transformers config's, else mean).
    """

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "fp32",
        device: str | None = None,
        adapters: dict[str, str] | None = None,
        pooling: str | None = None,
    ):
        bound_kernel_cache()
        self.path = resolve_model(model)
        self.name = model
        self.device = default_device(device)
        self.int8 = dtype == "int8"
        self.dtype = torch.float32 if self.int8 else resolve_dtype(dtype, self.device) or torch.float32
        st = sentence_transformers_settings(self.path)
        self.pooling = pooling or st.get("pooling", "mean")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        self.prompts: dict[str, str] = st.get("prompts", {})
        self.tokenizer = load_tokenizer(self.path)
        base = load_model(self.path).to(device=self.device, dtype=self.dtype).eval()
        limits = [self.tokenizer.model_max_length, base.config.max_tokens, st.get("max_seq_length")]
        self.max_input_length = min(x for x in limits if x)
        if self.int8:
            from bertforge.deploy import quantize_int8

            base = quantize_int8(base)
        self.views: dict[str | None, View] = {None: View(None, base)}
        for name, directory in (adapters or {}).items():
            self.views[name] = self._adapter_view(name, directory)
        self.active: str | None = None

    @property
    def base(self) -> View:
        return self.views[None]

    @property
    def dtype_name(self) -> str:
        return "int8" if self.int8 else str(self.dtype).removeprefix("torch.")

    def _adapter_view(self, name: str, directory: str) -> View:
        """The adapter's head class over the base's encoder; the adapter itself is inserted when a request picks
        it."""
        if not os.path.isdir(directory):
            raise ValueError(f"--adapter {name}={directory}: no such directory")
        cfg, meta = read_adapter_config(directory)
        head_class = meta.get("head_class") or "BertModel"
        if head_class not in MODEL_CLASSES:
            raise ValueError(f"{directory}: adapter for a {head_class}, which bertforge does not serve")
        return View(
            name, self._on_base(MODEL_CLASSES[head_class], **head_overrides(meta, head_class)), directory, cfg, meta
        )

    def _on_base(self, cls: type[PreTrainedBert], **overrides: Any) -> PreTrainedBert:
        """``cls`` built from the base checkpoint, its embeddings and layers then replaced by the base's own, so the
        encoder's weights exist once (the head, and the pooler, are the new model's)."""
        quiet = logging.getLogger("bertforge")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the head's weights are missing from the base by design: the adapter has them
        try:
            model = cls.from_pretrained(self.path, **overrides)
        finally:
            quiet.setLevel(level)
        shared, own = self.base.encoder, model if isinstance(model, BertModel) else model.bert
        own.embeddings, own.layers = shared.embeddings, shared.layers
        mlm = getattr(model, "mlm", None)
        if mlm is not None and model.config.tie_word_embeddings:
            mlm.decoder.weight = shared.embeddings.token.weight  # tied to the shared table, as in the base
        return model.to(device=self.device, dtype=self.dtype).eval()

    # ---- on the worker thread -------------------------------------------------------------------------------------
    def activate(self, name: str | None) -> View:
        """Put adapter ``name`` (None: the base alone) on the shared encoder, taking the previous one off first."""
        if name not in self.views:
            raise InputError(f"no adapter named {name!r}; this server has {', '.join(self.adapter_names) or 'none'}")
        if name != self.active:
            if self.active is not None:
                old = self.views[self.active]
                remove_strategy(old.model)
                own = dict(old.model.named_parameters())
                with torch.no_grad():
                    for key, value in old.originals.items():
                        if key in own:  # the adapter's own modules are gone; the base tensors it overwrote are back
                            own[key].copy_(value)
                old.originals.clear()
            self.active = None
            if name is not None:
                view = self.views[name]
                load_adapter(view.model, view.directory, view.cfg, view.meta, originals=view.originals)  # type: ignore[arg-type]
                view.model.to(device=self.device, dtype=self.dtype).eval()
            self.active = name
        return self.views[name]

    def embed(self, adapter: str | None, features: Sequence[dict], per_token: bool = False) -> list[np.ndarray]:
        """One forward pass over every feature: the pooled vector of each (or its token vectors)."""
        view = self.activate(adapter)
        rows = self._forward(view.encoder, features, lambda out: out.last_hidden_state, per_token=True)
        return [r if per_token else pool(r, self.pooling) for r in rows]

    def logits(self, adapter: str | None, features: Sequence[dict]) -> list[np.ndarray]:
        """One forward pass of a sequence classifier over every feature: its logits."""
        view = self.activate(adapter)
        self.require(view, "classify")
        return self._forward(view.model, features, lambda out: out.logits)

    def _forward(self, model, features: Sequence[dict], pick, per_token: bool = False) -> list[np.ndarray]:
        """The batch in one padding-free forward pass; ``pick(output)`` is the tensor kept, one row per feature."""
        rows = predict(
            model,
            features,
            len(features),
            lambda out: [pick(out)],
            pad_token_id=self.tokenizer.pad_token_id,
            per_token=per_token,
        )
        return [r[0] for r in rows]

    def pipeline(self, adapter: str | None, route: str) -> Pipeline:
        """The pipeline of ``route`` on the view, active, built on first use over the view's model."""
        view = self.activate(adapter)
        self.require(view, route)
        if route not in view.pipelines:
            cls = PIPELINES[PIPELINE_OF_ROUTE[route]]
            model = view.model
            if not isinstance(model, cls.model_class):  # BertForPreTraining's MLM head as a BertForMaskedLM
                model = self._on_base(cls.model_class)
            try:
                view.pipelines[route] = cls(
                    model, self.tokenizer, device=self.device, batch_size=64, max_length=self.max_input_length
                )
            except ValueError as e:
                raise InputError(f"{route} cannot run on this model: {e}", "validation", 400) from None
        return view.pipelines[route]

    # ---- anywhere -------------------------------------------------------------------------------------------------
    @property
    def adapter_names(self) -> list[str]:
        return [n for n in self.views if n is not None]

    def view(self, adapter: str | None) -> View:
        if adapter not in self.views:
            have = ", ".join(self.adapter_names) or "none"
            raise InputError(f"no adapter named {adapter!r}; this server has: {have}", "validation", 400)
        return self.views[adapter]

    def require(self, view: View, route: str) -> None:
        if route not in view.routes:
            what = f"adapter {view.name!r}" if view.name else "the model"
            raise InputError(
                f"{route} needs a head that {what} lacks (it is a {type(view.model).__name__}); it serves "
                f"{', '.join(view.routes)}",
                "validation",
                400,
            )

    def num_labels(self, adapter: str | None) -> int:
        return int(self.view(adapter).model.config.num_labels or 0)

    def id2label(self, adapter: str | None) -> dict[int, str]:
        view = self.view(adapter)
        labels = view.meta.get("id2label") or view.model.config.id2label or {}
        return {int(k): str(v) for k, v in labels.items()}

    def encode(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        truncate: bool = False,
        direction: str = "right",
        add_special_tokens: bool = True,
        details: bool = False,
    ) -> Encoded:
        """Token ids of each text (or pair), within ``max_input_length``: longer is an InputError (422) unless
        ``truncate``, which cuts the longer side of a pair first, from the right (or the left), as TEI does."""
        backend = self.tokenizer.backend
        inputs: list[Any] = list(texts) if pairs is None else list(zip(texts, pairs))
        try:
            encodings = backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        except Exception as e:  # noqa: BLE001 - the tokenizer's own error names the problem
            raise InputError(f"the tokenizer cannot encode the input: {e}", "tokenizer") from None
        limit = self.max_input_length
        for i, enc in enumerate(encodings):
            if len(enc.ids) > limit:
                if not truncate:
                    raise InputError(
                        f"input {i} has {len(enc.ids)} tokens, more than the model's {limit}; send shorter text or "
                        f"set truncate (or start the server with --auto-truncate)",
                        "validation",
                    )
                encodings[i] = self._truncated(inputs[i], pairs is not None, direction, add_special_tokens)
        features = [{"input_ids": e.ids, "token_type_ids": e.type_ids} for e in encodings]
        if not details:
            return Encoded(features)
        return Encoded(
            features,
            [e.tokens for e in encodings],
            [e.offsets for e in encodings],
            [e.special_tokens_mask for e in encodings],
        )

    def _truncated(self, item: Any, is_pair: bool, direction: str, add_special_tokens: bool):
        backend = self.tokenizer.backend
        room = self.max_input_length - (backend.num_special_tokens_to_add(is_pair) if add_special_tokens else 0)
        parts = [backend.encode(t, add_special_tokens=False) for t in (item if is_pair else [item])]
        while sum(len(p.ids) for p in parts) > room:  # longest first, a token at a time
            longest = max(parts, key=lambda p: len(p.ids))
            excess = sum(len(p.ids) for p in parts) - room
            shorter = min(len(p.ids) for p in parts) if len(parts) > 1 else 0
            longest.truncate(
                max(len(longest.ids) - max(1, min(excess, len(longest.ids) - shorter)), 0), direction=direction
            )
        return backend.post_process(parts[0], parts[1] if is_pair else None, add_special_tokens=add_special_tokens)


def pool(tokens: np.ndarray, pooling: str) -> np.ndarray:
    """One vector from a sequence's token vectors (T, H), as sentence-transformers pools them."""
    if pooling == "mean":
        return tokens.mean(0)
    if pooling == "cls":
        return tokens[0]
    if pooling == "max":
        return tokens.max(0)
    return tokens[-1]
