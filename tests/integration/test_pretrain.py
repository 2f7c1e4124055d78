"""Pretraining end to end on a small synthetic corpus: overfitting, exact resume, two processes = one process,
Hugging Face export, Megatron flags, and the embedded default-corpus run (shortened)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp

from bertforge.cli.main import build_parser, main
from bertforge.cli.main_job import FINETUNE_DEMO, FINETUNE_DEMO_LRS
from bertforge.cli.pretrain import build_config
from bertforge.config import DataConfig, OptimConfig, PretrainConfig, TrainConfig
from bertforge.data.preprocess import preprocess
from bertforge.model.config import BertConfig
from bertforge.tokenization import train_vocab
from bertforge.training.pretrain import pretrain

WORDS = (
    "river stone light window garden morning silver quiet music paper forest winter bridge village letter "
    "summer ocean mountain candle shadow harbor meadow thunder lantern orchard valley whisper journey"
).split()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """~300 documents of 4-8 sentences of random words; a 300-token vocabulary trained on them."""
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    docs = []
    for _ in range(300):
        sentences = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
            for _ in range(rng.randint(4, 8))
        ]
        docs.append({"text": " ".join(sentences)})
    src = root / "docs.jsonl"
    src.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    train_vocab(texts=(d["text"] for d in docs), vocab_size=300, output=root / "tok", show_progress=False)
    preprocess([str(src)], str(root / "c"), str(root / "tok" / "vocab.txt"), show_progress=False)
    return {"prefix": str(root / "c_text_sentence"), "vocab": str(root / "tok" / "vocab.txt")}


def tiny_run(corpus, save=None, **train) -> PretrainConfig:
    model = BertConfig(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return PretrainConfig(
        model=model,
        data=DataConfig(
            data_path=[corpus["prefix"]], vocab_file=corpus["vocab"], seq_length=48, split="90,10,0", num_workers=0
        ),
        optim=OptimConfig(lr=3e-3, lr_warmup_iters=2),
        train=TrainConfig(
            **{
                "micro_batch_size": 4,
                "global_batch_size": 8,
                "train_iters": 20,
                "log_interval": 5,
                "eval_interval": 1000,
                "eval_iters": 2,
                "save": save,
                **train,
            }
        ),
    )


def test_resume_gives_identical_losses(corpus, tmp_path):
    full = pretrain(tiny_run(corpus, str(tmp_path / "full")), show_progress=False)
    cfg = tiny_run(corpus, str(tmp_path / "part"))
    cfg = dataclasses.replace(cfg, model=cfg.model.replace(hidden_dropout_prob=0.1))  # dropout RNG must resume too
    full_dropout = pretrain(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, save=str(tmp_path / "fd"))), show_progress=False
    )
    first = pretrain(cfg, exit_interval=10, show_progress=False)
    assert first.step == 10
    resumed = pretrain(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, load=str(tmp_path / "part"))), show_progress=False
    )
    assert resumed.step == 20 and len(resumed.losses) == 10
    assert first.losses + resumed.losses == full_dropout.losses  # bit-identical on CPU
    assert len(full.losses) == 20
    records = [json.loads(x) for x in open(tmp_path / "part" / "metrics.jsonl")]
    assert [r["step"] for r in records if "loss" in r] == [5, 10, 15, 20]
    assert (tmp_path / "part" / "curves.png").stat().st_size > 1000


def test_packed_batches_train_like_padded_ones(corpus):
    """--pack-sequences (collate_packed, cu_seqlens) computes the same steps as padded batches."""
    padded = pretrain(tiny_run(corpus), show_progress=False)
    cfg = tiny_run(corpus)
    packed = pretrain(
        dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, pack_sequences=True)), show_progress=False
    )
    assert packed.losses == pytest.approx(padded.losses, rel=1e-4, abs=1e-4)


def test_overfit_one_batch(corpus):
    cfg = tiny_run(corpus, train_iters=150, global_batch_size=4, log_interval=50)
    cfg = cfg.merged({"optim": {"lr": 1e-2, "lr_decay_style": "constant", "weight_decay": 0.0}})
    # One repeated batch: a stream whose every position is sample 0 with a fixed mask.
    from bertforge.training.pretrain import build_data

    data = build_data(cfg)
    stream = data.train
    fixed = [stream[p] for p in range(4)]
    data.train = _Repeat(fixed, len(stream))
    result = pretrain(cfg, data=data, show_progress=False)
    assert result.losses[0] > 3.0 and result.losses[-1] < 0.1, (result.losses[0], result.losses[-1])


class _Repeat:
    def __init__(self, samples, n):
        self.samples, self.n = samples, n

    def __len__(self):
        return self.n

    def __getitem__(self, p):
        s = self.samples[p % len(self.samples)]
        return {k: (v.copy() if hasattr(v, "copy") else v) for k, v in s.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, cfg_dict, out):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    result = pretrain(PretrainConfig.from_dict(cfg_dict), show_progress=False)
    if rank == 0:
        with open(out, "w") as fh:
            json.dump(result.losses, fh)
    _exit_child()


def _exit_child() -> None:
    """End a spawned rank without interpreter teardown. About 1 run in 10, a gloo/FSDP child that has finished all
    its work and left the process group aborts at teardown ("terminate called without an active exception": a C++
    thread still joinable when static objects are destroyed); the results are complete by then. Open problem, noted
    for the next session: skipping teardown here keeps the equivalence tests about equivalence."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.mark.slow
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_processes_match_one(corpus, tmp_path, fsdp):
    cfg = tiny_run(corpus, train_iters=8)
    single = pretrain(cfg, show_progress=False).losses
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, fsdp=fsdp, save=str(tmp_path / "run"), save_interval=4)
    )
    out = tmp_path / "losses.json"
    mp.start_processes(_worker, args=(2, _free_port(), cfg.to_dict(), str(out)), nprocs=2, start_method="spawn")
    double = json.loads(out.read_text())
    assert len(double) == 8
    for a, b in zip(single, double):
        assert abs(a - b) < 1e-5, (single, double)
    saved = json.loads((tmp_path / "run" / "hf" / "config.json").read_text())
    assert saved["architectures"] == ["BertForPreTraining"]  # FSDP's wrapper class is not the architecture
    # The checkpoint written by two ranks resumes in one process (another world size) with the same losses.
    resumed = pretrain(
        dataclasses.replace(
            cfg,
            train=dataclasses.replace(
                cfg.train, fsdp=False, load=str(tmp_path / "run" / "checkpoints" / "iter_0000004"), save=None
            ),
        ),
        show_progress=False,
    ).losses
    assert len(resumed) == 4
    for a, b in zip(single[4:], resumed):
        assert abs(a - b) < 1e-5, (single, resumed)


def test_exported_hf_directory_matches_transformers(corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = tiny_run(corpus, str(tmp_path / "run"), train_iters=4)
    pretrain(cfg, show_progress=False)
    hf_dir = tmp_path / "run" / "hf"
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in hf_dir.iterdir()}
    ref, info = transformers.BertForPreTraining.from_pretrained(hf_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    from bertforge import BertForPreTraining
    from bertforge.tokenization import load_tokenizer

    tok = load_tokenizer(hf_dir)
    ours = BertForPreTraining.from_pretrained(hf_dir)
    batch = tok(["winter river music", "a quiet village"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = ref.eval()(**batch), ours(**batch)
    torch.testing.assert_close(b.prediction_logits, a.prediction_logits, atol=1e-5, rtol=1e-5)
    # Any training checkpoint opens with from_pretrained as well, and `bertforge convert` cleans one up.
    ckpt = sorted((tmp_path / "run" / "checkpoints").glob("iter_*"))[-1]
    BertForPreTraining.from_pretrained(ckpt)
    assert main(["convert", str(tmp_path / "run"), "--output", str(tmp_path / "clean")]) == 0
    assert {p.name for p in (tmp_path / "clean").iterdir()} == {
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    converted = transformers.BertForPreTraining.from_pretrained(tmp_path / "clean").eval()
    with torch.no_grad():
        torch.testing.assert_close(converted(**batch).prediction_logits, a.prediction_logits)


MEGATRON_LINE = (
    "--num-layers 2 --hidden-size 32 --num-attention-heads 2 --ffn-hidden-size 64 --seq-length 48 "
    "--max-position-embeddings 64 --micro-batch-size 4 --global-batch-size 8 --train-iters 3 --lr 1e-4 "
    "--min-lr 1e-5 --lr-decay-style cosine --lr-warmup-fraction 0.01 --weight-decay 1e-2 --clip-grad 1.0 "
    "--adam-beta1 0.9 --adam-beta2 0.999 --adam-eps 1e-8 --seed 7 --data-path 1.0 {prefix} "
    "--vocab-file {vocab} --tokenizer-type BertWordPieceLowerCase --split 949,50,1 --mask-prob 0.15 "
    "--short-seq-prob 0.1 --save {save} --load {save} --save-interval 3 --eval-interval 3 --eval-iters 1 "
    "--log-interval 1 --bf16 --lr-decay-iters 3 --init-method-std 0.02 --hidden-dropout 0.1 "
    "--attention-dropout 0.1 --tensor-model-parallel-size 1 --pipeline-model-parallel-size 1"
)


def test_megatron_launch_line_parses_and_runs(corpus, tmp_path):
    line = MEGATRON_LINE.format(prefix=corpus["prefix"], vocab=corpus["vocab"], save=tmp_path / "m")
    args = build_parser().parse_args(["pretrain", *line.split()])
    cfg, extras = build_config(args)
    assert cfg.model.num_hidden_layers == 2 and cfg.model.intermediate_size == 64 and cfg.data.seq_length == 48
    assert cfg.optim.lr_decay_style == "cosine" and cfg.optim.lr_warmup_fraction == 0.01 and cfg.train.bf16
    assert cfg.train.global_batch_size == 8 and cfg.data.split == "949,50,1" and not extras["default_corpus"]
    no_head = build_config(build_parser().parse_args(["pretrain", *line.split(), "--bert-no-binary-head"]))[0]
    assert no_head.data.binary_head == "none"
    # --save X --load X: the first run finds no checkpoint and starts fresh (as Megatron does); the second resumes.
    assert main(["pretrain", *line.split(), "--no-demo"]) == 0
    assert (tmp_path / "m" / "checkpoints" / "latest").read_text().strip() == "iter_0000003"
    assert main(["pretrain", *line.split(), "--no-demo", "--train-iters", "4", "--lr-decay-iters", "4"]) == 0
    assert (tmp_path / "m" / "checkpoints" / "latest").read_text().strip() == "iter_0000004"


def test_unknown_and_unsupported_flags_are_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--num-layers", "2", "--use-flash-attn"])
    assert "unrecognized arguments: --use-flash-attn" in capsys.readouterr().err
    assert main(["pretrain", "--tensor-model-parallel-size", "2"]) == 1
    assert "--tensor-model-parallel-size 2 is not supported" in capsys.readouterr().err


def test_yaml_recipe_and_flag_precedence(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model:\n  num_hidden_layers: 3\ntrain:\n  micro_batch_size: 5\n  train_iters: 9\ndata:\n  data_path: [x]\n"
    )
    args = build_parser().parse_args(["pretrain", "--preset", "tiny", "--config", str(recipe), "--train-iters", "11"])
    cfg, _ = build_config(args)
    assert cfg.model.hidden_size == 128 and cfg.model.num_hidden_layers == 3  # preset < YAML
    assert cfg.train.micro_batch_size == 5 and cfg.train.train_iters == 11  # YAML < flag
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  micro_batchsize: 5\n")
    with pytest.raises(ValueError, match="micro_batchsize"):
        build_config(build_parser().parse_args(["pretrain", "--config", str(bad)]))


def test_global_batch_must_divide():
    cfg = PretrainConfig().merged({"train": {"micro_batch_size": 3, "global_batch_size": 8}})
    with pytest.raises(ValueError, match="multiple of --micro-batch-size"):
        cfg.gradient_accumulation(1)


def test_embedded_default_corpus_run_end_to_end(tmp_path, capsys, caplog, monkeypatch):
    """The README's main job, shortened: no data arguments -> Python docs corpus, vocabulary, preprocessing,
    pretraining, held-out evaluation, the fill-mask demo and the fine-tuning demo (one epoch per rate here)."""
    caplog.set_level(logging.INFO, logger="bertforge")
    monkeypatch.setitem(FINETUNE_DEMO, "epochs", 1)
    argv = [
        "pretrain",
        "--work-dir",
        str(tmp_path / "work"),
        "--save",
        str(tmp_path / "run"),
        "--preset",
        "tiny",
        "--train-iters",
        "4",
        "--micro-batch-size",
        "4",
        "--eval-iters",
        "1",
        "--log-interval",
        "2",
        "--fp32",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "held-out evaluation: eval_mlm_loss" in out and "fill-mask demo" in out
    assert out.count("    before: ") == out.count("    after:  ") == 4  # the initial model's fillers beside the trained
    assert "next:\n  bertforge run fill-mask --model " in out
    demo = out.split("fine-tuning demo: which package does a docstring come from? (")[1]
    assert demo.count("held-out accuracy") == 2 and "same model from scratch:" in demo  # the BERT story's two rows
    for system in ("pretrained", "scratch"):  # each at every rate of the demo's grid
        for lr in FINETUNE_DEMO_LRS:
            assert (tmp_path / "run" / "finetune_demo" / system / f"lr{lr:g}" / "finetune_result.json").exists()
    assert "for 4 steps" in caplog.text  # --train-iters replaces the recipe's time budget
    assert (tmp_path / "work" / "tokenizer" / "vocab.txt").exists()
    assert (tmp_path / "work" / "data" / "python_docs_text_sentence.idx").exists()
    assert (tmp_path / "run" / "hf" / "model.safetensors").exists() and (tmp_path / "run" / "curves.png").exists()
    from bertforge.cli.main import build_parser
    from bertforge.cli.pretrain import UNBOUNDED_ITERS, build_config

    cfg, extras = build_config(build_parser().parse_args(["pretrain"]))  # the main job as `make demo` runs it
    assert extras["default_corpus"] and cfg.train.train_time == "5m" and cfg.train.train_iters == UNBOUNDED_ITERS
    assert (cfg.model.hidden_size, cfg.model.initializer_range, cfg.data.seq_length, cfg.optim.lr) == (
        128,
        0.05,
        64,
        4e-3,
    )
    cfg, _ = build_config(build_parser().parse_args(["pretrain", "--seq-length", "128", "--init-method-std", "0.02"]))
    assert (cfg.data.seq_length, cfg.model.initializer_range) == (128, 0.02)  # flags win over the main job's settings


def test_nonfinite_loss_stops_or_skips(corpus):
    from bertforge.training.engine import NonFiniteLossError

    cfg = tiny_run(corpus, train_iters=4, log_interval=2)
    cfg = cfg.merged({"optim": {"lr": 1e38, "lr_warmup_iters": 0, "clip_grad": 0.0}})  # weights blow up at step 1
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        pretrain(cfg, show_progress=False)
    skip = cfg.merged({"train": {"on_nonfinite": "skip"}})
    result = pretrain(skip, show_progress=False)
    assert result.step == 4 and any(x != x for x in result.losses)  # NaN steps were skipped, the run went on


def test_train_step_skips_nonfinite_updates_without_host_sync(corpus, monkeypatch):
    """The fused AdamW path decides "skip this update" on the device: no .item() in the step, and a NaN step leaves
    every weight and the optimizer's step count as they were."""
    from bertforge.training import distributed as dist_
    from bertforge.training.engine import N_ENGINE_STATS, SKIPPED, BatchPlan, loader, train_step
    from bertforge.training.objectives import MLMObjective
    from bertforge.training.optim import build_optimizer, build_scheduler
    from bertforge.training.pretrain import build_data, build_model, collate_fn

    cfg = tiny_run(corpus)
    data = build_data(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, data.tokenizer.vocab_size)
    optimizer = build_optimizer(model, cfg.optim)
    assert optimizer.defaults["fused"]
    scheduler = build_scheduler(optimizer, cfg.optim, 10)
    info = dist_.DistInfo(0, 1, 0, torch.device("cpu"))
    objective = MLMObjective(cfg.data.binary_head)
    batch = next(iter(loader(data.train, BatchPlan(4, 4, 1), 0, 1, collate_fn(cfg, data.tokenizer.pad_token_id))))
    stats = torch.zeros(N_ENGINE_STATS + objective.n_stats, dtype=torch.float64)

    def no_sync(*_):
        raise AssertionError("host-device sync inside the training step")

    weight = model.bert.layers[0].attn.qkv_proj.weight
    before = weight.detach().clone()
    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "item", no_sync)
        train_step(model, objective, [(batch, 1.0, 0)], optimizer, scheduler, None, cfg.train, 1.0, stats, info)
    assert not torch.equal(weight, before) and stats[SKIPPED] == 0
    assert int(optimizer.state[weight]["step"]) == 1

    after_first = weight.detach().clone()
    with torch.no_grad():
        model.bert.embeddings.norm.weight[0] = float("nan")  # every activation, loss and gradient turn NaN
    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "item", no_sync)
        _, loss = train_step(
            model, objective, [(batch, 1.0, 0)], optimizer, scheduler, None, cfg.train, 1.0, stats, info
        )
    assert torch.isnan(loss) and stats[SKIPPED] == 1
    assert torch.equal(weight, after_first) and int(optimizer.state[weight]["step"]) == 1


def test_clm_objective_learns_resumes_and_exports_a_causal_lm(corpus, tmp_path):
    """--objective clm: the same data, flags and loop; next-token metrics; exact resume; packed = padded; the
    checkpoint is a causal BertLMHeadModel that transformers loads and that generates."""
    transformers = pytest.importorskip("transformers")
    from bertforge.generation import generate
    from bertforge.model import BertLMHeadModel

    def run(save=None, **data):
        cfg = tiny_run(corpus, save, train_iters=30, log_interval=10, eval_interval=30)
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, objective="clm", **data))

    cfg = run(str(tmp_path / "full"))
    assert cfg.data.binary_head == "none"
    full = pretrain(cfg, show_progress=False)
    assert full.losses[-1] < 0.8 * full.losses[0]
    assert {"clm_loss", "next_token_accuracy"} <= set(full.last_log)
    assert {"eval_clm_loss", "eval_next_token_accuracy", "eval_perplexity"} <= set(full.eval)
    packed = pretrain(run(pack_sequences=True), show_progress=False)
    assert packed.losses == pytest.approx(full.losses, rel=1e-4, abs=1e-4)
    part = run(str(tmp_path / "part"))
    first = pretrain(part, exit_interval=15, show_progress=False)
    resumed = pretrain(
        dataclasses.replace(part, train=dataclasses.replace(part.train, load=str(tmp_path / "part"))),
        show_progress=False,
    )
    assert first.losses + resumed.losses == full.losses
    ckpt = tmp_path / "full" / "hf"
    if not ckpt.exists():
        from bertforge.training.checkpoint import checkpoints

        ckpt = checkpoints(str(tmp_path / "full"))[-1]
    ours = BertLMHeadModel.from_pretrained(ckpt)
    assert ours.config.is_decoder and ours.config.architectures == ["BertLMHeadModel"]
    theirs = transformers.BertLMHeadModel.from_pretrained(ckpt).eval()
    ids = torch.tensor([[2, 40, 41, 42, 43]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, atol=1e-5, rtol=1e-4)
    assert len(generate(ours, [2, 40], max_new_tokens=5)) == 5


def test_a_split_with_no_validation_documents_says_so_at_the_start(corpus, caplog):
    from bertforge.training.pretrain import build_data

    cfg = tiny_run(corpus)
    no_valid = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, split="999,1,0"))  # 0.3 of 300 docs
    with caplog.at_level("WARNING", logger="bertforge"):
        assert build_data(no_valid).valid is None
    assert "--split 999,1,0 leaves 0 of the 300 documents" in caplog.text and "--split 90,10,0" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="bertforge"):
        assert build_data(cfg).valid is not None
    assert "--split" not in caplog.text


@pytest.fixture(scope="module")
def bpe_corpus(corpus, tmp_path_factory):
    """The same documents tokenized with a byte-level BPE vocabulary (GPT2BPETokenizer), sentence-split."""
    root = tmp_path_factory.mktemp("bpe_corpus")
    src = os.path.join(os.path.dirname(corpus["prefix"]), "docs.jsonl")
    texts = [json.loads(x)["text"] for x in open(src)]
    train_vocab(texts=texts, vocab_size=400, model="bpe", output=root / "tok", show_progress=False)
    vocab, merges = str(root / "tok" / "vocab.json"), str(root / "tok" / "merges.txt")
    preprocess([src], str(root / "c"), vocab, merge_file=merges, show_progress=False)
    return {"prefix": str(root / "c_text_sentence"), "vocab": vocab, "merges": merges}


def test_full_sentence_samples_cover_the_split_in_order_across_documents(bpe_corpus):
    import numpy as np

    from bertforge.data.indexed import IndexedDataset
    from bertforge.data.samples import PretrainingSamples, SpecialIds
    from bertforge.tokenization import RobertaTokenizer

    tok = RobertaTokenizer(bpe_corpus["vocab"], bpe_corpus["merges"])
    ds = IndexedDataset(bpe_corpus["prefix"])
    docs = np.arange(10, 60)
    samples = PretrainingSamples(
        ds, SpecialIds.from_tokenizer(tok), documents=docs, max_seq_length=48, binary_head="none", full_sentences=True
    )
    index = samples.index
    # the rows cover the split's sentences once, in order, across document boundaries
    assert index[0, 1] == ds.document_range(10)[0] and index[-1, 2] == ds.document_range(59)[1]
    assert (index[1:, 1] == index[:-1, 2]).all()
    starts = set(int(ds.document_range(int(d))[0]) for d in docs[1:])
    crossing = 0
    for i, (_, first, end, _) in enumerate(index.tolist()):
        ids = samples.get(i)["input_ids"].tolist()
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        if i < len(index) - 1:
            assert len(ids) == 48  # full length: nothing padded, nothing short but the split's last sample
        expected = []
        for j in range(first, end):
            if j > first and j in starts:
                expected.append(tok.sep_token_id)  # one separator where a new document begins
                crossing += 1
            expected.extend(ds[j].tolist())
        assert ids[1:-1] == expected[:46]
    assert crossing > 10  # samples do run on into the next document
    with pytest.raises(ValueError, match="need binary_head 'none'"):
        PretrainingSamples(ds, SpecialIds.from_tokenizer(tok), binary_head="sop", full_sentences=True)


def test_roberta_pretraining_recipe_exports_a_roberta(bpe_corpus, tmp_path):
    """GPT2BPETokenizer data pretrains a RoBERTa (positions after the padding id, one token type), full-sentence
    samples, no binary head; its export is read by transformers' RobertaForMaskedLM with the same logits."""
    transformers = pytest.importorskip("transformers")
    cfg = tiny_run(bpe_corpus, str(tmp_path / "run"), train_iters=12)
    cfg = dataclasses.replace(
        cfg,
        model=cfg.model.replace(vocab_size=400),
        data=dataclasses.replace(
            cfg.data,
            tokenizer_type="GPT2BPETokenizer",
            merge_file=bpe_corpus["merges"],
            binary_head="none",
            full_sentences=True,
            whole_word_mask=True,
        ),
    )
    result = pretrain(cfg, show_progress=False)
    losses = [json.loads(x)["loss"] for x in open(tmp_path / "run" / "metrics.jsonl") if '"loss"' in x]
    assert losses[-1] < losses[0] and "eval_mlm_loss" in result.eval
    hf_dir = tmp_path / "run" / "hf"
    saved = json.loads((hf_dir / "config.json").read_text())
    assert saved["model_type"] == "roberta" and saved["max_position_embeddings"] == 66 and saved["pad_token_id"] == 1
    assert {"vocab.json", "merges.txt"} <= {p.name for p in hf_dir.iterdir()}
    ref, info = transformers.RobertaForMaskedLM.from_pretrained(hf_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    from bertforge import BertForMaskedLM
    from bertforge.tokenization import load_tokenizer

    tok = load_tokenizer(hf_dir)
    batch = tok(["winter river music", "a quiet village <mask>"], padding=True, return_tensors="pt")
    ours = BertForMaskedLM.from_pretrained(hf_dir)
    with torch.no_grad():
        a = ref.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = ours(**batch).logits
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(b[mask], a[mask], atol=1e-5, rtol=1e-5)


def test_the_shipped_roberta_recipe_runs_from_the_command_line(bpe_corpus, tmp_path, capsys):
    line = [
        "pretrain",
        "--config",
        "roberta",
        "--data-path",
        bpe_corpus["prefix"],
        "--vocab-file",
        bpe_corpus["vocab"],
        "--merge-file",
        bpe_corpus["merges"],
        "--num-layers",
        "2",
        "--hidden-size",
        "32",
        "--num-attention-heads",
        "2",
        "--seq-length",
        "48",
        "--micro-batch-size",
        "4",
        "--global-batch-size",
        "8",
        "--train-iters",
        "3",
        "--eval-iters",
        "1",
        "--save",
        str(tmp_path / "run"),
        "--no-demo",
        "--fp32",
    ]
    cfg, _ = build_config(build_parser().parse_args(line))
    assert cfg.data.full_sentences and cfg.data.binary_head == "none" and cfg.data.tokenizer_type == "GPT2BPETokenizer"
    assert cfg.optim.adam_beta2 == 0.98 and cfg.train.global_batch_size == 8  # the command line wins over the recipe
    assert main(line) == 0
    assert json.loads((tmp_path / "run" / "hf" / "config.json").read_text())["model_type"] == "roberta"
    capsys.readouterr()
    assert main(["pretrain", "--config", "nope", "--no-demo"]) == 1
    assert (
        "no shipped recipe of that name (roberta, crammed, main-job, bert-paper, nvidia-lamb)"
        in capsys.readouterr().err
    )


def test_pretraining_distillation_as_distilbert_did_it(corpus, tmp_path, capsys):
    """A masked-LM teacher pretrained here; a fresh student of the same width learns its soft targets, the labels and
    its last hidden states (cosine): the soft-target and cosine losses fall. A student taken from the teacher's layers
    has the teacher's shape; a teacher without an MLM head is refused."""
    teacher_cfg = tiny_run(corpus, str(tmp_path / "teacher"), train_iters=30)
    teacher_cfg = dataclasses.replace(teacher_cfg, data=dataclasses.replace(teacher_cfg.data, binary_head="none"))
    pretrain(teacher_cfg, show_progress=False)
    from bertforge.config import DistillConfig

    distill = DistillConfig(teacher=str(tmp_path / "teacher" / "hf"), alpha=5 / 7, cosine=1 / 7)
    cfg = dataclasses.replace(
        teacher_cfg,
        train=dataclasses.replace(teacher_cfg.train, save=str(tmp_path / "student"), train_iters=20, log_interval=2),
        distill=distill,
    )
    result = pretrain(cfg, show_progress=False)
    logs = [json.loads(x) for x in open(tmp_path / "student" / "metrics.jsonl") if '"distill"' in x]
    assert logs[-1]["distill"] < logs[0]["distill"] and logs[-1]["cosine"] < logs[0]["cosine"]
    assert "mlm_accuracy" in logs[-1] and "eval_mlm_loss" in result.eval
    taken = dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, save=str(tmp_path / "taken"), train_iters=2),
        distill=dataclasses.replace(distill, student_layers=1),
    )
    pretrain(taken, show_progress=False)
    saved = json.loads((tmp_path / "taken" / "hf" / "config.json").read_text())
    assert saved["num_hidden_layers"] == 1 and saved["hidden_size"] == 32
    from bertforge.model import BertModel

    BertModel(tiny_run(corpus).model).save_pretrained(tmp_path / "bare")  # an encoder without an MLM head
    bad = dataclasses.replace(cfg, distill=DistillConfig(teacher=str(tmp_path / "bare"), student_layers=1))
    with pytest.raises(ValueError, match="has no masked-LM head"):
        pretrain(bad, show_progress=False)
    with pytest.raises(ValueError, match="masked LM only: use --binary-head none"):
        dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, binary_head="sop"))


def test_a_time_budget_schedules_by_time_stops_with_an_export_and_resumes_counting(corpus, tmp_path, capsys):
    """--train-time: the learning rate warms up and decays over the budget's time (not the steps), the run stops
    when it is spent with an evaluation and the Hugging Face export, and a resumed run starts from the time its
    checkpoint had spent."""
    cfg = tiny_run(corpus, str(tmp_path / "run"), train_iters=10**6, train_time="6s", log_interval=1, save_interval=5)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr_warmup_iters=0, lr_warmup_fraction=0.2))
    result = pretrain(cfg, show_progress=False)
    assert result.time_up and 5 < result.step < 10**6 and "eval_mlm_loss" in result.eval
    logs = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl") if '"lr"' in x]
    spent = [r["time_spent"] for r in logs]
    lrs = [r["lr"] for r in logs]
    assert spent == sorted(spent) and 6.0 <= spent[-1] < 9.0
    peak = lrs.index(max(lrs))
    assert max(lrs) <= 3e-3 and 0 < peak < len(lrs) - 1 and lrs[-1] < 0.2 * max(lrs)  # warm-up, then decay by time
    assert (tmp_path / "run" / "hf" / "model.safetensors").exists()
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, train_time="9s", load=str(tmp_path / "run")))
    again = pretrain(longer, show_progress=False)
    resumed = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl") if '"lr"' in x]
    after = [r for r in resumed if r["step"] > result.step]
    assert again.time_up and after and after[0]["time_spent"] >= spent[-1]  # it counts the time already spent
    assert 9.0 <= after[-1]["time_spent"] < 12.0
    with pytest.raises(ValueError, match="is not a duration"):
        tiny_run(corpus, train_time="two hours")
    line = ["pretrain", "--train-time", "1h30m", "--no-demo"]
    built, _ = build_config(build_parser().parse_args(line))
    assert built.train.train_time == "1h30m" and built.train.train_iters == 10**9  # the time ends the run


def test_the_shipped_crammed_recipe_trains_for_a_time_budget(corpus, tmp_path, capsys):
    """--config crammed: the small-budget recipe (BERT-Tiny's shape, no dropout, MLM only, whole sentences packed to
    the full length, 20% masking, a one-cycle schedule over the time) runs with a time budget and exports."""
    from bertforge.cli.main import build_parser
    from bertforge.cli.pretrain import UNBOUNDED_ITERS, build_config

    line = [
        "pretrain",
        "--config",
        "crammed",
        "--train-time",
        "4s",
        "--data-path",
        corpus["prefix"],
        "--vocab-file",
        corpus["vocab"],
        "--seq-length",
        "48",
        "--eval-iters",
        "1",
        "--save",
        str(tmp_path / "run"),
    ]
    cfg, _ = build_config(build_parser().parse_args(line))
    assert (cfg.model.num_hidden_layers, cfg.model.hidden_size, cfg.model.hidden_dropout_prob) == (2, 128, 0.0)
    assert cfg.data.full_sentences and cfg.data.binary_head == "none" and cfg.data.mask_prob == 0.2
    assert cfg.optim.lr_warmup_fraction == 0.1 and cfg.optim.lr_decay_style == "linear"
    assert cfg.train.train_time == "4s" and cfg.train.train_iters == UNBOUNDED_ITERS
    assert cfg.data.seq_length == 48  # the command line wins over the recipe
    assert main(line) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "eval_mlm_accuracy" in records[-1] and (tmp_path / "run" / "hf" / "model.safetensors").exists()
    out = capsys.readouterr().out
    assert "fill-mask demo (top 5):" in out and "The capital of France is [MASK]." in out
    assert "before: " not in out  # only the main job builds the initial model a second time to show it


def _embedding_model(directory, corpus, extra_rows=0, max_positions=64):
    """A sentence-embedding checkpoint (a bare encoder, no MLM head) of a shape unlike tiny_run's, with the corpus's
    tokenizer: what continued pretraining typically starts from."""
    from bertforge.model import BertModel
    from bertforge.tokenization import BertTokenizer

    tok = BertTokenizer.from_megatron("BertWordPieceLowerCase", corpus["vocab"])
    torch.manual_seed(3)
    config = BertConfig(
        vocab_size=tok.vocab_size + extra_rows,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=96,
        max_position_embeddings=max_positions,
    )
    BertModel(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def test_continued_pretraining_starts_from_a_hugging_face_model(corpus, tmp_path, caplog, capsys):
    """--init-model: the checkpoint's architecture, weights and vocabulary; a missing MLM head is new and logged; a
    vocabulary or length the checkpoint cannot take is one line naming the flag."""
    from bertforge.model import BertModel
    from bertforge.training.pretrain import initial_model, run_tokenizer

    start = _embedding_model(str(tmp_path / "st"), corpus)
    cfg = tiny_run(corpus, str(tmp_path / "run"), train_iters=6, init_model=start)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, vocab_file=None))  # the model's vocabulary
    caplog.set_level(logging.WARNING, logger="bertforge")
    model = initial_model(cfg, run_tokenizer(cfg))
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (48, 3)  # not tiny_run's 32 x 2
    saved = BertModel.from_pretrained(start).state_dict()
    encoder = model.bert.state_dict()
    shared = [k for k in saved if not k.startswith("pooler.")]  # BertForMaskedLM has no pooler
    assert len(shared) > 10 and set(shared) <= set(encoder)
    assert all(torch.equal(encoder[k], saved[k]) for k in shared)
    assert "newly initialized" in caplog.text and "cls.predictions.transform.dense.weight" in caplog.text
    caplog.clear()  # the main job's before-training fillers build the same model: the report is pretrain's, once
    from bertforge.cli.main_job import initial_fillers

    assert len(initial_fillers(cfg, ["the [MASK] river."])) == 1 and "newly initialized" not in caplog.text
    result = pretrain(cfg, show_progress=False)
    assert result.step == 6 and len(result.losses) == 6
    exported = json.loads((tmp_path / "run" / "hf" / "config.json").read_text())
    assert (exported["hidden_size"], exported["num_hidden_layers"]) == (48, 3)
    # what the checkpoint cannot take
    wide = _embedding_model(str(tmp_path / "wide"), corpus, extra_rows=20)
    with pytest.raises(ValueError, match=r"--init-model .*wide: its embeddings cover \d+ tokens, the run's vocab"):
        initial_model(tiny_run(corpus, init_model=wide), run_tokenizer(tiny_run(corpus)))
    short = _embedding_model(str(tmp_path / "short"), corpus, max_positions=32)
    with pytest.raises(ValueError, match="--seq-length 48 exceeds the 32 tokens that --init-model"):
        initial_model(tiny_run(corpus, init_model=short), run_tokenizer(tiny_run(corpus)))
    with pytest.raises(ValueError, match="--init-model and --student-layers"):
        cfg.merged({"data": {"binary_head": "none"}, "distill": {"teacher": start, "student_layers": 1}})
    # the command line: the flag, and the main job's learning rate for trained weights
    argv = ["pretrain", "--init-model", start, "--data-path", corpus["prefix"], "--seq-length", "48"]
    argv += ["--split", "90,10,0", "--micro-batch-size", "4", "--train-iters", "3", "--lr", "1e-3"]
    argv += ["--save", str(tmp_path / "cli"), "--eval-iters", "1", "--no-demo", "--fp32"]
    assert main(argv) == 0
    assert "hidden_size: 48" in (tmp_path / "cli" / "run_config.yaml").read_text()
    from bertforge.cli.pretrain import CONTINUED_LR

    def main_job_lr(*flags):
        return build_config(build_parser().parse_args(["pretrain", "--init-model", start, *flags]))[0].optim.lr

    assert main_job_lr() == CONTINUED_LR and main_job_lr("--lr", "5e-4") == 5e-4
    assert main(["pretrain", "--init-model", str(tmp_path / "nothing"), "--no-demo"]) == 1
    assert "nothing does not exist" in capsys.readouterr().err


def test_the_default_corpus_is_tokenized_again_for_another_vocabulary(corpus, tmp_path):
    """The embedded corpus's token files are per vocabulary: a model's vocabulary (continued pretraining) never reads
    ids made with the trained one."""
    from bertforge.data.default_corpus import prepare_default_corpus
    from bertforge.data.indexed import IndexedDataset

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "python_docs.jsonl").write_text(json.dumps({"text": "A quiet river. The winter garden."}) + "\n")
    own_prefix, own_vocab = prepare_default_corpus(str(work), vocab_size=120)
    other_prefix, other_vocab = prepare_default_corpus(str(work), vocab_file=corpus["vocab"])
    assert own_prefix.endswith("python_docs_text_sentence") and other_vocab == corpus["vocab"]
    assert other_prefix != own_prefix and os.path.exists(other_prefix + ".idx")
    from bertforge.tokenization import BertTokenizer

    ids = BertTokenizer.from_megatron("BertWordPieceLowerCase", corpus["vocab"])("A quiet river.")["input_ids"][1:-1]
    assert list(IndexedDataset(other_prefix)[0]) == ids
    assert prepare_default_corpus(str(work), vocab_file=corpus["vocab"])[0] == other_prefix  # reused, not rebuilt
