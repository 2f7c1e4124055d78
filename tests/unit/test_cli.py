"""The console script: --help, --version, and the sub-commands that exist so far."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import bertforge
from bertforge.cli.main import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and bertforge.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "info", "tokenizer"):
        assert command in out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "bertforge", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"bertforge {bertforge.__version__}"


def test_tokenizer_train_and_encode(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"line {i} of a tiny corpus about cats and dogs." for i in range(200)))
    assert (
        main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "120", "--output", str(tmp_path / "tok")])
        == 0
    )
    assert (tmp_path / "tok" / "vocab.txt").exists()
    assert main(["tokenizer", "encode", "--model", str(tmp_path / "tok"), "cats and dogs"]) == 0
    assert '"[CLS]"' in capsys.readouterr().out


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bertforge info: error:") and "config.json" in err


def test_info_and_demo_on_a_saved_model(tmp_path, capsys, minilm):
    assert main(["info", str(minilm)]) == 0
    out = capsys.readouterr().out
    assert "6 layers, hidden 384" in out and "parameters   22,713,216\n" in out
    assert main(["demo", "--model", str(minilm)]) == 0
    out = capsys.readouterr().out
    assert "last_hidden_state (3," in out and "109,482,240" in out and "; 22,713,216 parameters" in out  # as info
    assert main(["info", "--preset", "base"]) == 0  # no checkpoint: the sizes and count of a preset
    out = capsys.readouterr().out
    assert "12 layers, hidden 768" in out and "parameters   109,482,240" in out
    assert main(["info"]) == 1 and "give one of a checkpoint" in capsys.readouterr().err


def test_preprocess_command(tmp_path, minilm, capsys):
    src = tmp_path / "docs.jsonl"
    src.write_text('{"text": "One sentence. Two sentences."}\n{"text": "Another document here."}\n')
    assert (
        main(
            [
                "preprocess",
                "--input",
                str(src),
                "--output-prefix",
                str(tmp_path / "c"),
                "--vocab-file",
                str(minilm / "vocab.txt"),
                "--tokenizer-type",
                "BertWordPieceLowerCase",
                "--split-sentences",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert "2 documents" in capsys.readouterr().out
    assert (tmp_path / "c_text_sentence.bin").exists() and (tmp_path / "c_text_sentence.idx").exists()
    with pytest.raises(SystemExit):
        main(["preprocess", "--input", str(src), "--output-prefix", "x", "--vocab-file", "v", "--partitions", "2"])
    assert "unrecognized arguments: --partitions" in capsys.readouterr().err


def test_run_command_texts_and_jsonl(tmp_path, minilm, capsys):
    import json

    import torch

    import bertforge
    from bertforge.cli.main import main
    from bertforge.tokenization import BertTokenizer
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    path = tmp_path / "cls"
    bertforge.BertForSequenceClassification(tiny_config(vocab_size=30522, num_labels=2)).save_pretrained(path)
    BertTokenizer.from_pretrained(minilm).save_pretrained(path)
    assert main(["run", "sentiment-analysis", "--model", str(path), "great film", "awful film"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["input"] for x in lines] == ["great film", "awful film"]
    assert lines[0]["result"]["label"] in ("LABEL_0", "LABEL_1")
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "a"}\n"b"\n{"text": "c", "text_pair": "d"}\n')
    assert (
        main(
            [
                "run",
                "text-classification",
                "--model",
                str(path),
                "--input",
                str(inputs),
                "--output",
                str(tmp_path / "out.jsonl"),
            ]
        )
        == 0
    )
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3
    inputs.write_text('{"text": "a"}\n{"txt": "b"}\n')
    assert main(["run", "text-classification", "--model", str(path), "--input", str(inputs)]) == 1
    assert "in.jsonl: line 2: needs a 'text' field" in capsys.readouterr().err
    assert main(["run", "fill-mask", "--model", str(path), "a [MASK] b"]) == 1
    assert "no fill-mask head" in capsys.readouterr().err


def test_tune_malloc_switch(monkeypatch):
    import sys

    from bertforge.utils import tune_malloc

    monkeypatch.setenv("BERTFORGE_NO_MALLOC_TUNING", "1")
    assert tune_malloc() is False
    monkeypatch.delenv("BERTFORGE_NO_MALLOC_TUNING")
    if sys.platform.startswith("linux"):
        assert tune_malloc() is True  # glibc accepted the trim threshold and mmap off
        assert tune_malloc(use_mmap=True) is True


def test_bf16_warns_where_it_is_emulated(monkeypatch, caplog):
    import logging

    from bertforge import utils

    monkeypatch.setattr(utils, "fast_bf16", lambda device_type="cpu": False)
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        assert utils.warn_if_emulated_bf16("cpu", "--bf16") is True
    assert "--bf16: this CPU has no native bf16 matrix units" in caplog.text
    monkeypatch.setattr(utils, "fast_bf16", lambda device_type="cpu": True)
    assert utils.warn_if_emulated_bf16("cpu", "--bf16") is False


def test_a_new_config_field_appears_as_a_flag_with_no_other_edit():
    """The CLI is generated from the config dataclasses: a field added to a section is a flag, typed, range-checked
    and documented by its docstring."""
    import argparse
    import dataclasses

    from bertforge.cli.fields import add_section, section_values
    from bertforge.config import TrainConfig, opt

    @dataclasses.dataclass(kw_only=True)
    class Extended(TrainConfig):
        warm_restarts: int = opt(2, minimum=1)
        """Restarts of the schedule, in cycles."""

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_section(parser, "train", Extended())
    assert "Restarts of the schedule, in cycles. (default: 2)" in parser.format_help()
    args = parser.parse_args(["--warm-restarts", "5", "--batch-size", "3"])
    assert section_values(args) == {"train": {"warm_restarts": 5, "micro_batch_size": 3}}
    with pytest.raises(argparse.ArgumentError, match="must be >= 1"):
        parser.parse_args(["--warm-restarts", "0"])


def test_every_config_field_is_a_flag():
    import dataclasses

    from bertforge.cli.fields import flag_of
    from bertforge.cli.finetune import NOT_FOR_FINETUNING
    from bertforge.config import AdaptConfig, DataConfig, OptimConfig, TaskConfig, TrainConfig
    from bertforge.model.config import BertConfig

    def flags(*command):
        parser = bertforge.cli.main.build_parser()
        for name in command:
            parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        return {s for a in parser._actions for s in a.option_strings}

    pretrain = flags("pretrain")
    by_task = {task: flags("finetune", task) for task in ("classification", "ner", "qa")}
    finetune = set().union(*by_task.values())
    # each task shows its own task flags only
    assert "--regression" in by_task["classification"] and "--regression" not in by_task["ner"]
    assert "--doc-stride" in by_task["qa"] and "--doc-stride" not in by_task["classification"]
    assert "--scheme" in by_task["ner"] and not ({"--scheme", "--label-names"} & by_task["qa"])

    def expected(section):  # a switch that defaults to True is written --no-NAME
        return {
            flag_of(f).replace("--", "--no-") if f.default is True else flag_of(f) for f in dataclasses.fields(section)
        }

    for section in (DataConfig, OptimConfig, TrainConfig):
        assert expected(section) <= pretrain
    assert "--no-export-hf" in pretrain and "--num-layers" in pretrain and "--ffn-hidden-size" in pretrain
    assert {flag_of(f) for f in dataclasses.fields(BertConfig) if f.metadata.get("flag")} <= pretrain
    for section in (TaskConfig, AdaptConfig, OptimConfig):
        assert expected(section) <= finetune
    not_fields = {"--" + name.replace("_", "-") for name in NOT_FOR_FINETUNING} | {"--no-export-hf"}
    assert expected(TrainConfig) - not_fields <= finetune and not (not_fields & finetune)
    assert {"--batch-size", "--warmup-ratio", "--doc-stride"} <= finetune


@pytest.mark.parametrize(
    "argv, message",
    [
        (["pretrain", "--micro-batch-size", "0"], "argument --micro-batch-size/--batch-size: must be >= 1"),
        (["pretrain", "--lr", "fast"], "argument --lr: 'fast' is not a number"),
        (["pretrain", "--binary-head", "xyz"], "argument --binary-head: invalid choice"),
        (
            [
                "finetune",
                "ner",
                "--model",
                "m",
                "--train",
                "t",
                "--validation",
                "v",
                "--output",
                "o",
                "--strategy",
                "x",
            ],
            "argument --strategy: invalid choice",
        ),
        (
            [
                "finetune",
                "qa",
                "--model",
                "m",
                "--train",
                "t",
                "--validation",
                "v",
                "--output",
                "o",
                "--lora-targets",
                "query,nope",
            ],
            "argument --lora-targets: 'query,nope': choose a comma list",
        ),
    ],
)
def test_bad_flag_values_fail_by_name_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "amx, avx512_bf16, expected", [(False, False, False), (False, True, True), (True, False, True), (True, True, True)]
)
def test_native_bf16_detection_with_the_probes_mocked(monkeypatch, amx, avx512_bf16, expected):
    import torch

    from bertforge import utils

    monkeypatch.delenv("BERTFORGE_BF16", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    assert utils.fast_bf16("cpu") is expected
    monkeypatch.setenv("BERTFORGE_BF16", "0")
    assert utils.fast_bf16("cpu") is False
    monkeypatch.setenv("BERTFORGE_BF16", "1")
    assert utils.fast_bf16("cpu") is True


@pytest.mark.parametrize("machine", ["avx2", "avx512_bf16", "amx"])
def test_training_defaults_to_bf16_where_it_is_native_and_inference_to_fp32(monkeypatch, tmp_path, machine):
    """No precision flag: an AVX2-only CPU trains in fp32, AVX512-BF16 and AMX in bf16; inference is fp32 everywhere
    (transformers' numbers), and dtype="auto" follows the machine; a flag or a model object the caller loaded decides
    for itself."""
    import torch

    from bertforge.cli.main import build_parser
    from bertforge.cli.pretrain import build_config
    from bertforge.config import FinetuneConfig, TrainConfig
    from tests.conftest import tiny_config

    monkeypatch.delenv("BERTFORGE_BF16", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: machine == "amx", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: machine == "avx512_bf16", raising=False)
    native = machine != "avx2"
    assert TrainConfig(device="cpu").use_bf16 is native
    assert FinetuneConfig.build(device="cpu").train.use_bf16 is native
    assert TrainConfig(device="cpu", bf16=False).use_bf16 is False
    assert TrainConfig(device="cpu", bf16=True).use_bf16 is True
    parser = build_parser()
    for flags, expected in (([], native), (["--fp32"], False), (["--no-bf16"], False), (["--bf16"], True)):
        cfg, _ = build_config(parser.parse_args(["pretrain", "--device", "cpu", *flags]))
        assert cfg.train.use_bf16 is expected, flags
    torch.manual_seed(0)
    model = bertforge.BertForSequenceClassification(tiny_config(vocab_size=99))
    model.save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefgh")))
    pipe = bertforge.pipeline("text-classification", model=str(tmp_path))
    assert pipe.dtype == torch.float32 and next(pipe.model.parameters()).dtype == torch.float32
    auto = bertforge.pipeline("text-classification", model=str(tmp_path), dtype="auto")
    assert auto.dtype == (torch.bfloat16 if native else torch.float32)
    assert next(auto.model.parameters()).dtype == auto.dtype
    kept = bertforge.pipeline("text-classification", model=model, tokenizer=str(tmp_path))
    assert next(kept.model.parameters()).dtype == torch.float32


def test_native_bf16_detection_agrees_with_this_cpus_flags(monkeypatch):
    """On Linux, /proc/cpuinfo lists avx512_bf16 / amx_bf16 where the CPU has them: the probe must say the same."""
    from bertforge import utils

    monkeypatch.delenv("BERTFORGE_BF16", raising=False)
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo here")
    assert utils.fast_bf16("cpu") == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_config_values_are_checked_by_type_and_range(tmp_path):
    from bertforge.config import FinetuneConfig, PretrainConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 1e-3\n")  # PyYAML reads 1e-3 as a string: taken as the number it spells
    assert PretrainConfig.from_yaml(str(recipe)).optim.lr == 1e-3
    for text, message in [
        ("train:\n  bf16: 'no'\n", "train.bf16 must be true or false, got 'no'"),
        ("train:\n  eval_iters: 0\n", "train.eval_iters must be >= 1"),
        ("optim:\n  lr_warmup_fraction: 2\n", "optim.lr_warmup_fraction must be <= 1.0"),
        ("train:\n  micro_batch_size: eight\n", "train.micro_batch_size must be an integer"),
        ("model:\n  hidden_dropout_prob: '0.1'\n", "BertConfig.hidden_dropout_prob must be a number"),
    ]:
        recipe.write_text(text)
        with pytest.raises(ValueError, match=message):
            PretrainConfig.from_yaml(str(recipe))
    with pytest.raises(ValueError, match="adapt.lora_r must be >= 1"):
        FinetuneConfig.build(lora_r=0, strategy="lora")
    with pytest.raises(ValueError, match="task.epochs must be >= 1"):
        FinetuneConfig.build(epochs=0)


def test_a_cuda_device_without_a_gpu_is_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from bertforge.utils import default_device

    with pytest.raises(ValueError, match="no CUDA device is available here"):
        default_device("cuda")
    with pytest.raises(ValueError, match="not a device name"):
        default_device("gpu0")


def test_flag_errors_are_one_line_and_name_megatron_flags_and_near_misses(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "ner", "--model", "m"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "required: --train, --output" in err
    with pytest.raises(SystemExit):
        main(["pretrain", "--use-flash-attn", "--num-layer", "2"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--use-flash-attn is a Megatron-LM flag that bertforge does not implement" in err
    assert "--num-layer: did you mean --num-layers?" in err
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    help_text = capsys.readouterr().out
    assert "%%" not in help_text and "(default: None)" not in help_text and "(default: 1000)" in help_text
