"""What the server's routes share: the settings, the metrics, the model (loaded in the background after start, so
``/health`` answers "not ready" until it is), the batcher, admission (429), TEI's error shape and response headers;
and the middleware that checks the API key and the payload limit before a body is parsed."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from bertforge.serve.batching import Batcher, BatchFailed, Job
from bertforge.serve.host import InputError, ModelHost
from bertforge.serve.metrics import Metrics
from bertforge.serve.settings import ServeSettings

log = logging.getLogger("bertforge.serve")

OPEN_PATHS = {("GET", "/health"), ("GET", "/")}
"""What answers without the API key: the health probe and the page (which asks for the key itself)."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def error_response(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": kind}, status_code=status)


def _plain(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON")


def json_response(content: Any, headers: dict[str, str] | None = None) -> Response:
    """JSON without FastAPI's per-value encoder (a batch of embeddings is tens of thousands of floats)."""
    body = json.dumps(content, default=_plain, ensure_ascii=False, separators=(",", ":"))
    return Response(body, media_type="application/json", headers=headers)


class ServerState:
    """What the routes share: settings, metrics, the model once loaded, the batcher, requests in flight."""

    def __init__(self, settings: ServeSettings, host: ModelHost | None = None):
        self.settings, self.host, self.metrics = settings, host, Metrics()
        self.batcher: Batcher | None = None
        self.inflight = 0
        self.load_error: str | None = None
        self.on_load_error: Callable[[str], None] | None = None
        """Called with the reason when loading fails (the command line stops the server and exits 1)."""

    @property
    def ready(self) -> bool:
        return self.host is not None and self.batcher is not None

    def model(self) -> ModelHost:
        if self.host is None or self.batcher is None:
            raise ApiError(503, self.load_error or "the model is loading", "unhealthy")
        return self.host

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        started = time.perf_counter()
        loader = asyncio.get_running_loop().create_task(self._load(started))
        try:
            yield
        finally:
            await loader
            if self.batcher is not None:
                await self.batcher.close()  # every accepted request is answered before the process ends
            log.info("stopped")

    async def _load(self, started: float) -> None:
        s = self.settings
        if self.host is None:
            try:
                self.host = await asyncio.to_thread(
                    ModelHost, s.model, dtype=s.dtype, device=s.device, adapters=s.adapters
                )
            except Exception as e:  # noqa: BLE001 - reported by /health and to whoever started the server
                reason = str(e) if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {e}"
                self.load_error = f"the model could not be loaded: {reason}"
                log.error(self.load_error)
                if self.on_load_error is not None:
                    self.on_load_error(self.load_error)
                return
        batcher = Batcher(
            self._run,
            self.metrics,
            arriving=lambda: self.inflight - len(batcher.pending) - batcher.running,
            max_tokens=s.max_batch_tokens,
            max_requests=s.max_batch_requests,
            wait_s=s.max_wait_ms / 1000,
        )
        batcher.start()
        self.batcher = batcher
        host = self.host
        log.info(
            "ready in %.1f s: http://%s:%d  model %s (%s, %s, max input %d tokens, tasks %s)  adapters %s  limits: "
            "batch tokens %d, batch requests %s, concurrent requests %d, client batch %d, payload %d bytes%s",
            time.perf_counter() - started,
            s.host,
            s.port,
            host.path,
            host.dtype_name,
            host.device,
            host.max_input_length,
            ", ".join(host.base.routes),
            ", ".join(host.adapter_names) or "none",
            s.max_batch_tokens,
            s.max_batch_requests or "none",
            s.max_concurrent_requests,
            s.max_client_batch_size,
            s.payload_limit,
            ", auto-truncate" if s.auto_truncate else "",
        )

    def _run(self, key: Hashable, items: list[Any]) -> list[Any]:
        """The batcher's worker: one call for the batch's items (``key``: what to run, on which adapter)."""
        host = self.model()
        kind, adapter = key[0], key[1]  # type: ignore[index]
        if kind == "embed":
            return host.embed(adapter, items)
        if kind == "embed_all":
            return host.embed(adapter, items, per_token=True)
        if kind == "logits":
            return host.logits(adapter, items)
        pipe = host.pipeline(adapter, kind)
        pipe.batch_size = max(len(items), 1)
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in key[2]}  # type: ignore[index]
        out = list(pipe(list(items), **params))
        if kind == "generate":  # one sequence per prompt: TGI's {"generated_text"}, not a list of one
            out = [o[0] if isinstance(o, list) else o for o in out]
        return out

    async def submit(self, method: str, key: Hashable, items: Sequence[Any], tokens: int) -> Job:
        """Queue a request's items for a batch; the errors become TEI's answers."""
        assert self.batcher is not None
        try:
            return await self.batcher.submit(key, items, tokens)
        except InputError as e:
            raise ApiError(e.status, str(e), e.kind) from None
        except BatchFailed as e:
            raise ApiError(424, str(e), "backend") from None
        except ValueError as e:
            raise ApiError(422, str(e), "validation") from None

    @asynccontextmanager
    async def admit(self, method: str):
        """One request in flight: 429 at once when ``--max-concurrent-requests`` are; metrics either way."""
        self.metrics.requests.labels(method).inc()
        if self.inflight >= self.settings.max_concurrent_requests:
            raise ApiError(429, "Model is overloaded", "overloaded")
        self.inflight += 1
        started = time.perf_counter()
        try:
            yield
        finally:
            self.inflight -= 1
        self.metrics.success.labels(method).inc()
        self.metrics.duration.observe(time.perf_counter() - started)

    def timings(self, job: Job, tokenized_s: float, started: float, characters: int, tokens: int) -> dict[str, str]:
        """TEI's response headers (milliseconds) and the matching histograms."""
        queue, inference = job.started_at - job.queued_at, job.finished_at - job.started_at
        self.metrics.tokenization.observe(tokenized_s)
        self.metrics.queue.observe(queue)
        self.metrics.inference.observe(inference)
        total = time.perf_counter() - started
        return {
            "x-compute-type": "cpu" if self.model().device.type == "cpu" else "gpu",
            "x-compute-time": f"{total * 1000:.0f}",
            "x-compute-characters": str(characters),
            "x-compute-tokens": str(tokens),
            "x-total-time": f"{total * 1000:.0f}",
            "x-tokenization-time": f"{tokenized_s * 1000:.0f}",
            "x-queue-time": f"{queue * 1000:.0f}",
            "x-inference-time": f"{inference * 1000:.0f}",
        }


class Guard:
    """ASGI middleware: the API key (``Authorization: Bearer KEY``) and the payload limit (413), checked before
    the body is parsed; a body is read at most once past the limit."""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        s = self.state.settings
        headers = dict(scope.get("headers") or [])
        if s.api_key and (scope["method"], scope["path"]) not in OPEN_PATHS:
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {s.api_key}".encode()):
                self.state.metrics.failure.labels("unauthorized").inc()
                return await error_response(401, "Unauthorized", "unauthorized")(scope, receive, send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > s.payload_limit:
            return await self._too_large(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > s.payload_limit:
                return await self._too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        self.state.metrics.failure.labels("validation").inc()
        limit = self.state.settings.payload_limit
        message = f"the request body is larger than the payload limit ({limit} bytes; --payload-limit)"
        return await error_response(413, message, "validation")(scope, receive, send)
