"""BertConfig: the model's hyper-parameters, with the field names of Hugging Face's ``config.json``.

Fields with a ``flag`` in their metadata are ``bertforge pretrain`` options under Megatron-LM's names.

Keeping the Hugging Face names means a checkpoint directory written by either library is read by the other without a
translation step. Fields that transformers writes but BERT does not use (``use_cache``, ``add_cross_attention``, ...)
are kept in ``extra`` so that a config survives a load/save round trip unchanged. ``is_decoder`` is the attention
pattern: False (BERT, bidirectional) or True (causal, as GPT; transformers' ``BertLMHeadModel``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any

from bertforge.constants import MODEL_TYPES
from bertforge.model.families import ModelFamily, family

SIZE_LIMITS = {
    "vocab_size": 1 << 24,
    "hidden_size": 1 << 16,
    "num_hidden_layers": 1 << 10,
    "num_attention_heads": 1 << 12,
    "intermediate_size": 1 << 18,
    "max_position_embeddings": 1 << 20,
    "type_vocab_size": 1 << 16,
    "embedding_size": 1 << 16,
    "num_hidden_groups": 1 << 10,
    "inner_group_num": 1 << 10,
}
"""Upper bounds far beyond any encoder ever trained (bert-large: 30,522 / 1,024 / 24 / 16 / 4,096 / 512 / 2): a
config past one is a typo or a corrupt file, refused before its tensors are allocated."""
MAX_LABELS = 1 << 20
"""The most classes a head may have (their names are generated one by one when the config has none)."""
MAX_PARAMETERS = 10**11
"""The most parameters a config may describe (400 GB in fp32; bert-large has 3.4e8)."""
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish", "tanh")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


@dataclass(kw_only=True)
class BertConfig:
    """Sizes and options of a BERT encoder and its heads (Hugging Face ``config.json`` names)."""

    vocab_size: int = 30522
    """Number of token ids (V)."""
    hidden_size: int = field(default=768, metadata={"flag": "--hidden-size"})
    """Width of the residual stream (H)."""
    embedding_size: int | None = field(default=None, metadata={"flag": "--embedding-size"})
    """Width of the embedding tables (E), projected to hidden_size by ``embeddings_project`` when they differ
    (ELECTRA's factorised embeddings); None: hidden_size."""
    num_hidden_layers: int = field(default=12, metadata={"flag": "--num-layers"})
    """Number of encoder layers."""
    num_hidden_groups: int = field(default=1, metadata={"flag": "--num-hidden-groups"})
    """ALBERT's cross-layer sharing: the layers form this many groups of parameters, layer i running group
    i // (num_hidden_layers / num_hidden_groups) (1: every layer shares one group, albert-base-v2's setting)."""
    inner_group_num: int = field(default=1, metadata={"flag": "--inner-group-num"})
    """ALBERT: layers in each group, all run (in order) each time the group runs."""
    num_attention_heads: int = field(default=12, metadata={"flag": "--num-attention-heads"})
    """Attention heads per layer (N); hidden_size / heads is the head size (D)."""
    intermediate_size: int = field(default=3072, metadata={"flag": "--ffn-hidden-size"})
    """Width of the feed-forward block's inner layer (Megatron's default: 4 x hidden size)."""
    hidden_act: str = "gelu"
    """Feed-forward activation: gelu (exact erf), gelu_new / gelu_pytorch_tanh (tanh approximation), relu, silu."""
    hidden_dropout_prob: float = field(default=0.1, metadata={"flag": "--hidden-dropout"})
    """Dropout on embeddings and after each residual branch."""
    attention_probs_dropout_prob: float = field(default=0.1, metadata={"flag": "--attention-dropout"})
    """Dropout on attention probabilities."""
    max_position_embeddings: int = field(default=512, metadata={"flag": "--max-position-embeddings"})
    """Longest sequence, in tokens, the learned position table covers."""
    type_vocab_size: int = 2
    """Number of segment (token type) ids."""
    initializer_range: float = field(default=0.02, metadata={"flag": "--init-method-std"})
    """Standard deviation of the normal init of weights."""
    layer_norm_eps: float = 1e-12
    """Epsilon of every LayerNorm."""
    pad_token_id: int = 0
    """Id of [PAD]; its embedding row gets no gradient."""
    position_embedding_type: str = "absolute"
    """Only "absolute" (learned positions) is supported."""
    classifier_dropout: float | None = None
    """Dropout before classification heads; None means hidden_dropout_prob."""
    tie_word_embeddings: bool = True
    """The MLM decoder shares the word-embedding matrix."""
    is_decoder: bool = False
    """Causal attention (GPT's pattern): each position sees itself and the positions before it; False is BERT's
    bidirectional attention. Set by ``bertforge pretrain --objective clm``."""
    num_labels: int | None = None
    """Classes of a classification head; derived from id2label when that is given, else 2."""
    id2label: dict[int, str] | None = None
    """Class id -> name, for classification heads."""
    label2id: dict[str, int] | None = None
    """Class name -> id (the inverse of id2label)."""
    problem_type: str | None = None
    """Sequence classification loss: regression, single_label_classification, multi_label_classification, or None to
    choose as transformers does (num_labels == 1 -> regression; integer labels -> single label; else multi label)."""
    architectures: list[str] | None = None
    """Class names this checkpoint was saved from (written by save_pretrained)."""
    model_type: str = field(default="bert", metadata={"flag": "--family"})
    """The model family, all on the same encoder (``families.py``): bert; roberta (positions start after the padding
    id, one token type, its own classification and MLM heads); distilbert (no token types, no pooler, its own heads);
    electra (embeddings of their own width, no pooler, the replaced-token-detection head and its own heads); albert
    (embeddings of their own width, layers shared in groups, sentence-order prediction)."""
    sinusoidal_pos_embds: bool = False
    """DistilBERT's option: fixed sinusoidal position vectors instead of learned ones."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys of config.json that bertforge does not use, kept so that a round trip loses nothing."""

    def __post_init__(self) -> None:
        _check_types(self)
        if self.model_type not in MODEL_TYPES:
            raise ValueError(
                f"config model_type is {self.model_type!r}; bertforge loads {', '.join(MODEL_TYPES)} checkpoints"
            )
        _check_sizes(self)
        _check_sharing(self)
        if self.parameter_estimate > MAX_PARAMETERS:
            raise ValueError(
                f"BertConfig describes about {self.parameter_estimate:.2g} parameters, more than the "
                f"{MAX_PARAMETERS:.0g} any encoder needs; check its sizes"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}); the remainder is {self.hidden_size % self.num_attention_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"BertConfig.hidden_act {self.hidden_act!r} is not supported; use one of {ACTIVATIONS}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"BertConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.classifier_dropout is not None and not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(f"BertConfig.classifier_dropout must be in [0, 1), got {self.classifier_dropout!r}")
        if self.position_embedding_type != "absolute":
            raise ValueError(
                f"BertConfig.position_embedding_type {self.position_embedding_type!r} is not supported; "
                "bertforge implements BERT's learned 'absolute' positions only"
            )
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"BertConfig.pad_token_id ({self.pad_token_id}) must be in [0, vocab_size={self.vocab_size})"
            )
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"BertConfig.problem_type {self.problem_type!r} must be one of {PROBLEM_TYPES} or None")
        if self.id2label is not None:
            self.id2label = {_class_id(k, "id2label's keys"): str(v) for k, v in self.id2label.items()}
            if self.num_labels is None:
                self.num_labels = len(self.id2label)
            elif self.num_labels != len(self.id2label):
                if not _default_labels(self.id2label):
                    raise ValueError(
                        f"BertConfig.num_labels ({self.num_labels}) disagrees with id2label, which has "
                        f"{len(self.id2label)} entries"
                    )
                self.id2label = None  # generated names for another label count: generate again
        if self.num_labels is None:
            self.num_labels = 2
        if self.num_labels <= 0:
            raise ValueError(f"BertConfig.num_labels must be positive, got {self.num_labels}")
        if self.num_labels > MAX_LABELS:
            raise ValueError(
                f"BertConfig.num_labels is {self.num_labels:,}, beyond any classifier (at most {MAX_LABELS:,}); "
                "check the config"
            )
        if self.id2label is None:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        derived = {v: k for k, v in self.id2label.items()}
        if self.label2id is not None:
            self.label2id = {str(k): _class_id(v, "label2id's values") for k, v in self.label2id.items()}
            if self.label2id != derived and not _default_labels({v: k for k, v in self.label2id.items()}):
                raise ValueError(f"BertConfig.label2id {self.label2id} is not the inverse of id2label {self.id2label}")
        self.label2id = derived

    @property
    def class_name(self) -> str:
        """The bertforge class of the saved architecture (RobertaForMaskedLM -> BertForMaskedLM); BertModel if none."""
        from bertforge.model.convert import our_architecture

        return our_architecture((self.architectures or ["BertModel"])[0])

    @property
    def position_offset(self) -> int:
        """Index of the first real token's position vector: RoBERTa's start after its padding id (pad + 1 = 2)."""
        return self.pad_token_id + 1 if self.family.position_offset else 0

    @property
    def max_tokens(self) -> int:
        """The longest sequence the position table covers (RoBERTa's 514 rows hold 512 tokens)."""
        return self.max_position_embeddings - self.position_offset

    @property
    def has_token_types(self) -> bool:
        """DistilBERT has no segment (token type) embeddings: token_type_ids are ignored, as transformers does."""
        return self.family.token_types

    @property
    def embedding_width(self) -> int:
        """Width of the embedding tables (E): ``embedding_size``, or the hidden size."""
        return self.embedding_size or self.hidden_size

    @property
    def has_pooler(self) -> bool:
        """DistilBERT and ELECTRA have no pooler: their sentence heads read [CLS] themselves."""
        return self.family.pooler

    @property
    def projects_embeddings(self) -> bool:
        """Whether the embeddings pass through an E -> H projection: ALBERT always, others when E < H (ELECTRA)."""
        return self.family.embedding_projection == "always" or self.embedding_width != self.hidden_size

    @property
    def family(self) -> ModelFamily:
        """This config's entry in the family registry (``families.py``)."""
        return family(self.model_type)

    @property
    def layer_order(self) -> tuple[int, ...]:
        """Which layer module each step of the stack runs: 0, 1, ..., L - 1 without sharing; with ALBERT's groups,
        for each layer i the ``inner_group_num`` layers of group i // (L / num_hidden_groups)."""
        L, groups, inner = self.num_hidden_layers, self.num_hidden_groups, self.inner_group_num
        if not self.family.layer_sharing:
            return tuple(range(L))
        return tuple((i * groups // L) * inner + j for i in range(L) for j in range(inner))

    @property
    def num_layer_modules(self) -> int:
        """Distinct layers (parameter sets): num_hidden_layers, or ALBERT's groups x layers per group."""
        if not self.family.layer_sharing:
            return self.num_hidden_layers
        return self.num_hidden_groups * self.inner_group_num

    @property
    def parameter_estimate(self) -> int:
        """Parameters of the encoder this config describes (embedding tables and layers), before building it."""
        h, inner = self.hidden_size, self.intermediate_size
        tables = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * self.embedding_width
        return tables + self.num_layer_modules * (4 * h * h + 2 * h * inner)

    @property
    def head_size(self) -> int:
        """Width of one attention head (D)."""
        return self.hidden_size // self.num_attention_heads

    # ---- serialisation -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The config.json dictionary: the family's names, unknown keys from ``extra`` kept, ``model_type`` set."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = getattr(self, f.name)
        if out["architectures"] is None:
            del out["architectures"]
        out["id2label"] = {str(k): v for k, v in (self.id2label or {}).items()}
        entry = self.family
        if self.model_type == "distilbert":  # no token types, fixed LayerNorm epsilon
            for name in ("type_vocab_size", "layer_norm_eps", "position_embedding_type", "is_decoder"):
                out.pop(name)
            out.setdefault("qa_dropout", 0.1)
            out["classifier_dropout"] = 0.2 if self.classifier_dropout is None else self.classifier_dropout
        else:
            del out["sinusoidal_pos_embds"]
        if self.model_type == "albert" and self.classifier_dropout is None:
            out["classifier_dropout"] = 0.1  # AlbertConfig's classifier_dropout_prob default
        out["embedding_size"] = self.embedding_width
        for name in ("embedding_size", "num_hidden_groups", "inner_group_num"):
            if name not in entry.always_written and (name != "embedding_size" or self.embedding_size is None):
                out.pop(name)
        for theirs, ours in entry.config_names.items():
            out[theirs] = out.pop(ours)
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        """Build from a config.json dictionary (in its family's names); unknown keys go to ``extra``."""
        data = dict(data)
        model_type = data.get("model_type")
        if model_type in MODEL_TYPES:
            names = family(model_type).config_names
            data = {names.get(k, k): v for k, v in data.items()}
        if model_type == "distilbert":
            data.setdefault("layer_norm_eps", 1e-12)  # fixed in DistilBERT's code, not in its config
            data.setdefault("classifier_dropout", 0.2)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        extra.update(data.get("extra", {}) if isinstance(data.get("extra"), dict) else {})
        extra.pop("extra", None)
        return cls(**known, extra=extra)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` into ``directory`` atomically."""
        from bertforge.utils import atomic_write_text

        os.makedirs(directory, exist_ok=True)
        atomic_write_text(os.path.join(directory, "config.json"), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> BertConfig:
        """Read ``config.json`` from a directory (or the file itself); keyword arguments override fields."""
        from bertforge.hub import resolve_model

        path = resolve_model(path)
        file = os.path.join(path, "config.json") if os.path.isdir(path) else path
        if not os.path.exists(file):
            raise FileNotFoundError(
                f"no config.json at {file}: a BERT checkpoint directory holds config.json and "
                "model.safetensors (or pytorch_model.bin)"
            )
        try:
            with open(file, encoding="utf-8") as fh:
                data = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{file}: line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{file}: byte {e.start} is not UTF-8 text; config.json must be UTF-8 JSON") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"{file}: the top level is a JSON {type(data).__name__}; config.json must be an object of fields "
                '({"hidden_size": 768, ...})'
            )
        data.update(overrides)
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{file}: {e}") from None

    def replace(self, **changes: Any) -> BertConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _check_sharing(config: BertConfig) -> None:
    """ALBERT's groups: at most one per layer, and only in a family whose checkpoints can hold shared layers."""
    if not config.family.layer_sharing and (config.num_hidden_groups, config.inner_group_num) != (1, 1):
        raise ValueError(
            f"num_hidden_groups / inner_group_num share layers across the stack, which {config.family.title} "
            "checkpoints cannot hold: set model_type albert (--family albert), or leave both at 1"
        )
    if config.num_hidden_groups > config.num_hidden_layers:
        raise ValueError(
            f"BertConfig.num_hidden_groups ({config.num_hidden_groups}) exceeds num_hidden_layers "
            f"({config.num_hidden_layers}); each group serves at least one layer"
        )


def _check_sizes(config: BertConfig) -> None:
    """Every size a positive integer within ``SIZE_LIMITS`` (``embedding_size`` may be None: the hidden size)."""
    for name, limit in SIZE_LIMITS.items():
        value = getattr(config, name)
        if value is None and name == "embedding_size":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"BertConfig.{name} must be a positive integer, got {value!r}")
        if value > limit:
            raise ValueError(
                f"BertConfig.{name} is {value:,}, beyond any encoder (at most {limit:,}); check the config"
            )


@functools.lru_cache(maxsize=1)
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(BertConfig)


def _check_types(config: BertConfig) -> None:
    """Refuse values of the wrong type (a string where config.json needs a number, a list for id2label) with a
    message naming the field, before any arithmetic on them."""
    names = {float: "a number", int: "an integer", str: "a string", bool: "true or false", dict: "a mapping"}
    hints = _field_types()
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        hint = hints[f.name]
        if f.name == "extra" or (value is None and type(None) in typing.get_args(hint)):
            continue
        if value is None:
            raise ValueError(f"BertConfig.{f.name} must be set, got null")
        allowed = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kinds = {typing.get_origin(a) or a for a in allowed}
        ok = any(isinstance(value, k) and not (isinstance(value, bool) and k in (int, float)) for k in kinds) or (
            float in kinds and isinstance(value, int) and not isinstance(value, bool)
        )
        if not ok:
            wanted = " or ".join(names.get(k, k.__name__) for k in kinds)
            raise ValueError(f"BertConfig.{f.name} must be {wanted}, got {value!r}")


def _class_id(value: Any, what: str) -> int:
    """A class id of id2label / label2id: an integer, or a string of one (JSON object keys are strings)."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError
        return int(value)
    except ValueError:
        raise ValueError(f"BertConfig.{what} must be class ids (0, 1, ...), got {value!r}") from None


def _default_labels(id2label: dict[int, str]) -> bool:
    return all(name == f"LABEL_{i}" for i, name in id2label.items())


# Named sizes. tiny..medium are the compact models of Turc et al. 2019 (Google's "Well-Read Students"); base and large
# are the sizes of Devlin et al. 2018.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "small": dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "medium": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    "large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096),
}


def preset(name: str, **overrides: Any) -> BertConfig:
    """A named model size (tiny, mini, small, medium, base, large), with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return BertConfig(**{**PRESETS[name], **overrides})
