"""``create_app``: the ASGI application of ``bertforge serve`` (FastAPI): the routes of ``routes.py`` and the page,
over the shared state of ``state.py``. Errors are TEI's: JSON ``{"error", "error_type"}`` with TEI's status codes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

import bertforge
from bertforge.serve import page, routes
from bertforge.serve.host import InputError, ModelHost
from bertforge.serve.settings import ServeSettings
from bertforge.serve.state import ApiError, Guard, ServerState, error_response


def create_app(settings: ServeSettings | None = None, *, host: ModelHost | None = None, **kwargs: Any) -> FastAPI:
    """The server as an ASGI app: ``create_app(model="DIR", dtype="fp32", adapters={"sst2": "out/adapter"})`` or
    ``create_app(ServeSettings(...))``; ``host`` serves a model already loaded. Run it with any ASGI server
    (``uvicorn.run(app)``), or mount it in another app."""
    settings = settings or ServeSettings(**kwargs)
    settings.check()
    state = ServerState(settings, host)
    app = FastAPI(
        title="bertforge serve",
        version=bertforge.__version__,
        description="Text Embeddings Inference's API and bertforge's pipelines, for BERT-family models.",
        lifespan=state.lifespan,
    )
    app.state.serve = state

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        state.metrics.failure.labels(e.kind).inc()
        return error_response(e.status, e.message, e.kind)

    @app.exception_handler(InputError)
    async def input_error(request: Request, e: InputError):
        state.metrics.failure.labels(e.kind).inc()
        return error_response(e.status, str(e), e.kind)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        # a body that is not even text (400), an unknown route (404) or method (405): TEI's shape too
        kind = "validation" if e.status_code < 500 else "backend"
        state.metrics.failure.labels(kind).inc()
        return error_response(e.status_code, str(e.detail), kind)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or "body"
        state.metrics.failure.labels("validation").inc()
        return error_response(422, f"{where}: {first.get('msg', 'invalid request')}", "validation")

    routes.register(app, state)
    page.register(app, state)
    app.add_middleware(Guard, state=state)
    return app
