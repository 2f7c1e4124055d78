"""Training checkpoints and run directories: a Hugging Face directory plus a sidecar with everything needed to resume
exactly, and the rules that keep one run from destroying another.

``{run}/checkpoints/iter_0000100/`` holds config.json + model.safetensors (so ``from_pretrained`` and transformers open
it), the tokenizer files, ``trainer_state.pt`` (optimizer, scheduler, grad scaler, step, samples consumed, the RNG
states of every rank), ``run_config.yaml`` (the resolved configuration) and ``run_id`` (which run wrote it). It is
written to a temporary directory and renamed, then ``{run}/checkpoints/latest`` is updated (also atomically).

Trust rules:
- ``trainer_state.pt`` is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers only,
  so a tampered file cannot run code; it is refused with a message naming it. RNG states are stored as tensors and
  lists (no numpy objects); numpy arrays written by earlier versions are allowed through numpy's array
  reconstruction alone.
- Pruning (``keep_last``) removes only checkpoints written by the same run (same ``run_id``, carried over on
  resume), oldest step first: never another run's.
- ``RunLock``: one run writes a directory at a time (``.lock`` with the holder's pid and host; a lock whose process is
  gone is taken over).
- ``clean_run_dir``: temporary files and directories that a killed run left behind are removed, and a checkpoint
  caught between the two renames of an atomic replace is put back.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import socket
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bertforge.utils import atomic_directory, atomic_write_text, logger, process_alive

LATEST = "latest"
STATE_FILE = "trainer_state.pt"
RUN_ID_FILE = "run_id"
LOCK_FILE = ".lock"
_ITER = re.compile(r"iter_(\d{7})\Z")


def rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU and, if used, CUDA) as tensors, lists and numbers only."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(mt), gauss],
        "numpy": [
            str(name),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, cached))
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
    run_id: str = "",
) -> str:
    """Write checkpoint ``step`` atomically (``write(directory)`` puts the weights and tokenizer in), point ``latest``
    at it, and prune this run's older checkpoints beyond ``keep_last``; returns its directory. Rank 0 only."""
    final = checkpoint_dir(run_dir, step)
    other = read_run_id(final) if os.path.exists(final) else run_id
    if other != run_id:  # an earlier run's checkpoint of the same step (--overwrite): kept under another name
        aside = f"{final}.{(other or 'earlier')[:8]}"
        os.replace(final, aside)
        logger.warning("%s was written by another run; moved to %s", final, aside)
    with atomic_directory(final) as tmp:
        write(tmp)
        torch.save(trainer_state, os.path.join(tmp, STATE_FILE))
        atomic_write_text(os.path.join(tmp, "run_config.yaml"), config_yaml)
        atomic_write_text(os.path.join(tmp, RUN_ID_FILE), run_id + "\n")
    atomic_write_text(os.path.join(run_dir, "checkpoints", LATEST), os.path.basename(final) + "\n")
    if keep_last > 0:
        own = [d for d in checkpoints(run_dir) if read_run_id(d) == run_id]
        for old in own[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    logger.info("saved checkpoint %s", final)
    return final


def checkpoints(run_dir: str) -> list[str]:
    """The checkpoint directories of ``run_dir``, oldest step first."""
    folder = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    found = sorted((int(m.group(1)), d) for d in os.listdir(folder) if (m := _ITER.match(d)))
    return [os.path.join(folder, d) for _, d in found if os.path.exists(os.path.join(folder, d, STATE_FILE))]


def read_run_id(checkpoint: str) -> str | None:
    try:
        with open(os.path.join(checkpoint, RUN_ID_FILE), encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return None


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
    """The sidecar of ``checkpoint``, read without running any code from it (``weights_only=True``)."""
    path = os.path.join(checkpoint, STATE_FILE)
    # Arrays written by earlier versions (numpy's RNG state) need numpy's reconstruction functions and nothing else.
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    numpy_arrays = [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    try:
        with torch.serialization.safe_globals(numpy_arrays):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path}: refused: it holds objects other than tensors, numbers and containers (a tampered or foreign "
            f"file?), and loading it could run code: {str(e).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a readable trainer state (truncated or corrupt?): {e}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{path}: not a bertforge trainer state (no step)")
    return state


class RunLock:
    """``with RunLock(run_dir):`` -- refuse a second run writing the same directory. The lock file holds the pid and
    host of its holder; a lock left by a process that no longer exists (on this host) is taken over."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.held = False
        self.created = False

    def __enter__(self) -> RunLock:
        self.created = not os.path.exists(os.path.dirname(self.path))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None or not _stale(*holder):
                    pid, host = holder or ("?", "?")
                    raise ValueError(
                        f"{os.path.dirname(self.path)} is in use by another run (pid {pid} on {host}, lock file "
                        f"{self.path}); wait for it to finish, use another directory, or delete the lock file if that "
                        "run is gone"
                    ) from None
                logger.warning("taking over the lock %s of pid %s on %s, which no longer runs", self.path, *holder)
                os.remove(self.path)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            self.held = True
            return self
        raise ValueError(f"{self.path}: could not take the run lock")

    def _holder(self) -> tuple[str, str] | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                pid, host = fh.read().split()
            return pid, host
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc) -> None:
        if self.held:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            self.held = False
        if self.created:  # a run refused before writing anything leaves no empty directory behind
            try:
                os.rmdir(os.path.dirname(self.path))
            except OSError:
                pass


def _stale(pid: str, host: str) -> bool:
    """Whether the process ``pid`` on ``host`` is known to be gone (only decidable on this host)."""
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))


_TEMP = re.compile(r"\A\..+\.tmp\Z")


def clean_run_dir(run_dir: str) -> list[str]:
    """Remove what a killed run left behind in ``run_dir`` and its checkpoints folder: temporary files and directories
    of atomic writes (``.NAME.*.tmp``), and ``NAME.old`` directories of an interrupted atomic replace (put back as
    NAME when NAME is missing). Returns the paths removed or restored. Call while holding the run's lock."""
    touched = []
    for folder in (run_dir, os.path.join(run_dir, "checkpoints")):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if _TEMP.match(name):
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
                touched.append(path)
            elif name.endswith(".old") and os.path.isdir(path):
                base = path[: -len(".old")]
                if os.path.exists(base):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.replace(path, base)
                touched.append(path)
    if touched:
        logger.info("removed %d leftover temporary file(s) of an interrupted run in %s", len(touched), run_dir)
    return touched
