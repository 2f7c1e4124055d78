"""Training checkpoints: a Hugging Face directory plus a sidecar with everything needed to resume exactly.

``{run}/checkpoints/iter_0000100/`` holds config.json + model.safetensors (so ``from_pretrained`` and transformers open
it), the tokenizer files, ``trainer_state.pt`` (optimizer, scheduler, grad scaler, step, samples consumed, the RNG
states of every rank) and ``run_config.yaml`` (the resolved configuration). It is written to a temporary directory and
renamed, then ``{run}/checkpoints/latest`` is updated (also atomically); older checkpoints beyond ``keep_last`` are
removed.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bertforge.utils import atomic_directory, atomic_write_text, logger

LATEST = "latest"
STATE_FILE = "trainer_state.pt"
_ITER = re.compile(r"iter_(\d{7})\Z")


def rng_state() -> dict[str, Any]:
    """This process's RNG states: python, numpy, torch CPU and (if used) CUDA."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, "checkpoints", f"iter_{step:07d}")


def save_checkpoint(
    run_dir: str,
    step: int,
    write: Callable[[str], None],
    trainer_state: dict[str, Any],
    config_yaml: str,
    keep_last: int = 3,
) -> str:
    """Write checkpoint ``step`` atomically (``write(directory)`` puts the weights and tokenizer in) and prune old
    ones; returns its directory. Call on rank 0 only."""
    final = checkpoint_dir(run_dir, step)
    with atomic_directory(final) as tmp:
        write(tmp)
        torch.save(trainer_state, os.path.join(tmp, STATE_FILE))
        atomic_write_text(os.path.join(tmp, "run_config.yaml"), config_yaml)
    atomic_write_text(os.path.join(run_dir, "checkpoints", LATEST), os.path.basename(final) + "\n")
    existing = sorted(d for d in os.listdir(os.path.dirname(final)) if _ITER.match(d))
    for old in existing[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(os.path.join(os.path.dirname(final), old), ignore_errors=True)
    logger.info("saved checkpoint %s", final)
    return final


def has_checkpoint(path: str) -> bool:
    """Whether ``path`` is, or holds, a checkpoint (an incomplete ``latest`` still counts, so resolving reports it)."""
    return any(
        os.path.exists(os.path.join(path, *parts)) for parts in ((STATE_FILE,), ("checkpoints", LATEST), (LATEST,))
    )


def resolve_checkpoint(path: str) -> str:
    """A checkpoint directory from a checkpoint, a ``checkpoints`` folder or a run directory (newest via ``latest``)."""
    if os.path.exists(os.path.join(path, STATE_FILE)):
        return path
    for folder in (os.path.join(path, "checkpoints"), path):
        latest = os.path.join(folder, LATEST)
        if os.path.exists(latest):
            with open(latest, encoding="utf-8") as fh:
                name = fh.read().strip()
            candidate = os.path.join(folder, name)
            if os.path.exists(os.path.join(candidate, STATE_FILE)):
                return candidate
            raise FileNotFoundError(f"{latest} names {name}, which has no {STATE_FILE}; the checkpoint is incomplete")
    raise FileNotFoundError(
        f"no checkpoint at {path}: expected a directory with {STATE_FILE}, or a run directory with checkpoints/{LATEST}"
    )


def load_trainer_state(checkpoint: str) -> dict[str, Any]:
    # The sidecar holds numpy RNG state and python objects of our own writing, so it is not weights_only-loadable.
    return torch.load(os.path.join(checkpoint, STATE_FILE), map_location="cpu", weights_only=False)
