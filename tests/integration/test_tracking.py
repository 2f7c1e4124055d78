"""Experiment tracking: TensorBoard event files read back with TensorBoard's own reader (Megatron's tags, one value per
logged step, across a resume after a kill), an offline W&B run's scalars, Megatron's example BERT launch line with its
tensorboard flags, fine-tuning's --report-to, and a missing package named in one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bertforge.cli.main import main
from bertforge.config import TrackingConfig
from bertforge.training.pretrain import pretrain
from tests.integration.test_pretrain import corpus, tiny_run  # noqa: F401  (the fixture)

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} as TensorBoard reads the directory (its purge of a killed run's tail included)."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def texts(log_dir: Path) -> set[str]:
    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag.removesuffix("/text_summary") for tag in acc.Tags()["tensors"]}


def tracked(corpus, save: Path, **tracking):  # noqa: F811
    cfg = tiny_run(corpus, str(save), train_iters=8, eval_interval=4, save_interval=4)
    return dataclasses.replace(cfg, tracking=TrackingConfig(**tracking))


def test_tensorboard_gets_megatrons_tags_once_per_step_across_a_kill_and_resume(corpus, tmp_path):  # noqa: F811
    tb = tmp_path / "tb"
    options = dict(
        tensorboard_dir=str(tb),
        log_validation_ppl_to_tensorboard=True,
        log_timers_to_tensorboard=True,
        log_throughput=True,
        log_memory_to_tensorboard=True,
    )
    full = pretrain(tracked(corpus, tmp_path / "run", **options), show_progress=False)
    got = scalars(tb)
    for tag in ("lm loss", "nsp loss", "learning-rate", "batch-size", "grad-norm", "iteration-time", "throughput"):
        assert [s for s, _ in got[tag]] == list(range(1, 9)), tag
    assert [s for s, _ in got["lm loss validation"]] == [4, 8]
    assert got["lm loss validation ppl"][-1][1] == pytest.approx(full.eval["eval_perplexity"], rel=1e-5)
    assert got["lm loss"][-1][1] == pytest.approx(full.losses[-1] - 0, abs=1.0)  # the step's MLM share of the loss
    assert got["batch-size"][0][1] == 8 and got["mem-resident-bytes"][0][1] > 1e6
    by_samples = scalars(tb / "vs-samples")
    assert [s for s, _ in by_samples["lm loss vs samples"]] == [8 * k for k in range(1, 9)]
    assert {"data.seq_length", "optim.lr", "train.global_batch_size"} <= texts(tb)

    # A kill after step 6 leaves steps 5-6 in the event file beyond the step-4 checkpoint; the resumed run writes
    # them again and TensorBoard keeps each step once, with the resumed run's values (identical: exact resume).
    run = tmp_path / "run"
    shutil.rmtree(run / "checkpoints" / "iter_0000008")
    (run / "checkpoints" / "latest").write_text("iter_0000004\n")
    first = {tag: values for tag, values in got.items()}
    cfg = tracked(corpus, run, **options)
    pretrain(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, load=str(run))), show_progress=False)
    again = scalars(tb)
    assert len(list(tb.glob("events.out.tfevents.*"))) == 2
    for tag in ("lm loss", "learning-rate", "grad-norm", "nsp loss"):
        assert [s for s, _ in again[tag]] == list(range(1, 9)), tag
        assert [v for _, v in again[tag]] == pytest.approx([v for _, v in first[tag]], rel=1e-6)
    assert [s for s, _ in again["lm loss validation"]] == [4, 8]
    assert [s for s, _ in scalars(tb / "vs-samples")["lm loss vs samples"]] == [8 * k for k in range(1, 9)]


def test_a_tensorboard_interval_averages_its_steps_and_keeps_metrics_jsonl_apart(corpus, tmp_path):  # noqa: F811
    tb = tmp_path / "tb"
    result = pretrain(tracked(corpus, tmp_path / "run", tensorboard_dir=str(tb), tensorboard_log_interval=2))
    loss = scalars(tb)["lm loss"]
    assert [s for s, _ in loss] == [2, 4, 6, 8]
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [5, 8]  # --log-interval 5 as before, its own window
    steps = [r for r in records if "loss" in r]
    assert steps[-1]["loss"] == pytest.approx(sum(result.losses[5:8]) / 3, rel=1e-5)


def wandb_history(run_dir: Path) -> list[dict]:
    """The history records of an offline W&B run, as ``wandb leet inspect --json`` prints them."""
    wandb_bin = Path(sys.executable).with_name("wandb")
    out = subprocess.run(
        [str(wandb_bin), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        record = json.loads(line)
        if record.get("type") == "history":
            rows.append(record["history"]["item"])
    return rows


def test_wandb_offline_run_holds_the_same_scalars(corpus, tmp_path, monkeypatch):  # noqa: F811
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    save = tmp_path / "run"
    cfg = tracked(
        corpus, save, wandb_project="bertforge-test", wandb_exp_name="tiny", tensorboard_dir=str(tmp_path / "tb")
    )
    pretrain(cfg, show_progress=False)
    runs = list((save / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    rows = wandb_history(runs[0])
    steps = [r["_step"] for r in rows if "lm loss" in r]
    assert steps == list(range(1, 9))
    tb_loss = [v for _, v in scalars(tmp_path / "tb")["lm loss"]]
    wb_loss = [r["lm loss"] for r in rows if "lm loss" in r]
    assert wb_loss == pytest.approx(tb_loss, rel=1e-6)
    assert any("lm loss validation" in r for r in rows) and any("samples" in r for r in rows)


MEGATRON_EXAMPLE = (  # Megatron-LM's examples/bert/train_bert_340m_distributed.sh, its sizes made tiny
    "--num-layers 2 --hidden-size 32 --num-attention-heads 2 --seq-length 48 --max-position-embeddings 64 "
    "--attention-backend auto "
    "--micro-batch-size 4 --global-batch-size 8 --train-iters 6 --weight-decay 1e-2 --clip-grad 1.0 --bf16 "
    "--lr 0.0001 --lr-decay-iters 6 --lr-decay-style linear --min-lr 1.0e-5 --lr-warmup-fraction .01 "
    "--tensor-model-parallel-size 1 --pipeline-model-parallel-size 1 "
    "--data-path {prefix} --vocab-file {vocab} --split 949,50,1 "
    "--log-interval 2 --save-interval 3 --eval-interval 3 --save {save} --load {save} --eval-iters 1 "
    "--tensorboard-dir {tb} --tensorboard-log-interval 1 --tensorboard-queue-size 10 "
    "--log-validation-ppl-to-tensorboard --log-timers-to-tensorboard --log-throughput"
)


def test_megatrons_example_bert_launch_line_runs_with_its_tensorboard_flags(corpus, tmp_path):  # noqa: F811
    """As written but for the sizes, and --bf16 for the example's --fp16 (fp16 needs a CUDA device)."""
    line = MEGATRON_EXAMPLE.format(
        prefix=corpus["prefix"], vocab=corpus["vocab"], save=tmp_path / "m", tb=tmp_path / "tb"
    )
    assert main(["pretrain", *line.split(), "--no-demo"]) == 0
    got = scalars(tmp_path / "tb")
    assert [s for s, _ in got["lm loss"]] == list(range(1, 7))
    assert [s for s, _ in got["lm loss validation ppl"]] == [3, 6]
    assert {"throughput", "iteration-time", "evaluation-time"} <= set(got)


def test_finetuning_reports_to_tensorboard_with_transformers_tags(tiny_checkpoint, tmp_path):
    rows = ["sentence\tlabel"] + [f"{w} river {w}\t{i % 2}" for i, w in enumerate(["good", "bad"] * 12)]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = ["finetune", "classification", "--model", str(tiny_checkpoint), "--train", str(tmp_path / "train.tsv")]
    args += [
        "--validation",
        str(tmp_path / "train.tsv"),
        "--output",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
    ]
    assert main([*args, "--report-to", "tensorboard", "--log-interval", "1"]) == 0
    got = scalars(out / "tensorboard")
    assert [s for s, _ in got["train/loss"]] == list(range(1, 7))
    assert {"train/learning_rate", "train/grad_norm", "eval/accuracy"} <= set(got)
    assert [s for s, _ in got["eval/accuracy"]] == [3, 6]
    assert not (out / "tensorboard" / "vs-samples").exists()


def test_a_tracker_that_is_not_installed_is_named_in_one_line(corpus, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setitem(sys.modules, "wandb", None)  # what a missing package looks like to import
    line = MEGATRON_EXAMPLE.format(
        prefix=corpus["prefix"], vocab=corpus["vocab"], save=tmp_path / "m", tb=tmp_path / "tb"
    )
    assert main(["pretrain", *line.split(), "--no-demo", "--wandb-project", "p", "--wandb-exp-name", "e"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "bertforge pretrain: error: --wandb-project needs the wandb package: pip install wandb"
    assert not (tmp_path / "m" / "checkpoints").exists()
    assert main(["pretrain", *line.split(), "--no-demo", "--wandb-project", "p"]) == 1
    assert "--wandb-project needs --wandb-exp-name" in capsys.readouterr().err
