"""RoBERTa, DistilBERT, ELECTRA and ALBERT checkpoints through everything a BERT goes through: fine-tuning on every task
with the strategies, the saved best model, pipelines, `bertforge info` and `convert`, and peft reading a LoRA adapter
(tiny random models built here; real data slices from the benchmark data)."""

from __future__ import annotations

import json

import pytest
import torch

from bertforge import load_model, pipeline
from bertforge.cli.main import main
from bertforge.config import FinetuneConfig
from bertforge.model import BertConfig, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification
from bertforge.tokenization import AlbertTokenizer, RobertaTokenizer, load_tokenizer, train_vocab
from bertforge.training.finetune import finetune_classification, finetune_ner, finetune_qa
from tests.conftest import DATA_DIR, entity_f1, squad_exact_match
from tests.integration.test_finetune_tasks import FAST, squad_slice


@pytest.fixture(scope="module", params=["roberta", "distilbert", "electra", "albert"])
def family_checkpoint(request, tmp_path_factory):
    """A tiny random masked LM of the family with a vocabulary trained on WikiText-2 (BPE for RoBERTa, SentencePiece
    unigram for ALBERT, WordPiece for the others), saved as a Hugging Face directory."""
    wiki = DATA_DIR / "wikitext-2" / "valid.txt"
    if not wiki.exists():
        pytest.skip("benchmark data not found (data/ in the checkout, or $BERTFORGE_DATA)")
    family = request.param
    path = tmp_path_factory.mktemp(family)
    model = {"roberta": "bpe", "albert": "unigram"}.get(family, "wordpiece")
    tok = train_vocab([wiki], vocab_size=2000, model=model, output=path, show_progress=False)
    extra = dict(pad_token_id=1, type_vocab_size=1, max_position_embeddings=258) if family == "roberta" else {}
    if family == "electra":
        extra = dict(embedding_size=16)  # narrower than the hidden size: the embeddings_project path
    if family == "albert":
        extra = dict(embedding_size=16, num_hidden_layers=4, num_hidden_groups=2)  # 4 layers from 2 shared ones
    config = BertConfig(
        model_type=family,
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        **{"max_position_embeddings": 256, "num_hidden_layers": 2, **extra},
    )
    torch.manual_seed(0)
    # ALBERT's checkpoints are its pretraining model's: the pooler that its sentence heads read comes with them
    (BertForPreTraining if family == "albert" else BertForMaskedLM)(config).save_pretrained(path)
    return family, path


def test_the_directory_is_the_family_s_own(family_checkpoint, capsys):
    family, path = family_checkpoint
    saved = json.loads((path / "config.json").read_text())
    assert saved["model_type"] == family
    prefix = {"roberta": "Roberta", "distilbert": "DistilBert", "electra": "Electra", "albert": "Albert"}[family]
    assert saved["architectures"] == [prefix + ("ForPreTraining" if family == "albert" else "ForMaskedLM")]
    if family == "distilbert":
        assert {"dim", "n_layers", "n_heads", "hidden_dim"} <= set(saved) and "hidden_size" not in saved
    tok = load_tokenizer(path)
    assert isinstance(tok, RobertaTokenizer) == (family == "roberta")
    assert isinstance(tok, AlbertTokenizer) == (family == "albert")
    assert main(["info", str(path)]) == 0
    assert f"family       {family}" in capsys.readouterr().out


@pytest.mark.parametrize("strategy", ["full", "head", "freeze", "lora", "adapter", "prompt", "prefix"])
def test_classification_with_each_strategy(family_checkpoint, strategy, data_dir, tmp_path):
    family, path = family_checkpoint
    sst = data_dir / "glue" / "SST-2"
    for name in ("train", "dev"):
        lines = (sst / f"{name}.tsv").read_text().splitlines()[:65]
        (tmp_path / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    options = {
        "freeze": dict(freeze_layers=1),
        "lora": dict(lora_r=4),
        "adapter": dict(adapter_size=8),
        "prompt": dict(prompt_tokens=4),
        "prefix": dict(prefix_tokens=4),
    }
    cfg = FinetuneConfig.build(**FAST, max_length=48, strategy=strategy, **options.get(strategy, {}))
    out = tmp_path / "out"
    result = finetune_classification(
        str(path),
        str(tmp_path / "train.tsv"),
        str(tmp_path / "dev.tsv"),
        str(out),
        test_file=str(tmp_path / "dev.tsv"),
        cfg=cfg,
        label_names=("negative", "positive"),
        show_progress=False,
    )
    assert result["test_accuracy"] == pytest.approx(result["accuracy"], abs=1e-9)  # best/ reloads to the score
    model = load_model(out / "best", BertForSequenceClassification)  # a checkpoint, or an adapter on its base
    assert model.config.model_type == family and model.config.id2label == {0: "negative", 1: "positive"}
    clf = pipeline("text-classification", model=str(out / "best"))
    assert clf("a gripping, beautifully made film")[0]["label"] in ("negative", "positive")


def test_ner_and_qa(family_checkpoint, data_dir, tmp_path):
    family, path = family_checkpoint
    conll = data_dir / "conll2003"
    sentences = (conll / "eng.testa").read_text().split("\n\n")[:31]
    (tmp_path / "valid.conll").write_text("\n\n".join(sentences) + "\n")
    cfg = FinetuneConfig.build(**FAST, max_length=32, max_train_examples=64)
    ner = finetune_ner(
        str(path),
        str(conll / "eng.train"),
        str(tmp_path / "valid.conll"),
        str(tmp_path / "ner"),
        cfg=cfg,
        show_progress=False,
    )
    preds = [json.loads(x) for x in (tmp_path / "ner" / "predictions_validation.jsonl").read_text().splitlines()]
    assert ner["f1"] == pytest.approx(entity_f1(preds))
    assert all(len(p["prediction"]) == len(p["tokens"]) for p in preds)  # one tag per word, from word ids
    tagger = pipeline("ner", model=str(tmp_path / "ner" / "best"), aggregation_strategy="simple")
    sentence = "EU rejects German call to boycott British lamb ."
    entities = tagger(sentence, ignore_labels=())  # every word tagged, O included: the groups tile the sentence
    covered = {i for e in entities for i in range(e["start"], e["end"])}
    assert entities and all(sentence[e["start"] : e["end"]].strip() for e in entities)
    assert covered >= {i for i, c in enumerate(sentence) if not c.isspace()}
    squad = squad_slice(data_dir, tmp_path / "squad.json", articles=slice(0, 1), paragraphs=2)
    qa = finetune_qa(
        str(path),
        str(squad),
        str(squad),
        str(tmp_path / "qa"),
        cfg=FinetuneConfig.build(**FAST, max_length=128, stride=32),
        show_progress=False,
    )
    qa_preds = [json.loads(x) for x in (tmp_path / "qa" / "predictions_validation.jsonl").read_text().splitlines()]
    assert qa["exact_match"] == pytest.approx(squad_exact_match(qa_preds)) and qa["exact_match"] <= qa["f1"]
    reader = pipeline("question-answering", model=str(tmp_path / "qa" / "best"))
    context = json.loads(squad.read_text())["data"][0]["paragraphs"][0]["context"]
    answer = reader(question="What was the game?", context=context)
    assert context[answer["start"] : answer["end"]] == answer["answer"]  # offsets into the text, as for BERT


def test_fill_mask_and_convert(family_checkpoint, tmp_path, capsys):
    family, path = family_checkpoint
    fill = pipeline("fill-mask", model=str(path))
    tok = fill.tokenizer
    out = fill(f"The city is {tok.mask_token}.", top_k=3)
    assert len(out) == 3 and all(r["sequence"].lower().startswith("the city is") for r in out)
    assert main(["convert", str(path), "--output", str(tmp_path / "c"), "--architecture", "BertModel"]) == 0
    saved = json.loads((tmp_path / "c" / "config.json").read_text())
    assert saved["architectures"] == [
        {
            "roberta": "RobertaModel",
            "distilbert": "DistilBertModel",
            "electra": "ElectraModel",
            "albert": "AlbertModel",
        }[family]
    ]
    capsys.readouterr()


def test_a_lora_adapter_loads_in_peft_on_transformers(family_checkpoint, tmp_path):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from bertforge.config import AdaptConfig
    from bertforge.strategies import apply_strategy, save_adapter

    family, path = family_checkpoint
    ours = BertForSequenceClassification.from_pretrained(path, num_labels=3)
    apply_strategy(ours, AdaptConfig(strategy="lora", lora_r=4, lora_targets=("query", "value", "ffn_out")))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ours.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    save_adapter(
        ours,
        AdaptConfig(strategy="lora", lora_r=4, lora_targets=("query", "value", "ffn_out")),
        tmp_path / "a",
        str(path),
    )
    cls = {
        "roberta": transformers.RobertaForSequenceClassification,
        "distilbert": transformers.DistilBertForSequenceClassification,
        "electra": transformers.ElectraForSequenceClassification,
        "albert": transformers.AlbertForSequenceClassification,
    }
    base = cls[family].from_pretrained(path, num_labels=3)
    pm = peft.PeftModel.from_pretrained(base, tmp_path / "a").eval()
    tok = load_tokenizer(path)
    batch = tok(["a tiny test", "another, longer test sentence"], padding=True, return_tensors="pt")
    inputs = {k: v for k, v in batch.items() if k != "token_type_ids"}
    torch.testing.assert_close(ours.eval()(**inputs).logits, pm(**inputs).logits, atol=1e-5, rtol=1e-5)
