"""Dynamic batching: requests wait in one queue; the batcher takes the oldest request and every queued request
that can share its forward pass (same work, same adapter) up to a budget of real tokens (padding-free execution
makes padding free, so tokens are what a batch costs), waits a few milliseconds for more when the batch is not
full, and runs it on one worker thread off the event loop. Each request gets its own rows back. A failed batch
is retried request by request, so a bad request fails alone and a broken batch fails only its own requests."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bertforge.serve.metrics import Metrics


class BatchFailed(RuntimeError):
    """The model failed on a batch (answered 424); the server goes on."""


@dataclass
class Job:
    key: Hashable
    items: Sequence[Any]
    tokens: int
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)
    started_at: float = 0.0
    finished_at: float = 0.0
    result: list | None = None
    error: BaseException | None = None


Runner = Callable[[Hashable, list[Any]], list[Any]]
"""run(key, items) -> one result per item, on the worker thread."""


class Batcher:
    def __init__(
        self,
        run: Runner,
        metrics: Metrics,
        *,
        max_tokens: int = 16384,
        max_requests: int | None = None,
        wait_s: float = 0.002,
        arriving: Callable[[], int] = lambda: 1,
    ):
        """``arriving()``: how many requests are on their way to the queue (admitted, still tokenizing); the batcher
        waits ``wait_s`` for more only when some are, so a lone client never waits."""
        self.run, self.metrics = run, metrics
        self.max_tokens, self.max_requests, self.wait_s, self.arriving = max_tokens, max_requests, wait_s, arriving
        self.running = 0
        self.pending: collections.deque[Job] = collections.deque()
        self.worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bertforge-model")
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, key: Hashable, items: Sequence[Any], tokens: int) -> Job:
        """Queue a request's items; returns the finished job (``result`` holds one result per item), or raises
        the request's own error (ValueError) or BatchFailed. Admission (the 429) is the app's."""
        job = Job(key, items, tokens, asyncio.get_running_loop().create_future())
        self.pending.append(job)
        self.metrics.queue_size.set(len(self.pending))
        self._wake.set()
        await job.future
        return job

    async def close(self) -> None:
        """Finish every queued request, then stop the worker."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self.worker.shutdown(wait=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            first = self.pending[0]
            waited = time.perf_counter() - first.queued_at
            if self.wait_s > waited and not self._full(first.key) and not self._closing and self.arriving() > 0:
                await asyncio.sleep(self.wait_s - waited)
            batch = self._take()
            self.metrics.queue_size.set(len(self.pending))
            self.running = len(batch)
            try:
                await loop.run_in_executor(self.worker, self._run_batch, batch)
            finally:
                self.running = 0
            for job in batch:  # results were stored on the worker; futures are completed here, on the loop
                if job.future.done():  # the client went away
                    continue
                if job.error is not None:
                    job.future.set_exception(job.error)
                else:
                    job.future.set_result(job.result)

    def _compatible(self, key: Hashable) -> list[Job]:
        return [j for j in self.pending if j.key == key]

    def _full(self, key: Hashable) -> bool:
        jobs = self._compatible(key)
        if self.max_requests is not None and len(jobs) >= self.max_requests:
            return True
        return sum(j.tokens for j in jobs) >= self.max_tokens

    def _take(self) -> list[Job]:
        key, tokens = self.pending[0].key, 0
        batch: list[Job] = []
        for job in list(self.pending):
            if job.key != key:
                continue
            if batch and (tokens + job.tokens > self.max_tokens or len(batch) == (self.max_requests or len(batch) + 1)):
                break
            batch.append(job)
            tokens += job.tokens
        for job in batch:
            self.pending.remove(job)
        return batch

    def _run_batch(self, batch: list[Job]) -> None:
        """On the worker: the batch's items in one call; on failure each request alone, so only the ones that fail
        alone get an error (their own, or BatchFailed)."""
        start = time.perf_counter()
        for job in batch:
            job.started_at = start
        items = [item for job in batch for item in job.items]
        self.metrics.batch_size.observe(len(items))
        self.metrics.batch_tokens.observe(sum(j.tokens for j in batch))
        self.metrics.batch_requests.observe(len(batch))
        try:
            results = self.run(batch[0].key, items)
        except Exception:  # noqa: BLE001 - retried request by request below
            if len(batch) == 1:
                self._fail(batch[0])
                return
            for job in batch:
                try:
                    job.result = self.run(job.key, list(job.items))
                except Exception:  # noqa: BLE001
                    self._fail(job)
                job.finished_at = time.perf_counter()
            return
        end = time.perf_counter()
        at = 0
        for job in batch:
            job.result = results[at : at + len(job.items)]
            at += len(job.items)
            job.finished_at = end

    @staticmethod
    def _fail(job: Job) -> None:
        """Called in an ``except`` block: a ValueError is the request's own fault; anything else, the model's."""
        error = sys.exc_info()[1]
        job.error = (
            error if isinstance(error, ValueError) else BatchFailed(f"the model failed on this batch: {error!r}")
        )
        job.finished_at = time.perf_counter()
