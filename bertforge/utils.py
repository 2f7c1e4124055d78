"""Small helpers shared across the package: atomic file writes and the package logger."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("bertforge")


def default_device(device: "str | torch.device | None" = None) -> "torch.device":
    """``device`` as a torch.device; None picks CUDA when it is available, else the CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not a device name; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is available here; use cpu (or leave the device unset)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def fast_bf16(device_type: str = "cpu") -> bool:
    """Whether bf16 matrix products run natively here: a CUDA GPU that supports bf16, or a CPU with AMX or
    AVX512-BF16 (``torch.cpu._is_amx_tile_supported`` / ``_is_avx512_bf16_supported``, torch >= 2.3). Elsewhere (an
    AVX2-only CPU, say) bf16 is emulated and many times slower than fp32. ``BERTFORGE_BF16=0`` / ``=1`` overrides the
    probe (for benchmarks and for CPUs that torch does not recognise)."""
    import os

    import torch

    forced = os.environ.get("BERTFORGE_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return False


def autocast(device: "str | torch.device", bf16: bool = False, fp16: bool = False):
    """The one precision context: bf16 or fp16 autocast on ``device``'s type when asked, else a no-op."""
    import contextlib

    import torch

    if not (bf16 or fp16):
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16 if bf16 else torch.float16)


def warn_if_emulated_bf16(device_type: str, what: str) -> bool:
    """Log a warning when bf16 was asked for (``what``: the flag or option) on a device without native bf16 matrix
    units; returns whether it warned. Emulated bf16 is many times slower than fp32 (benchmarks/README.md)."""
    if fast_bf16(device_type):
        return False
    logger.warning(
        "%s: this %s has no native bf16 matrix units (%s); bf16 is emulated here and far slower than fp32",
        what,
        device_type.upper(),
        "AMX / AVX512-BF16" if device_type == "cpu" else "bf16 support",
    )
    return True


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status), else by setting and
    restoring it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_usual_mode(path: str, directory: bool = False) -> None:
    """Give ``path`` the mode the umask gives any new file (0644 under umask 022) or directory (0755): temporary
    files and directories are created owner-only (0600 / 0700), which would keep a teammate or another service's
    user from reading what a run wrote."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``, on error it is removed.

    The rename is atomic on POSIX file systems, so a reader sees either the old file or the complete new one. The
    file gets the usual mode for the umask, as a file written in place would.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        if os.path.isfile(tmp):
            give_usual_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one that exists but belongs to another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` (removing an old one), with the
    usual mode for the umask."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
    try:
        yield tmp
        give_usual_mode(tmp, directory=True)
        if os.path.exists(path):
            old = path + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class _LogProgress:
    """Progress as periodic log lines (rate and ETA), for runs whose output is not a terminal."""

    def __init__(self, total: float | None, desc: str, unit: str, unit_scale: bool, interval: float):
        import time

        self.total, self.desc, self.unit, self.unit_scale, self.interval = total, desc, unit, unit_scale, interval
        self.n = 0.0
        self._time = time.monotonic
        self.start = self.last = self._time()
        self.postfix = ""

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self._time()
        if now - self.last >= self.interval:
            self.last = now
            self._log(now)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def _log(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.n / elapsed
        scale = 1e6 if self.unit_scale and self.unit == "B" else 1
        unit = "MB" if scale == 1e6 else self.unit
        counted = ",.1f" if scale != 1 or self.n != int(self.n) else ",.0f"  # steps and items are whole numbers
        done = f"{self.n / scale:{counted}}" + (f"/{self.total / scale:{counted}}" if self.total else "")
        eta = f", ETA {(self.total - self.n) / rate:,.0f}s" if self.total and rate > 0 else ""
        logger.info("%s: %s %s (%.1f %s/s%s) %s", self.desc, done, unit, rate / scale, unit, eta, self.postfix)

    def close(self) -> None:
        self._log(self._time())


@contextmanager
def progress(
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    unit_scale: bool = False,
    enabled: bool = True,
    interval: float = 10.0,
):
    """The one progress display: a tqdm bar on a terminal, log lines every ``interval`` seconds otherwise.

    Yields an object with ``update(n)`` and ``set_postfix_str(text)``.
    """
    import sys

    if not enabled:
        bar = _LogProgress(total, desc, unit, unit_scale, float("inf"))
        bar.close = lambda: None  # type: ignore[method-assign]
        yield bar
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, dynamic_ncols=True)
        try:
            yield bar
        finally:
            bar.close()
    else:
        bar = _LogProgress(total, desc, unit, unit_scale, interval)
        try:
            yield bar
        finally:
            bar.close()


def tune_malloc(trim_threshold: int = 1 << 30, mmap_threshold: int = 32 << 20, use_mmap: bool = False) -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the OS after every batch.

    glibc gives large buffers back with munmap/trim and the next batch faults them in again, paying for every fresh
    page. Raising the trim threshold keeps the heap; with ``use_mmap=False`` (default) no buffer is mmap-ed at all, so
    even the buffers above glibc's 32 MB mmap-threshold maximum (embedding gradients, logits) are reused;
    ``use_mmap=True`` only raises the threshold to that maximum. What it gains on bert-base inference and pretraining:
    benchmarks/README.md. These are the parameters the environment variables MALLOC_TRIM_THRESHOLD_ /
    MALLOC_MMAP_THRESHOLD_ / MALLOC_MMAP_MAX_ set.
    The cost: memory a run freed stays with the process until it exits. No-op (False) off glibc or when
    BERTFORGE_NO_MALLOC_TUNING=1.
    """
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("BERTFORGE_NO_MALLOC_TUNING") == "1":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold, m_mmap_max = -1, -3, -4  # glibc's mallopt parameter numbers
        ok = libc.mallopt(m_trim_threshold, trim_threshold) == 1
        ok = libc.mallopt(m_mmap_threshold, mmap_threshold) == 1 and ok
        if not use_mmap:
            ok = libc.mallopt(m_mmap_max, 0) == 1 and ok
        return ok
    except (OSError, AttributeError):
        return False


def runnable_elsewhere(samples: int = 5, interval: float = 0.02) -> tuple[float, int] | None:
    """(threads of other processes ready to run, averaged over ``samples``, and the cores this process may use), from
    /proc/stat's procs_running less this process's own running threads; None where /proc is not there (not Linux)."""
    import glob
    import os
    import time

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        return None
    others = []
    for i in range(samples):
        try:
            with open("/proc/stat") as f:
                running = next(int(x.split()[1]) for x in f if x.startswith("procs_running"))
        except (OSError, StopIteration, ValueError):
            return None
        own = 0
        for path in glob.glob("/proc/self/task/*/stat"):
            try:
                with open(path) as f:
                    own += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):
                pass
        others.append(max(0, running - own))
        if i + 1 < samples:
            time.sleep(interval)
    return sum(others) / len(others), cores


def warn_if_oversubscribed(threads: int) -> str | None:
    """Say once, and return the warning, when other processes keep the cores busy: training with ``threads`` threads
    then runs several times slower than it could, silently otherwise."""
    seen = runnable_elsewhere()
    if seen is None:
        return None
    others, cores = seen
    if others < 1 or others + threads <= cores + 0.5:
        return None
    text = (
        f"the machine is oversubscribed: other processes keep {others:.1f} threads running on the {cores} cores this "
        f"run uses with {threads} threads, so each step is slower than it could be; stop them, or set fewer threads "
        "(OMP_NUM_THREADS / torch.set_num_threads)"
    )
    logger.warning("%s", text)
    return text


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration: "2h", "90m", "1h30m", "45s", "1.5h", or a number of seconds."""
    import re

    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower().replace(" ", "")
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s?)?", value)
        if not value or parts is None or not any(parts.groups()):
            raise ValueError(f"train.train_time {text!r} is not a duration; write it as 2h, 90m, 1h30m or 45s")
        h, m, sec = (float(g) if g else 0.0 for g in parts.groups())
        seconds = 3600 * h + 60 * m + sec
    if seconds <= 0:
        raise ValueError(f"train.train_time {text!r} must be a positive duration")
    return seconds
