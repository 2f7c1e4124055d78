"""What ``bertforge serve`` is started with: the model, its dtype, the address, and every limit (TEI's names and
defaults where TEI has the limit). Torch-free, so the command line can check its flags before loading anything."""

from __future__ import annotations

from dataclasses import dataclass, field

DTYPES = ("fp32", "auto", "bf16", "int8")


@dataclass
class ServeSettings:
    model: str
    task: str | None = None
    """What ``POST /`` and ``/info`` present the model as: embed, classify, rerank (default: from the checkpoint)."""
    dtype: str = "fp32"
    device: str | None = None
    host: str = "127.0.0.1"
    port: int = 3000
    max_batch_tokens: int = 16384
    """Real tokens per forward pass: padding-free execution makes padding free, so the budget counts tokens."""
    max_batch_requests: int | None = None
    max_concurrent_requests: int = 512
    """Requests queued or running; one more is answered 429 at once."""
    max_client_batch_size: int = 32
    """Inputs in one request; more is answered 413."""
    auto_truncate: bool = False
    """Truncate inputs longer than the model's limit when a request does not say (else 422)."""
    payload_limit: int = 2_000_000
    """Request body bytes; more is answered 413."""
    api_key: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    """{name: directory} of fine-tuning artefacts served on the one base model."""
    max_wait_ms: float = 2.0
    """How long the batcher waits for more requests to join a batch that is not full."""

    def check(self) -> None:
        """One ValueError naming the setting and what to give."""
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.task is not None and self.task not in ("embed", "classify", "rerank"):
            raise ValueError(f"--task {self.task!r} is not one of embed, classify, rerank")
        for name in ("max_batch_tokens", "max_concurrent_requests", "max_client_batch_size", "payload_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_batch_requests is not None and self.max_batch_requests < 1:
            raise ValueError(f"--max-batch-requests must be at least 1, got {self.max_batch_requests}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port {self.port} is not a port number (0-65535; 0 picks a free one)")
        if self.max_wait_ms < 0:
            raise ValueError(f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if self.dtype == "int8" and self.adapters:
            raise ValueError(
                "--dtype int8 quantizes the base once, so adapters cannot be switched on it; serve "
                "adapters in fp32, auto or bf16"
            )
        for name in self.adapters:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"--adapter {name!r}: a name is a short word (--adapter sst2=DIR)")


def parse_adapter(text: str) -> tuple[str, str]:
    """``NAME=DIR`` of ``--adapter``."""
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise ValueError(f"--adapter {text!r} must be NAME=DIR (the output directory's adapter/ of bertforge finetune)")
    return name, directory
