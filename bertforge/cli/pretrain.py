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

from bertforge.model.config import PRESETS

# Megatron flag -> (section, field). Values are converted by argparse types below.
MODEL_FLAGS = {"num_layers": "num_hidden_layers", "hidden_size": "hidden_size",
               "num_attention_heads": "num_attention_heads", "ffn_hidden_size": "intermediate_size",
               "max_position_embeddings": "max_position_embeddings", "init_method_std": "initializer_range",
               "hidden_dropout": "hidden_dropout_prob", "attention_dropout": "attention_probs_dropout_prob"}
DATA_FLAGS = ["data_path", "vocab_file", "tokenizer_type", "split", "seq_length", "mask_prob", "short_seq_prob",
              "binary_head", "whole_word_mask", "max_ngram", "num_workers", "pack_sequences"]
OPTIM_FLAGS = ["optimizer", "lr", "min_lr", "lr_decay_style", "lr_warmup_fraction", "lr_warmup_iters",
               "lr_decay_iters", "weight_decay", "clip_grad", "adam_beta1", "adam_beta2", "adam_eps"]
TRAIN_FLAGS = ["micro_batch_size", "global_batch_size", "train_iters", "seed", "bf16", "fp16", "save", "load",
               "save_interval", "keep_last", "eval_interval", "eval_iters", "log_interval", "export_hf",
               "on_nonfinite", "recompute_activations", "fsdp", "compile", "device", "distributed_backend"]

# The embedded-corpus recipe: what learns most in a few CPU minutes (measured on 2 cores: the tiny preset with
# dropout off and MLM only left the unigram plateau within 250 steps at lr 2e-3; mini with NSP, dropout and lr 1e-3
# was still on it after 300). Any flag given on the command line overrides these.
DEFAULT_RECIPE = dict(preset="tiny", seq_length=128, micro_batch_size=32, train_iters=900, lr=2e-3,
                      lr_warmup_fraction=0.06, hidden_dropout=0.0, attention_dropout=0.0, binary_head="none",
                      eval_interval=300, eval_iters=20, log_interval=50, save_interval=300,
                      max_position_embeddings=512)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain BERT (Megatron-LM pretrain_bert.py flags)",
                       description=__doc__.split("\n\n")[0], allow_abbrev=False)
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # flags not given stay absent, so that YAML and preset values survive
    m = p.add_argument_group("model (Megatron names)")
    m.add_argument("--num-layers", type=int, default=S)
    m.add_argument("--hidden-size", type=int, default=S)
    m.add_argument("--num-attention-heads", type=int, default=S)
    m.add_argument("--ffn-hidden-size", type=int, default=S, help="default 4 x hidden size")
    m.add_argument("--max-position-embeddings", type=int, default=S)
    m.add_argument("--init-method-std", type=float, default=S)
    m.add_argument("--hidden-dropout", type=float, default=S)
    m.add_argument("--attention-dropout", type=float, default=S)
    m.add_argument("--preset", choices=list(PRESETS), default=S, help="a named size; flags above override it")
    m.add_argument("--tensor-model-parallel-size", type=int, default=S, help="only 1 (data parallelism only)")
    m.add_argument("--pipeline-model-parallel-size", type=int, default=S, help="only 1 (data parallelism only)")
    d = p.add_argument_group("data")
    d.add_argument("--data-path", nargs="+", default=S, help="PREFIX, or WEIGHT PREFIX [WEIGHT PREFIX ...]")
    d.add_argument("--vocab-file", default=S)
    d.add_argument("--tokenizer-type", choices=["BertWordPieceLowerCase", "BertWordPieceCase"], default=S)
    d.add_argument("--split", default=S, help="train,valid,test proportions of documents, e.g. 949,50,1")
    d.add_argument("--seq-length", type=int, default=S)
    d.add_argument("--mask-prob", type=float, default=S)
    d.add_argument("--short-seq-prob", type=float, default=S)
    d.add_argument("--bert-no-binary-head", action="store_true", default=S, help="MLM only (= --binary-head none)")
    d.add_argument("--binary-head", choices=["nsp", "sop", "none"], default=S,
                   help="next sentence prediction (BERT, default), sentence order prediction (ALBERT/Megatron), none")
    d.add_argument("--whole-word-mask", action="store_true", default=S)
    d.add_argument("--max-ngram", type=int, default=S, help="n-gram masking up to n words (1/n weights)")
    d.add_argument("--num-workers", type=int, default=S, help="data loader processes per rank")
    d.add_argument("--pack-sequences", action="store_true", default=S,
                   help="packed batches (tokens back to back with cu_seqlens) instead of padded ones")
    o = p.add_argument_group("optimizer and schedule")
    o.add_argument("--optimizer", choices=["adamw", "lamb"], default=S)
    o.add_argument("--lr", type=float, default=S)
    o.add_argument("--min-lr", type=float, default=S)
    o.add_argument("--lr-decay-style", choices=["linear", "cosine", "constant"], default=S)
    warm = o.add_mutually_exclusive_group()
    warm.add_argument("--lr-warmup-fraction", type=float, default=S)
    warm.add_argument("--lr-warmup-iters", type=int, default=S)
    o.add_argument("--lr-decay-iters", type=int, default=S)
    o.add_argument("--weight-decay", type=float, default=S)
    o.add_argument("--clip-grad", type=float, default=S)
    o.add_argument("--adam-beta1", type=float, default=S)
    o.add_argument("--adam-beta2", type=float, default=S)
    o.add_argument("--adam-eps", type=float, default=S)
    t = p.add_argument_group("training")
    t.add_argument("--micro-batch-size", type=int, default=S)
    t.add_argument("--global-batch-size", type=int, default=S)
    t.add_argument("--train-iters", type=int, default=S)
    t.add_argument("--seed", type=int, default=S)
    prec = t.add_mutually_exclusive_group()
    prec.add_argument("--bf16", action="store_true", default=S)
    prec.add_argument("--fp16", action="store_true", default=S, help="CUDA only, with a gradient scaler")
    prec.add_argument("--fp32", action="store_true", default=S, help="turn off bf16 (e.g. in the default recipe)")
    t.add_argument("--save", default=S, help="run directory")
    t.add_argument("--load", default=S, help="checkpoint or run directory to resume from")
    t.add_argument("--save-interval", type=int, default=S)
    t.add_argument("--keep-last", type=int, default=S, help="checkpoints kept (default 3)")
    t.add_argument("--no-export-hf", dest="export_hf", action="store_false", default=S,
                   help="do not write the Hugging Face directory run/hf at each save")
    t.add_argument("--eval-interval", type=int, default=S)
    t.add_argument("--eval-iters", type=int, default=S)
    t.add_argument("--log-interval", type=int, default=S)
    t.add_argument("--exit-interval", type=int, default=S, help="stop after a step divisible by N (resumable)")
    t.add_argument("--recompute-activations", action="store_true", default=S, help="activation checkpointing")
    t.add_argument("--compile", action="store_true", default=S,
                   help="torch.compile the model (compile time is paid in the first steps)")
    t.add_argument("--on-nonfinite", choices=["stop", "skip"], default=S)
    t.add_argument("--device", default=S, help="cpu, cuda, cuda:N (default: cuda when available)")
    t.add_argument("--distributed-backend", choices=["gloo", "nccl"], default=S)
    t.add_argument("--fsdp", action="store_true", default=S,
                   help="shard parameters, gradients and optimizer state with torch's fully_shard instead of DDP")
    t.add_argument("--config", default=S, help="YAML recipe with sections model, data, optim, train")
    t.add_argument("--work-dir", default=S, help="where the default corpus and its vocabulary are built "
                                               "(default: ~/.cache/bertforge)")
    t.add_argument("--no-demo", dest="demo", action="store_false", default=S,
                   help="skip the closing fill-mask demo")


def build_config(args: argparse.Namespace):
    """RunConfig from parsed flags: defaults < default-corpus recipe < --preset < YAML < flags.

    Returns (config, extras) where extras holds what is not part of the run config (exit interval, work dir, demo).
    """
    from bertforge.config import RunConfig

    given = vars(args)
    for flag in ("tensor_model_parallel_size", "pipeline_model_parallel_size"):
        if given.get(flag, 1) != 1:
            raise ValueError(f"--{flag.replace('_', '-')} {given[flag]} is not supported: bertforge trains with "
                             "data parallelism (DDP) only; use torchrun --nproc_per_node N")
    cfg = RunConfig()
    yaml_cfg = cfg.merged_yaml(given["config"]) if "config" in given else None
    default_corpus = "data_path" not in given and (yaml_cfg is None or not yaml_cfg.data.data_path)
    if default_corpus:
        from bertforge.utils import fast_bf16

        # bf16 only where the hardware runs it natively; emulated bf16 is ~30x slower than fp32 on AVX2-only CPUs.
        cfg = _apply(cfg, {**DEFAULT_RECIPE, "bf16": fast_bf16("cuda" if _cuda() else "cpu")})
    if "preset" in given:
        cfg = _apply(cfg, {"preset": given["preset"]})
    if yaml_cfg is not None:
        cfg = cfg.merged_yaml(given["config"])
    cfg = _apply(cfg, {k: v for k, v in given.items() if k != "preset"})
    extras = {"default_corpus": default_corpus, "exit_interval": given.get("exit_interval"),
              "work_dir": given.get("work_dir"), "demo": given.get("demo", True)}
    return cfg, extras


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _apply(cfg, flags: dict):
    """Set the fields named by ``flags`` (Megatron flag names, underscores) on a RunConfig."""
    from bertforge.config import RunConfig
    from bertforge.model.config import preset

    model = preset(flags["preset"]) if "preset" in flags else cfg.model
    model_changes = {MODEL_FLAGS[k]: v for k, v in flags.items() if k in MODEL_FLAGS}
    if "hidden_size" in model_changes and "ffn_hidden_size" not in flags:
        model_changes["intermediate_size"] = 4 * model_changes["hidden_size"]  # Megatron's default
    data_changes = {k: v for k, v in flags.items() if k in DATA_FLAGS}
    if flags.get("bert_no_binary_head"):
        data_changes["binary_head"] = "none"
    seq = data_changes.get("seq_length", cfg.data.seq_length)
    if "max_position_embeddings" not in flags and seq > model_changes.get("max_position_embeddings",
                                                                          model.max_position_embeddings):
        model_changes["max_position_embeddings"] = seq
    train_changes = {k: v for k, v in flags.items() if k in TRAIN_FLAGS}
    if flags.get("fp32"):
        train_changes["bf16"] = False
    return RunConfig(model=model.replace(**model_changes) if model_changes else model,
                     data=dataclasses.replace(cfg.data, **data_changes),
                     optim=dataclasses.replace(cfg.optim, **{k: v for k, v in flags.items() if k in OPTIM_FLAGS}),
                     train=dataclasses.replace(cfg.train, **train_changes))


def run(args: argparse.Namespace) -> int:
    from bertforge.training.trainer import pretrain

    cfg, extras = build_config(args)
    if extras["default_corpus"]:
        from bertforge.training.default_corpus import prepare_default_corpus

        work = extras["work_dir"] or os.path.join(os.path.expanduser("~"), ".cache", "bertforge", "default_corpus")
        prefix, vocab = prepare_default_corpus(work, vocab_file=cfg.data.vocab_file)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_path=[prefix], vocab_file=vocab))
        if cfg.train.save is None:
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, save=os.path.join("runs", "pretrain")))
    result = pretrain(cfg, exit_interval=extras["exit_interval"])
    if result.eval:
        print("held-out evaluation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.eval.items()))
    if result.run_dir:
        print(f"run directory: {result.run_dir} (metrics.jsonl, curves.png, checkpoints/, hf/)")
    if extras["demo"] and result.run_dir and os.path.exists(os.path.join(result.run_dir, "hf")) \
            and int(os.environ.get("RANK", "0")) == 0:
        fill_mask_demo(os.path.join(result.run_dir, "hf"), extras["default_corpus"])
    return 0


DEMO_SENTENCES = ["The [MASK] statement is used to leave a loop early.",
                  "A dictionary maps keys to [MASK].",
                  "If the file does not exist, an [MASK] is raised.",
                  "Return a new [MASK] containing all the items of the sequence."]


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
    sentences = DEMO_SENTENCES if default_corpus else ["The capital of France is [MASK].",
                                                       "She opened the [MASK] and walked in."]
    print("fill-mask demo (top 5):")
    for text in sentences:
        enc = tok(text, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**enc).logits[0]
        pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
        probs = logits[pos].softmax(-1)
        top = probs.topk(5, dim=-1)
        guesses = ", ".join(f"{tok.convert_ids_to_tokens(int(i))} ({p:.2f})" for p, i in zip(top.values[0],
                                                                                              top.indices[0]))
        print(f"  {text}\n    -> {guesses}")
