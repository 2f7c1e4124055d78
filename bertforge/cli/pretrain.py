"""``bertforge pretrain``: Megatron-LM's pretrain_bert.py flags, bertforge's own extras, YAML recipes.

Precedence: defaults < --preset < --config FILE.yaml < flags given on the command line. A flag bertforge does not
support is rejected with its name (argparse), never ignored. With no --data-path the run uses the embedded default
corpus (the Python documentation): it trains a vocabulary, preprocesses, pretrains the ``tiny`` preset for a few
minutes, and ends with a held-out MLM accuracy and a fill-mask demo.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from bertforge.config.runs import RECIPES
from bertforge.model.config import PRESETS

UNBOUNDED_ITERS = 10**9
"""train_iters when --train-time is given without --train-iters: the budget ends the run."""


MAIN_JOB_RECIPE = "main-job"
"""The recipe of a run without data arguments (``bertforge/recipes/main-job.yaml``: crammed.yaml for 5 minutes)."""
CONTINUED_LR = 1e-4
"""The main job's peak learning rate with --init-model (continued pretraining of trained weights on the embedded
corpus; BERT's own pretraining peak) unless --lr is given: the recipe's 4e-3 is for random weights."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain BERT (Megatron-LM pretrain_bert.py flags)",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``bertforge pretrain``: one per config field (generated, see ``cli/fields.py``), plus the few
    that are not fields (preset, YAML recipe, Megatron's parallel sizes and switches that set another field)."""
    from bertforge.cli.fields import add_section
    from bertforge.config import DataConfig, DistillConfig, OptimConfig, TrackingConfig, TrainConfig
    from bertforge.model.config import BertConfig

    S = argparse.SUPPRESS  # flags not given stay absent, so that YAML and preset values survive
    m = p.add_argument_group("model (Megatron names)")
    add_section(m, "model", BertConfig(), flagged_only=True)
    m.add_argument("--preset", choices=list(PRESETS), default=S, help="a named size; flags above override it")
    m.add_argument("--tensor-model-parallel-size", type=int, default=S, help="only 1 (data parallelism only)")
    m.add_argument("--pipeline-model-parallel-size", type=int, default=S, help="only 1 (data parallelism only)")
    m.add_argument(
        "--attention-backend",
        choices=("auto",),
        default=S,
        help="only auto: bertforge picks its attention kernel (SDPA, or varlen for padding-free batches)",
    )
    d = p.add_argument_group("data")
    add_section(d, "data", DataConfig())
    d.add_argument("--bert-no-binary-head", action="store_true", default=S, help="MLM only (= --binary-head none)")
    add_section(p.add_argument_group("optimizer and schedule"), "optim", OptimConfig())
    t = p.add_argument_group("training")
    add_section(t, "train", TrainConfig())
    t.add_argument("--fp32", action="store_true", default=S, help="turn off bf16 (e.g. in the default recipe)")
    add_section(p.add_argument_group("distillation (DistilBERT's: a masked-LM teacher)"), "distill", DistillConfig())
    add_section(
        p.add_argument_group("experiment tracking (TensorBoard, Weights & Biases)"), "tracking", TrackingConfig()
    )
    t.add_argument(
        "--config",
        default=S,
        help="YAML recipe with sections model, data, optim, train (and phases); or a shipped recipe: "
        + ", ".join(r for r in RECIPES if r != MAIN_JOB_RECIPE),
    )
    t.add_argument(
        "--work-dir",
        default=S,
        help="where the default corpus and its vocabulary are built (default: ~/.cache/bertforge)",
    )
    t.add_argument("--no-demo", dest="demo", action="store_false", default=S, help="skip the closing fill-mask demo")


def build_config(args: argparse.Namespace):
    """PretrainConfig from parsed flags: defaults < default-corpus recipe < --preset < YAML < flags.

    Returns (config, extras) where extras holds what is not part of the run config (work dir, demo).
    """
    from bertforge.cli.fields import section_values
    from bertforge.config import PretrainConfig

    given = vars(args)
    for flag in ("tensor_model_parallel_size", "pipeline_model_parallel_size"):
        if given.get(flag, 1) != 1:
            raise ValueError(
                f"--{flag.replace('_', '-')} {given[flag]} is not supported: bertforge trains with "
                "data parallelism (DDP) only; use torchrun --nproc_per_node N"
            )
    flags = section_values(args)
    if given.get("bert_no_binary_head"):
        flags.setdefault("data", {})["binary_head"] = "none"
    if given.get("fp32"):
        train = flags.setdefault("train", {})
        other = "--bf16" if train.get("bf16") else "--fp16" if train.get("fp16") else None
        if other:
            raise ValueError(f"--fp32 and {other} contradict each other: give one precision flag")
        train["bf16"] = False
    cfg = PretrainConfig()
    yaml_cfg = cfg.merged_yaml(given["config"]) if "config" in given else None
    default_corpus = "data_path" not in flags.get("data", {}) and (yaml_cfg is None or not yaml_cfg.data.data_path)
    if default_corpus:
        from bertforge.config import recipe_path

        cfg = cfg.merged_yaml(recipe_path(MAIN_JOB_RECIPE))
    if "preset" in given:
        cfg = cfg.merged({"model": dict(PRESETS[given["preset"]])})
    if yaml_cfg is not None:
        cfg = cfg.merged_yaml(given["config"])
    train_flags = flags.get("train", {})
    if "train_time" in train_flags and "train_iters" not in train_flags:
        flags["train"]["train_iters"] = UNBOUNDED_ITERS  # the time decides when the run ends
    if "train_iters" in train_flags and "train_time" not in train_flags:
        flags["train"]["train_time"] = None  # a step count given replaces a recipe's time budget
    cfg = _apply(cfg, flags)
    if default_corpus and cfg.train.init_model and "lr" not in flags.get("optim", {}):
        cfg = cfg.merged({"optim": {"lr": CONTINUED_LR}})  # the recipe's 4e-3 is a rate for random weights
    extras = {"default_corpus": default_corpus, "work_dir": given.get("work_dir"), "demo": given.get("demo", True)}
    return cfg, extras


def _apply(cfg, flags: dict):
    """Set the fields of ``flags`` ({section: {field: value}}) on a PretrainConfig, with Megatron's derived sizes: a new
    hidden size without --ffn-hidden-size gets 4 x hidden, a longer --seq-length raises max_position_embeddings."""
    model = dict(flags.get("model", {}))
    if "hidden_size" in model and "intermediate_size" not in model:
        model["intermediate_size"] = 4 * model["hidden_size"]  # Megatron's default
    seq = flags.get("data", {}).get("seq_length", cfg.data.seq_length)
    if "max_position_embeddings" not in model and seq > cfg.model.max_position_embeddings:
        model["max_position_embeddings"] = seq
    return cfg.merged({**flags, "model": model})


def init_model_vocab(cfg) -> str | None:
    """The vocab.txt of ``--init-model`` (the default corpus is then tokenized with it); None without one."""
    if not cfg.train.init_model:
        return None
    from bertforge.hub import resolve_model

    vocab = os.path.join(resolve_model(cfg.train.init_model), "vocab.txt")
    if not os.path.exists(vocab):
        raise ValueError(
            f"--init-model {cfg.train.init_model} has no vocab.txt (a WordPiece vocabulary) to tokenize the default "
            "corpus with: give --vocab-file, or your own --data-path preprocessed with the model's vocabulary"
        )
    return vocab


def new_run_dir(base: str) -> str:
    """``base``, or ``base-2``, ``base-3``, ... : the first that holds no earlier run's checkpoints (the default run
    directory of the no-argument main job, so that running it twice never collides with the first run)."""
    from bertforge.training.checkpoint import has_checkpoint

    candidate, n = base, 1
    while has_checkpoint(candidate):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def run(args: argparse.Namespace) -> int:
    from bertforge.cli.main_job import (
        DEMO_SENTENCES,
        OTHER_SENTENCES,
        fill_mask_demo,
        finetune_demo,
        initial_fillers,
        next_commands,
    )
    from bertforge.training.pretrain import pretrain

    cfg, extras = build_config(args)
    if extras["default_corpus"]:
        from bertforge.data.default_corpus import prepare_default_corpus

        work = extras["work_dir"] or os.path.join(os.path.expanduser("~"), ".cache", "bertforge", "default_corpus")
        given = cfg.data.vocab_file or init_model_vocab(cfg)
        kind = "wordpiece" if given else cfg.model.family.tokenizer  # a vocabulary of the family's kind is trained
        prefix, vocab = prepare_default_corpus(
            work, vocab_file=given, lowercase=cfg.data.tokenizer_type != "BertWordPieceCase", kind=kind
        )
        data = dataclasses.replace(cfg.data, data_path=[prefix], vocab_file=vocab)
        if kind != "wordpiece":
            tokenizer_type = "GPT2BPETokenizer" if kind == "bpe" else "SentencePieceTokenizer"
            merges = os.path.join(os.path.dirname(vocab), "merges.txt") if kind == "bpe" else None
            data = dataclasses.replace(data, tokenizer_type=tokenizer_type, merge_file=merges)
        cfg = dataclasses.replace(cfg, data=data)
    if cfg.train.save is None:  # never train a model only to throw it away: a run directory of its own
        save = new_run_dir(os.path.join("runs", "pretrain"))
        print(f"run directory: {save} (--save DIR to choose)")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, save=save))
    demo = extras["demo"] and int(os.environ.get("RANK", "0")) == 0 and cfg.data.objective == "mlm"
    sentences = DEMO_SENTENCES if extras["default_corpus"] else OTHER_SENTENCES
    # the untrained model's fillers beside the trained model's: the main job's story; another corpus's run (any size of
    # model) is not made to build its initial weights twice
    main_job = demo and extras["default_corpus"] and cfg.train.load is None
    before = initial_fillers(cfg, sentences) if main_job else None
    result = pretrain(cfg)
    if result.eval:
        print("held-out evaluation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.eval.items()))
    hf = os.path.join(result.run_dir, "hf") if result.run_dir else None
    if result.run_dir:
        print(f"run directory: {result.run_dir} (metrics.jsonl, curves.png, checkpoints/, hf/)")
    if demo and hf and os.path.exists(hf):
        fill_mask_demo(hf, sentences, before)
        if main_job:
            finetune_demo(hf, os.path.join(os.path.dirname(hf), "finetune_demo"))
        print(next_commands(hf))
    return 0
