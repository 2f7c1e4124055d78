"""Distillation: a student taken from a fine-tuned teacher learns the teacher's outputs (the KL to the teacher falls),
through the Python API and `bertforge distill`; wrong teachers and wrong combinations are refused in one line."""

from __future__ import annotations

import json

import pytest
import torch

from bertforge.cli.main import main
from bertforge.config import FinetuneConfig
from bertforge.model import BertForSequenceClassification
from bertforge.model.surgery import layers_to_keep, shrink
from bertforge.tokenization import load_tokenizer
from bertforge.training.finetune import finetune_classification
from bertforge.training.objectives import soft_loss
from tests.integration.test_engine import sentiment  # noqa: F401  (the fixture)


def test_student_layers_are_evenly_spaced_and_copied():
    assert (
        layers_to_keep(6, 3) == [0, 2, 4] and layers_to_keep(6, 2) == [0, 3] and layers_to_keep(12, 6)[:3] == [0, 2, 4]
    )
    with pytest.raises(ValueError, match="cannot be taken from a teacher of 2"):
        layers_to_keep(2, 3)
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_config(num_hidden_layers=4, num_labels=3))
    student = shrink(teacher, 2)
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    for new, old in ((0, 0), (1, 2)):
        assert torch.equal(student.bert.layers[new].ffn.ffn_in.weight, teacher.bert.layers[old].ffn.ffn_in.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    assert student.num_parameters() < teacher.num_parameters()


def test_soft_loss_is_zero_for_the_teacher_itself_and_grows_with_distance():
    from bertforge.model.heads import SequenceClassifierOutput

    t = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    same = soft_loss(SequenceClassifierOutput(None, t), SequenceClassifierOutput(None, t), {}, 2.0, None)
    near = soft_loss(SequenceClassifierOutput(None, t * 0.9), SequenceClassifierOutput(None, t), {}, 2.0, None)
    far = soft_loss(SequenceClassifierOutput(None, -t), SequenceClassifierOutput(None, t), {}, 2.0, None)
    assert same.abs() < 1e-7 and 0 < near < far


def _kl_to(teacher, student, tok, texts) -> float:
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        s = student.eval()(**batch).logits.log_softmax(-1)
        t = teacher.eval()(**batch).logits.log_softmax(-1)
    return float(torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean"))


def _teacher(sentiment, path):  # noqa: F811
    """A teacher fine-tuned on the synthetic sentiment task (the tiny model without dropout learns it: 15/16 here);
    its best model is ``path / "best"``."""
    cfg = FinetuneConfig.build(epochs=15, lr=3e-3, batch_size=4, warmup_ratio=0.0)
    result = finetune_classification(
        sentiment["model_no_dropout"],
        sentiment["train"],
        sentiment["valid"],
        str(path),
        text_column="text",
        cfg=cfg,
        show_progress=False,
    )
    assert result["accuracy"] > 0.8
    return BertForSequenceClassification.from_pretrained(path / "best")


def test_distilled_student_moves_towards_the_teacher(sentiment, tmp_path):  # noqa: F811
    teacher = _teacher(sentiment, tmp_path / "teacher")
    tok = load_tokenizer(tmp_path / "teacher" / "best")
    texts = [json.loads(x)["text"] for x in open(sentiment["train"])]
    before = _kl_to(teacher, shrink(teacher, 1), tok, texts)
    distil = FinetuneConfig.build(
        epochs=6,
        lr=1e-3,
        batch_size=4,
        seed=0,
        log_interval=1,
        teacher=str(tmp_path / "teacher" / "best"),
        student_layers=1,
        alpha=1.0,
        temperature=2.0,
    )
    result = finetune_classification(
        None,
        sentiment["train"],
        sentiment["valid"],
        str(tmp_path / "student"),
        text_column="text",
        cfg=distil,
        show_progress=False,
    )
    student = BertForSequenceClassification.from_pretrained(tmp_path / "student" / "best")
    assert student.config.num_hidden_layers == 1
    from bertforge.training.checkpoint import resolve_checkpoint

    trained = BertForSequenceClassification.from_pretrained(resolve_checkpoint(str(tmp_path / "student")))
    after = _kl_to(teacher, trained, tok, texts)
    assert after < 0.5 * before, (before, after)  # the student's outputs moved towards the teacher's
    logged = [json.loads(x)["distill"] for x in open(tmp_path / "student" / "metrics.jsonl") if '"distill"' in x]
    assert len(logged) > 20 and sum(logged[-10:]) < sum(logged[:10])  # the soft-target loss falls (ten steps each)
    assert "accuracy" in result


def test_distill_command_and_its_one_line_errors(sentiment, tmp_path, capsys):  # noqa: F811
    teacher_dir = tmp_path / "teacher"
    _teacher(sentiment, teacher_dir)
    common = ["--train", sentiment["train"], "--validation", sentiment["valid"], "--text-column", "text"]
    argv = ["distill", "classification", "--teacher", str(teacher_dir / "best"), "--student-layers", "1", *common]
    assert main([*argv, "--output", str(tmp_path / "s"), "--epochs", "1", "--lr", "3e-3"]) == 0
    assert json.loads((tmp_path / "s" / "best" / "config.json").read_text())["num_hidden_layers"] == 1
    capsys.readouterr()
    assert main(["distill", "classification", *common, "--output", str(tmp_path / "x")]) == 1
    assert "needs a fine-tuned teacher: --teacher DIR" in capsys.readouterr().err
    assert main([*argv, "--model", sentiment["model"], "--output", str(tmp_path / "y")]) == 1
    assert "not both" in capsys.readouterr().err
    untrained = ["distill", "classification", "--teacher", sentiment["model"], "--student-layers", "1", *common]
    assert main([*untrained, "--output", str(tmp_path / "z")]) == 1
    assert "is not fine-tuned for this task" in capsys.readouterr().err
    assert main([*argv, "--strategy", "adapter", "--output", str(tmp_path / "w")]) == 1
    assert "exists only in this run" in capsys.readouterr().err


def test_soft_loss_reads_only_labelled_tokens_and_real_positions():
    from bertforge.model.heads import QuestionAnsweringOutput, TokenClassifierOutput

    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 5, 3, generator=g)
    s = torch.randn(2, 5, 3, generator=g)
    labels = torch.tensor([[0, 1, -100, 2, -100], [1, -100, -100, -100, -100]])
    base = soft_loss(TokenClassifierOutput(None, s), TokenClassifierOutput(None, t), {"labels": labels}, 2.0, None)
    s2 = s.clone()
    s2[labels == -100] = 100.0  # unlabelled pieces (later pieces of a word, specials, padding) do not count
    moved = soft_loss(TokenClassifierOutput(None, s2), TokenClassifierOutput(None, t), {"labels": labels}, 2.0, None)
    torch.testing.assert_close(base, moved)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    ts, te, ss, se = (torch.randn(2, 5, generator=g) for _ in range(4))
    qa = soft_loss(
        QuestionAnsweringOutput(None, ss, se),
        QuestionAnsweringOutput(None, ts, te),
        {"attention_mask": mask},
        1.0,
        None,
    )
    ss2 = ss.clone()
    ss2[mask == 0] = 50.0  # padding is no answer position
    qa2 = soft_loss(
        QuestionAnsweringOutput(None, ss2, se),
        QuestionAnsweringOutput(None, ts, te),
        {"attention_mask": mask},
        1.0,
        None,
    )
    torch.testing.assert_close(qa, qa2)
    same = soft_loss(
        QuestionAnsweringOutput(None, ts, te),
        QuestionAnsweringOutput(None, ts, te),
        {"attention_mask": mask},
        1.0,
        None,
    )
    assert qa > 0 and same.abs() < 1e-6
