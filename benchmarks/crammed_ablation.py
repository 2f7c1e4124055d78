"""What buys the lowest held-out MLM loss in a fixed wall-clock budget on this machine: the small-budget
recipe (``bertforge pretrain --config crammed``) against one change at a time, each run for the same minutes of
training time, each scored on the same held-out samples with the same 15% masking.

Usage: python benchmarks/crammed_ablation.py [--minutes 5] [--variants crammed,nsp,...] [--work DIR]
       [--out benchmarks/results/crammed_ablation.json]

- Corpus: Project Gutenberg ($BERTFORGE_DATA/gutenberg) + WikiText-2 valid.txt, the bert-base-uncased vocabulary
  (``_common.english_corpus``), split 98/2 by document.
- Every variant: ``--minutes`` of training steps under ``--train-time`` (the learning-rate schedule runs over the
  time), then the final weights are scored on the first 24 x 32 held-out samples of the recipe's own layout (whole
  sentences packed to 128 tokens) with 15% of the tokens masked, whatever the variant trained with (so a 40%-masking
  run is not scored on an easier or harder task than the others). The budget is wall-clock time: run nothing else
  meanwhile (the recipe's first run here shared the CPU with a few commands and got 8% fewer steps; it was rerun).
- Results: held-out MLM loss and accuracy, steps and tokens trained, with the machine (CPU flags, matmul peaks).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import chosen_variants, english_corpus, machine, vocab_file, write_result  # noqa: E402

VARIANTS: dict[str, tuple[str, dict]] = {
    "crammed": ("the recipe as shipped", {}),
    "seed": ("the recipe again, another seed (the run-to-run spread)", {"train": {"seed": 4321}}),
    "nsp": (
        "BERT's samples: sentence pairs with a next-sentence head, 10% short",
        {"data": {"binary_head": "nsp", "full_sentences": False, "short_seq_prob": 0.1}},
    ),
    "unpacked": (
        "no packing: one text segment per sample, 10% short, padded",
        {"data": {"full_sentences": False, "short_seq_prob": 0.1}},
    ),
    "dropout": (
        "dropout 0.1 (BERT's)",
        {"model": {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}},
    ),
    "mask15": ("15% of tokens masked (BERT's)", {"data": {"mask_prob": 0.15}}),
    "mask40": ("40% of tokens masked", {"data": {"mask_prob": 0.4}}),
    "lr_half": ("half the peak learning rate", {"optim": {"lr": "half"}}),
    "lr_double": ("twice the peak learning rate", {"optim": {"lr": "double"}}),
    "batch_half": ("half the batch", {"train": {"micro_batch_size": "half"}}),
    "beta2_999": ("Adam beta2 0.999, eps 1e-8 (BERT's)", {"optim": {"adam_beta2": 0.999, "adam_eps": 1e-8}}),
    "mini": (
        "a larger model: 4 layers, hidden 256 (BERT-Mini's shape)",
        {"model": {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024}},
    ),
    "tiny": (
        "a smaller model: 2 layers, hidden 128 (BERT-Tiny's shape)",
        {"model": {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 512}},
    ),
    "small": (
        "a wider model: 4 layers, hidden 512 (BERT-Small's shape)",
        {"model": {"num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 2048}},
    ),
    "fp32": ("fp32 instead of bf16", {"train": {"bf16": False}}),
    "init05": ("initialisation std 0.05 (BERT: 0.02; the main job's)", {"model": {"initializer_range": 0.05}}),
}


DEFAULT_RUN = "crammed,nsp,unpacked,dropout,mask15,lr_half,mini"
"""The variants run without --variants (the README's table); the others are there to try."""


def recipe_config(prefix: str, minutes: float, save: str | None, changes: dict):
    """The shipped crammed recipe on ``prefix`` with ``changes`` ({section: {field: value}}; "half"/"double" scale
    the recipe's value) for ``minutes`` of training."""
    from bertforge.config import PretrainConfig, recipe_path
    from bertforge.utils import fast_bf16

    cfg = PretrainConfig().merged_yaml(recipe_path("crammed"))
    cfg = cfg.merged(
        {
            "data": {"data_path": [prefix], "vocab_file": vocab_file(), "split": "98,2,0"},
            "train": {
                "train_time": f"{minutes}m",
                "train_iters": 10**9,
                "save": save,
                "bf16": fast_bf16("cpu"),
                "eval_interval": 10**9,
                "save_interval": 10**9,
                "log_interval": 100,
                "eval_iters": 24,
                "seed": 1234,
            },
        }
    )
    scaled = {}
    for section, values in changes.items():
        scaled[section] = {}
        for name, value in values.items():
            if value in ("half", "double"):
                base = getattr(getattr(cfg, section), name)
                value = type(base)(base * (0.5 if value == "half" else 2))
            scaled[section][name] = value
    return cfg.merged(scaled)


def held_out(prefix: str):
    """The fixed scoring set: the recipe's held-out samples at 15% masking, 24 batches of 32."""
    from bertforge.training.pretrain import build_data

    cfg = recipe_config(prefix, 1, None, {"data": {"mask_prob": 0.15}, "train": {"micro_batch_size": 32}})
    return cfg, build_data(cfg)


def score(model_dir: str, eval_cfg, data) -> dict:
    from bertforge.model import BertForMaskedLM
    from bertforge.training.distributed import DistInfo
    from bertforge.training.pretrain import evaluate

    model = BertForMaskedLM.from_pretrained(model_dir)
    return evaluate(model, data.valid, eval_cfg, DistInfo(), data.tokenizer.pad_token_id)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training time of each variant")
    p.add_argument("--variants", default=DEFAULT_RUN, help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--work", default=None, help="where runs are written (default: a temporary directory)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "crammed_ablation.json"))
    args = p.parse_args()
    names = chosen_variants(p, args.variants, VARIANTS)
    from bertforge.training.pretrain import pretrain
    from bertforge.utils import tune_malloc

    tune_malloc()  # as the CLI does
    work = Path(args.work or tempfile.mkdtemp(prefix="crammed-"))
    prefix = english_corpus(work)
    eval_cfg, eval_data = held_out(prefix)
    from bertforge.config import recipe_path

    recipe = Path(recipe_path("crammed")).read_text()
    result: dict = {"machine": machine(), "minutes": args.minutes, "corpus": prefix, "recipe": recipe, "variants": {}}
    out = Path(args.out)
    if out.exists():  # an interrupted ablation: keep the rows it measured at the same budget
        earlier = json.loads(out.read_text())
        if earlier.get("minutes") == args.minutes and earlier.get("recipe") == recipe:
            result["variants"] = earlier["variants"]
    for name in names:
        if name in result["variants"]:
            print(name, "measured before:", json.dumps(result["variants"][name]), flush=True)
            continue
        what, changes = VARIANTS[name]
        cfg = recipe_config(prefix, args.minutes, str(work / name), changes)
        started = time.perf_counter()
        records = work / name / "metrics.jsonl"
        if (work / name / "hf" / "model.safetensors").exists() and records.exists():  # trained, not yet scored
            steps = [json.loads(line) for line in records.read_text().splitlines() if '"loss"' in line]
            step, seconds = steps[-1]["step"], steps[-1]["time_spent"]
        else:
            run = pretrain(cfg, show_progress=False)
            step, seconds = run.step, run.train_seconds
        row = {
            "what": what,
            "changes": changes,
            "steps": step,
            "tokens": step * (cfg.train.global_batch_size or cfg.train.micro_batch_size) * cfg.data.seq_length,
            "train_seconds": round(seconds, 1),
            "wall_seconds": round(time.perf_counter() - started, 1),
            **{k: round(v, 4) for k, v in score(str(work / name / "hf"), eval_cfg, eval_data).items()},
        }
        result["variants"][name] = row
        print(name, json.dumps(row), flush=True)
        write_result(out, result, WORK=work)
    base = result["variants"].get("crammed")
    print("\n| variant | steps | tokens | held-out MLM loss | MLM accuracy |\n|---|---|---|---|---|")
    for name, row in result["variants"].items():
        delta = f" ({row['eval_mlm_loss'] - base['eval_mlm_loss']:+.3f})" if base and name != "crammed" else ""
        print(
            f"| {name}: {row['what']} | {row['steps']:,} | {row['tokens'] / 1e6:.2f}M | "
            f"{row['eval_mlm_loss']:.3f}{delta} | {100 * row['eval_mlm_accuracy']:.1f}% |"
        )


if __name__ == "__main__":
    main()
