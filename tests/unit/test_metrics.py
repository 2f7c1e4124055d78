"""Metrics against hand-computed expectations."""

from __future__ import annotations

import math

import pytest

from bertforge.tasks.metrics import (
    accuracy,
    entity_scores,
    entity_spans,
    f1,
    iob1_to_iob2,
    matthews_corrcoef,
    normalize_answer,
    pearson,
    spearman,
    squad_scores,
)


def test_classification_metrics_by_hand():
    gold = [1, 1, 1, 0, 0, 0, 1, 0]
    pred = [1, 0, 1, 0, 1, 0, 1, 0]
    # tp 3, fp 1, fn 1, tn 3
    assert accuracy(pred, gold) == 0.75
    assert f1(pred, gold) == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert f1(pred, gold, average="macro") == pytest.approx((0.75 + 0.75) / 2)
    assert matthews_corrcoef(pred, gold) == pytest.approx((3 * 3 - 1 * 1) / math.sqrt(4 * 4 * 4 * 4))
    assert matthews_corrcoef([1, 1, 1], [1, 1, 1]) == 0.0  # undefined -> 0
    three = f1([0, 1, 2, 2], [0, 1, 1, 2], average="macro")
    assert three == pytest.approx((1.0 + 2 / 3 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([1], [1, 0])


def test_correlations_by_hand():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    # ties: ranks x = [1.5, 1.5, 3], y = [1, 2, 3] -> pearson of those
    assert spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(pearson([1.5, 1.5, 3], [1, 2, 3]))


def test_iob_conversion_and_spans():
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-MISC"]
    iob2 = iob1_to_iob2(iob1)
    assert iob2 == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG", "B-MISC"]
    assert entity_spans(iob2) == {("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 4), ("ORG", 5, 5), ("MISC", 6, 6)}
    assert entity_spans(["O", "I-PER", "I-PER", "I-LOC"]) == {("PER", 1, 2), ("LOC", 3, 3)}  # stray I- starts one


def test_entity_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-MISC"]]
    # gold entities: PER(0,1) LOC(3,3) ORG(0,0) = 3; predicted: PER(0,0) LOC ORG MISC = 4; correct: LOC, ORG = 2
    s = entity_scores(pred, gold)
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["f1_PER"] == 0.0 and s["f1_LOC"] == 1.0 and s["f1_MISC"] == 0.0


def test_multilabel_and_squad_v2_scores():
    from bertforge.tasks.metrics import multilabel_scores

    s = multilabel_scores([[1, 0, 1], [0, 0, 0]], [[1, 1, 0], [0, 0, 0]])
    assert s["f1_micro"] == pytest.approx(2 * 1 / (2 + 2))  # tp 1, 2 predicted, 2 gold
    assert s["f1_macro"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert s["subset_accuracy"] == 0.5
    # v2.0: no reference answers means the answer "": an empty prediction scores 1, any text 0
    v2 = squad_scores({"a": "", "b": "Paris"}, {"a": [], "b": []})
    assert v2 == {"exact_match": 50.0, "f1": 50.0}


def test_squad_normalisation_and_scores():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    refs = {"q1": ["the Eiffel Tower", "Eiffel Tower in Paris"], "q2": ["1889"], "q3": ["Gustave Eiffel"]}
    preds = {"q1": "Eiffel Tower.", "q2": "in 1889", "q3": "Paris"}
    s = squad_scores(preds, refs)
    assert s["exact_match"] == pytest.approx(100 / 3)
    # q1 F1 1, q2 F1: pred [in, 1889] vs [1889] -> p 1/2 r 1 -> 2/3, q3 0
    assert s["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


def test_squad_scores_follow_the_official_scripts():
    # evaluate-v1.1.py: a reference that normalises to nothing scores F1 0 (EM 1 for an empty prediction);
    # v2.0's script scores the empty match 1. A missing prediction scores 0 in both.
    assert squad_scores({"q": ""}, {"q": ["."]}, version_2=False) == {"exact_match": 100.0, "f1": 0.0}
    assert squad_scores({"q": ""}, {"q": ["."]}, version_2=True) == {"exact_match": 100.0, "f1": 100.0}
    assert squad_scores({}, {"q": ["Paris"], "r": [""]}, version_2=False) == {"exact_match": 0.0, "f1": 0.0}
    assert squad_scores({}, {"q": []}, version_2=True) == {"exact_match": 0.0, "f1": 0.0}


def test_iobes_tags_are_read_as_iob2(tmp_path):
    from bertforge.tasks.metrics import entity_spans, iobes_to_iob2
    from bertforge.tasks.readers import read_conll

    assert iobes_to_iob2(["O", "E-PER"]) == ["O", "B-PER"]
    assert iobes_to_iob2(["S-PER", "I-PER"]) == ["B-PER", "I-PER"]
    assert iobes_to_iob2(["B-ORG", "I-ORG", "E-ORG", "S-LOC", "S-LOC"]) == ["B-ORG", "I-ORG", "I-ORG", "B-LOC", "B-LOC"]
    assert entity_spans(iobes_to_iob2(["B-ORG", "E-ORG", "S-LOC", "S-LOC"])) == {
        ("ORG", 0, 1),
        ("LOC", 2, 2),
        ("LOC", 3, 3),
    }
    path = tmp_path / "x.conll"
    path.write_text("EU S-ORG\nrejects O\nGerman B-MISC\ncall E-MISC\n\n")
    assert read_conll(str(path))[0]["tags"] == ["B-ORG", "O", "B-MISC", "I-MISC"]
