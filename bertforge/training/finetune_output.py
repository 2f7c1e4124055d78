"""What a fine-tuning run writes besides its checkpoints' engine state: ``best/`` (a Hugging Face directory, LoRA
merged in, or the adapter with its tokenizer for strategies that insert modules) and ``adapter/``; the checkpoint
weights of a strategy run (an ordinary BERT for transformers, plus the unmerged trained state for exact resume); the
prediction files; and the warnings a run that learned nothing deserves."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from bertforge.adapt import STRATEGIES
from bertforge.adapt.apply import apply_strategy
from bertforge.adapt.artefact import save_adapter
from bertforge.adapt.lora import merge_lora
from bertforge.config import AdaptConfig, FinetuneConfig
from bertforge.model.pretrained import PreTrainedBert
from bertforge.tokenization import BertTokenizer
from bertforge.training import checkpoint as ckpt
from bertforge.training.plot import read_metrics
from bertforge.utils import atomic_directory, atomic_write_text

TRAINING_STATE = "training_state.safetensors"
"""In a fine-tuning checkpoint with inserted modules: the unmerged weights under bertforge's names (exact resume)."""


def copy_with_state(model: PreTrainedBert, state: dict, cfg: AdaptConfig) -> PreTrainedBert:
    """A CPU copy of ``model`` (strategy applied, nothing merged) holding ``state`` (bertforge names, as trained).
    Built from the config, so FSDP shards never need copying."""
    copy = type(model)(model.config)
    apply_strategy(copy, cfg)  # a prompt's starting vectors are overwritten by the state: no tokenizer needed
    copy.load_state_dict(state)
    return copy.eval()


def plain_model(model: PreTrainedBert, state: dict, cfg: AdaptConfig) -> PreTrainedBert:
    """An ordinary BERT for ``state``: LoRA merged in; for strategies that insert other modules, the base weights and
    the head alone (the inserted modules are in the checkpoint's ``TRAINING_STATE``)."""
    if STRATEGIES[cfg.strategy].mergeable:
        plain = copy_with_state(model, state, cfg)
        merge_lora(plain)
        return plain
    plain = type(model)(model.config)
    own = plain.state_dict()
    plain.load_state_dict({k: v for k, v in state.items() if k in own})
    return plain


def write_best(copy: PreTrainedBert, cfg: AdaptConfig, tok: BertTokenizer, output_dir: str, base: str) -> None:
    """``adapter/`` (the small artefact, every strategy but full) and ``best/`` (what to load: a Hugging Face
    directory, or the adapter with the tokenizer for strategies that cannot be merged)."""
    if cfg.strategy != "full":
        with atomic_directory(os.path.join(output_dir, "adapter")) as tmp:
            save_adapter(copy, cfg, tmp, base)
    with atomic_directory(os.path.join(output_dir, "best")) as tmp:
        if STRATEGIES[cfg.strategy].mergeable:
            merge_lora(copy)
            copy.save_pretrained(tmp)
        else:
            save_adapter(copy, cfg, tmp, base)
        tok.save_pretrained(tmp)


def checkpoint_files(
    model: PreTrainedBert, tok: BertTokenizer, cfg: AdaptConfig
) -> tuple[Callable[[str, dict], None], Callable[[str, Any], None]]:
    """(write, load) of a fine-tuning checkpoint's weights: an ordinary BERT that transformers loads (LoRA merged; the
    base and the head for strategies that insert modules) and, for those, the unmerged trained state beside it."""
    inserts = STRATEGIES[cfg.strategy].inserts_modules

    def write(directory: str, state: dict) -> None:
        plain_model(model, state, cfg).save_pretrained(directory)
        tok.save_pretrained(directory)
        if inserts:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(directory, TRAINING_STATE))

    def load(checkpoint: str, m: Any) -> None:
        raw = os.path.join(checkpoint, TRAINING_STATE)
        if os.path.exists(raw):
            from safetensors.torch import load_file

            m.load_state_dict(load_file(raw))
            return
        if inserts:
            raise ValueError(
                f"{checkpoint} has no {TRAINING_STATE}: it was not written by a run with strategy {cfg.strategy}"
            )
        ckpt.load_weights(checkpoint, m)

    return write, load


def write_result(output_dir: str, task: str, result: dict, cfg: FinetuneConfig) -> None:
    """finetune_result.json: the task, the result and the resolved config."""
    config = dataclasses.replace(cfg, optim=cfg.resolved_optim()).to_dict()
    text = json.dumps({"task": task, "result": result, "config": config}, indent=2) + "\n"
    atomic_write_text(os.path.join(output_dir, "finetune_result.json"), text)


def write_jsonl(path: str, records: Sequence[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def did_it_learn(output_dir: str, cfg: FinetuneConfig) -> list[str]:
    """What a user should hear about a run that learned nothing: the best epoch predicts one class (or, for NER, no
    entity) for every validation example, or the epochs' mean training loss did not move."""
    warnings = []
    advice = (
        f"try a larger --lr (this run: {cfg.resolved_optim().lr:g}, strategy {cfg.adapt.strategy}), more epochs or "
        "more training data"
    )
    path = os.path.join(output_dir, "predictions_validation.jsonl")
    values: list[str] = []
    words = False
    for r in read_metrics(path) if os.path.exists(path) else []:
        if "answers" in r:  # QA: answers are spans, not classes
            continue
        words = "tokens" in r
        p = r.get("prediction")
        values.extend(p if words and isinstance(p, list) else [json.dumps(p)])
    if len(values) > 1 and len(set(values)) == 1:
        what = "O (no entity) for every word" if words else f"{values[0]} for all {len(values)} validation examples"
        warnings.append(f"the best model predicts {what}: it learned nothing that tells the classes apart; {advice}")
    metrics = os.path.join(output_dir, "metrics.jsonl")
    losses = [r["train_loss"] for r in read_metrics(metrics) if "epoch" in r] if os.path.exists(metrics) else []
    if len(losses) >= 2 and losses[-1] >= 0.98 * losses[0]:
        warnings.append(
            f"the training loss did not move over {len(losses)} epochs ({losses[0]:.4f} -> {losses[-1]:.4f}); {advice}"
        )
    return warnings
