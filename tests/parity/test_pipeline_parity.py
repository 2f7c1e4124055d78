"""Pipelines against transformers' pipelines on the same tiny random checkpoints (bert-base-uncased vocabulary from
the all-MiniLM-L6-v2 package): same labels, scores to 1e-4, same spans; real weights for embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bertforge
from bertforge.tokenization import BertTokenizer
from tests.conftest import tiny_config

transformers = pytest.importorskip("transformers")

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
TEXT = (
    "John Smith lives in New York and works for Microsoftware in Zürich, at the U.N. headquarters; "
    "Ms. Ødegaard-Larsen visited unaffable colleagues."
)


def checkpoint(path, cls, minilm, max_length=None, **config):
    torch.manual_seed(0)
    cfg = tiny_config(vocab_size=30522, max_position_embeddings=512, **config)
    getattr(bertforge, cls)(cfg).save_pretrained(path)
    tok = BertTokenizer.from_pretrained(minilm)
    if max_length:
        tok.model_max_length = max_length
    tok.save_pretrained(path)
    return str(path)


def hf_pipeline(task, path):
    return transformers.pipeline(task, model=path, device="cpu")


def same_entities(ours, theirs):
    assert len(ours) == len(theirs), (ours, theirs)
    for a, b in zip(ours, theirs):
        assert a.get("entity", a.get("entity_group")) == b.get("entity", b.get("entity_group"))
        assert (a["start"], a["end"], a["word"]) == (b["start"], b["end"], b["word"])
        assert a["score"] == pytest.approx(float(b["score"]), abs=1e-4)


@pytest.fixture
def ner_checkpoint(tmp_path, minilm):
    return checkpoint(
        tmp_path / "ner",
        "BertForTokenClassification",
        minilm,
        num_labels=len(NER_LABELS),
        id2label=dict(enumerate(NER_LABELS)),
        label2id={k: i for i, k in enumerate(NER_LABELS)},
    )


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification(ner_checkpoint, strategy):
    ours = bertforge.pipeline("ner", model=ner_checkpoint)(TEXT, aggregation_strategy=strategy)
    theirs = hf_pipeline("token-classification", ner_checkpoint)(TEXT, aggregation_strategy=strategy)
    same_entities(ours, theirs)
    assert all(TEXT[e["start"] : e["end"]] for e in ours)


@pytest.mark.parametrize("strategy", ["simple", "first", "max"])
def test_token_classification_windows(tmp_path, minilm, strategy):
    path = checkpoint(
        tmp_path / "ner16",
        "BertForTokenClassification",
        minilm,
        max_length=16,
        num_labels=len(NER_LABELS),
        id2label=dict(enumerate(NER_LABELS)),
        label2id={k: i for i, k in enumerate(NER_LABELS)},
    )
    pipe = bertforge.pipeline("ner", model=path)
    assert pipe.max_length == 16
    ours = pipe(TEXT, aggregation_strategy=strategy, stride=4)
    theirs = hf_pipeline("token-classification", path)(TEXT, aggregation_strategy=strategy, stride=4)
    same_entities(ours, theirs)
    assert max(e["end"] for e in ours) > 100  # the end of the text was read, not truncated away


@pytest.mark.parametrize("problem", ["single_label_classification", "multi_label_classification"])
def test_text_classification(tmp_path, minilm, problem):
    labels = ["negative", "neutral", "positive"]
    path = checkpoint(
        tmp_path / "cls",
        "BertForSequenceClassification",
        minilm,
        num_labels=3,
        problem_type=problem,
        id2label=dict(enumerate(labels)),
        label2id={k: i for i, k in enumerate(labels)},
    )
    ours, theirs = bertforge.pipeline("sentiment-analysis", model=path), hf_pipeline("text-classification", path)
    texts = ["What a great film.", "Terrible, boring and far too long for what it was.", "ok"]
    for a, b in zip(ours(texts), theirs(texts)):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-4)
    for a, b in zip(ours(texts, top_k=None), theirs(texts, top_k=None)):
        assert [x["label"] for x in a] == [x["label"] for x in b]
        assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], abs=1e-4)
    pair = {"text": "A man plays guitar.", "text_pair": "Someone makes music."}
    a, b = ours(pair), theirs(pair)
    assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-4)
    a, b = ours(texts[0], function_to_apply="none", top_k=2), theirs(texts[0], function_to_apply="none", top_k=2)
    assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], abs=1e-4)


def test_fill_mask(tmp_path, minilm):
    path = checkpoint(tmp_path / "mlm", "BertForMaskedLM", minilm)
    ours, theirs = bertforge.pipeline("fill-mask", model=path), hf_pipeline("fill-mask", path)
    for text, kwargs in [
        ("The [MASK] sat on the mat.", {}),
        ("Paris is the [MASK] of [MASK].", {"top_k": 3}),
        ("The [MASK] sat on the mat.", {"targets": ["cat", "dog", "bird"]}),
    ]:
        a, b = ours(text, **kwargs), theirs(text, **kwargs)
        rows_a, rows_b = (a, b) if isinstance(a[0], list) else ([a], [b])
        assert len(rows_a) == len(rows_b)
        for ra, rb in zip(rows_a, rows_b):
            assert [x["token"] for x in ra] == [x["token"] for x in rb]
            assert [x["token_str"] for x in ra] == [x["token_str"] for x in rb]
            assert [x["sequence"] for x in ra] == [x["sequence"] for x in rb]
            assert [x["score"] for x in ra] == pytest.approx([x["score"] for x in rb], abs=1e-4)


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot(tmp_path, minilm, multi_label):
    nli = ["contradiction", "entailment", "neutral"]
    path = checkpoint(
        tmp_path / "nli",
        "BertForSequenceClassification",
        minilm,
        num_labels=3,
        id2label=dict(enumerate(nli)),
        label2id={k: i for i, k in enumerate(nli)},
    )
    labels = ["politics", "sports", "cooking", "science"]
    text = "The team won the match in the final minute."
    a = bertforge.pipeline("zero-shot-classification", model=path)(text, labels, multi_label=multi_label)
    b = hf_pipeline("zero-shot-classification", path)(text, candidate_labels=labels, multi_label=multi_label)
    assert a["labels"] == b["labels"] and a["scores"] == pytest.approx(b["scores"], abs=1e-4)


def test_feature_extraction_tokens_and_mean(tmp_path, minilm):
    path = checkpoint(tmp_path / "enc", "BertModel", minilm)
    texts = ["A short one.", "A somewhat longer sentence with more words in it."]
    ours = bertforge.pipeline("feature-extraction", model=path)
    theirs = hf_pipeline("feature-extraction", path)
    for text in texts:
        ref = np.asarray(theirs(text))[0]
        np.testing.assert_allclose(ours(text), ref, atol=1e-4)
        np.testing.assert_allclose(ours(text, pooling="mean"), ref.mean(0), atol=1e-4)
        np.testing.assert_allclose(
            ours(text, pooling="cls", normalize=True), ref[0] / np.linalg.norm(ref[0]), atol=1e-4
        )


def test_question_answering_matches_brute_force_on_transformers_logits(tmp_path, minilm):
    """transformers 5 has no question-answering pipeline: the reference is an exhaustive search over the spans of
    transformers' own start/end logits (probabilities over context + [CLS], score P(start) x P(end))."""
    path = checkpoint(tmp_path / "qa", "BertForQuestionAnswering", minilm, num_labels=2)
    question, context = "Where does John live?", "John Smith lives in New York and works for a bank in Boston."
    ours = bertforge.pipeline("question-answering", model=path)(
        question=question, context=context, top_k=3, max_answer_len=5
    )
    tok = transformers.BertTokenizerFast.from_pretrained(path)
    enc = tok(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        out = transformers.BertForQuestionAnswering.from_pretrained(path)(**enc)
    ctx = np.array([s == 1 for s in enc.sequence_ids(0)])
    ctx[0] = True
    p_start = torch.tensor(np.where(ctx, out.start_logits[0].numpy(), -1e4)).softmax(-1).numpy()
    p_end = torch.tensor(np.where(ctx, out.end_logits[0].numpy(), -1e4)).softmax(-1).numpy()
    spans = {}
    for s in range(1, len(ctx)):
        for e in range(s, min(s + 5, len(ctx))):
            if ctx[s] and ctx[e]:
                key = (offsets[s][0], offsets[e][1])
                spans[key] = max(spans.get(key, 0.0), p_start[s] * p_end[e])
    best = sorted(spans.items(), key=lambda kv: -kv[1])[:3]
    assert [(a["start"], a["end"]) for a in ours] == [k for k, _ in best]
    assert [a["score"] for a in ours] == pytest.approx([v for _, v in best], abs=1e-4)
    assert all(a["answer"] == context[a["start"] : a["end"]] for a in ours)


def test_minilm_embeddings_rank_paraphrase_and_match_transformers(minilm):
    sentences = ["A man is playing a guitar.", "Someone is playing an instrument.", "The stock market fell today."]
    pipe = bertforge.pipeline("sentence-embedding", model=str(minilm))
    vectors = np.stack(pipe(sentences))
    sims = pipe.similarity(vectors[:1], vectors[1:])[0]
    assert sims[0] > sims[1] + 0.2  # paraphrase above the unrelated sentence
    theirs = hf_pipeline("feature-extraction", str(minilm))
    ref = np.stack([np.asarray(theirs(s))[0].mean(0) for s in sentences])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, ref, atol=1e-4)
