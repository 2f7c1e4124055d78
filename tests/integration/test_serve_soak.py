"""Three minutes of mixed load on ``bertforge serve`` with 5% bad requests: no 5xx, every good answer equal to the
pipeline's, and the server's resident memory growing less than 10% after warm-up. Slow (CI runs it once);
BERTFORGE_SOAK_SECONDS sets the length."""

from __future__ import annotations

import asyncio
import os
import random
import time

import numpy as np
import pytest

from bertforge import pipeline  # noqa: E402
from tests.integration.serve_util import httpx, serve_in_process

pytestmark = [pytest.mark.slow, pytest.mark.soak]

WORDS = (
    "river stone cloud green house quiet market winter letter garden bright music paper window travel "
    "number simple early morning table"
).split()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _texts(n: int) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60))) for _ in range(n)]


BAD = [
    ("/embed", {"inputs": []}),
    ("/embed", {"inputs": "word " * 600}),
    ("/embed", {"inputs": ["x"] * 40}),
    ("/embed", {"inputs": 12}),
    ("/embed", {"inputs": "fine", "adapter": "missing"}),
    ("/rerank", {"query": "q", "texts": []}),
]


async def _client(url: str, texts: list[str], want: np.ndarray, until: float, seed: int, tally: dict) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while time.perf_counter() < until:
            if rng.random() < 0.05:
                path, body = rng.choice(BAD)
                r = await client.post(path, json=body)
                tally["bad"] += 1
                tally["5xx"] += r.status_code >= 500
                tally["bad_accepted"] += r.status_code < 400
                continue
            picks = rng.sample(range(len(texts)), rng.choice((1, 1, 1, 4, 16)))
            if rng.random() < 0.2:
                r = await client.post("/v1/embeddings", json={"input": [texts[i] for i in picks]})
                got = [d["embedding"] for d in r.json()["data"]] if r.status_code == 200 else None
            else:
                r = await client.post("/embed", json={"inputs": [texts[i] for i in picks]})
                got = r.json() if r.status_code == 200 else None
            tally["good"] += 1
            tally["5xx"] += r.status_code >= 500
            if got is None or not np.allclose(got, want[picks], atol=1e-5):
                tally["wrong"] += 1


def test_mixed_load_keeps_answers_right_and_memory_flat(minilm):
    seconds = float(os.environ.get("BERTFORGE_SOAK_SECONDS", "180"))
    texts = _texts(200)
    want = np.stack(pipeline("sentence-embedding", model=str(minilm))(texts))
    with serve_in_process("--model", str(minilm), "--max-wait-ms", "2") as (url, proc):
        tally = dict.fromkeys(("good", "bad", "5xx", "wrong", "bad_accepted"), 0)

        async def phase(length: float, clients: int) -> None:
            until = time.perf_counter() + length
            await asyncio.gather(*(_client(url, texts, want, until, s, tally) for s in range(clients)))

        longest = sorted(range(len(texts)), key=lambda i: -len(texts[i]))[:16]

        async def biggest_batches() -> None:  # the largest batches first: the heap reaches its high-water mark
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                for _ in range(5):
                    body = {"inputs": [texts[i] for i in longest]}
                    await asyncio.gather(*(client.post("/embed", json=body) for _ in range(16)))

        asyncio.run(biggest_batches())
        warm = min(40.0, seconds / 2)  # the kernel cache and the allocator reach their level in about 30 s
        asyncio.run(phase(warm, 16))
        before = _rss_kib(proc.pid)
        asyncio.run(phase(seconds - warm, 16))
        after = _rss_kib(proc.pid)
        print(f"soak: {tally}, resident memory {before / 1024:.0f} -> {after / 1024:.0f} MiB")
        assert tally["5xx"] == 0 and tally["wrong"] == 0 and tally["bad_accepted"] == 0
        assert tally["good"] > 100 and tally["bad"] > 0
        assert after < before * 1.10, f"resident memory grew from {before} to {after} KiB"
        assert httpx.post(url + "/embed", json={"inputs": texts[0]}).status_code == 200
