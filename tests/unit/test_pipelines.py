"""Pipelines on tiny random checkpoints: input order, long inputs windowed, dtype, and the errors bad input gets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bertforge
from bertforge.tokenization import BertTokenizer
from tests.conftest import tiny_config

LONG = " ".join(f"word{i % 50} is here." for i in range(400))  # about 2,400 tokens


def make(path, cls, minilm, **config):
    torch.manual_seed(0)
    getattr(bertforge, cls)(tiny_config(vocab_size=30522, max_position_embeddings=64, **config)).save_pretrained(path)
    BertTokenizer.from_pretrained(minilm).save_pretrained(path)
    return str(path)


@pytest.fixture
def cls_dir(tmp_path, minilm):
    return make(tmp_path / "cls", "BertForSequenceClassification", minilm, num_labels=2)


def test_results_in_input_order(cls_dir):
    pipe = bertforge.pipeline("text-classification", model=cls_dir, batch_size=2)
    texts = ["short", "a much longer text with many more words than the first", "mid length text", "x y"]
    together = pipe(texts, top_k=None)
    one_by_one = [pipe(t, top_k=None) for t in texts]  # one text with top_k: its ranked list (transformers' shape)
    for a, b in zip(together, one_by_one):
        assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], abs=1e-5)


def test_long_inputs_are_windowed_not_truncated(tmp_path, minilm, cls_dir):
    pipe = bertforge.pipeline("text-classification", model=cls_dir)
    assert pipe.max_length == 64
    result = pipe(LONG)[0]
    assert result["label"] in ("LABEL_0", "LABEL_1") and 0 <= result["score"] <= 1
    ner_dir = make(
        tmp_path / "ner",
        "BertForTokenClassification",
        minilm,
        num_labels=3,
        id2label={0: "O", 1: "B-X", 2: "I-X"},
        label2id={"O": 0, "B-X": 1, "I-X": 2},
    )
    entities = bertforge.pipeline("ner", model=ner_dir)(LONG, ignore_labels=())
    assert max(e["end"] for e in entities) == len(LONG) - 1 or max(e["end"] for e in entities) == len(LONG)
    qa_dir = make(tmp_path / "qa", "BertForQuestionAnswering", minilm, num_labels=2)
    answer = bertforge.pipeline("question-answering", model=qa_dir)(
        question="Which word?", context=LONG, max_answer_len=4
    )
    assert LONG[answer["start"] : answer["end"]] == answer["answer"] and answer["answer"]
    enc_dir = make(tmp_path / "enc", "BertModel", minilm)
    emb = bertforge.pipeline("feature-extraction", model=enc_dir)
    assert emb(LONG, pooling="mean").shape == (32,)
    tokens = emb(LONG)
    assert tokens.shape[0] == len(emb.tokenizer(LONG)["input_ids"])  # every token once, windows joined
    mlm_dir = make(tmp_path / "mlm", "BertForMaskedLM", minilm)
    fill = bertforge.pipeline("fill-mask", model=mlm_dir)
    masked = LONG[:5000] + " [MASK] " + LONG[5000:]
    out = fill(masked, top_k=2)
    assert len(out) == 2 and "[MASK]" not in out[0]["sequence"]


def test_bf16_dtype_close_to_fp32(tmp_path, minilm):
    path = make(tmp_path / "enc", "BertModel", minilm)
    text = ["The cat sat on the mat.", "Another sentence."]
    fp32 = np.stack(bertforge.pipeline("feature-extraction", model=path, pooling="mean")(text))
    pipe = bertforge.pipeline("feature-extraction", model=path, pooling="mean", dtype="bf16")
    assert next(pipe.model.parameters()).dtype == torch.bfloat16
    bf16 = np.stack(pipe(text))
    cos = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cos.min() > 0.99


def test_clear_errors(tmp_path, minilm, cls_dir):
    enc_dir = make(tmp_path / "enc", "BertModel", minilm)
    with pytest.raises(ValueError, match="no token-classification head"):
        bertforge.pipeline("ner", model=enc_dir)
    with pytest.raises(ValueError, match="no fill-mask head"):
        bertforge.pipeline("fill-mask", model=enc_dir)
    mlm = make(tmp_path / "mlm", "BertForMaskedLM", minilm)
    with pytest.raises(ValueError, match=r"input 0 has no \[MASK\]"):
        bertforge.pipeline("fill-mask", model=mlm)("no mask here")
    qa = make(tmp_path / "qa", "BertForQuestionAnswering", minilm, num_labels=2)
    with pytest.raises(ValueError, match="question 0 is empty"):
        bertforge.pipeline("question-answering", model=qa)(question="  ", context="some context")
    with pytest.raises(ValueError, match="context of question 0 is empty"):
        bertforge.pipeline("question-answering", model=qa)(question="why?", context="")
    with pytest.raises(ValueError, match="entailment"):
        bertforge.pipeline("zero-shot-classification", model=cls_dir)
    nli = make(
        tmp_path / "nli",
        "BertForSequenceClassification",
        minilm,
        num_labels=3,
        id2label={0: "entailment", 1: "neutral", 2: "contradiction"},
        label2id={"entailment": 0, "neutral": 1, "contradiction": 2},
    )
    with pytest.raises(ValueError, match="candidate_labels"):
        bertforge.pipeline("zero-shot-classification", model=nli)("text", [])
    with pytest.raises(ValueError, match="unknown task"):
        bertforge.pipeline("translation", model=cls_dir)
    with pytest.raises(ValueError, match="aggregation_strategy"):
        ner = make(tmp_path / "ner", "BertForTokenClassification", minilm, num_labels=2)
        bertforge.pipeline("ner", model=ner)("text", aggregation_strategy="longest")
    with pytest.raises(ValueError, match="empty text"):
        bertforge.pipeline("text-classification", model=cls_dir)(["fine", " "])


def test_a_long_text_pair_is_windowed_or_refused_never_a_panic(cls_dir):
    """The pair's second text stays whole in each window, so the overlap shrinks to fit what it leaves; a second
    text that leaves no room is a ValueError (it was a PanicException from the tokenizer)."""
    pipe = bertforge.pipeline("text-classification", model=cls_dir)  # windows of 64 tokens
    pair = " ".join(["tail"] * 50)  # 50 tokens leave 11 for the first text, less than the default stride (16)
    result = pipe({"text": LONG, "text_pair": pair})
    assert result["label"] in ("LABEL_0", "LABEL_1")
    with pytest.raises(ValueError, match="text_pair.*leaves no room"):
        pipe({"text": LONG, "text_pair": " ".join(["tail"] * 70)})


def test_fill_mask_memory_stays_at_masks_times_vocabulary(tmp_path, minilm, monkeypatch):
    """A long input with many masks is read in one window per mask; each window computes its own mask only (before,
    every window kept the logits of every mask in it: 700 masks in 1,000 words reached 22 GB)."""
    mlm_dir = make(tmp_path / "mlm", "BertForMaskedLM", minilm)
    pipe = bertforge.pipeline("fill-mask", model=mlm_dir)  # windows of 64 tokens
    text = " ".join("[MASK]" if i % 4 == 0 else f"word{i % 30}" for i in range(400))  # 100 masks
    sizes = []
    original = pipe._mask_logits

    def spy(feats, mask_id):
        out = original(feats, mask_id)
        sizes.extend(x.shape[0] for x in out)
        return out

    monkeypatch.setattr(pipe, "_mask_logits", spy)
    result = pipe(text, top_k=2)
    assert len(result) == 100 and all(len(r) == 2 for r in result)
    assert sizes == [1] * 100  # one (1, V) row per window: memory masks x V


def test_inputs_of_the_wrong_kind_get_a_clear_error(cls_dir):
    pipe = bertforge.pipeline("text-classification", model=cls_dir)
    for bad in (None, 5):
        with pytest.raises(TypeError, match="a pipeline takes a text or a list of texts"):
            pipe(bad)
    with pytest.raises(ValueError, match="a batch needs at least one sequence of at least one token"):
        pipe.model(torch.zeros(1, 0, dtype=torch.long))


def test_a_sentence_classifier_is_not_run_as_ner(cls_dir):
    with pytest.raises(ValueError, match="holds a BertForSequenceClassification .* run it as text-classification"):
        bertforge.pipeline("ner", model=cls_dir)


def test_the_transformers_habits_carry_over(tmp_path, minilm, cls_dir):
    tok = BertTokenizer.from_pretrained(minilm)
    ids = tok.encode("Hello world")
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.encode("Hello world", add_special_tokens=False) == ids[1:-1]
    assert tok.convert_tokens_to_string(tok.tokenize("unaffable tokenization")) == "unaffable tokenization"
    clf = bertforge.BertForSequenceClassification.from_pretrained(cls_dir)
    assert clf.num_parameters(only_trainable=True) == clf.num_parameters(trainable_only=True) > 0
    ner_dir = make(
        tmp_path / "ner2", "BertForTokenClassification", minilm, num_labels=3, id2label={0: "O", 1: "B-PER", 2: "I-PER"}
    )
    ner = bertforge.pipeline("ner", model=ner_dir)
    text = "Peter Blackburn met officials in Brussels."
    assert ner(text, grouped_entities=True) == ner(text, aggregation_strategy="simple")
    qa_dir = make(tmp_path / "qa", "BertForQuestionAnswering", minilm)
    qa = bertforge.pipeline("question-answering", model=qa_dir)
    context = "Paris is the capital of France."
    assert qa("What is the capital?", context) == qa(question="What is the capital?", context=context)


def test_each_pipeline_declares_its_run_flags_and_shared_flags_agree():
    import inspect

    from bertforge.cli.run import _task_options
    from bertforge.pipelines import PIPELINES

    options = _task_options()
    assert {t for t, _ in options["--top-k"]} == {
        "fill-mask",
        "text-classification",
        "question-answering",
        "text-generation",
    }
    for flag, uses in options.items():
        kinds = {(o.kind, o.choices, o.negatable) for _, o in uses}
        assert len(kinds) == 1, (flag, kinds)  # one flag, one meaning on the command line
    for cls in PIPELINES.values():  # every declared keyword is one the call takes
        call = getattr(cls.__call__, "__wrapped__", cls.__call__)
        accepted = set(inspect.signature(call).parameters)
        assert all((o.keyword or o.dest) in accepted for o in cls.cli_options), cls.__name__


def test_run_flags_reach_their_task_and_only_it(tmp_path, minilm, capsys):
    import json

    from bertforge.cli.main import main

    mlm = make(tmp_path / "mlm", "BertForMaskedLM", minilm)
    assert main(["run", "fill-mask", "a [MASK] b", "--model", mlm, "--top-k", "3", "--targets", "the,a,of"]) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    assert len(result) == 3 and {r["token_str"] for r in result} == {"the", "a", "of"}
    assert main(["run", "fill-mask", "a [MASK] b", "--model", mlm, "--top-k", "0"]) == 1
    assert "--top-k must be >= 1 for fill-mask, got 0" in capsys.readouterr().err
    assert main(["run", "fill-mask", "a [MASK] b", "--model", mlm, "--candidate-labels", "x,y"]) == 1
    assert "--candidate-labels is an option of zero-shot-classification, not of fill-mask" in capsys.readouterr().err
    nli = make(tmp_path / "nli", "BertForSequenceClassification", minilm, id2label={0: "entailment", 1: "other"})
    assert main(["run", "zero-shot-classification", "a text", "--model", nli]) == 1
    assert "zero-shot-classification needs --candidate-labels" in capsys.readouterr().err
    ner = make(tmp_path / "ner", "BertForTokenClassification", minilm, id2label={0: "O", 1: "B-X", 2: "I-X"})
    assert main(["run", "ner", "Peter lives in Berlin", "--model", ner]) == 0
    entities = json.loads(capsys.readouterr().out)["result"]  # the command line's default: simple aggregation
    assert all("entity_group" in e for e in entities)
