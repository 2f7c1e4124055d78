"""``bertforge pretrain``: Megatron-LM's pretrain_bert.py flags, bertforge's own extras, YAML recipes.

Precedence: defaults < --preset < --config FILE.yaml < flags given on the command line. A flag bertforge does not
support is rejected with its name (argparse), never ignored. With no --data-path the run uses the embedded default
corpus (the Python documentation): it trains a vocabulary, preprocesses, pretrains the ``tiny`` preset for a few
minutes, and ends with a held-out MLM accuracy and a fill-mask demo.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
from typing import Any

from bertforge.model.config import PRESETS

UNBOUNDED_ITERS = 10**9
"""train_iters when --train-time is given without --train-iters: the budget ends the run."""


# The main job (no data arguments): the small-budget recipe (recipes/crammed.yaml: BERT-Tiny's shape, no dropout, MLM
# on packed whole sentences) on the embedded corpus for a 5-minute budget, with three changes measured on that corpus
# (benchmarks/demo_budget.py; held-out accuracy at 5 minutes 15.8% with the recipe as it is, 30.9% with them):
# 64-token samples (half the tokens per step: 2.2x the steps in the time), initialisation std 0.05 (BERT's 0.02 left
# the plateau later) and peak lr 4e-3. Any flag given on the command line overrides it.
DEFAULT_RECIPE: dict[str, dict[str, Any]] = {
    "model": {"initializer_range": 0.05},
    "data": {"seq_length": 64},
    "optim": {"lr": 4e-3},
    "train": {
        "train_time": "5m",
        "train_iters": UNBOUNDED_ITERS,
        "eval_interval": 500,
        "eval_iters": 20,
        "log_interval": 50,
        "save_interval": 1000,
    },
}
"""{section: {field: value}} over the crammed recipe, as a YAML recipe would set them."""

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
    from bertforge.config import DataConfig, DistillConfig, OptimConfig, TrainConfig
    from bertforge.model.config import BertConfig

    S = argparse.SUPPRESS  # flags not given stay absent, so that YAML and preset values survive
    m = p.add_argument_group("model (Megatron names)")
    add_section(m, "model", BertConfig(), flagged_only=True)
    m.add_argument("--preset", choices=list(PRESETS), default=S, help="a named size; flags above override it")
    m.add_argument("--tensor-model-parallel-size", type=int, default=S, help="only 1 (data parallelism only)")
    m.add_argument("--pipeline-model-parallel-size", type=int, default=S, help="only 1 (data parallelism only)")
    d = p.add_argument_group("data")
    add_section(d, "data", DataConfig())
    d.add_argument("--bert-no-binary-head", action="store_true", default=S, help="MLM only (= --binary-head none)")
    add_section(p.add_argument_group("optimizer and schedule"), "optim", OptimConfig())
    t = p.add_argument_group("training")
    add_section(t, "train", TrainConfig())
    t.add_argument("--fp32", action="store_true", default=S, help="turn off bf16 (e.g. in the default recipe)")
    add_section(p.add_argument_group("distillation (DistilBERT's: a masked-LM teacher)"), "distill", DistillConfig())
    t.add_argument(
        "--config",
        default=S,
        help="YAML recipe with sections model, data, optim, train; or a shipped recipe: roberta, crammed",
    )
    t.add_argument(
        "--work-dir",
        default=S,
        help="where the default corpus and its vocabulary are built (default: ~/.cache/bertforge)",
    )
    t.add_argument("--no-demo", dest="demo", action="store_false", default=S, help="skip the closing fill-mask demo")


def build_config(args: argparse.Namespace):
    """RunConfig from parsed flags: defaults < default-corpus recipe < --preset < YAML < flags.

    Returns (config, extras) where extras holds what is not part of the run config (work dir, demo).
    """
    from bertforge.cli.fields import section_values
    from bertforge.config import RunConfig

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
    cfg = RunConfig()
    yaml_cfg = cfg.merged_yaml(given["config"]) if "config" in given else None
    default_corpus = "data_path" not in flags.get("data", {}) and (yaml_cfg is None or not yaml_cfg.data.data_path)
    if default_corpus:
        from bertforge.config import recipe_path

        cfg = _apply(cfg.merged_yaml(recipe_path("crammed")), DEFAULT_RECIPE)
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
    """Set the fields of ``flags`` ({section: {field: value}}) on a RunConfig, with Megatron's derived sizes: a new
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
    from bertforge.training.pretrain import pretrain

    cfg, extras = build_config(args)
    if extras["default_corpus"]:
        from bertforge.data.default_corpus import prepare_default_corpus

        work = extras["work_dir"] or os.path.join(os.path.expanduser("~"), ".cache", "bertforge", "default_corpus")
        prefix, vocab = prepare_default_corpus(
            work,
            vocab_file=cfg.data.vocab_file or init_model_vocab(cfg),
            lowercase=cfg.data.tokenizer_type != "BertWordPieceCase",
        )
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_path=[prefix], vocab_file=vocab))
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


DEMO_SENTENCES = [
    "The [MASK] statement is used to leave a loop early.",
    "A dictionary maps keys to [MASK].",
    "If the file does not exist, an [MASK] is raised.",
    "Return a new [MASK] containing all the items of the sequence.",
]
"""Fill-mask sentences for the embedded corpus (the Python documentation): each blank has an answer the context
decides (break, values, exception/error, list)."""

OTHER_SENTENCES = ["The capital of France is [MASK].", "She opened the [MASK] and walked in."]


@contextlib.contextmanager
def expected_warnings_off():
    """Silence warnings the demos expect (a new head, unused weights) for the duration, then restore the level."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def top_fillers(model, tok, text: str, k: int = 5) -> str:
    """The ``k`` likeliest fillers of ``text``'s [MASK] under ``model``, as "word (p), ..."."""
    import torch

    enc = tok(text, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**enc).logits[0].float()
    pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
    top = logits[pos[:1]].softmax(-1).topk(k, dim=-1)
    return ", ".join(f"{tok.convert_ids_to_tokens(int(i))} ({p:.2f})" for p, i in zip(top.values[0], top.indices[0]))


def initial_fillers(cfg, sentences: list[str]) -> list[str]:
    """What the run's model predicts before training: the initial weights ``pretrain`` starts from."""
    from bertforge.model import BertForMaskedLM
    from bertforge.training.pretrain import initial_model, run_tokenizer

    tok = run_tokenizer(cfg)
    with expected_warnings_off():  # --init-model's missing-head report: pretrain, building the same model, logs it
        model = initial_model(cfg, tok)
    if not isinstance(model, BertForMaskedLM):  # a sentence-pair model: its encoder and MLM head, without the rest
        masked_lm = BertForMaskedLM(model.config)
        masked_lm.load_state_dict(model.state_dict(), strict=False)
        model = masked_lm
    model.eval()
    return [top_fillers(model, tok, text) for text in sentences]


def fill_mask_demo(model_dir: str, sentences: list[str], before: list[str] | None = None) -> None:
    """Print the top-5 fillers of ``sentences`` with the trained model (and, given ``before``, the initial
    model's beside them, so that what training changed is visible)."""
    from bertforge.model import BertForMaskedLM
    from bertforge.tokenization import load_tokenizer

    tok = load_tokenizer(model_dir)
    with expected_warnings_off():  # the pooler and NSP head are expectedly unused by a fill-mask model
        model = BertForMaskedLM.from_pretrained(model_dir).eval()
    print("fill-mask demo (top 5)" + (", before training -> after:" if before else ":"))
    for i, text in enumerate(sentences):
        print(f"  {text}")
        if before:
            print(f"    before: {before[i]}")
        print(f"    {'after:  ' if before else '-> '}{top_fillers(model, tok, text)}")


FINETUNE_DEMO = {"epochs": 5, "batch_size": 16, "max_length": 64, "seed": 0}
"""The main job's fine-tuning demo: one recipe for the pretrained model and its from-scratch twin."""

FINETUNE_DEMO_LRS = (1e-4, 1e-3)
"""Each system of the demo reports its best of these rates (as ``evaluate glue`` does with its grid): 1e-3 is the
2 x 128 main job's best, and a deeper model from random weights (the --init-model main job's 6-layer twin) does not
train at it, so one rate for both would misjudge the baseline."""


def finetune_demo(model_dir: str, out_dir: str) -> dict[str, float] | None:
    """The BERT story on one screen: fine-tune the model just pretrained and the same architecture from random
    weights on a small labelled task from the same text (``docstring_task``: which standard-library package a
    docstring comes from; 80% to train, 20% held out) at each rate of ``FINETUNE_DEMO_LRS`` and print each system's
    best held-out accuracy side by side."""
    import random

    from bertforge.config import FinetuneConfig
    from bertforge.data.corpus import docstring_task
    from bertforge.evaluate import scratch_copy
    from bertforge.training.finetune import finetune_classification

    rows = docstring_task()
    if not rows:  # a Python installation stripped of its standard library's packages
        print("fine-tuning demo skipped: this Python's standard library has fewer than two packages with docstrings")
        return None
    random.Random(0).shuffle(rows)
    cut = len(rows) * 4 // 5
    train, held_out = rows[:cut], rows[cut:]
    labels = sorted({r["label"] for r in rows})
    rates = " and ".join(f"{lr:g}" for lr in FINETUNE_DEMO_LRS)
    print(
        f"fine-tuning demo: which package does a docstring come from? ({', '.join(labels)}; {len(train)} training, "
        f"{len(held_out)} held-out docstrings; {FINETUNE_DEMO['epochs']} epochs, each model at its best of lr {rates})"
    )
    systems = {  # name: (weights, output directory)
        "pretrained (this run)": (model_dir, "pretrained"),
        "same model from scratch": (scratch_copy(model_dir, os.path.join(out_dir, "scratch_init")), "scratch"),
    }
    accuracy = {}
    for name, (source, directory) in systems.items():
        by_lr = {}
        for lr in FINETUNE_DEMO_LRS:
            cfg = FinetuneConfig.build(**FINETUNE_DEMO, lr=lr, overwrite=True)
            with expected_warnings_off():  # the classifier head is new, as expected
                result = finetune_classification(
                    source,
                    train,
                    held_out,
                    os.path.join(out_dir, directory, f"lr{lr:g}"),
                    cfg=cfg,
                    text_column="text",
                    show_progress=False,
                )
            by_lr[lr] = float(result["accuracy"])
        best = max(by_lr, key=lambda lr: by_lr[lr])
        accuracy[name] = by_lr[best]
        print(f"  {name + ':':<25} held-out accuracy {100 * by_lr[best]:.1f}% (lr {best:g}, its best epoch)")
    return accuracy


def next_commands(model_dir: str) -> str:
    """What to run next with the model just trained (printed at the end of the main job)."""
    return (
        "next:\n"
        f'  bertforge run fill-mask --model {model_dir} "A list is a mutable [MASK] of items."\n'
        f"  bertforge pretrain --config crammed --train-time 1h --data-path PREFIX --vocab-file VOCAB   "
        "(your corpus: bertforge preprocess makes PREFIX)\n"
        f"  bertforge evaluate glue --model {model_dir} --scratch --data-dir GLUE_DIR   "
        "(what pretraining bought, against random weights)\n"
        f"  bertforge finetune classification --model {model_dir} --train train.tsv --validation-split 0.1 --output OUT"
    )
