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
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        store = _attempt_store(world)
        if store is None:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, store=store, rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev)


ATTEMPT_WAIT_SECONDS = 300.0
"""How long a restarted worker waits for the rest of its group to reach the same attempt before it gives up."""


def _attempt_store(world: int):
    """The store a torchrun group meets through when torchrun may restart it (``--max-restarts``) and shares its
    rendezvous store with the workers (torch's default): a prefix of its own per attempt, so that a restarted group
    never reads the previous attempt's addresses (pytorch/pytorch#135712: the agents' restart counts, which torch uses
    to tell attempts apart, differ between nodes). The attempt is counted in the store itself: every worker joins once
    per attempt. None where there is nothing to separate (no restarts, or a store per attempt)."""
    restarts = os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or restarts == "0":
        return None
    import datetime
    import time

    base = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, False, datetime.timedelta(minutes=10)
    )
    prefix = f"bertforge/attempt_{(base.add('bertforge/joined', 1) - 1) // world}"
    deadline = time.monotonic() + ATTEMPT_WAIT_SECONDS
    arrived = base.add(f"{prefix}/arrived", 1)
    while arrived < world:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{prefix}: {arrived} of {world} workers arrived in {ATTEMPT_WAIT_SECONDS:.0f} s (a worker that died "
                "before joining its group leaves the attempts out of step); start torchrun with "
                "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 to give every attempt a store of its own"
            )
        time.sleep(0.05)
        arrived = base.add(f"{prefix}/arrived", 0)
    return dist.PrefixStore(prefix + "/", base)


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
