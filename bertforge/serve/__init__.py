"""``bertforge serve``: an inference server with Text Embeddings Inference's API (so TEI's clients, OpenAI's
embeddings client and huggingface_hub's InferenceClient work unchanged), bertforge's other pipelines, dynamic
padding-free batching by a token budget, many adapters on one base model, Prometheus metrics and a page to try it.

``create_app(model=DIR, ...)`` returns the ASGI app; ``bertforge serve --model DIR`` runs it on uvicorn. Needs the
``serve`` extra (FastAPI, uvicorn, prometheus_client): ``pip install 'bertforge[serve]'``."""

from __future__ import annotations

from typing import Any

from bertforge.serve.settings import ServeSettings, parse_adapter

MISSING = "bertforge serve needs {name}: pip install 'bertforge[serve]' (FastAPI, uvicorn, prometheus_client)"


def require_web_stack() -> None:
    """One line naming the first missing package of the serve extra."""
    import importlib.util

    for module, name in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("prometheus_client", "prometheus-client")):
        if importlib.util.find_spec(module) is None:
            raise ValueError(MISSING.format(name=name))


def create_app(settings: ServeSettings | None = None, **kwargs: Any):
    """The server as an ASGI app (see ``bertforge.serve.app.create_app``)."""
    require_web_stack()
    from bertforge.serve.app import create_app as build

    return build(settings, **kwargs)


__all__ = ["ServeSettings", "create_app", "parse_adapter", "require_web_stack"]
