"""NER windows and word mapping, QA windows, answer labels and span search, collate/predict: by hand, tiny vocab."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertforge.model import BertForTokenClassification
from bertforge.tasks.features import collate, length_batches, predict
from bertforge.tasks.ner import label_list, ner_features, word_predictions, word_windows
from bertforge.tasks.qa import best_answers, qa_features
from bertforge.tasks.readers import SquadExample
from bertforge.tokenization import BertTokenizer
from tests.conftest import tiny_config

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "un",
    "##aff",
    "##able",
    "play",
    "##ing",
    ".",
    ",",
    "a",
    "b",
    "c",
    "where",
    "?",
    "did",
]


@pytest.fixture
def tok(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer(path)


def test_word_windows_cover_every_word_and_overlap():
    counts = [1, 3, 1, 2, 1, 1, 4, 1]
    windows = word_windows(counts, budget=5, stride=2)
    assert windows[0] == (0, 3) and windows[-1][1] == len(counts)
    covered = set()
    for (s, e), nxt in zip(windows, windows[1:] + [None]):
        assert sum(counts[s:e]) <= 5 or e - s == 1
        covered.update(range(s, e))
        if nxt is not None:
            assert s < nxt[0] <= e  # advances, no gap
            assert sum(counts[nxt[0] : e]) <= 2  # overlap within the stride
    assert covered == set(range(len(counts)))
    assert word_windows([9], budget=4, stride=1) == [(0, 1)]  # one over-long word still gets a window
    assert word_windows([], 4, 1) == [(0, 0)]


def test_label_order():
    assert label_list([["B-PER", "O", "I-PER"], ["B-LOC"]]) == ["O", "B-LOC", "B-PER", "I-PER"]


def test_ner_windows_label_first_pieces_and_map_back(tok):
    words = ["the", "unaffable", "cat", "sat", "on", "the", "mat", "playing", "."]  # 1,3,1,1,1,1,1,2,1 pieces
    tags = ["O", "B-PER", "I-PER", "O", "O", "O", "B-LOC", "O", "O"]
    label2id = {t: i for i, t in enumerate(label_list([tags]))}
    feats = ner_features(tok, [words], max_length=8, stride=2, tags=[tags], label2id=label2id)
    assert len(feats) > 1 and all(len(f["input_ids"]) <= 8 for f in feats)
    labelled = {}
    for f in feats:
        assert f["input_ids"][0] == tok.cls_token_id and f["input_ids"][-1] == tok.sep_token_id
        for w, y, prev in zip(f["word_ids"], f["labels"], [None] + f["word_ids"][:-1]):
            if w is None or w == prev:
                assert y == -100  # specials and later pieces
            else:
                assert y == label2id[tags[w]]
                labelled[w] = y
    assert sorted(labelled) == list(range(len(words)))  # no word dropped
    # scores that say "word index" at each first piece: the mapping must return each word's own vector
    scores = []
    for f in feats:
        s = np.zeros((len(f["input_ids"]), len(words)))
        for t, w in enumerate(f["word_ids"]):
            if w is not None:
                s[t, w] = 1.0 + (min(w - f["start"], f["end"] - 1 - w))  # more context, higher
        scores.append(s)
    mapped = word_predictions(feats, scores, [len(words)])[0]
    assert [int(np.argmax(v)) for v in mapped] == list(range(len(words)))
    for w, v in enumerate(mapped):  # each word read from the window where it has the most context
        best = max(min(w - f["start"], f["end"] - 1 - w) for f in feats if f["start"] <= w < f["end"])
        assert v[w] == 1.0 + best


def test_qa_windows_and_answer_labels(tok):
    context = "the cat sat on the mat . a b c the cat sat on the mat . a b c"
    start = context.index("a b c", 30)
    ex = SquadExample("q1", "where did the cat sat ?", context, ["a b c"], [start])
    feats = qa_features(tok, [ex], max_length=20, doc_stride=4, max_query_length=4, train=True)
    assert len(feats) > 1 and all(len(f["input_ids"]) <= 20 for f in feats)
    inside = [f for f in feats if f["start_positions"] != 0]
    assert inside, "some window holds the whole answer"
    for f in feats:
        q_len = f["token_type_ids"].index(1) - 2  # [CLS] question [SEP]
        assert q_len == 4  # the question was cut to max_query_length pieces
        if f["start_positions"]:
            s, e = f["offsets"][f["start_positions"]][0], f["offsets"][f["end_positions"]][1]
            assert (s, e) == (start, start + 5)
        else:
            assert f["end_positions"] == 0
    with pytest.raises(ValueError, match="empty"):
        qa_features(tok, [SquadExample("q2", " ", context)], max_length=20, doc_stride=4, max_query_length=4)
    with pytest.raises(ValueError, match="cannot advance"):
        qa_features(tok, [ex], max_length=20, doc_stride=16, max_query_length=4)


def test_best_answer_across_windows_and_null(tok):
    context = "the cat sat on the mat . a b c"
    ex = SquadExample("q", "where ?", context, ["the mat"], [context.index("the mat")])
    feats = qa_features(tok, [ex], max_length=12, doc_stride=2, max_query_length=4)
    assert len(feats) >= 2
    logits = []
    for f in feats:
        s, e = np.zeros(len(f["input_ids"])), np.zeros(len(f["input_ids"]))
        for t, off in enumerate(f["offsets"]):
            if off == (context.index("the mat"), context.index("the mat") + 3):
                s[t] = 5.0
            if off == (context.index("mat"), context.index("mat") + 3):
                e[t] = 4.0
        s[0], e[0] = 1.0, 1.0  # null score 2
        logits.append((s, e))
    answers = best_answers([ex], feats, logits, n_best=5, max_answer_length=30)[0]
    assert answers[0].text == "the mat" and answers[0].score == 9.0
    assert context[answers[0].start : answers[0].end] == "the mat"
    v2 = best_answers([ex], feats, logits, version_2=True, null_threshold=0.0)[0]
    assert v2[0].text == "the mat" and any(a.start == -1 for a in v2)
    v2 = best_answers([ex], feats, logits, version_2=True, null_threshold=-8.0)[0]  # 2 - 9 > -8: no answer
    assert v2[0].text == "" and v2[0].start == -1
    short = best_answers([ex], feats, logits, max_answer_length=1)[0]
    assert all(len(a.text.split()) <= 1 for a in short)


def test_collate_pads_tokens_and_labels():
    feats = [
        {"input_ids": [2, 5, 3], "token_type_ids": [0, 0, 0], "labels": [-100, 1, -100]},
        {"input_ids": [2, 3], "token_type_ids": [0, 0], "labels": [-100, -100]},
    ]
    b = collate(feats, pad_token_id=0, token_label_keys=("labels",))
    assert b["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert b["labels"].tolist() == [[-100, 1, -100], [-100, -100, -100]]
    b = collate([{"input_ids": [1], "token_type_ids": [0], "labels": [0.0, 1.0]}], label_dtype=torch.float)
    assert b["labels"].dtype == torch.float and b["labels"].shape == (1, 2)
    assert [len(x) for x in length_batches([3, 9, 1, 5], 2)] == [2, 2]
    assert length_batches([3, 9, 1, 5], 2)[0].tolist() == [1, 3]


def test_predict_returns_input_order_and_matches_unbatched():
    torch.manual_seed(0)
    model = BertForTokenClassification(tiny_config(num_labels=3)).eval()
    feats = [{"input_ids": list(range(5, 5 + n)), "token_type_ids": [0] * n} for n in (4, 9, 2, 7)]
    out = predict(model, feats, batch_size=2, outputs=lambda o: [o.logits], per_token=True)
    for f, (logits,) in zip(feats, out):
        ref = model(torch.tensor([f["input_ids"]])).logits[0].detach().numpy()
        assert logits.shape == ref.shape
        np.testing.assert_allclose(logits, ref, atol=1e-5)
