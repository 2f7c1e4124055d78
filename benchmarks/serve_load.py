"""Serving under load: bertforge serve against infinity-emb and the plain FastAPI + sentence-transformers server.

Usage: python benchmarks/serve_load.py [--seconds 60] [--clients 1,8,32,128] [--sets sst2,wiki]
           [--systems bertforge-fp32,bertforge-int8,infinity,plain] [--infinity-python PATH]
           [--out benchmarks/results/serve_load.json]

Every system serves the same weights (all-MiniLM-L6-v2, mean pooling, normalised) on the loopback interface, one at a
time, alone on the machine but for the load generator. The generator is a closed loop: N clients, each sending one
text, waiting for its answer, sending the next, for --seconds after a short warm-up (not counted). Texts: SST-2 dev
sentences (sst2), or WikiText-2 passages of 128-512 tokens (wiki; the model reads 256, so every system truncates).
Reported per point: texts/s, tokens/s (the model's tokens, truncated), latency p50/p90/p99 and errors. Systems:
- bertforge-fp32, bertforge-bf16 (only where the CPU runs bf16 natively), bertforge-int8: ``bertforge serve
  --auto-truncate`` with that --dtype;
- infinity-torch, infinity-optimum: infinity-emb's own CLI (``infinity_emb v2``, batch size 32) with its torch
  engine, and its ONNX Runtime engine (optimum), from a virtual environment of its own (--infinity-python; it pins
  an older transformers);
- plain: the FastAPI + sentence-transformers server most people write (below, a few lines), in this environment.
The systems' order alternates between rounds (--rounds). Also measured: the STS-B dev Pearson correlation of each
bertforge dtype's embeddings (cosine against the gold scores), so int8's accuracy change is stated beside its speed.
Writes the JSON and a plot of throughput against p99 latency (one line per system, one point per client count).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, machine, write_result  # noqa: E402

PLAIN_SERVER = """
import os
from fastapi import FastAPI
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(os.environ["PLAIN_MODEL"], device="cpu")
app = FastAPI()


@app.post("/embed")
def embed(body: dict):
    inputs = body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]]
    return model.encode(inputs, normalize_embeddings=True).tolist()
"""
"""The server most people write: sentence-transformers behind FastAPI, one request at a time per worker thread."""


def sst2_texts() -> list[str]:
    from bertforge.tasks.readers import read_table

    return [r["text"] for r in read_table(str(DATA / "glue" / "SST-2" / "dev.tsv"), "sentence", "label")]


def wiki_passages(tokenizer, n: int = 400) -> list[str]:
    """Passages of 128-512 tokens cut from WikiText-2's validation split at line ends."""
    lines = [x.strip() for x in (DATA / "wikitext-2" / "valid.txt").read_text(encoding="utf-8").splitlines()]
    lines = [x for x in lines if x and not x.startswith("=")]
    rng = np.random.default_rng(0)
    passages, current, target = [], [], int(rng.integers(128, 513))
    for line in lines:
        current.append(line)
        text = " ".join(current)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= target:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:target]
            passages.append(tokenizer.decode(ids))
            current, target = [], int(rng.integers(128, 513))
            if len(passages) == n:
                break
    return passages


class System:
    """A server to start, the request it answers an embedding with, and how to stop it."""

    def __init__(self, name: str, cmd: list[str], path: str, body, env: dict | None = None):
        self.name, self.cmd, self.path, self.body, self.env = name, cmd, path, body, env
        self.proc: subprocess.Popen | None = None

    def start(self, port: int, log: Path) -> None:
        cmd = [c.replace("{port}", str(port)) for c in self.cmd]
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})}
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def systems(model: str, infinity_python: str | None, names: list[str], work: Path) -> dict[str, System]:
    from bertforge.utils import fast_bf16

    py = sys.executable
    out = {}
    for dtype in ("fp32", "bf16", "int8"):
        if dtype == "bf16" and not fast_bf16("cpu"):
            continue  # emulated bf16 is several times slower than fp32: not a configuration anyone would serve
        out[f"bertforge-{dtype}"] = System(
            f"bertforge-{dtype}",
            [py, "-m", "bertforge", "serve", "--model", model, "--dtype", dtype, "--port", "{port}", "--auto-truncate"],
            "/embed",
            lambda t: {"inputs": t},
        )
    for engine in ("torch", "optimum") if infinity_python else ():
        out[f"infinity-{engine}"] = System(
            f"infinity-{engine}",
            [
                str(Path(infinity_python).parent / "infinity_emb"),
                "v2",
                "--model-id",
                model,
                "--port",
                "{port}",
                "--engine",
                engine,
                "--device",
                "cpu",
                "--batch-size",
                "32",
                "--no-bettertransformer",
            ],
            "/embeddings",
            lambda t: {"input": [t], "model": model},
            env={"INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"},
        )
    plain = work / "plain_server.py"
    plain.write_text(PLAIN_SERVER)
    out["plain"] = System(
        "plain",
        [py, "-m", "uvicorn", "--app-dir", str(work), "plain_server:app", "--port", "{port}", "--log-level", "warning"],
        "/embed",
        lambda t: {"inputs": t},
        env={"PLAIN_MODEL": model},
    )
    return {n: out[n] for n in names if n in out}


async def wait_up(url: str, system: System, timeout: float = 300) -> float:
    import httpx

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as client:
        while time.perf_counter() - start < timeout:
            if system.proc is not None and system.proc.poll() is not None:
                raise RuntimeError(f"{system.name} exited with {system.proc.returncode}; see {system.log.name}")
            try:
                r = await client.post(url + system.path, json=system.body("warm up"))
                if r.status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


class Connection:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams: a load generator light enough not to be what is
    measured (httpx's pool costs milliseconds of CPU per request at 128 clients, on the cores the server needs)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        await self.writer.drain()
        assert self.reader is not None
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(x.split(":", 1)[1]) for x in lines if x.lower().startswith("content-length:"))
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def load(
    url: str, system: System, texts: list[str], tokens: list[int], clients: int, seconds: float, warmup: float = 3.0
) -> dict:
    """Closed loop: ``clients`` concurrent clients, one connection and one text per request each, for ``seconds``
    after ``warmup``. Throughput counts the answers the window received; latency, the requests it both sent and
    answered (with latencies near the window's length, the slowest are missed: the window must be much longer)."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    done_tokens = errors = answered = 0
    start = time.perf_counter()
    counting_from, until = start + warmup, start + warmup + seconds

    async def one(k: int) -> None:
        nonlocal done_tokens, errors, answered
        conn, i = Connection(host, int(port)), k
        try:
            while (sent := time.perf_counter()) < until:
                try:
                    ok = await conn.post(system.path, system.body(texts[i % len(texts)])) == 200
                except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
                    ok = False
                    await conn.close()
                    conn = Connection(host, int(port))
                end = time.perf_counter()
                if counting_from <= end <= until:  # throughput: what the window answered, whenever it was sent
                    answered += ok
                    done_tokens += tokens[i % len(texts)] if ok else 0
                    errors += not ok
                    if ok and sent >= counting_from:  # latency: requests sent and answered within the window
                        latencies.append(end - sent)
                i += clients
        finally:
            await conn.close()

    await asyncio.gather(*(one(k) for k in range(clients)))
    lat = np.array(latencies) * 1000
    return {
        "clients": clients,
        "seconds": seconds,
        "texts_per_s": round(answered / seconds, 1),
        "tokens_per_s": round(done_tokens / seconds, 0),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p90_ms": round(float(np.percentile(lat, 90)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "answered": answered,
        "errors": errors,
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sts_pearson(model: str, dtypes: list[str]) -> dict[str, float]:
    """STS-B dev: Pearson correlation of the embeddings' cosine with the gold similarity, per dtype."""
    from bertforge import pipeline
    from bertforge.tasks.readers import read_table

    rows = list(read_table(str(DATA / "glue" / "STS-B" / "dev.tsv"), "sentence1", "score", "sentence2"))
    a, b = [r["text"] for r in rows], [r["text_pair"] for r in rows]
    gold = np.array([float(r["label"]) for r in rows])
    out = {}
    for dtype in dtypes:
        pipe = pipeline("sentence-embedding", model=model, dtype=dtype)
        ea, eb = np.stack(pipe(a)), np.stack(pipe(b))
        out[dtype] = round(float(np.corrcoef((ea * eb).sum(1), gold)[0, 1]), 4)
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({r["set"] for r in results})
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), squeeze=False)
    for ax, name in zip(axes[0], sets):
        for system in sorted({r["system"] for r in results}):
            points = sorted(
                (r for r in results if r["set"] == name and r["system"] == system), key=lambda r: r["clients"]
            )
            points = [p for p in points if p["p99_ms"] is not None]
            ax.plot([p["p99_ms"] for p in points], [p["texts_per_s"] for p in points], marker="o", label=system)
            for p in points:
                ax.annotate(
                    str(p["clients"]),
                    (p["p99_ms"], p["texts_per_s"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
        ax.set_xscale("log")
        ax.set_xlabel("p99 latency (ms, log scale)")
        ax.set_ylabel("texts/s")
        ax.set_title(f"{name}: throughput against p99 (labels: clients)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="all-MiniLM-L6-v2")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--clients", default="1,8,32,128")
    p.add_argument("--sets", default="sst2,wiki")
    p.add_argument(
        "--systems", default="bertforge-fp32,bertforge-bf16,bertforge-int8,infinity-torch,infinity-optimum,plain"
    )
    p.add_argument("--rounds", type=int, default=1, help="each round runs every system; the order alternates")
    p.add_argument("--infinity-python", help="the python of a virtual environment with infinity-emb installed")
    p.add_argument("--no-sts", action="store_true", help="skip the STS-B accuracy of the dtypes")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load.json"))
    args = p.parse_args()

    from bertforge.hub import resolve_model
    from bertforge.tokenization.auto import load_tokenizer

    model = resolve_model(args.model)
    tok = load_tokenizer(model)
    sets = {"sst2": sst2_texts, "wiki": lambda: wiki_passages(tok)}
    chosen = {name: sets[name]() for name in args.sets.split(",")}
    lengths = {name: [min(len(ids), 256) for ids in tok(texts)["input_ids"]] for name, texts in chosen.items()}
    clients = [int(c) for c in args.clients.split(",")]
    work = Path(tempfile.mkdtemp(prefix="serve_load_"))
    found = systems(model, args.infinity_python, args.systems.split(","), work)
    record = {
        "benchmark": "serve_load",
        "date": date.today().isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "model": args.model,
        "sets": {
            name: {"texts": len(t), "mean_tokens": round(float(np.mean(lengths[name])), 1)}
            for name, t in chosen.items()
        },
        "results": [],
    }
    for rnd in range(args.rounds):
        order = list(found) if rnd % 2 == 0 else list(reversed(found))
        for name in order:
            system = found[name]
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            system.start(port, work / f"{name}.log")
            try:
                ready = asyncio.run(wait_up(url, system))
                print(f"{name}: answering after {ready:.1f} s", flush=True)
                for set_name, texts in chosen.items():
                    for c in clients:
                        point = asyncio.run(load(url, system, texts, lengths[set_name], c, args.seconds))
                        point.update(system=name, set=set_name, round=rnd)
                        record["results"].append(point)
                        print(json.dumps(point), flush=True)
                        write_result(args.out, record, indent=2, WORK=work)
            finally:
                system.stop()
    if not args.no_sts:
        dtypes = [n.removeprefix("bertforge-") for n in found if n.startswith("bertforge-")]
        record["sts_b_pearson"] = sts_pearson(model, dtypes)
        print("STS-B dev Pearson:", record["sts_b_pearson"])
    write_result(args.out, record, indent=2, WORK=work)
    plot(record["results"], Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out} and its plot")


if __name__ == "__main__":
    main()
