"""ELECTRA's pretraining objective on a tiny model: the discriminator's labels are exactly where the generator's sample
differs from the original, the losses fall, a resume is exact, two processes equal one, and the two exports load in
transformers (the discriminator as ElectraForPreTraining, the generator as ElectraForMaskedLM, which fill-mask runs
on)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.multiprocessing as mp

from bertforge.config import PretrainConfig
from bertforge.training import electra
from bertforge.training.pretrain import pretrain
from tests.integration.test_pretrain import _free_port, _worker, corpus, tiny_run  # noqa: F401  (the fixture)


def electra_run(corpus, save=None, **train) -> PretrainConfig:  # noqa: F811
    cfg = tiny_run(corpus, save, **{"train_iters": 30, "log_interval": 5, **train})
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, objective="electra", binary_head="none"),
        model=cfg.model.replace(embedding_size=16),
    )


def test_replaced_labels_are_where_the_sample_differs_from_the_original():
    ids = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 20, 21, 3, 0, 0]])
    labels = torch.full_like(ids, -100)
    positions = torch.tensor([1, 2, 4, 8])  # flat indices of the masked tokens
    labels.view(-1)[positions] = ids.view(-1)[positions]
    masked = ids.clone()
    masked.view(-1)[positions] = 4  # [MASK]
    logits = torch.full((4, 30), -1e4)
    logits[0, 10] = 0.0  # samples the original
    logits[1, 25] = 0.0  # a replacement
    logits[2, 13] = 0.0  # the original again
    logits[3, 7] = 0.0  # a replacement
    new_ids, replaced, originals = electra.replaced_inputs(masked, labels, positions, logits)
    assert originals.tolist() == [10, 11, 13, 21]
    assert new_ids.tolist() == [[2, 10, 25, 12, 13, 3], [2, 20, 7, 3, 0, 0]]
    assert replaced.tolist() == [[0, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0]]  # an equal sample is "original"


def test_the_samples_follow_the_generators_softmax():
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0, 0.0])
    rows = torch.log(probs).expand(100_000, 5)
    counts = torch.bincount(electra.sample_rows(rows), minlength=5).double() / 100_000
    assert counts[3:].sum() == 0  # a token of probability 0 is never drawn
    assert torch.allclose(counts[:3], probs[:3].double(), atol=0.006)  # about 4 standard errors
    torch.manual_seed(1)
    first = electra.sample_rows(torch.randn(64, 1000))
    torch.manual_seed(1)
    assert torch.equal(first, electra.sample_rows(torch.randn(64, 1000)))  # manual_seed repeats the draw


def test_generator_shape_and_shared_embeddings():
    from bertforge.model import preset

    small = preset("base").replace(embedding_size=128)
    g = electra.generator_config(small, 0.25)
    assert (g.hidden_size, g.num_attention_heads, g.intermediate_size, g.embedding_size) == (192, 3, 768, 128)
    crammed = small.replace(hidden_size=128, num_attention_heads=2, intermediate_size=512)  # heads of 64
    shapes = {s: electra.generator_config(crammed, s) for s in (0.25, 0.5, 1.0)}
    assert {s: (c.hidden_size, c.num_attention_heads, c.intermediate_size) for s, c in shapes.items()} == {
        0.25: (32, 1, 128),  # under one head: one head of 32, not one of 64 (that would be half the width)
        0.5: (64, 1, 256),
        1.0: (128, 2, 512),
    }
    assert electra.generator_config(small, 0.3).hidden_size == 256  # 230 wide asked: 3.6 heads of 64, so 4
    pair = electra.build_pair(small.replace(num_hidden_layers=1, vocab_size=100), 0.25)
    d_emb, g_emb = pair.discriminator.bert.embeddings, pair.generator.bert.embeddings
    assert g_emb.token is d_emb.token and g_emb.position is d_emb.position and g_emb.norm is d_emb.norm
    assert pair.generator.mlm.decoder.weight is d_emb.token.weight
    assert g_emb.project.out_features == 192 and d_emb.project.out_features == 768


def test_the_objective_learns_logs_both_losses_and_resumes_exactly(corpus, tmp_path):  # noqa: F811
    whole = pretrain(electra_run(corpus, str(tmp_path / "whole")), show_progress=False)
    assert sum(whole.losses[-5:]) < 0.7 * sum(whole.losses[:5])
    records = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "loss" in r][-1]
    assert {"mlm_loss", "rtd_loss", "rtd_accuracy", "replaced_share"} <= set(last)
    assert last["loss"] == pytest.approx(last["mlm_loss"] + 50 * last["rtd_loss"], rel=1e-4)
    assert 0.05 < last["replaced_share"] < 0.25  # about the 15% masked, minus the samples that hit the original
    assert {"eval_mlm_loss", "eval_rtd_loss", "eval_rtd_accuracy"} <= set(whole.eval)
    cfg = electra_run(corpus, str(tmp_path / "part"))
    first = pretrain(cfg, exit_interval=12, show_progress=False)
    rest = pretrain(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, load=str(tmp_path / "part"))))
    assert first.losses + rest.losses == whole.losses  # bit-identical on CPU, the generator's sampling included
    wider = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, generator_size=0.5))
    with pytest.raises(
        ValueError, match=r"generator is 8 wide, --generator-size makes it 16: give --generator-size 0.25"
    ):
        pretrain(dataclasses.replace(wider, train=dataclasses.replace(cfg.train, load=str(tmp_path / "part"))))


def test_the_exports_load_in_transformers_and_fill_mask_runs_on_the_generator(corpus, tmp_path):  # noqa: F811
    transformers = pytest.importorskip("transformers")
    pretrain(electra_run(corpus, str(tmp_path / "run"), train_iters=6), show_progress=False)
    disc, info = transformers.ElectraForPreTraining.from_pretrained(tmp_path / "run" / "hf", output_loading_info=True)
    assert not any(info.values()), info
    gen, info = transformers.ElectraForMaskedLM.from_pretrained(
        tmp_path / "run" / "hf-generator", output_loading_info=True
    )
    assert not any(info.values()), info
    # a quarter of 2 heads of 16: one head of 8
    assert gen.config.hidden_size == 8 and disc.config.hidden_size == 32 and gen.config.embedding_size == 16
    torch.testing.assert_close(
        gen.electra.embeddings.word_embeddings.weight, disc.electra.embeddings.word_embeddings.weight
    )
    from bertforge import BertForReplacedTokenDetection
    from bertforge.pipelines import pipeline
    from bertforge.tokenization import load_tokenizer

    tok = load_tokenizer(tmp_path / "run" / "hf")
    batch = tok(["winter river music", "a quiet village"], padding=True, return_tensors="pt")
    ours = BertForReplacedTokenDetection.from_pretrained(tmp_path / "run" / "hf")
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, disc.eval()(**batch).logits, atol=1e-5, rtol=1e-5)
    filled = pipeline("fill-mask", model=str(tmp_path / "run" / "hf-generator"))(f"the quiet {tok.mask_token}.")
    assert len(filled) == 5 and all("token_str" in f for f in filled)


@pytest.mark.slow
def test_two_processes_match_one(corpus, tmp_path):  # noqa: F811
    cfg = electra_run(corpus, train_iters=8)
    single = pretrain(cfg, show_progress=False).losses
    out = tmp_path / "losses.json"
    mp.start_processes(_worker, args=(2, _free_port(), cfg.to_dict(), str(out)), nprocs=2, start_method="spawn")
    double = json.loads(out.read_text())
    assert len(double) == 8
    for a, b in zip(single, double):
        assert abs(a - b) < 1e-4 * max(1.0, abs(a)), (single, double)


def test_the_command_line_trains_electra_with_its_own_flags(corpus, tmp_path, capsys):  # noqa: F811
    from bertforge.cli.main import main

    line = (
        "pretrain --objective electra --generator-size 0.5 --rtd-weight 20 --embedding-size 16 --num-layers 2 "
        "--hidden-size 32 --num-attention-heads 2 --seq-length 48 --max-position-embeddings 64 --micro-batch-size 4 "
        f"--train-iters 4 --lr 1e-3 --data-path {corpus['prefix']} --vocab-file {corpus['vocab']} --split 90,10,0 "
        f"--num-workers 0 --eval-iters 1 --log-interval 2 --save {tmp_path / 'run'} --no-demo --fp32"
    )
    assert main(line.split()) == 0
    disc = json.loads((tmp_path / "run" / "hf" / "config.json").read_text())
    gen = json.loads((tmp_path / "run" / "hf-generator" / "config.json").read_text())
    assert disc["architectures"] == ["ElectraForPreTraining"] and gen["architectures"] == ["ElectraForMaskedLM"]
    assert (disc["embedding_size"], disc["hidden_size"], gen["hidden_size"]) == (16, 32, 16)
    last = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert "eval_rtd_accuracy" in last or "rtd_loss" in last
    assert main([*line.split(), "--fsdp", "--overwrite"]) == 1
    assert "--fsdp is not supported with it" in capsys.readouterr().err
