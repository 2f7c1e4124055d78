"""The server's Prometheus metrics, under TEI's names where TEI has one (so TEI's dashboards read them), in a
registry of the app's own (two apps in one process keep their counts apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DURATIONS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LENGTHS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKENS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("te_request_count", "Requests received", ["method"], registry=r)
        self.success = Counter("te_request_success", "Requests answered", ["method"], registry=r)
        self.failure = Counter("te_request_failure", "Requests failed, by error type", ["err"], registry=r)
        self.duration = Histogram("te_request_duration", "Request time (s)", buckets=DURATIONS, registry=r)
        self.tokenization = Histogram(
            "te_request_tokenization_duration", "Tokenization time (s)", buckets=DURATIONS, registry=r
        )
        self.queue = Histogram("te_request_queue_duration", "Time in the queue (s)", buckets=DURATIONS, registry=r)
        self.inference = Histogram(
            "te_request_inference_duration", "Time in the model (s)", buckets=DURATIONS, registry=r
        )
        self.input_length = Histogram("te_request_input_length", "Tokens per input", buckets=LENGTHS, registry=r)
        self.batch_size = Histogram("te_batch_next_size", "Inputs per batch", buckets=SIZES, registry=r)
        self.batch_tokens = Histogram("te_batch_next_tokens", "Tokens per batch", buckets=TOKENS, registry=r)
        self.batch_requests = Histogram(
            "bertforge_batch_requests", "Requests answered by one batch", buckets=SIZES, registry=r
        )
        self.queue_size = Gauge("te_queue_size", "Requests waiting for a batch", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
