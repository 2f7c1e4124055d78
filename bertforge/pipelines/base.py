"""What every pipeline shares: loading the checkpoint for the task's head, device and dtype, batched prediction in
length-sorted batches with results in input order, and the windows that keep long inputs whole."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bertforge.adapt.apply import remove_strategy
from bertforge.adapt.artefact import head_overrides, load_adapter, read_adapter_config
from bertforge.auto import load_model, load_tokenizer
from bertforge.hub import resolve_model
from bertforge.model.pretrained import PreTrainedBert
from bertforge.tasks.features import predict
from bertforge.tokenization import BertTokenizer
from bertforge.utils import default_device, progress, warn_if_emulated_bf16

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device = "cpu") -> torch.dtype | None:
    """A torch dtype for a pipeline's ``dtype``: a name in ``DTYPES``, or "auto": bf16 where the device runs it
    natively (AVX512-BF16 or AMX CPUs, bf16 GPUs), else fp32. ("int8" is handled by the pipeline: fp32 weights,
    then quantized.)"""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        from bertforge.utils import fast_bf16

        return torch.bfloat16 if fast_bf16(torch.device(device).type) else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join([*DTYPES, 'auto', 'int8'])}")
    return DTYPES[dtype]


@dataclass(frozen=True)
class Option:
    """A ``bertforge run`` flag of a pipeline: ``--flag`` sets the call's keyword ``keyword`` (default: the flag's
    name), converted by ``value``. Only flags given reach the call, so the pipeline's own defaults apply otherwise,
    unless ``default`` gives the command line's own. Several pipelines may declare one flag alike."""

    flag: str
    help: str
    kind: type = str
    """int, float, str, or bool (a switch)."""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    keyword: str | None = None
    value: Callable[[Any], Any] | None = None
    default: Any = None
    required: bool = False
    negatable: bool = False
    """A bool flag with a --no- form (unset: the pipeline decides)."""

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def call_value(self, given: Any) -> Any:
        return self.value(given) if self.value is not None else given


def comma_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


STRIDE = Option("--stride", "overlap of windows of long inputs, in tokens", int, minimum=0)


MIN_WINDOW = 4
"""The shortest window a pipeline takes: [CLS], at least two tokens of text, [SEP]."""


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Pipeline:
    """Base class. Subclasses set ``model_class`` and ``head`` (the weight prefix the task needs) and implement
    ``__call__``.

    Args:
        model: a Hugging Face BERT directory (bertforge's or transformers'), or a loaded bertforge model (then
            ``tokenizer`` is needed).
        tokenizer: a ``BertTokenizer`` or a directory; defaults to the model directory.
        device: "cpu", "cuda", "cuda:1"...; None picks CUDA when available.
        dtype: None (default): fp32, as transformers, sentence-transformers and TEI on a CPU, so results equal
            theirs; a loaded model object keeps its own dtype. "auto": bf16 where the device runs it natively (a
            CPU with AMX or AVX512-BF16, a bf16 GPU), else fp32. Or torch.float32 / "fp32", torch.bfloat16 /
            "bf16" (weights and activations in bf16; LayerNorm and softmax accumulate in fp32 inside PyTorch's
            kernels), "fp16", "int8" (dynamic quantization of the linear layers, CPU).
        batch_size: inputs per forward pass (sorted by length, so each batch has little padding).
        max_length: tokens per window, at least 4 (default: the smaller of the tokenizer's and the model's limits;
            a larger value is lowered to that limit); longer inputs are split into overlapping windows, never
            truncated.
    """

    __call__: Callable[..., Any]  # each task's pipeline defines its own call

    task = ""
    model_class: type[PreTrainedBert]
    call_defaults: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Each task's ``__call__`` gets the defaults given at construction (``call_defaults``) under its keywords."""
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is None:
            return

        @functools.wraps(call)
        def with_defaults(self, *args: Any, **kw: Any) -> Any:
            return call(self, *args, **{**self.call_defaults, **kw})

        cls.__call__ = with_defaults  # type: ignore[method-assign]

    cli_options: tuple[Option, ...] = ()
    """The call's keywords that ``bertforge run`` offers as flags."""

    head: str | None = None
    """A weight name (Hugging Face naming) whose absence means the checkpoint lacks the task's head."""
    head_hint = "use a checkpoint fine-tuned for the task (bertforge finetune writes one)"

    def __init__(
        self,
        model: str | os.PathLike | PreTrainedBert,
        tokenizer: BertTokenizer | str | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        show_progress: bool = False,
        adapter: str | os.PathLike | dict[str, str | os.PathLike] | None = None,
        **call_defaults: Any,
    ):
        """``adapter``: a fine-tuning strategy's artefact (``OUTPUT/adapter``) to run on the base ``model``, or
        {name: directory} of several: the base is loaded once and ``set_adapter(name)`` switches between them
        (the first is active). Other keywords are defaults for every call (as transformers takes
        ``pipeline("ner", aggregation_strategy="simple")``); a call's own keywords win."""
        call = getattr(type(self).__call__, "__wrapped__", type(self).__call__)
        accepted = {
            n for n, p in inspect.signature(call).parameters.items() if p.kind is not p.VAR_KEYWORD and n != "self"
        }
        unknown = sorted(set(call_defaults) - accepted)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} takes no {', '.join(unknown)}; its call takes {', '.join(sorted(accepted))}"
            )
        self.call_defaults = call_defaults
        check_number("batch_size", batch_size, 1)
        if max_length is not None:
            check_number("max_length", max_length, MIN_WINDOW)
        device = default_device(device)
        if dtype == "auto" and not isinstance(model, (str, os.PathLike)):
            dtype = None  # a model object the caller loaded keeps the dtype it has
        int8 = dtype == "int8"
        if int8 and torch.device(device).type != "cpu":
            raise ValueError(f"dtype='int8' (dynamic quantization) runs on the CPU, not on {device}")
        if int8 and adapter is not None and isinstance(adapter, dict) and len(adapter) > 1:
            raise ValueError("an int8 pipeline is fixed once quantized: give one adapter, or a pipeline per adapter")
        dtype = None if int8 else resolve_dtype(dtype, device)
        if dtype == torch.bfloat16:
            warn_if_emulated_bf16(torch.device(device).type, "dtype=bf16")
        self.adapters: dict[str, str] = {}
        self._originals: dict[str, torch.Tensor] = {}
        self.active_adapter: str | None = None
        if adapter is not None:
            named = adapter if isinstance(adapter, dict) else {"default": adapter}
            self.adapters = {name: os.fspath(d) for name, d in named.items()}
            if not self.adapters:
                raise ValueError("adapter={} names no adapter directory")
        if isinstance(model, (str, os.PathLike)):
            path = resolve_model(model)  # a directory, an installed model package, the Hugging Face cache or Hub
            if self.adapters:
                _, meta = read_adapter_config(next(iter(self.adapters.values())))
                self.model = self.model_class.from_pretrained(path, **head_overrides(meta, self.model_class.__name__))
            else:
                self.model = load_model(path, self.model_class)  # a checkpoint, or a strategy's artefact on its base
                self._check_head(path)
            tokenizer = tokenizer if tokenizer is not None else path
        else:
            self.model = model
            if tokenizer is None:
                raise ValueError("a loaded model needs tokenizer= (a BertTokenizer or a directory)")
        self.tokenizer = tokenizer if isinstance(tokenizer, BertTokenizer) else load_tokenizer(tokenizer)
        if self.adapters:
            self.set_adapter(next(iter(self.adapters)))
        self.model.to(device=device, dtype=dtype).eval()
        self.quantized = int8
        if int8:
            from bertforge.deploy import quantize_int8

            self.model = quantize_int8(self.model.float())
        self.device, self.dtype = device, dtype or torch.float32
        self.config = self.model.config
        self.batch_size = batch_size
        limit = min(self.tokenizer.model_max_length, self.config.max_tokens)
        self.max_length = min(max_length, limit) if max_length else limit
        self.show_progress = show_progress

    def set_adapter(self, name: str) -> None:
        """Run the adapter loaded as ``name``: the previous one's modules are taken out and the base weights it
        replaced (its head) put back; the encoder is not reloaded."""
        if name not in self.adapters:
            raise ValueError(f"no adapter named {name!r}; loaded: {', '.join(self.adapters)}")
        if getattr(self, "quantized", False):
            raise ValueError("an int8 pipeline is fixed once quantized: build another pipeline for another adapter")
        directory = self.adapters[name]
        cfg, meta = read_adapter_config(directory)
        if meta.get("head_class") and meta["head_class"] != self.model_class.__name__:
            raise ValueError(
                f"{directory} is an adapter for a {meta['head_class']}; {self.task} runs a {self.model_class.__name__}"
            )
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        remove_strategy(self.model)
        own = dict(self.model.named_parameters())
        with torch.no_grad():
            for key, value in self._originals.items():
                if key in own:
                    own[key].copy_(value)
        self._originals = {}
        load_adapter(self.model, directory, cfg, meta, originals=self._originals)
        if meta.get("id2label"):
            self.model.config.id2label = {int(k): v for k, v in meta["id2label"].items()}
            self.model.config.label2id = {v: k for k, v in self.model.config.id2label.items()}
        self.model.to(device=device, dtype=dtype).eval()
        self.active_adapter = name

    def _check_head(self, path: str) -> None:
        # A sentence classifier and a token classifier both name their head "classifier.": the saved architecture
        # tells them apart (a sentence classifier run as NER would return entity groups named after its classes).
        saved = self.model.config.class_name if self.model.config.architectures else None
        rivals = {"BertForSequenceClassification": "text-classification", "BertForTokenClassification": "ner"}
        if saved in rivals and self.model_class.__name__ in rivals and saved != self.model_class.__name__:
            raise ValueError(
                f"{path} holds a {saved} (a checkpoint for {rivals[saved]}), not a "
                f"{self.model_class.__name__}; run it as {rivals[saved]}, or {self.head_hint}"
            )
        report = self.model.load_report
        if self.head and report is not None and any(name.startswith(self.head) for name in report.missing):
            raise ValueError(
                f"{path} has no {self.task} head ({self.head}* weights are missing), so its "
                f"predictions would be random; {self.head_hint}"
            )

    def _predict(
        self, features: Sequence[dict], outputs: Callable[[Any], Sequence[torch.Tensor]], per_token: bool = False
    ) -> list[list[np.ndarray]]:
        with progress(total=len(features), desc=self.task, unit="seq", enabled=self.show_progress) as bar:
            return predict(
                self.model,
                features,
                self.batch_size,
                outputs,
                pad_token_id=self.tokenizer.pad_token_id,
                per_token=per_token,
                bar=bar,
            )

    def _windows(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        stride: int | None = None,
        offsets: bool = False,
        specials: bool = False,
    ) -> tuple:
        """Encode texts (and pairs) in windows of ``max_length`` overlapping by ``stride`` tokens. Returns the
        encoding and, for each window, the input it came from."""
        stride = self.max_length // 4 if stride is None else stride
        if stride >= self.max_length - 3:
            raise ValueError(f"stride={stride} must be smaller than the window ({self.max_length} tokens) minus 3")
        # windows slide over the first text (or the only one); a pair's second text is kept whole in each window, so
        # the first text's share of a window is what the longest second text leaves, and the overlap must be smaller
        if pairs is not None:
            pair_ids = self.tokenizer(
                list(pairs), add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False
            )["input_ids"]
            longest = max((len(ids) for ids in pair_ids), default=0)
            share = self.max_length - 3 - longest
            if share < 2:
                raise ValueError(
                    f"a second text (text_pair) has {longest} tokens, which leaves no room for the first text in a "
                    f"window of {self.max_length} tokens; shorten it or give a larger max_length"
                )
            stride = min(stride, share // 2)
        enc = self.tokenizer(
            list(texts),
            list(pairs) if pairs is not None else None,
            truncation="only_first",
            max_length=self.max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=offsets,
            return_special_tokens_mask=specials,
            return_attention_mask=False,
        )
        return enc, enc["overflow_to_sample_mapping"]

    @staticmethod
    def _features(enc) -> list[dict]:
        return [{"input_ids": i, "token_type_ids": t} for i, t in zip(enc["input_ids"], enc["token_type_ids"])]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(task={self.task!r}, device={self.device}, "
            f"dtype={'int8' if self.quantized else self.dtype}, "
            f"max_length={self.max_length})"
        )


def as_list(inputs) -> tuple[list, bool]:
    """(list of inputs, whether a single input was given)."""
    if isinstance(inputs, (str, dict)):
        return [inputs], True
    if not hasattr(inputs, "__iter__"):
        raise TypeError(f"a pipeline takes a text or a list of texts, got {type(inputs).__name__}")
    if isinstance(inputs, bytes):
        raise TypeError("a pipeline takes a text (str) or a list of texts, got bytes; decode them first")
    return list(inputs), False


def check_texts(texts: Sequence, what: str = "text", argument: str = "input") -> None:
    """Every item is a non-empty string of valid Unicode (no lone surrogate, which no tokenizer can encode); the
    errors name the item by its position in ``argument``."""
    if len(texts) == 0:
        raise ValueError(f"{argument} is an empty list: give at least one {what}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{argument} {i} is a {type(t).__name__}; expected a {what} string")
        if not t.strip():
            raise ValueError(f"{argument} {i} is an empty {what}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(
                f"{argument} {i} is not valid Unicode text: character {e.start} is a lone surrogate "
                f"({t[e.start]!r}); decode the text with errors='replace' first"
            ) from None


def check_number(name: str, value, minimum: int) -> None:
    """A pipeline argument that must be an integer >= ``minimum``: one error naming it."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
