"""``bertforge serve --model DIR``: the inference server (TEI's API, bertforge's pipelines, adapters) on uvicorn."""

from __future__ import annotations

import argparse
import logging
import signal

from bertforge.cli.fields import number
from bertforge.serve.settings import DTYPES, ServeSettings, parse_adapter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP: Text Embeddings Inference's API, the pipelines, adapters, a page to try it",
        description="Serve a model over HTTP with Text Embeddings Inference's routes (/embed, /predict, /rerank, "
        "/similarity, /tokenize, /decode, POST /), OpenAI's /v1/embeddings, bertforge's pipelines (/fill-mask, /ner, "
        "/question-answering, /zero-shot-classification, /generate), /health, /info, /metrics and a page at /. "
        "Requests are batched by a budget of real tokens. Needs the serve extra: pip install 'bertforge[serve]'.",
    )
    d = ServeSettings(model="")
    p.add_argument("--model", required=True, help="checkpoint directory, installed model package or Hub name")
    p.add_argument(
        "--task",
        choices=("embed", "classify", "rerank"),
        help="what POST / and /info present the model as (default: from the checkpoint's head)",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default=d.dtype,
        help="fp32 (default, as TEI on a CPU), bf16, auto (bf16 where native), int8 (dynamic quantization)",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when available)")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    p.add_argument("--port", type=number(int, 0, 65535), default=d.port, help=f"port (default {d.port}; 0: any free)")
    p.add_argument(
        "--max-batch-tokens",
        type=number(int, 1),
        default=d.max_batch_tokens,
        help=f"real tokens per forward pass (default {d.max_batch_tokens})",
    )
    p.add_argument("--max-batch-requests", type=number(int, 1), help="requests per batch (default: no limit)")
    p.add_argument(
        "--max-concurrent-requests",
        type=number(int, 1),
        default=d.max_concurrent_requests,
        help=f"requests queued or running; more get 429 at once (default {d.max_concurrent_requests})",
    )
    p.add_argument(
        "--max-client-batch-size",
        type=number(int, 1),
        default=d.max_client_batch_size,
        help=f"inputs per request; more get 413 (default {d.max_client_batch_size})",
    )
    p.add_argument(
        "--auto-truncate",
        action="store_true",
        help="truncate inputs over the model's limit when a request does not say (else 422)",
    )
    p.add_argument(
        "--payload-limit",
        type=number(int, 1),
        default=d.payload_limit,
        help=f"request body bytes; more get 413 (default {d.payload_limit})",
    )
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (except GET /health and the page)")
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a fine-tuning artefact (OUTPUT/adapter of bertforge finetune) served on the base model; "
        "repeatable; requests pick one by name",
    )
    p.add_argument(
        "--max-wait-ms",
        type=number(float, 0),
        default=d.max_wait_ms,
        help=f"how long a batch that is not full waits for more requests (default {d.max_wait_ms})",
    )
    p.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> ServeSettings:
    adapters: dict[str, str] = {}
    for text in args.adapter:
        name, directory = parse_adapter(text)
        if name in adapters:
            raise ValueError(f"--adapter {name} is given twice")
        adapters[name] = directory
    settings = ServeSettings(
        model=args.model,
        task=args.task,
        dtype=args.dtype,
        device=args.device,
        host=args.host,
        port=args.port,
        max_batch_tokens=args.max_batch_tokens,
        max_batch_requests=args.max_batch_requests,
        max_concurrent_requests=args.max_concurrent_requests,
        max_client_batch_size=args.max_client_batch_size,
        auto_truncate=args.auto_truncate,
        payload_limit=args.payload_limit,
        api_key=args.api_key,
        adapters=adapters,
        max_wait_ms=args.max_wait_ms,
    )
    settings.check()
    return settings


def run(args: argparse.Namespace) -> int:
    from bertforge.serve import create_app, require_web_stack

    settings = settings_from(args)
    require_web_stack()
    import uvicorn

    from bertforge.hub import resolve_model

    resolve_model(settings.model)  # a bad name is one line now, not a log line after the server started
    logging.getLogger("bertforge.serve").setLevel(logging.INFO)
    app = create_app(settings)
    # uvicorn stops accepting on SIGTERM/SIGINT, lets the requests in flight finish, then runs the app's shutdown,
    # which answers everything still queued before the process exits 0
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, access_log=False))
    failed: list[str] = []

    def stop(reason: str) -> None:
        failed.append(reason)
        server.should_exit = True

    app.state.serve.on_load_error = stop
    # uvicorn raises the signal again after its graceful shutdown, to end as the default handler would (killed by
    # SIGTERM); a shutdown that answered everything is a success, so the handler it restores does nothing
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        raise ValueError(failed[0])
    return 0
