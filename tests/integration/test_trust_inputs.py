"""What a careless or unlucky user meets: files a teammate can read, malformed checkpoint configs, contradicting or
out-of-range flags, odd pipeline arguments. Each gets one line naming the file, field, flag or argument."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest
import torch

import bertforge
from bertforge.cli.main import build_parser, main
from bertforge.cli.pretrain import build_config
from bertforge.config import PretrainConfig
from bertforge.model import BertForSequenceClassification, BertModel
from bertforge.tokenization import BertTokenizer
from bertforge.training.pretrain import pretrain
from tests.conftest import tiny_config

from .test_pretrain import corpus, tiny_run  # noqa: F401  (the session corpus fixture)


# ---- files a team can read ---------------------------------------------------------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root: str) -> dict[str, int]:
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            out[os.path.relpath(path, root)] = stat.S_IMODE(os.stat(path).st_mode)
    return out


def test_a_run_writes_files_with_the_modes_the_umask_gives(corpus, tmp_path, umask_022):  # noqa: F811
    run = str(tmp_path / "run")
    pretrain(tiny_run(corpus, run, train_iters=4, save_interval=2, log_interval=2), show_progress=False)
    modes = _modes(run)
    for wanted in ("hf/config.json", "hf/model.safetensors", "metrics.jsonl", "curves.png", "checkpoints/latest"):
        assert modes[wanted] == 0o644, (wanted, oct(modes[wanted]))
    assert modes["hf"] == 0o755 and modes["checkpoints"] == 0o755
    checkpoint_dirs = [k for k in modes if k.startswith("checkpoints/iter_") and k.count("/") == 1]
    assert checkpoint_dirs and all(modes[k] == 0o755 for k in checkpoint_dirs)
    wrong = {k: oct(m) for k, m in modes.items() if m not in (0o644, 0o755)}
    assert not wrong, wrong


def test_a_stricter_umask_is_kept(tmp_path):
    old = os.umask(0o027)
    try:
        BertModel(tiny_config()).save_pretrained(tmp_path / "m")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m" / "model.safetensors").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "m" / "config.json").st_mode) == 0o640


# ---- malformed config.json ---------------------------------------------------------------------------------------
@pytest.fixture
def six_layers(tmp_path):
    path = tmp_path / "six"
    torch.manual_seed(0)
    BertModel(tiny_config(num_hidden_layers=6)).save_pretrained(path)
    return path


def _edit(path, change) -> str:
    file = path / "config.json"
    data = json.loads(file.read_text())
    change(data)
    file.write_text(json.dumps(data))
    return str(file)


def test_a_config_that_lost_its_layer_count_is_refused_not_loaded_half_random(six_layers):
    _edit(six_layers, lambda d: d.pop("num_hidden_layers"))
    with pytest.raises(ValueError, match=r"disagree on the encoder: 72 encoder tensor\(s\) the config needs") as e:
        BertModel.from_pretrained(six_layers)
    assert (
        str(six_layers) in str(e.value) and "encoder.layer.6." in str(e.value) and "num_hidden_layers" in str(e.value)
    )
    _edit(six_layers, lambda d: d.update(num_hidden_layers=4))  # fewer layers than the weights hold
    with pytest.raises(ValueError, match=r"the config has no place for \(encoder\.layer\.4\."):
        BertModel.from_pretrained(six_layers)


def test_encoder_shapes_are_never_reinitialized_only_heads(six_layers):
    _edit(six_layers, lambda d: d.update(intermediate_size=40))
    with pytest.raises(
        ValueError,
        match=r"intermediate\.dense\.(weight|bias) .* has shape .*; config\.json must describe these weights",
    ):
        BertForSequenceClassification.from_pretrained(six_layers, ignore_mismatched_sizes=True)


def test_a_missing_head_still_starts_fresh(six_layers, caplog):
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        model = BertForSequenceClassification.from_pretrained(six_layers, num_labels=3)
    assert "classifier.weight" in model.load_report.missing and "newly initialized" in caplog.text


def test_absurd_sizes_are_refused_before_any_allocation(six_layers):
    file = _edit(six_layers, lambda d: d.update(max_position_embeddings=10_000_000_000))
    with pytest.raises(ValueError, match=r"config\.json: BertConfig\.max_position_embeddings is 10,000,000,000") as e:
        BertModel.from_pretrained(six_layers)
    assert file in str(e.value)
    _edit(six_layers, lambda d: d.update(max_position_embeddings=512, hidden_size=32768, num_attention_heads=8))
    _edit(six_layers, lambda d: d.update(num_hidden_layers=1000, intermediate_size=200000))
    with pytest.raises(ValueError, match="describes about .* parameters"):
        BertModel.from_pretrained(six_layers)
    _edit(six_layers, lambda d: d.update(num_hidden_layers=6, hidden_size=32, intermediate_size=37, num_labels=10**12))
    with pytest.raises(ValueError, match=r"num_labels is 1,000,000,000,000, beyond any classifier"):
        BertModel.from_pretrained(six_layers)  # refused before a name is generated for each class


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[1, 2]", r"config\.json: the top level is a JSON list"),
        (b'{"hidden_size": 32, "x": "\xff"}', r"config\.json: byte \d+ is not UTF-8"),
        (None, r"config\.json: BertConfig\.initializer_range must be set"),
        (b'{"hidden_size": "wide"}', r"config\.json: BertConfig\.hidden_size must be an integer"),
    ],
)
def test_config_errors_name_the_file_and_the_field(six_layers, content, message):
    if content is None:
        _edit(six_layers, lambda d: d.update(initializer_range=None))
    else:
        (six_layers / "config.json").write_bytes(content)
    with pytest.raises(ValueError, match=message) as e:
        BertModel.from_pretrained(six_layers)
    assert str(six_layers / "config.json") in str(e.value)


def test_bert_weights_labelled_roberta_are_warned_about(six_layers, caplog):
    _edit(six_layers, lambda d: d.update(model_type="roberta", pad_token_id=1))
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        BertModel.from_pretrained(six_layers)
    assert "says model_type roberta, but row 1 of the position table" in caplog.text
    assert "look like BERT weights" in caplog.text


def test_roberta_weights_load_quietly_and_labelled_bert_are_warned_about(tmp_path, caplog):
    transformers = pytest.importorskip("transformers")
    config = transformers.RobertaConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    transformers.RobertaModel(config).save_pretrained(tmp_path / "r")
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        BertModel.from_pretrained(tmp_path / "r")
    assert "position table" not in caplog.text
    _edit(tmp_path / "r", lambda d: d.update(model_type="bert"))
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        BertModel.from_pretrained(tmp_path / "r")
    assert "says model_type bert, but row 1 of the position table is all zeros" in caplog.text


def test_a_roberta_model_built_here_keeps_its_padding_position_zero():
    model = BertModel(tiny_config(model_type="roberta", pad_token_id=1, max_position_embeddings=66))
    assert torch.count_nonzero(model.embeddings.position.weight[1]) == 0
    assert torch.count_nonzero(model.embeddings.position.weight[2]) > 0


# ---- flags -------------------------------------------------------------------------------------------------------
def _parse_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_contradicting_precision_flags_are_refused():
    for other in ("--bf16", "--fp16"):
        args = build_parser().parse_args(["pretrain", other, "--fp32"])
        with pytest.raises(ValueError, match=f"--fp32 and {other} contradict each other"):
            build_config(args)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "fill-mask", "--model", "m", "--batch-size", "0", "a"], "argument --batch-size: must be >= 1, got 0"),
        (["run", "fill-mask", "--model", "m", "--max-length", "-5", "a"], "argument --max-length: must be >= 4"),
        (["run", "fill-mask", "--model", "m", "--top-k", "-1", "a"], "argument --top-k: must be >= 0"),
        (["pretrain", "--lr", "nan"], "argument --lr: must be a finite number, got nan"),
        (["pretrain", "--lr", "inf"], "argument --lr: must be a finite number"),
        (["pretrain", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["finetune", "classification", "--seed", "99999999999"], "argument --seed: must be <= 4294967295"),
        (["evaluate", "glue", "--model", "m", "--output", "o", "--seeds", "0"], "argument --seeds: must be >= 1"),
    ],
)
def test_out_of_range_flags_name_the_flag(argv, message, capsys):
    err = _parse_error(argv, capsys)
    assert message in err and "Traceback" not in err


def test_a_recipe_with_quoted_numbers_and_a_single_path_reads_as_meant(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: '0.001'\ndata:\n  data_path: corpus_text_sentence\ntrain:\n  seed: '7'\n")
    with pytest.raises(ValueError, match=r"r\.yaml: train\.seed must be an integer, got '7'"):
        PretrainConfig().merged_yaml(str(recipe))
    recipe.write_text("optim:\n  lr: '0.001'\ndata:\n  data_path: corpus_text_sentence\n")
    cfg = PretrainConfig().merged_yaml(str(recipe))
    assert cfg.optim.lr == 0.001 and cfg.data.data_path == ["corpus_text_sentence"]
    recipe.write_text("optim:\n  lr: .nan\n")
    with pytest.raises(ValueError, match=r"r\.yaml: optim\.lr must be a finite number"):
        PretrainConfig().merged_yaml(str(recipe))


def test_finetune_refuses_a_window_longer_than_the_model(tmp_path, tiny_checkpoint):
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"text number {i}\t{i % 2}\n" for i in range(20)))
    from bertforge.training.finetune import finetune_classification

    with pytest.raises(ValueError, match=r"--max-length 100000 exceeds the 512 tokens"):
        finetune_classification(
            str(tiny_checkpoint), str(train), None, str(tmp_path / "out"), validation_split=0.2, max_length=100000
        )
    assert not (tmp_path / "out").exists()


# ---- pipeline arguments ------------------------------------------------------------------------------------------
@pytest.fixture
def mlm_dir(tmp_path, minilm):
    torch.manual_seed(0)
    bertforge.BertForMaskedLM(tiny_config(vocab_size=30522, max_position_embeddings=64)).save_pretrained(tmp_path)
    BertTokenizer.from_pretrained(minilm).save_pretrained(tmp_path)
    return str(tmp_path)


@pytest.fixture
def nli_dir(tmp_path, minilm):
    torch.manual_seed(0)
    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    config = tiny_config(vocab_size=30522, max_position_embeddings=64, id2label=labels)
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    BertTokenizer.from_pretrained(minilm).save_pretrained(tmp_path)
    return str(tmp_path)


def test_a_lone_surrogate_is_named_not_a_tokenizer_type_error(mlm_dir):
    for task, text in (("fill-mask", "a [MASK] \ud800"), ("feature-extraction", "\ud800")):
        with pytest.raises(ValueError, match=r"input 0 is not valid Unicode text: character \d+ is a lone surrogate"):
            bertforge.pipeline(task, model=mlm_dir)(text)


def test_zero_shot_arguments(nli_dir):
    pipe = bertforge.pipeline("zero-shot-classification", model=nli_dir)
    with pytest.raises(ValueError, match="needs candidate_labels"):
        pipe("text", candidate_labels=[])
    with pytest.raises(ValueError, match="input is an empty list"):
        pipe([], candidate_labels=["a", "b"])
    with pytest.raises(ValueError, match=r"hypothesis_template '\{0\} \{1\}' must hold exactly one \{\}"):
        pipe("text", candidate_labels=["a"], hypothesis_template="{0} {1}")
    with pytest.raises(ValueError, match="candidate_labels 1 is an empty candidate label"):
        pipe("text", candidate_labels=["a", " "])
    result = pipe("text", candidate_labels=["a", "b"], hypothesis_template="About {{braces}}: {}.")
    assert sorted(result["labels"]) == ["a", "b"]


def test_counts_out_of_range_are_named(mlm_dir):
    with pytest.raises(ValueError, match="top_k must be an integer >= 1, got -1"):
        bertforge.pipeline("fill-mask", model=mlm_dir)("a [MASK].", top_k=-1)
    with pytest.raises(ValueError, match="max_length must be an integer >= 4, got 0"):
        bertforge.pipeline("feature-extraction", model=mlm_dir, max_length=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        bertforge.pipeline("fill-mask", model=mlm_dir, batch_size=0)


def test_inference_defaults_to_fp32_and_auto_is_one_word_away(mlm_dir, monkeypatch):
    monkeypatch.setenv("BERTFORGE_BF16", "1")  # as on a CPU with native bf16
    assert bertforge.pipeline("fill-mask", model=mlm_dir).dtype == torch.float32
    assert bertforge.pipeline("fill-mask", model=mlm_dir, dtype="auto").dtype == torch.bfloat16
    args = build_parser().parse_args(["run", "fill-mask", "a [MASK].", "--model", mlm_dir])
    assert args.dtype == "fp32"
