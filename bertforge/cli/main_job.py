"""The main job's demonstration around a pretraining run (``bertforge pretrain``; the whole of it with no data
arguments): the fill-mask sentences before and after training, the fine-tuning demo that shows what pretraining bought
(the model just pretrained against the same architecture from random weights on a task from the same text), and the
commands to run next. The run's recipe is ``recipes/main-job.yaml``."""

from __future__ import annotations

import contextlib
import logging
import os

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
    from bertforge.evaluation import scratch_copy
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
