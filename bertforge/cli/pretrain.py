"""``bertforge pretrain``: Megatron-LM's pretrain_bert.py flags, bertforge's own extras, YAML recipes.

Precedence: defaults < --preset < --config FILE.yaml < flags given on the command line. A flag bertforge does not
support is rejected with its name (argparse), never ignored. With no --data-path the run uses the embedded default
corpus (the Python documentation): it trains a vocabulary, preprocesses, pretrains the ``tiny`` preset for a few
minutes, and ends with a held-out MLM accuracy and a fill-mask demo.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import Any

from bertforge.model.config import PRESETS

# The embedded-corpus recipe: what learns most in a few CPU minutes (measured on 2 cores: the tiny preset with
# dropout off and MLM only left the unigram plateau within 250 steps at lr 2e-3; mini with NSP, dropout and lr 1e-3
# was still on it after 300). Any flag given on the command line overrides these.
DEFAULT_RECIPE: dict[str, dict[str, Any]] = {
    "model": {
        **PRESETS["tiny"],
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": 512,
    },
    "data": {"seq_length": 128, "binary_head": "none"},
    "optim": {"lr": 2e-3, "lr_warmup_fraction": 0.06},
    "train": {
        "micro_batch_size": 32,
        "train_iters": 900,
        "eval_interval": 300,
        "eval_iters": 20,
        "log_interval": 50,
        "save_interval": 300,
    },
}
"""{section: {field: value}}, as a YAML recipe would set them; bf16 is added where it is native."""


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
        help="YAML recipe with sections model, data, optim, train; or a shipped recipe: roberta",
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
        flags.setdefault("train", {})["bf16"] = False
    cfg = RunConfig()
    yaml_cfg = cfg.merged_yaml(given["config"]) if "config" in given else None
    default_corpus = "data_path" not in flags.get("data", {}) and (yaml_cfg is None or not yaml_cfg.data.data_path)
    if default_corpus:
        from bertforge.utils import fast_bf16

        # bf16 only where the hardware runs it natively; emulated bf16 is ~30x slower than fp32 on AVX2-only CPUs.
        recipe = {
            **DEFAULT_RECIPE,
            "train": {**DEFAULT_RECIPE["train"], "bf16": fast_bf16("cuda" if _cuda() else "cpu")},
        }
        cfg = _apply(cfg, recipe)
    if "preset" in given:
        cfg = cfg.merged({"model": dict(PRESETS[given["preset"]])})
    if yaml_cfg is not None:
        cfg = cfg.merged_yaml(given["config"])
    if "train_time" in flags.get("train", {}) and "train_iters" not in flags.get("train", {}):
        flags["train"]["train_iters"] = UNBOUNDED_ITERS  # the time decides when the run ends
    cfg = _apply(cfg, flags)
    extras = {"default_corpus": default_corpus, "work_dir": given.get("work_dir"), "demo": given.get("demo", True)}
    return cfg, extras


UNBOUNDED_ITERS = 10**9
"""train_iters when --train-time is given without --train-iters: the budget ends the run."""


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


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
        prefix, vocab = prepare_default_corpus(work, vocab_file=cfg.data.vocab_file)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_path=[prefix], vocab_file=vocab))
    if cfg.train.save is None:  # never train a model only to throw it away: a run directory of its own
        save = new_run_dir(os.path.join("runs", "pretrain"))
        print(f"run directory: {save} (--save DIR to choose)")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, save=save))
    result = pretrain(cfg)
    if result.eval:
        print("held-out evaluation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.eval.items()))
    if result.run_dir:
        print(f"run directory: {result.run_dir} (metrics.jsonl, curves.png, checkpoints/, hf/)")
    if (
        extras["demo"]
        and result.run_dir
        and os.path.exists(os.path.join(result.run_dir, "hf"))
        and int(os.environ.get("RANK", "0")) == 0
    ):
        fill_mask_demo(os.path.join(result.run_dir, "hf"), extras["default_corpus"])
    return 0


DEMO_SENTENCES = [
    "The [MASK] statement is used to leave a loop early.",
    "A dictionary maps keys to [MASK].",
    "If the file does not exist, an [MASK] is raised.",
    "Return a new [MASK] containing all the items of the sequence.",
]


def fill_mask_demo(model_dir: str, default_corpus: bool) -> None:
    """Print the top-5 fillers of a few masked sentences with the freshly trained model."""
    import torch

    from bertforge.model import BertForMaskedLM
    from bertforge.tokenization import BertTokenizer

    tok = BertTokenizer.from_pretrained(model_dir)
    logging.disable(logging.WARNING)  # the pooler and NSP head are expectedly unused by a fill-mask model
    try:
        model = BertForMaskedLM.from_pretrained(model_dir)
    finally:
        logging.disable(logging.NOTSET)
    sentences = (
        DEMO_SENTENCES
        if default_corpus
        else ["The capital of France is [MASK].", "She opened the [MASK] and walked in."]
    )
    print("fill-mask demo (top 5):")
    for text in sentences:
        enc = tok(text, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**enc).logits[0]
        pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
        probs = logits[pos].softmax(-1)
        top = probs.topk(5, dim=-1)
        guesses = ", ".join(
            f"{tok.convert_ids_to_tokens(int(i))} ({p:.2f})" for p, i in zip(top.values[0], top.indices[0])
        )
        print(f"  {text}\n    -> {guesses}")
