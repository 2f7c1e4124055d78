"""ALBERT pretrained from the command line: a SentencePiece vocabulary trained and used to preprocess the corpus
(Megatron's --tokenizer-type SentencePieceTokenizer --tokenizer-model), --family albert with layers shared in groups,
sentence-order prediction as the family's default second objective, the loss falling, an exact resume, and an export
that transformers loads as AlbertForPreTraining with its tokenizer, which fill-mask and `bertforge info` run on."""

from __future__ import annotations

import json

import pytest
import torch

from bertforge.cli.main import main
from bertforge.tokenization import AlbertTokenizer, load_tokenizer, train_vocab
from tests.integration.test_pretrain import WORDS


@pytest.fixture(scope="module")
def sp_corpus(tmp_path_factory):
    import random

    root = tmp_path_factory.mktemp("sp")
    rng = random.Random(0)
    docs = [
        {
            "text": " ".join(
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "." for _ in range(6)
            )
        }
        for _ in range(300)
    ]
    src = root / "docs.jsonl"
    src.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    train_vocab(
        texts=(d["text"] for d in docs), vocab_size=300, model="unigram", output=root / "sp", show_progress=False
    )
    assert main(
        [
            "preprocess", "--input", str(src), "--output-prefix", str(root / "c"), "--tokenizer-type",
            "SentencePieceTokenizer", "--tokenizer-model", str(root / "sp"),
        ]
    ) == 0  # fmt: skip
    return {"prefix": str(root / "c_text_sentence"), "tokenizer": str(root / "sp")}


def _line(corpus, save, iters: int) -> list[str]:
    return (
        "pretrain --family albert --embedding-size 16 --num-layers 4 --num-hidden-groups 2 --hidden-size 32 "
        "--num-attention-heads 2 --seq-length 48 --max-position-embeddings 64 --micro-batch-size 8 --lr 2e-3 "
        f"--train-iters {iters} --data-path {corpus['prefix']} --tokenizer-type SentencePieceTokenizer "
        f"--tokenizer-model {corpus['tokenizer']} --split 90,10,0 --num-workers 0 --eval-iters 1 --log-interval 5 "
        f"--save-interval 10 --save {save} --no-demo --fp32"
    ).split()


def test_albert_pretrains_with_sop_resumes_exactly_and_exports(sp_corpus, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    assert main(_line(sp_corpus, tmp_path / "run", 20)) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["mlm_loss"] for r in rows if "mlm_loss" in r]
    assert "binary_loss" in rows[0] and losses[-1] < losses[0]  # SOP, the family's default, and a falling MLM loss
    saved = json.loads((tmp_path / "run" / "hf" / "config.json").read_text())
    assert saved["architectures"] == ["AlbertForPreTraining"]
    assert (saved["embedding_size"], saved["num_hidden_groups"], saved["inner_group_num"]) == (16, 2, 1)
    model, info = transformers.AlbertForPreTraining.from_pretrained(tmp_path / "run" / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "run" / "hf")
    ours = load_tokenizer(tmp_path / "run" / "hf")
    assert isinstance(ours, AlbertTokenizer)
    text = "the quick words of a sentence."
    assert ours(text)["input_ids"] == theirs(text)["input_ids"]
    # a run stopped at step 10 and resumed ends where the uninterrupted one did
    first = [r for r in rows if r.get("step") == 20 and "mlm_loss" in r]
    assert main([*_line(sp_corpus, tmp_path / "resumed", 20), "--exit-interval", "10"]) == 0
    assert main([*_line(sp_corpus, tmp_path / "resumed", 20), "--load", str(tmp_path / "resumed")]) == 0
    again = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    second = [r for r in again if r.get("step") == 20 and "mlm_loss" in r]
    assert first and second and second[-1]["mlm_loss"] == pytest.approx(first[-1]["mlm_loss"], rel=1e-6)
    from bertforge import pipeline

    fill = pipeline("fill-mask", model=str(tmp_path / "run" / "hf"))
    assert len(fill("the [MASK] of a sentence.", top_k=2)) == 2
    capsys.readouterr()
    assert main(["info", str(tmp_path / "run" / "hf")]) == 0
    out = capsys.readouterr().out
    assert "family       albert" in out and "shared" in out
    with torch.no_grad():
        ids = torch.tensor([ours(text)["input_ids"]])
        assert model.eval()(input_ids=ids).sop_logits.shape == (1, 2)


def test_info_measures_the_variants_table(capsys):
    """The five base shapes built at their true sizes (random weights): parameters, embeddings, speed beside the
    table's figures."""
    assert main(["info", "--variants", "--rounds", "1", "--batch-size", "1", "--seq-length", "8"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert list(rows) == [
        "bert-base-uncased",
        "roberta-base",
        "distilbert-base-uncased",
        "electra-base-discriminator",
        "albert-base-v2",
    ]
    assert rows["bert-base-uncased"][1:4] == ["109.5M", "23.8M", "1.00x"]
    assert rows["albert-base-v2"][1:3] == ["11.7M", "4.0M"] and rows["albert-base-v2"][-2:] == ["12M,", "0.9x"]
    assert main(["info", "--variants", "--preset", "base"]) == 1  # one of the three, not two
