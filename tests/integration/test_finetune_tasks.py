"""NER, QA and multi-label fine-tuning on slices of real data with a tiny random BERT (a few steps each)."""

from __future__ import annotations

import json

import pytest
import torch

from bertforge import pipeline
from bertforge.config import FinetuneConfig
from bertforge.model import BertForQuestionAnswering, BertForTokenClassification
from bertforge.training.finetune import finetune_classification, finetune_ner, finetune_qa
from tests.conftest import entity_f1, squad_exact_match

FAST = dict(epochs=1, batch_size=16, lr=1e-3, eval_batch_size=32)


def squad_slice(data_dir, path, articles=slice(0, 2), paragraphs=2, drop_answers_every=None):
    data = json.loads((data_dir / "squad" / "dev-v1.1.json").read_text())
    out = {"version": "2.0" if drop_answers_every else "1.1", "data": []}
    n = 0
    for a in data["data"][articles]:
        paras = []
        for p in a["paragraphs"][:paragraphs]:
            qas = []
            for qa in p["qas"]:
                n += 1
                if drop_answers_every and n % drop_answers_every == 0:
                    qa = {"id": qa["id"], "question": qa["question"], "answers": [], "is_impossible": True}
                qas.append(qa)
            paras.append({"context": p["context"], "qas": qas})
        out["data"].append({"title": a["title"], "paragraphs": paras})
    path.write_text(json.dumps(out))
    return path


def test_ner_on_conll_slice(tiny_checkpoint, data_dir, tmp_path):
    conll = data_dir / "conll2003"
    cfg = FinetuneConfig.build(**FAST, max_length=24, max_train_examples=160, max_eval_examples=60)
    result = finetune_ner(
        str(tiny_checkpoint),
        str(conll / "eng.train"),
        str(conll / "eng.testa"),
        str(tmp_path),
        test_file=str(conll / "eng.testa"),
        cfg=cfg,
        show_progress=False,
    )
    assert {"precision", "recall", "f1", "f1_PER", "test_f1"} <= set(result)
    preds = [json.loads(line) for line in (tmp_path / "predictions_validation.jsonl").read_text().splitlines()]
    assert result["f1"] == pytest.approx(entity_f1(preds))
    assert len(preds) == 60 and all(len(p["prediction"]) == len(p["tokens"]) for p in preds)  # every word predicted
    best = BertForTokenClassification.from_pretrained(tmp_path / "best")
    assert best.config.id2label[0] == "O" and "B-PER" in best.config.label2id
    assert json.loads((tmp_path / "finetune_result.json").read_text())["task"] == "ner"
    ner = pipeline("ner", model=str(tmp_path / "best"))  # the output directory loads into the pipeline
    entities = ner("Peter Blackburn met EU officials in Brussels.", aggregation_strategy="first", ignore_labels=())
    assert entities and all(e["entity_group"] in {"O", "PER", "LOC", "ORG", "MISC"} for e in entities)


def test_ner_lora_trains_only_adapters_and_head(tiny_checkpoint, data_dir, tmp_path):
    conll = data_dir / "conll2003"
    before = BertForTokenClassification.from_pretrained(tiny_checkpoint, num_labels=9)
    cfg = FinetuneConfig.build(**FAST, max_length=32, max_train_examples=48, max_eval_examples=16, lora_r=2)
    finetune_ner(
        str(tiny_checkpoint),
        str(conll / "eng.train"),
        str(conll / "eng.testa"),
        str(tmp_path),
        cfg=cfg,
        show_progress=False,
    )
    after = BertForTokenClassification.from_pretrained(tmp_path / "best")
    old, new = before.state_dict(), after.state_dict()
    changed = {k for k in old if not k.startswith("classifier") and not torch.equal(old[k], new[k])}
    # merged adapters change q and v (the fused qkv weight) and nothing else in the encoder
    assert changed and all(k.endswith("attn.qkv_proj.weight") for k in changed)
    for k in changed:  # rows of the fused weight: query | key | value; the key slice is untouched
        h = old[k].shape[1]
        assert torch.equal(old[k][h : 2 * h], new[k][h : 2 * h]) and not torch.equal(old[k][:h], new[k][:h])
    assert not torch.equal(old["classifier.weight"], new["classifier.weight"])


@pytest.mark.parametrize("version_2", [False, True])
def test_qa_on_squad_slice(tiny_checkpoint, data_dir, tmp_path, version_2):
    train = squad_slice(data_dir, tmp_path / "train.json", slice(0, 2), drop_answers_every=3 if version_2 else None)
    valid = squad_slice(data_dir, tmp_path / "valid.json", slice(2, 3), drop_answers_every=3 if version_2 else None)
    cfg = FinetuneConfig.build(**FAST, max_length=128, stride=32, max_query_length=32)
    result = finetune_qa(
        str(tiny_checkpoint), str(train), str(valid), str(tmp_path / "out"), cfg=cfg, show_progress=False
    )
    assert result["exact_match"] <= result["f1"]
    assert ("no_ans_f1" in result) == version_2
    preds = [json.loads(line) for line in (tmp_path / "out" / "predictions_validation.jsonl").read_text().splitlines()]
    assert result["exact_match"] == pytest.approx(squad_exact_match(preds))
    contexts = json.loads(valid.read_text())["data"][0]["paragraphs"]
    text = " ".join(p["context"] for p in contexts)
    assert preds and all(p["prediction"] in text for p in preds)  # answers are cut from the context
    assert all(len(p["n_best"]) >= 1 for p in preds)
    BertForQuestionAnswering.from_pretrained(tmp_path / "out" / "best")
    qa = pipeline("question-answering", model=str(tmp_path / "out" / "best"))
    context = contexts[0]["context"]
    answer = qa(question="What is this about?", context=context, handle_impossible_answer=version_2)
    assert answer["answer"] == context[answer["start"] : answer["end"]]


def test_multilabel_jsonl(tiny_checkpoint, tmp_path):
    rows = [
        {
            "text": f"{'good' if i % 2 else 'bad'} movie {'and long' if i % 3 == 0 else ''}",
            "labels": (["positive"] if i % 2 else []) + (["long"] if i % 3 == 0 else []),
        }
        for i in range(96)
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = FinetuneConfig.build(epochs=8, batch_size=16, lr=3e-3)
    result = finetune_classification(
        str(tiny_checkpoint),
        str(path),
        str(path),
        str(tmp_path / "out"),
        text_column="text",
        label_column="labels",
        multi_label=True,
        cfg=cfg,
        show_progress=False,
    )
    assert result["f1_micro"] > 0.6  # the two labels are read off the words
    config = json.loads((tmp_path / "out" / "best" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert sorted(config["label2id"]) == ["long", "positive"]
    scores = pipeline("text-classification", model=str(tmp_path / "out" / "best"))(rows[3]["text"], top_k=None)
    assert len(scores) == 2 and abs(sum(s["score"] for s in scores) - 1) > 1e-3  # sigmoid per label, not softmax
    predicted = json.loads((tmp_path / "out" / "predictions_validation.jsonl").read_text().splitlines()[3])
    assert sorted(s["label"] for s in scores if s["score"] > 0.5) == sorted(predicted["prediction"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "labels": ["unseen"]}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: line 1: label 'unseen'"):
        finetune_classification(
            str(tiny_checkpoint),
            str(path),
            str(bad),
            str(tmp_path / "o2"),
            text_column="text",
            label_column="labels",
            multi_label=True,
            cfg=cfg,
            show_progress=False,
        )


def test_finetune_ner_and_qa_commands(tiny_checkpoint, data_dir, tmp_path, capsys):
    from bertforge.cli.main import main

    conll = data_dir / "conll2003"
    assert (
        main(
            [
                "finetune",
                "ner",
                "--model",
                str(tiny_checkpoint),
                "--train",
                str(conll / "eng.train"),
                "--validation",
                str(conll / "eng.testa"),
                "--output",
                str(tmp_path / "ner"),
                "--epochs",
                "1",
                "--max-train-examples",
                "32",
                "--max-eval-examples",
                "16",
                "--max-length",
                "32",
            ]
        )
        == 0
    )
    assert '"f1_PER"' in capsys.readouterr().out
    squad = squad_slice(data_dir, tmp_path / "sq.json", slice(0, 1), paragraphs=1)
    assert (
        main(
            [
                "finetune",
                "qa",
                "--model",
                str(tiny_checkpoint),
                "--train",
                str(squad),
                "--validation",
                str(squad),
                "--output",
                str(tmp_path / "qa"),
                "--epochs",
                "1",
                "--max-length",
                "96",
                "--doc-stride",
                "32",
                "--max-query-length",
                "24",
            ]
        )
        == 0
    )
    assert '"exact_match"' in capsys.readouterr().out


def test_qa_validation_split_keeps_each_article_on_one_side(tiny_checkpoint, data_dir, tmp_path):
    from bertforge.tasks.readers import read_squad

    train = squad_slice(data_dir, tmp_path / "train.json", slice(0, 4), paragraphs=1)
    cfg = FinetuneConfig.build(**FAST, max_length=96, stride=32, max_query_length=24, validation_split=0.25)
    finetune_qa(str(tiny_checkpoint), str(train), None, str(tmp_path / "out"), cfg=cfg, show_progress=False)
    held = {json.loads(x)["id"] for x in (tmp_path / "out" / "predictions_validation.jsonl").read_text().splitlines()}
    by_article: dict = {}
    for ex in read_squad(str(train)):
        by_article.setdefault(ex.title, set()).add(ex.id)
    held_articles = [t for t, ids in by_article.items() if ids & held]
    assert len(held_articles) == 1 and by_article[held_articles[0]] == held  # one whole article of four
