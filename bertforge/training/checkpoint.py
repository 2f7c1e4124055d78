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


def resumed_step(load: str | None) -> int:
    """The step of the checkpoint ``--load`` names (0 without one): read from its directory name, not its state."""
    if not load or not has_checkpoint(load):
        return 0
    checkpoint = resolve_checkpoint(load)
    match = _ITER.match(os.path.basename(os.path.normpath(checkpoint)))
    return int(match.group(1)) if match else int(load_trainer_state(checkpoint)["step"])


def load_weights(checkpoint: str, model: Any) -> None:
    """Copy a checkpoint's weights (its Hugging Face files) into ``model``; every weight the model has must be there."""
    from bertforge.model.pretrained import load_state_dict

    report = model.load_hf_state_dict(load_state_dict(checkpoint), source=checkpoint)
    if report.missing:
        raise ValueError(f"{checkpoint} lacks weights this model needs: {report.missing}")


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
    host of its holder (and torchrun's run id); a lock left by a process that no longer exists (on this host), or by
    an earlier attempt of the same torchrun job (torchrun stops every worker of an attempt before it starts the next,
    on whichever node rank 0 now runs), is taken over."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.held = False
        self.created = False

    def __enter__(self) -> RunLock:
        self.created = not os.path.exists(os.path.dirname(self.path))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        job = os.environ.get("TORCHELASTIC_RUN_ID", "-")
        me = f"{os.getpid()} {socket.gethostname()} {job}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None or not (_stale(*holder[:2]) or (job != "-" and holder[2] == job)):
                    pid, host = holder[:2] if holder else ("?", "?")
                    raise ValueError(
                        f"{os.path.dirname(self.path)} is in use by another run (pid {pid} on {host}, lock file "
                        f"{self.path}); wait for it to finish, use another directory, or delete the lock file if that "
                        "run is gone"
                    ) from None
                logger.warning("taking over the lock %s of pid %s on %s, which no longer runs", self.path, *holder[:2])
                os.remove(self.path)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            self.held = True
            return self
        raise ValueError(f"{self.path}: could not take the run lock")

    def _holder(self) -> tuple[str, str, str] | None:
        """(pid, host, torchrun run id or "-") of the lock's holder; None for an unreadable lock file."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                fields = fh.read().split()
        except OSError:
            return None
        if len(fields) not in (2, 3):
            return None
        return fields[0], fields[1], fields[2] if len(fields) == 3 else "-"

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


# ---- the checkpoint manager of a training run --------------------------------------------------------------------
class CheckpointManager:
    """Owns a run's checkpoints: which one a run resumes from, restoring it, when to save, saving (with pruning, in
    ``save_checkpoint``). The weights' files are written and read by the job's own functions (``write`` / ``load``:
    the model and its tokenizer as a Hugging Face directory)."""

    def __init__(
        self,
        run_dir: str | None,
        train: Any,
        info: Any,
        config_yaml: str,
        write: Callable[[str, dict], None],
        load: Callable[[str, Any], None],
        after_save: Callable[[str], None] | None = None,
    ):
        self.run_dir, self.train, self.info, self.config_yaml = run_dir, train, info, config_yaml
        self.write, self.load, self.after_save = write, load, after_save

    def resume_point(self) -> str | None:
        """The checkpoint this run resumes from, or None for a fresh start; refuses, before anything is written, a
        ``--load`` that holds no checkpoint (unless it is the run's own directory: Megatron's ``--save X --load X``
        starts fresh) and a fresh start in a directory that holds another run's checkpoints (unless ``overwrite``)."""
        t, run_dir = self.train, self.run_dir
        if t.load and has_checkpoint(t.load):
            return resolve_checkpoint(t.load)
        if t.load and not (run_dir and os.path.abspath(t.load) == os.path.abspath(run_dir)):
            what = "does not exist" if not os.path.exists(t.load) else "holds no checkpoint"
            raise ValueError(
                f"--load {t.load} {what}: give a checkpoint directory (with {STATE_FILE}) or a run directory (with "
                f"checkpoints/{LATEST})"
            )
        if run_dir and has_checkpoint(run_dir) and not t.overwrite:
            existing = checkpoints(run_dir)
            newest = os.path.basename(existing[-1]) if existing else LATEST
            raise ValueError(
                f"{run_dir} holds the checkpoints of an earlier run (newest {newest}); resume it (pretrain: --load "
                f"{run_dir}; finetune: --resume), choose another directory, or pass --overwrite to start a new run "
                "there (the earlier checkpoints are kept)"
            )
        if t.load:
            logger.warning("--load %s: no checkpoint there yet; starting from step 0", t.load)
        return None

    def load_state(self, checkpoint: str, model: Any) -> dict[str, Any]:
        """The checkpoint's trainer state, read first (a refused file loads nothing), and its weights in ``model``
        (unwrapped, before any sharding)."""
        state = load_trainer_state(checkpoint)
        self.load(checkpoint, model)
        state["path"] = checkpoint
        return state

    def restore(self, state: dict[str, Any], model, optimizer, scheduler, scaler, partial: bool = False) -> int:
        """Optimizer, schedule, scaler and RNG from a trainer state (after any FSDP sharding); returns its step.
        ``partial``: parameters a schedule has not trained yet have no optimizer state, which is then expected."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False, strict=not partial)
        set_optimizer_state_dict(model, optimizer, state["optimizer"], options=options)
        for group in optimizer.param_groups:  # the saved groups carry the saving run's kernel choice: keep this run's
            for key in ("fused", "foreach"):
                if key in optimizer.defaults:
                    group[key] = optimizer.defaults[key]
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        if self.info.rank < len(rngs):
            set_rng_state(rngs[self.info.rank])
        logger.info(
            "resumed from %s at step %d (%d samples consumed)", state["path"], state["step"], state["consumed_samples"]
        )
        return int(state["step"])

    def should_save(self, step: int, stop_at: int, evaluated: bool, save_at_eval: bool, stopping: bool) -> bool:
        t = self.train
        return bool(self.run_dir) and (
            bool(t.save_interval and step % t.save_interval == 0)
            or step == stop_at
            or (evaluated and save_at_eval)
            or stopping
        )

    def save(self, step: int, consumed: int, model, optimizer, scheduler, scaler, loop: dict[str, Any]) -> None:
        """Checkpoint ``step`` (every rank calls it: the state is gathered; rank 0 writes)."""
        from bertforge.training import distributed as dist_

        info = self.info
        model_state, optim_state = full_state(model, optimizer)
        states: list[Any] = [None] * info.world_size
        if info.enabled:
            torch.distributed.all_gather_object(states, rng_state())
        else:
            states = [rng_state()]
        if info.is_main and self.run_dir:
            state = {
                "run_id": loop["run_id"],
                "step": step,
                "consumed_samples": consumed,
                "optimizer": optim_state,
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler else None,
                "rng": states,
                "world_size": info.world_size,
                "loop": loop,
            }
            path = save_checkpoint(
                self.run_dir,
                step,
                lambda d: self.write(d, model_state),
                state,
                self.config_yaml,
                self.train.keep_last,
                run_id=loop["run_id"],
            )
            if self.after_save is not None:
                self.after_save(path)
            logger.info("step %d: checkpoint %s", step, path)
        dist_.barrier(info)


def full_state(model, optimizer=None) -> tuple[dict, dict | None]:
    """Unsharded model (and optimizer) state dicts, gathered to the CPU (under FSDP every rank must call this).

    The optimizer state is keyed by parameter names, so a checkpoint resumes with or without FSDP and on any number
    of ranks."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    return model_state, (get_optimizer_state_dict(model, optimizer, options=options) if optimizer else None)
