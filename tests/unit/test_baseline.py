"""The TF-IDF baseline: it learns what words say (single-label, multi-label, regression), reads pairs, is reported by
fine-tuning and GLUE evaluation beside the model, and without scikit-learn is one line naming it."""

from __future__ import annotations

import builtins
import json

import pytest

from bertforge.tasks.baseline import joined, tfidf_predict

pytest.importorskip("sklearn")

GOOD = ["a wonderful film", "great acting, a great story", "I loved it", "beautiful and moving", "a delight to watch"]
BAD = ["a dull film", "terrible acting", "I hated it", "boring and slow", "a mess to watch"]


def test_it_learns_the_words_of_each_class():
    texts, labels = GOOD + BAD, [1] * 5 + [0] * 5
    assert tfidf_predict(texts, labels, ["wonderful and moving", "dull and boring"], "single") == [1, 0]
    multi = [[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5
    assert tfidf_predict(texts, multi, ["great story", "terrible mess"], "multi") == [[1.0, 0.0], [0.0, 1.0]]
    scores = tfidf_predict(
        texts, [5.0] * 5 + [1.0] * 5, ["loved the great acting", "hated the slow mess"], "regression"
    )
    assert scores[0] > 3 > scores[1]


def test_pairs_are_joined_and_one_class_answers_itself():
    assert joined({"text": "a", "text_pair": "b"}) == "a [SEP] b" and joined({"text": "a", "text_pair": None}) == "a"
    assert tfidf_predict(["x", "y"], [3, 3], ["z"], "single") == [3]


def test_fine_tuning_reports_the_baseline_beside_the_model(tiny_checkpoint, tmp_path):
    from bertforge.config import FinetuneConfig
    from bertforge.training.finetune import finetune_classification

    rows = [{"sentence": t, "label": "pos"} for t in GOOD] + [{"sentence": t, "label": "neg"} for t in BAD]
    cfg = FinetuneConfig.build(epochs=1, batch_size=4, baseline="tfidf", bf16=False)
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps({"sentence": s, "label": "neg"}) + "\n" for s in ["dull and boring", "awful"]))
    result = finetune_classification(
        str(tiny_checkpoint), rows * 2, rows, str(tmp_path / "o"), test_file=str(test), cfg=cfg, show_progress=False
    )
    scores = result["baseline"]["tfidf"]
    assert scores["accuracy"] == 1.0  # the validation rows are training rows here
    assert scores["test_accuracy"] == 1.0 and "test_accuracy" in result  # the test file, beside the model's
    written = json.loads((tmp_path / "o" / "finetune_result.json").read_text())
    assert written["result"]["baseline"] == result["baseline"]


def test_a_task_other_than_classification_is_told(tiny_checkpoint, tmp_path):
    from bertforge.config import FinetuneConfig
    from bertforge.training.finetune import finetune_ner

    conll = tmp_path / "train.txt"
    conll.write_text("Peter B-PER\nwent O\n\nParis B-LOC\nO O\n")
    with pytest.raises(ValueError, match="--baseline tfidf is for classification, not ner"):
        finetune_ner(
            str(tiny_checkpoint),
            str(conll),
            str(conll),
            str(tmp_path / "o"),
            cfg=FinetuneConfig.build(baseline="tfidf"),
        )


def test_without_scikit_learn_it_is_one_line(monkeypatch):
    real = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ValueError, match=r"needs scikit-learn: pip install 'bertforge\[baseline\]'"):
        tfidf_predict(GOOD, [1] * 5, ["x"], "single")
