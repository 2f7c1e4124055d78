"""The few helpers that know about distribution: init from torchrun's environment, rank checks, mean-reduce.

Nothing here is home-made communication: it is ``torch.distributed`` with gloo (CPU) or NCCL (CUDA). A run started
without torchrun is a world of one and every helper is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bertforge.utils import default_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init(device: str | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = default_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local % max(torch.cuda.device_count(), 1))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if dev.type == "cuda" else "gloo"))
    return DistInfo(rank, world, local, dev)


def mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """All-reduce average over ranks (identity alone)."""
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world_size
    return t


def total(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """All-reduce sum over ranks (identity alone)."""
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_true(flag: bool, info: DistInfo) -> bool:
    """True on every rank when it is true on any rank (so that all ranks stop or skip together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(barrier: bool = True) -> None:
    """Leave the process group. After a normal run, a barrier first, so that no rank tears its connections down while
    a peer still completes the last collective (gloo then aborts the peer: seen as an occasional SIGABRT of rank 1 at
    exit); after an error there is no barrier (the other ranks may never reach it)."""
    if dist.is_initialized():
        try:
            if barrier:
                dist.barrier()
        finally:
            dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str | None = None, backend: str | None = None):
    """``with process_group(device, backend) as info:`` -- ``init`` on entry, ``shutdown`` on exit (with the barrier
    only when the body finished normally)."""
    info = init(device, backend)
    try:
        yield info
    except BaseException:
        shutdown(barrier=False)
        raise
    shutdown()
