"""The variants table measured: each family's best-known checkpoint at its true shape (random weights; nothing is
downloaded), its parameters, the share of them in the embeddings, and its inference speed relative to bert-base.

Speed is the encoder's forward pass (``BertModel``) on a batch of random ids at one sequence length, in inference
mode. The models take turns within each round (the order rotating from round to round), so that a slower moment of
the machine falls on every model alike; each model's time is its median over the rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bertforge.model import BertConfig, BertModel
from bertforge.model.families import FAMILIES

TABLE_FIGURES = {
    "bert-base-uncased": ("110M", "1x"),
    "roberta-base": ("125M", "1x"),
    "distilbert-base-uncased": ("66M", "1.6x"),
    "albert-base-v2": ("12M", "0.9x"),
}
"""The parameters and speed columns of the variants table BERT is taught with (ELECTRA is not in it)."""


@dataclass
class Variant:
    name: str
    family: str
    parameters: int
    """The encoder's (with its pooler where the family has one), as ``num_parameters()`` counts them."""
    embedding_parameters: int
    """The embedding tables, their LayerNorm and (ALBERT, ELECTRA-small) the projection to the hidden size."""
    seconds: float | None = None
    """Median seconds per batch."""
    speed: float | None = None
    """bert-base's time / this model's (2.0: twice as fast)."""


def base_configs() -> dict[str, BertConfig]:
    """Each family's best-known checkpoint's config, by name (bert-base first)."""
    return {entry.base[0]: BertConfig(model_type=name, **entry.base[1]) for name, entry in FAMILIES.items()}


def count(config: BertConfig) -> tuple[int, int]:
    """(parameters, embedding parameters) of the encoder a config describes, built on the meta device."""
    with torch.device("meta"):
        model = BertModel(config)
    return model.num_parameters(), sum(p.numel() for p in model.embeddings.parameters())


def measure(
    configs: dict[str, BertConfig],
    dtypes: tuple[torch.dtype, ...] = (torch.float32,),
    batch_size: int = 8,
    seq_length: int = 128,
    rounds: int = 5,
    progress: Callable[[str], None] | None = None,
) -> dict[torch.dtype, list[Variant]]:
    """Parameters and speed of each config's encoder (random weights) in each dtype, bert-base's speed 1.0 in each;
    every (model, dtype) pair takes its turn in every round."""
    g = torch.Generator().manual_seed(0)
    inputs = {
        name: torch.randint(5, c.vocab_size, (batch_size, seq_length), generator=g) for name, c in configs.items()
    }
    runs = [(name, dtype) for dtype in dtypes for name in configs]
    models = {(name, dtype): _model(configs[name], dtype) for name, dtype in runs}
    times: dict[tuple[str, torch.dtype], list[float]] = {run: [] for run in runs}
    with torch.inference_mode():
        for run in runs:  # warm-up: first-call allocations and kernel choices
            models[run](inputs[run[0]])
        for r in range(rounds):
            for run in runs[r % len(runs) :] + runs[: r % len(runs)]:
                start = time.perf_counter()
                models[run](inputs[run[0]])
                times[run].append(time.perf_counter() - start)
            if progress is not None:
                progress(f"round {r + 1}/{rounds}")
    sizes = {name: count(config) for name, config in configs.items()}
    out: dict[torch.dtype, list[Variant]] = {}
    for dtype in dtypes:
        reference = statistics.median(times[(runs[0][0], dtype)])
        out[dtype] = []
        for name, config in configs.items():
            seconds = statistics.median(times[(name, dtype)])
            out[dtype].append(Variant(name, config.model_type, *sizes[name], seconds, reference / seconds))
    return out


def _model(config: BertConfig, dtype: torch.dtype) -> BertModel:
    torch.manual_seed(0)
    return BertModel(config).to(dtype).eval()


def format_table(variants: list[Variant], dtype: torch.dtype) -> str:
    """The measured columns beside the variants table's printed figures."""
    rows = [f"{'model':<28}{'params':>10}{'embedding':>12}{'speed':>8}   table says ({str(dtype).split('.')[-1]})"]
    for v in variants:
        table = TABLE_FIGURES.get(v.name)
        said = f"{table[0]}, {table[1]}" if table else "(not in the table)"
        speed = f"{v.speed:.2f}x" if v.speed is not None else "-"
        rows.append(f"{v.name:<28}{v.parameters / 1e6:>9.1f}M{v.embedding_parameters / 1e6:>11.1f}M{speed:>8}   {said}")
    return "\n".join(rows)
