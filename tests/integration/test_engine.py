"""The training engine shared by pretraining and fine-tuning: N processes compute the update of one (with dropout on),
held-out metrics do not depend on the number of ranks, a fine-tuning run killed mid-epoch resumes exactly, and the
batch plan's arithmetic (partial last batch of an epoch, weights, filler micro-batches)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket

import pytest
import torch
import torch.multiprocessing as mp

from bertforge.config import FinetuneConfig, PretrainConfig
from bertforge.training.engine import BatchPlan
from bertforge.training.finetune import finetune_classification
from bertforge.training.pretrain import pretrain

from .test_pretrain import _exit_child, corpus, tiny_run  # noqa: F401  (the session corpus fixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(target, *args) -> None:
    mp.start_processes(target, args=(2, _free_port(), *args), nprocs=2, start_method="spawn")


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)


# ---- batch plan -----------------------------------------------------------------------------------------------------
def test_batch_plan_splits_epochs_and_weights_micro_batches():
    # 19 samples, global batch 8 = micro 4 x 2: steps of 8, 8 and 3 samples; the last step's second micro-batch is
    # empty and reads one sample with weight 0.
    one = BatchPlan(8, 4, 2, epoch_size=19)
    assert one.steps_per_epoch == 3
    assert [one.step_range(s) for s in range(4)] == [(0, 8), (8, 16), (16, 19), (19, 27)]
    assert one.micro_batches(0) == [([0, 1, 2, 3], 0.5), ([4, 5, 6, 7], 0.5)]
    assert one.micro_batches(2) == [([16, 17, 18], 1.0), ([16], 0.0)]
    # Two ranks read the same micro-batches; DDP averages their gradients, so the weights double.
    ranks = [BatchPlan(8, 4, 1, rank=r, world_size=2, epoch_size=19) for r in range(2)]
    assert [p.micro_batches(2) for p in ranks] == [[([16, 17, 18], 2.0)], [([16], 0.0)]]
    assert BatchPlan(8, 4, 2).step_range(3) == (24, 32)  # pretraining: an endless stream


# ---- two processes = one, with dropout ---------------------------------------------------------------------------
def _pretrain_worker(rank, world, port, cfg_dict, out):
    _join(rank, world, port)
    result = pretrain(PretrainConfig.from_dict(cfg_dict), show_progress=False)
    if rank == 0:
        with open(out, "w") as fh:
            json.dump({"losses": result.losses, "eval": result.eval}, fh)
    _exit_child()


@pytest.mark.slow
def test_two_processes_match_one_with_dropout(corpus, tmp_path):  # noqa: F811
    """Dropout is a function of (seed, sample position): 2 ranks x 1 micro-batch = 1 rank x 2 micro-batches."""
    cfg = tiny_run(corpus, train_iters=6, eval_interval=6)
    cfg = dataclasses.replace(cfg, model=cfg.model.replace(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))
    single = pretrain(cfg, show_progress=False)
    out = tmp_path / "r.json"
    _spawn(_pretrain_worker, cfg.to_dict(), str(out))
    double = json.loads(out.read_text())
    assert len(double["losses"]) == 6
    for a, b in zip(single.losses, double["losses"]):
        assert abs(a - b) < 1e-5, (single.losses, double["losses"])
    assert double["eval"]["eval_mlm_loss"] == pytest.approx(single.eval["eval_mlm_loss"], abs=1e-4)


def _eval_worker(rank, world, port, cfg_dict, out):
    _join(rank, world, port)
    from bertforge.training import distributed as dist_
    from bertforge.training.pretrain import build_data, build_model, evaluate

    cfg = PretrainConfig.from_dict(cfg_dict)
    info = dist_.init("cpu")
    try:
        data = build_data(cfg)
        torch.manual_seed(0)
        model = build_model(cfg, data.tokenizer.vocab_size)
        result = evaluate(model, data.valid, cfg, info, data.tokenizer.pad_token_id)
    finally:
        dist_.shutdown()
    if rank == 0:
        with open(out, "w") as fh:
            json.dump(result, fh)
    if world > 1:  # a spawned rank (the single-rank case runs in the test process itself)
        _exit_child()


@pytest.mark.slow
def test_heldout_metrics_do_not_depend_on_the_number_of_ranks(corpus, tmp_path):  # noqa: F811
    """--eval-iters counts global batches (Megatron's meaning): the same samples are scored on 1 and 2 ranks."""
    cfg = tiny_run(corpus, eval_iters=3)
    out = tmp_path / "e.json"
    _eval_worker(0, 1, _free_port(), cfg.to_dict(), str(out))
    single = json.loads(out.read_text())
    _spawn(_eval_worker, cfg.to_dict(), str(out))
    double = json.loads(out.read_text())
    assert single.keys() == double.keys()
    for key in single:
        assert double[key] == pytest.approx(single[key], rel=1e-9), key


# ---- fine-tuning on the engine ---------------------------------------------------------------------------------------
GOOD, BAD = "good great fine lovely happy".split(), "bad awful poor sad ugly".split()
FILLER = "the movie film story was is a very and but plot actors".split()


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    """A tiny random BERT with a vocabulary trained on a synthetic sentiment task (no downloads), and the task's
    train (19 rows: the last batch is partial) and validation files."""
    from bertforge.model import BertModel
    from bertforge.model.config import BertConfig
    from bertforge.tokenization import train_vocab

    root = tmp_path_factory.mktemp("sentiment")
    rng = random.Random(0)

    def rows(n):
        out = []
        for i in range(n):
            label = i % 2
            words = [rng.choice(FILLER) for _ in range(rng.randint(3, 9))]
            words.insert(rng.randrange(len(words) + 1), rng.choice(GOOD if label else BAD))
            out.append({"text": " ".join(words), "label": str(label)})
        return out

    train, valid = rows(19), rows(16)
    for name, data in (("train", train), ("valid", valid)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    model_dir = root / "model"
    tok = train_vocab(
        texts=[r["text"] for r in train + valid] * 5, vocab_size=80, output=model_dir, show_progress=False
    )
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = BertModel(config)
    model.save_pretrained(model_dir)
    no_dropout = root / "model_no_dropout"  # the same weights, dropout off
    plain = BertModel(config.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(no_dropout)
    tok.save_pretrained(no_dropout)
    return {
        "model": str(model_dir),
        "model_no_dropout": str(no_dropout),
        "train": str(root / "train.jsonl"),
        "valid": str(root / "valid.jsonl"),
    }


def _ft_config(**changes) -> FinetuneConfig:
    base = dict(epochs=2, batch_size=4, global_batch_size=8, lr=1e-3, log_interval=1, max_length=24)
    return FinetuneConfig.build(**{**base, **changes})


def _finetune(data, out, cfg, **kw):
    return finetune_classification(
        data["model"], data["train"], data["valid"], str(out), text_column="text", cfg=cfg, show_progress=False, **kw
    )


def _step_losses(out) -> list[float]:
    records = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    return [r["loss"] for r in records if "loss" in r]


def _finetune_worker(rank, world, port, data, out, cfg_dict):
    _join(rank, world, port)
    _finetune(data, out, FinetuneConfig.from_dict(cfg_dict))
    _exit_child()


@pytest.mark.slow
def test_finetuning_two_processes_match_one_with_dropout(sentiment, tmp_path):
    cfg = _ft_config()  # dropout 0.1 (the checkpoint's default); 19 rows: the third step of an epoch is partial
    one = _finetune(sentiment, tmp_path / "one", cfg)
    _spawn(_finetune_worker, sentiment, str(tmp_path / "two"), cfg.to_dict())
    a, b = _step_losses(tmp_path / "one"), _step_losses(tmp_path / "two")
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert abs(x - y) < 1e-5, (a, b)
    two = json.loads((tmp_path / "two" / "finetune_result.json").read_text())["result"]
    assert two["accuracy"] == one["accuracy"] and two["best_epoch"] == one["best_epoch"]


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_finetuning_killed_mid_epoch_resumes_exactly(sentiment, tmp_path, strategy):
    extra = {"lora_r": 2} if strategy == "lora" else {}
    full = _finetune(sentiment, tmp_path / "full", _ft_config(**extra))
    first = _finetune(sentiment, tmp_path / "part", _ft_config(exit_interval=2, **extra))  # 3 steps an epoch
    assert first["stopped_at_step"] == 2 and not (tmp_path / "part" / "finetune_result.json").exists()
    resumed = _finetune(sentiment, tmp_path / "part", _ft_config(**extra), resume=True)
    for key in ("accuracy", "f1", "matthews", "best_epoch"):
        assert resumed[key] == full[key], key
    assert _step_losses(tmp_path / "part") == _step_losses(tmp_path / "full")  # bit-identical on CPU
    from safetensors.torch import load_file

    a = load_file(tmp_path / "full" / "best" / "model.safetensors")
    b = load_file(tmp_path / "part" / "best" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(x) for x in open(tmp_path / "part" / "metrics.jsonl")]
    assert [r["epoch"] for r in records if "epoch" in r] == [1.0, 2.0]


def test_finetuning_accumulates_gradients_like_a_larger_batch(sentiment, tmp_path):
    """micro 4 x 2 accumulation computes the steps of micro 8 (dropout off), partial last batches included."""
    data = {**sentiment, "model": sentiment["model_no_dropout"]}
    big = _finetune(data, tmp_path / "big", _ft_config(batch_size=8))
    acc = _finetune(data, tmp_path / "acc", _ft_config(batch_size=4))
    assert big["trainable_parameters"] == acc["trainable_parameters"]
    a, b = _step_losses(tmp_path / "big"), _step_losses(tmp_path / "acc")
    assert len(a) == len(b) == 6
    assert a == pytest.approx(b, abs=1e-5)


def test_an_unknown_metric_is_refused_before_training(sentiment, tmp_path):
    with pytest.raises(ValueError, match="--metric 'bogus' is not one this task computes; choose one of accuracy"):
        _finetune(sentiment, tmp_path / "m", _ft_config(), metric="bogus")
    assert not (tmp_path / "m" / "checkpoints").exists()


def test_regression_keeps_the_epoch_with_the_lowest_mse(sentiment, tmp_path):
    result = _finetune(sentiment, tmp_path / "r", _ft_config(epochs=3), regression=True, metric="mse")
    records = [json.loads(x) for x in open(tmp_path / "r" / "metrics.jsonl") if '"epoch"' in x]
    best = min(records, key=lambda r: r["eval_mse"])
    assert result["mse"] == best["eval_mse"] and result["best_epoch"] == round(best["epoch"])
    # each epoch's train_seconds counts its training steps only (evaluation excluded); together they are the run's
    assert all(r["train_seconds"] > 0 for r in records)
    assert sum(r["train_seconds"] for r in records) == pytest.approx(result["train_seconds"], abs=0.02)


def test_each_strategy_has_a_learning_rate_that_works_and_a_run_that_learned_nothing_says_so(sentiment, tmp_path):
    from bertforge.adapt import STRATEGIES

    assert FinetuneConfig.build(strategy="head").resolved_optim().lr == STRATEGIES["head"].lr == 2e-2
    assert FinetuneConfig.build(lora_r=4).resolved_optim().lr == STRATEGIES["lora"].lr == 2e-3
    assert FinetuneConfig.build().resolved_optim().lr == 3e-5  # BERT's recipe for full fine-tuning
    assert FinetuneConfig.build(strategy="head", lr=1e-4).resolved_optim().lr == 1e-4  # a given lr wins
    result = _finetune(sentiment, tmp_path / "stuck", _ft_config(lr=1e-9, epochs=2))
    assert any("did not move" in w and "--lr" in w for w in result["warnings"]), result.get("warnings")
    saved = json.loads((tmp_path / "stuck" / "finetune_result.json").read_text())["result"]
    assert saved["warnings"] == result["warnings"]


def test_label_names_reach_id2label_predictions_and_the_pipeline(sentiment, tmp_path):
    import bertforge

    cfg = _ft_config(epochs=1, label_names=("negative", "positive"))
    _finetune(sentiment, tmp_path / "n", cfg)
    config = json.loads((tmp_path / "n" / "best" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    record = json.loads((tmp_path / "n" / "predictions_validation.jsonl").read_text().splitlines()[0])
    assert record["prediction"] in ("negative", "positive") and record["label"] in ("0", "1")
    out = bertforge.pipeline("text-classification", model=str(tmp_path / "n" / "best"))("the film was good")
    assert out[0]["label"] in ("negative", "positive")
    with pytest.raises(ValueError, match="--label-names gives 3 names but .* has 2 labels"):
        _finetune(sentiment, tmp_path / "bad", _ft_config(label_names=("a", "b", "c")))


def test_integer_labels_are_ordered_numerically():
    from bertforge.tasks.classification import classification_labels

    rows = [{"label": v, "line": i} for i, v in enumerate(["10", "2", "1", "2"])]
    _, label2id = classification_labels(rows, "x", "single", None)
    assert list(label2id) == ["1", "2", "10"]


def test_validation_split_holds_out_seeded_rows_when_there_is_no_validation_file(sentiment, tmp_path):
    cfg = _ft_config(epochs=1, validation_split=0.25)
    no_file = {**sentiment, "valid": None}
    result = _finetune(no_file, tmp_path / "s", cfg)
    held = [json.loads(x)["line"] for x in (tmp_path / "s" / "predictions_validation.jsonl").read_text().splitlines()]
    assert len(held) == 5 and "accuracy" in result  # round(0.25 x 19 rows)
    again = _finetune(no_file, tmp_path / "t", cfg)
    assert again["accuracy"] == result["accuracy"]
    assert [
        json.loads(x)["line"] for x in (tmp_path / "t" / "predictions_validation.jsonl").read_text().splitlines()
    ] == held  # seeded
    with pytest.raises(ValueError, match="no validation data: give a validation file"):
        _finetune(no_file, tmp_path / "u", _ft_config())


def test_finetuning_takes_rows_in_memory(sentiment, tmp_path):
    """Lists of dicts, and anything shaped like a datasets.Dataset (iterable rows + features with ClassLabel names),
    instead of files."""
    rows = [json.loads(x) for x in open(sentiment["train"])]
    valid = [json.loads(x) for x in open(sentiment["valid"])]

    class Names:
        names = ["neg", "pos"]

    class FakeDataset(list):  # what datasets.Dataset offers: iteration over dict rows, and features
        features = {"label": Names()}

    as_ids = FakeDataset({"text": r["text"], "label": int(r["label"])} for r in rows)
    valid_ids = FakeDataset({"text": r["text"], "label": int(r["label"])} for r in valid)
    result = finetune_classification(
        sentiment["model"],
        as_ids,
        valid_ids,
        str(tmp_path / "m"),
        text_column="text",
        cfg=_ft_config(epochs=1),
        show_progress=False,
    )
    assert "accuracy" in result
    config = json.loads((tmp_path / "m" / "best" / "config.json").read_text())
    assert set(config["label2id"]) == {"neg", "pos"}  # the Dataset's class names
    with pytest.raises(ValueError, match="rows in memory: row 2: no field 'text'"):
        finetune_classification(
            sentiment["model"],
            [rows[0], {"x": 1}],
            valid,
            str(tmp_path / "b"),
            text_column="text",
            cfg=_ft_config(),
            show_progress=False,
        )


def test_finetuning_takes_a_model_object(sentiment, tmp_path):
    """A model in memory (any bertforge class) instead of a directory: its encoder is copied into the task class;
    the tokenizer comes from where it was loaded, or tokenizer= for a model built here."""
    from bertforge.model import BertModel
    from bertforge.tokenization import BertTokenizer

    loaded = BertModel.from_pretrained(sentiment["model"])
    assert loaded.name_or_path == sentiment["model"]
    cfg = _ft_config(epochs=1)

    def run(model, out, **kw):
        return finetune_classification(
            model,
            sentiment["train"],
            sentiment["valid"],
            str(out),
            cfg=cfg,
            show_progress=False,
            text_column="text",
            **kw,
        )

    by_dir, by_object = run(sentiment["model"], tmp_path / "d"), run(loaded, tmp_path / "o")
    assert by_object["accuracy"] == by_dir["accuracy"]  # the same weights, seed and data: the same run
    built = BertModel(loaded.config)
    with pytest.raises(ValueError, match="has no tokenizer: pass tokenizer="):
        run(built, tmp_path / "b")
    result = run(built, tmp_path / "b", tokenizer=BertTokenizer.from_pretrained(sentiment["model"]))
    assert "accuracy" in result and (tmp_path / "b" / "best" / "vocab.txt").exists()
