"""Request and response bodies: TEI's shapes for TEI's routes, OpenAI's for ``/v1/embeddings``, and bertforge's
pipelines' for theirs. These are what ``/openapi.json`` documents and what a bad request is checked against."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Direction = Literal["right", "left", "Right", "Left"]
ADAPTER = Field(default=None, description="an adapter loaded at start (--adapter NAME=DIR); none: the base model")


class ErrorResponse(BaseModel):
    error: str
    error_type: str


class Truncation(BaseModel):
    truncate: bool | None = Field(
        default=None,
        description="cut inputs longer than the model's limit (default: "
        "--auto-truncate); without it they are answered 422",
    )
    truncation_direction: Direction = "right"


class EmbedRequest(Truncation):
    inputs: str | list[str]
    normalize: bool = True
    prompt_name: str | None = None
    dimensions: int | None = Field(default=None, ge=1, description="keep the first N dimensions (Matryoshka)")
    adapter: str | None = ADAPTER


class EmbedAllRequest(Truncation):
    inputs: str | list[str]
    prompt_name: str | None = None
    adapter: str | None = ADAPTER


class PredictRequest(Truncation):
    inputs: str | list[str] | list[list[str]] = Field(
        description="a text, a pair [text, text_pair], or a list of texts and pairs (a list of exactly two texts is "
        "one pair, as in TEI)"
    )
    raw_scores: bool = False
    adapter: str | None = ADAPTER


class Prediction(BaseModel):
    score: float
    label: str


class RerankRequest(Truncation):
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    adapter: str | None = ADAPTER


class Rank(BaseModel):
    index: int
    score: float
    text: str | None = None


class SimilarityInput(BaseModel):
    source_sentence: str
    sentences: list[str]


class SimilarityRequest(Truncation):
    inputs: SimilarityInput
    prompt_name: str | None = None
    adapter: str | None = ADAPTER


class TokenizeRequest(BaseModel):
    inputs: str | list[str]
    add_special_tokens: bool = True
    prompt_name: str | None = None


class SimpleToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None
    stop: int | None


class DecodeRequest(BaseModel):
    ids: list[int] | list[list[int]]
    skip_special_tokens: bool = True


class OpenAIRequest(BaseModel):
    input: str | list[str]
    model: str | None = Field(default=None, description="an adapter's name picks it; any other name: the base")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class FillMaskRequest(BaseModel):
    inputs: str | list[str]
    top_k: int = Field(default=5, ge=1, le=1000)
    targets: list[str] | None = None
    adapter: str | None = ADAPTER


class NERRequest(BaseModel):
    inputs: str | list[str]
    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = "simple"
    adapter: str | None = ADAPTER


class QARequest(BaseModel):
    question: str
    context: str
    top_k: int = Field(default=1, ge=1, le=100)
    max_answer_len: int = Field(default=15, ge=1, le=512)
    handle_impossible_answer: bool = False
    adapter: str | None = ADAPTER


class ZeroShotRequest(BaseModel):
    inputs: str | list[str]
    candidate_labels: list[str]
    multi_label: bool = False
    hypothesis_template: str = "This example is {}."
    adapter: str | None = ADAPTER


class GenerateRequest(BaseModel):
    inputs: str
    max_new_tokens: int = Field(default=32, ge=1, le=1024)
    do_sample: bool = False
    temperature: float = Field(default=1.0, gt=0, le=100)
    top_k: int = Field(default=0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    adapter: str | None = ADAPTER


class Info(BaseModel):
    model_id: str
    model_dtype: str
    model_type: dict[str, Any]
    tasks: list[str]
    adapters: dict[str, list[str]]
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None
    max_client_batch_size: int
    auto_truncate: bool
    payload_limit: int
    tokenization_workers: int
    version: str
    docker_label: str | None = None
    sha: str | None = None
