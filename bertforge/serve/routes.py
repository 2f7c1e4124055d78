"""The routes: TEI's (``/embed``, ``/embed_all``, ``/predict``, ``/rerank``, ``/similarity``, ``/tokenize``,
``/decode``, ``POST /``), OpenAI's ``/v1/embeddings``, bertforge's pipelines (``/fill-mask``, ``/ner``,
``/question-answering``, ``/zero-shot-classification``, ``/generate``), and ``/health``, ``/info``, ``/metrics``."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ValidationError

import bertforge
from bertforge.pipelines.base import sigmoid, softmax
from bertforge.serve import schemas as S
from bertforge.serve.host import Encoded, InputError
from bertforge.serve.state import ApiError, ServerState, json_response

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": S.ErrorResponse, "description": text}
    for code, text in {
        400: "empty input, or a route the model has no head for",
        401: "missing or wrong API key",
        413: "more inputs than --max-client-batch-size, or a body over --payload-limit",
        422: "an input too long (without truncation), not tokenizable, or not valid",
        424: "the model failed on the batch",
        429: "the queue is full (--max-concurrent-requests)",
        503: "the model is still loading",
    }.items()
}


class Call:
    """One request's path through the server: its texts checked, tokenized off the event loop, queued for a
    batch, and timed (TEI's headers and histograms)."""

    def __init__(self, state: ServerState, method: str):
        self.state, self.method = state, method
        self.host = state.model()
        self.started = time.perf_counter()
        self.tokenized_s = 0.0
        self.characters = self.tokens = 0
        self.job: Any = None

    def texts(self, inputs: str | list[str], field: str = "inputs") -> list[str]:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        limit = self.state.settings.max_client_batch_size
        if not texts:
            raise ApiError(400, f"`{field}` cannot be empty", "empty")
        if len(texts) > limit:
            raise ApiError(413, f"batch size {len(texts)} > maximum allowed batch size {limit}", "validation")
        for i, t in enumerate(texts):
            if not t:
                raise ApiError(400, f"`{field}` {i} is an empty text", "empty")
        self.characters += sum(len(t) for t in texts)
        return texts

    def prompted(self, texts: list[str], prompt_name: str | None) -> list[str]:
        if prompt_name is None:
            return texts
        if prompt_name not in self.host.prompts:
            known = ", ".join(self.host.prompts) or "none (config_sentence_transformers.json defines no prompts)"
            raise ApiError(422, f"prompt_name {prompt_name!r} is not one of the model's prompts: {known}", "validation")
        return [self.host.prompts[prompt_name] + t for t in texts]

    async def encode(
        self,
        texts: list[str],
        pairs: list[str] | None = None,
        truncate: bool | None = None,
        direction: str = "right",
        **kw: Any,
    ) -> Encoded:
        start = time.perf_counter()
        cut = self.state.settings.auto_truncate if truncate is None else truncate
        try:
            enc = await asyncio.to_thread(
                self.host.encode, texts, pairs, truncate=cut, direction=direction.lower(), **kw
            )
        except InputError as e:
            raise ApiError(e.status, str(e), e.kind) from None
        self.tokenized_s += time.perf_counter() - start
        for n in enc.lengths:
            self.state.metrics.input_length.observe(n)
        self.tokens += sum(enc.lengths)
        return enc

    async def run(self, key: tuple, items: list[Any], tokens: int | None = None) -> list[Any]:
        self.job = await self.state.submit(self.method, key, items, self.tokens if tokens is None else tokens)
        return self.job.result

    def respond(self, content: Any) -> Response:
        headers = self.state.timings(self.job, self.tokenized_s, self.started, self.characters, self.tokens)
        return json_response(content, headers)


def _vectors(rows: list[np.ndarray], normalize: bool, dimensions: int | None) -> list[np.ndarray]:
    out = []
    for v in rows:
        if dimensions is not None:
            if dimensions > v.shape[-1]:
                raise ApiError(422, f"dimensions {dimensions} > the model's {v.shape[-1]}", "validation")
            v = v[..., :dimensions]
        if normalize:
            v = v / max(float(np.linalg.norm(v)), 1e-12)
        out.append(v.astype(np.float32))
    return out


async def embed(state: ServerState, req: S.EmbedRequest, method: str = "embed") -> tuple[Call, list[np.ndarray]]:
    call = Call(state, method)
    state.model().view(req.adapter)
    texts = call.prompted(call.texts(req.inputs), req.prompt_name)
    enc = await call.encode(texts, truncate=req.truncate, direction=req.truncation_direction)
    rows = await call.run(("embed", req.adapter), enc.features)
    return call, _vectors(rows, req.normalize, req.dimensions)


def _predict_inputs(inputs: str | list[str] | list[list[str]]) -> tuple[list[tuple[str, str | None]], bool]:
    """TEI's reading of ``inputs``: a text, a pair [a, b] (a list of exactly two texts), or a list of texts and
    pairs. Returns the (text, pair) items and whether one was given."""
    if isinstance(inputs, str):
        return [(inputs, None)], True
    if len(inputs) == 2 and all(isinstance(x, str) for x in inputs):
        return [(inputs[0], inputs[1])], True  # type: ignore[list-item]
    items: list[tuple[str, str | None]] = []
    for i, x in enumerate(inputs):
        if isinstance(x, str):
            items.append((x, None))
        elif len(x) in (1, 2):
            items.append((x[0], x[1] if len(x) == 2 else None))
        else:
            raise ApiError(422, f"inputs {i} has {len(x)} texts; a pair has two", "validation")
    return items, False


async def classify(call: Call, adapter: str | None, items: list[tuple[str, str | None]], truncate, direction):
    """The logits of each (text, pair) item, in order: singles and pairs are encoded apart, batched together."""
    call.state.model().require(call.state.model().view(adapter), "classify")
    call.texts([t for t, _ in items])
    features: list[Any] = [None] * len(items)
    for with_pair in (False, True):
        chosen = [i for i, (_, p) in enumerate(items) if (p is not None) == with_pair]
        if chosen:
            pairs = [items[i][1] for i in chosen] if with_pair else None
            enc = await call.encode([items[i][0] for i in chosen], pairs, truncate, direction)  # type: ignore[arg-type]
            for i, f in zip(chosen, enc.features):
                features[i] = f
    return await call.run(("logits", adapter), features)


def _scores(logits: np.ndarray, raw: bool) -> np.ndarray:
    if raw:
        return logits
    return sigmoid(logits) if logits.shape[-1] == 1 else softmax(logits)


def register(app: FastAPI, state: ServerState) -> None:
    _register_tei(app, state)
    _register_tokens(app, state)
    _register_openai(app, state)
    _register_pipelines(app, state)
    _register_service(app, state)


def _register_tei(app: FastAPI, state: ServerState) -> None:
    @app.post("/embed", response_model=list[list[float]], responses=ERRORS, tags=["TEI"])
    async def embed_route(req: S.EmbedRequest):
        """Sentence embeddings, pooled as the model says (sentence-transformers' config), normalised by default."""
        async with state.admit("embed"):
            call, vectors = await embed(state, req)
            return call.respond(vectors)

    @app.post("/embed_all", response_model=list[list[list[float]]], responses=ERRORS, tags=["TEI"])
    async def embed_all(req: S.EmbedAllRequest):
        """Every token's vector, per input."""
        async with state.admit("embed_all"):
            call = Call(state, "embed_all")
            state.model().view(req.adapter)
            texts = call.prompted(call.texts(req.inputs), req.prompt_name)
            enc = await call.encode(texts, truncate=req.truncate, direction=req.truncation_direction)
            return call.respond(await call.run(("embed_all", req.adapter), enc.features))

    @app.post("/predict", response_model=list[S.Prediction] | list[list[S.Prediction]], responses=ERRORS, tags=["TEI"])
    async def predict_route(req: S.PredictRequest):
        """Classification of texts and pairs: every label with its score, best first."""
        async with state.admit("predict"):
            return await predict(state, req)

    @app.post("/rerank", response_model=list[S.Rank], responses=ERRORS, tags=["TEI"])
    async def rerank_route(req: S.RerankRequest):
        """Texts ranked by relevance to the query: a cross-encoder's score, or, on an embedding model, the cosine
        similarity of the embeddings."""
        async with state.admit("rerank"):
            return await rerank(state, req)

    @app.post("/similarity", response_model=list[float], responses=ERRORS, tags=["TEI"])
    async def similarity(req: S.SimilarityRequest):
        """Cosine similarity of the source sentence with each sentence."""
        async with state.admit("similarity"):
            call = Call(state, "similarity")
            texts = call.prompted(call.texts([req.inputs.source_sentence, *req.inputs.sentences]), req.prompt_name)
            enc = await call.encode(texts, truncate=req.truncate, direction=req.truncation_direction)
            rows = _vectors(await call.run(("embed", req.adapter), enc.features), True, None)
            return call.respond([float(rows[0] @ r) for r in rows[1:]])


def _register_tokens(app: FastAPI, state: ServerState) -> None:
    @app.post("/tokenize", response_model=list[list[S.SimpleToken]], responses=ERRORS, tags=["TEI"])
    async def tokenize(req: S.TokenizeRequest):
        """The tokens of each input, with their offsets in the text."""
        async with state.admit("tokenize"):
            call = Call(state, "tokenize")
            texts = call.prompted(call.texts(req.inputs), req.prompt_name)
            enc = await call.encode(texts, truncate=True, add_special_tokens=req.add_special_tokens, details=True)
            assert enc.tokens is not None and enc.offsets is not None and enc.specials is not None
            out = []
            for text, f, tokens, offsets, specials in zip(texts, enc.features, enc.tokens, enc.offsets, enc.specials):
                out.append(
                    [
                        {
                            "id": i,
                            "text": tok if s else text[a:b],
                            "special": bool(s),
                            "start": None if s else a,
                            "stop": None if s else b,
                        }
                        for i, tok, (a, b), s in zip(f["input_ids"], tokens, offsets, specials)
                    ]
                )
            return json_response(out)

    @app.post("/decode", response_model=list[str], responses=ERRORS, tags=["TEI"])
    async def decode(req: S.DecodeRequest):
        """Texts from token ids."""
        async with state.admit("decode"):
            host = state.model()
            batches: list[list[int]] = [req.ids] if req.ids and isinstance(req.ids[0], int) else req.ids  # type: ignore[assignment]
            if not batches or not all(batches):
                raise ApiError(400, "`ids` cannot be empty", "empty")
            vocab = len(host.tokenizer.backend.get_vocab())
            for i, ids in enumerate(batches):
                bad = [x for x in ids if not 0 <= x < vocab]
                if bad:
                    raise ApiError(422, f"ids {i}: {bad[0]} is not a token id (0..{vocab - 1})", "validation")
            return json_response([host.tokenizer.decode(ids, req.skip_special_tokens) for ids in batches])

    @app.post("/", responses=ERRORS, tags=["TEI"])
    async def compat(request: Request):
        """TEI's route for clients that post to the base URL (huggingface_hub's InferenceClient): the body of
        /embed, /predict or /rerank, by what the model is served as (--task)."""
        task = served_task(state)
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(422, "the body is not JSON", "validation") from None
        shapes: dict[str, type[BaseModel]] = {
            "embed": S.EmbedRequest,
            "classify": S.PredictRequest,
            "rerank": S.RerankRequest,
        }
        model = shapes[task]
        try:
            req = model.model_validate(body)
        except ValidationError as e:
            first = e.errors()[0]
            raise ApiError(422, f"{'.'.join(map(str, first['loc']))}: {first['msg']}", "validation") from None
        async with state.admit(task):
            if isinstance(req, S.EmbedRequest):
                call, vectors = await embed(state, req)
                return call.respond(vectors)
            return await (predict(state, req) if isinstance(req, S.PredictRequest) else rerank(state, req))  # type: ignore[arg-type]


async def predict(state: ServerState, req: S.PredictRequest) -> Response:
    call = Call(state, "predict")
    items, single = _predict_inputs(req.inputs)
    logits = await classify(call, req.adapter, items, req.truncate, req.truncation_direction)
    labels = state.model().id2label(req.adapter)
    out = []
    for x in logits:
        scores = _scores(x, req.raw_scores)
        out.append([{"score": float(scores[k]), "label": labels.get(int(k), str(k))} for k in np.argsort(-scores)])
    return call.respond(out[0] if single else out)


async def rerank(state: ServerState, req: S.RerankRequest) -> Response:
    call = Call(state, "rerank")
    host = state.model()
    texts = call.texts(req.texts, "texts")
    if "classify" in host.view(req.adapter).routes:
        if host.num_labels(req.adapter) != 1:
            raise ApiError(
                400,
                "rerank needs a cross-encoder (a classifier with one output); this one has "
                f"{host.num_labels(req.adapter)} labels: use /predict",
                "validation",
            )
        logits = await classify(
            call, req.adapter, [(req.query, t) for t in texts], req.truncate, req.truncation_direction
        )
        scores = [float(_scores(x, req.raw_scores)[0]) for x in logits]
    else:  # an embedding model: the query's and the texts' cosine similarity
        enc = await call.encode([req.query, *texts], truncate=req.truncate, direction=req.truncation_direction)
        rows = _vectors(await call.run(("embed", req.adapter), enc.features), True, None)
        scores = [float(rows[0] @ r) for r in rows[1:]]
    order = sorted(range(len(texts)), key=lambda i: -scores[i])
    return call.respond(
        [{"index": i, "score": scores[i], **({"text": texts[i]} if req.return_text else {})} for i in order]
    )


def served_task(state: ServerState) -> str:
    """What the model is served as: --task, else a sequence classifier with one output is a reranker, one with
    more a classifier, and anything else embeds."""
    host = state.model()
    if state.settings.task:
        return state.settings.task
    if "classify" in host.base.routes:
        return "rerank" if host.num_labels(None) == 1 else "classify"
    return "embed"


def _register_openai(app: FastAPI, state: ServerState) -> None:
    @app.post("/v1/embeddings", response_model=S.OpenAIResponse, responses=ERRORS, tags=["OpenAI"])
    async def openai_embeddings(req: S.OpenAIRequest):
        """OpenAI's embeddings API: ``model`` names an adapter, or anything else for the base model."""
        async with state.admit("openai"):
            host = state.model()
            adapter = req.model if req.model in host.adapter_names else None
            er = S.EmbedRequest(inputs=req.input, normalize=True, dimensions=req.dimensions, adapter=adapter)
            call, vectors = await embed(state, er, "openai")
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
                    if req.encoding_format == "base64"
                    else v,
                }
                for i, v in enumerate(vectors)
            ]
            usage = {"prompt_tokens": call.tokens, "total_tokens": call.tokens}
            return call.respond(
                {"object": "list", "data": data, "model": req.model or state.settings.model, "usage": usage}
            )


def _pipeline_params(req: BaseModel, skip: tuple[str, ...]) -> tuple:
    """The request's keywords for the pipeline call, hashable (requests batch together when these are equal)."""
    return tuple(
        sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in req.model_dump().items() if k not in skip)
    )


async def pipeline_call(
    state: ServerState, route: str, req: BaseModel, items: list[Any], texts: list[str], single: bool
) -> Response:
    call = Call(state, route)
    adapter = getattr(req, "adapter", None)
    host = state.model()
    host.require(host.view(adapter), route)
    call.texts(texts)
    enc = await call.encode(texts, truncate=True)  # the pipelines window long inputs; this counts the tokens
    del enc
    results = await call.run(
        (route, adapter, _pipeline_params(req, ("inputs", "question", "context", "adapter"))), items
    )
    return call.respond(results[0] if single else results)


def _register_pipelines(app: FastAPI, state: ServerState) -> None:
    def texts_of(inputs: str | list[str]) -> tuple[list[str], bool]:
        return ([inputs], True) if isinstance(inputs, str) else (list(inputs), False)

    @app.post("/fill-mask", response_model=list[Any], responses=ERRORS, tags=["pipelines"])
    async def fill_mask(req: S.FillMaskRequest):
        """The best tokens for each [MASK], with probabilities (a list per mask when a text has several)."""
        async with state.admit("fill-mask"):
            texts, single = texts_of(req.inputs)
            return await pipeline_call(state, "fill-mask", req, texts, texts, single)

    @app.post("/ner", response_model=list[Any], responses=ERRORS, tags=["pipelines"])
    async def ner(req: S.NERRequest):
        """Entities of each text: word, entity group, score, character offsets."""
        async with state.admit("ner"):
            texts, single = texts_of(req.inputs)
            return await pipeline_call(state, "ner", req, texts, texts, single)

    @app.post("/question-answering", response_model=dict[str, Any] | list[Any], responses=ERRORS, tags=["pipelines"])
    async def question_answering(req: S.QARequest):
        """The answer span in the context: text, score, character offsets."""
        async with state.admit("question-answering"):
            item = {"question": req.question, "context": req.context}
            return await pipeline_call(state, "question-answering", req, [item], [req.question, req.context], True)

    @app.post(
        "/zero-shot-classification", response_model=dict[str, Any] | list[Any], responses=ERRORS, tags=["pipelines"]
    )
    async def zero_shot(req: S.ZeroShotRequest):
        """Candidate labels ranked by an NLI model's entailment."""
        async with state.admit("zero-shot-classification"):
            texts, single = texts_of(req.inputs)
            if not req.candidate_labels or not all(x.strip() for x in req.candidate_labels):
                raise ApiError(400, "`candidate_labels` must hold at least one non-empty label", "empty")
            return await pipeline_call(state, "zero-shot-classification", req, texts, texts, single)

    @app.post("/generate", response_model=dict[str, Any], responses=ERRORS, tags=["pipelines"])
    async def generate(req: S.GenerateRequest):
        """Text continued by a causal checkpoint."""
        async with state.admit("generate"):
            return await pipeline_call(state, "generate", req, [req.inputs], [req.inputs], True)


def _register_service(app: FastAPI, state: ServerState) -> None:
    @app.get("/health", response_class=PlainTextResponse, responses={503: {"model": S.ErrorResponse}}, tags=["service"])
    async def health():
        """200 (an empty body, as TEI) once the model is loaded and the batcher runs; 503 before."""
        if not state.ready:
            raise ApiError(503, state.load_error or "the model is loading", "unhealthy")
        return PlainTextResponse("")

    @app.get("/info", response_model=S.Info, responses={503: {"model": S.ErrorResponse}}, tags=["service"])
    async def info():
        """The model, its dtype and tasks, every limit, the adapters."""
        host, s = state.model(), state.settings
        task = served_task(state)
        model_type = (
            {"embedding": {"pooling": host.pooling}}
            if task == "embed"
            else {"reranker" if task == "rerank" else "classifier": {"id2label": host.id2label(None)}}
        )
        return S.Info(
            model_id=s.model,
            model_dtype=host.dtype_name,
            model_type=model_type,
            tasks=list(host.base.routes),
            adapters={n: list(host.views[n].routes) for n in host.adapter_names},
            max_concurrent_requests=s.max_concurrent_requests,
            max_input_length=host.max_input_length,
            max_batch_tokens=s.max_batch_tokens,
            max_batch_requests=s.max_batch_requests,
            max_client_batch_size=s.max_client_batch_size,
            auto_truncate=s.auto_truncate,
            payload_limit=s.payload_limit,
            tokenization_workers=1,
            version=bertforge.__version__,
        )

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    async def metrics():
        """Prometheus text: requests, failures, durations (tokenization, queue, inference), batch sizes."""
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
