"""BERT against GPT on the same blocks: one architecture and corpus pretrained once with MLM (bidirectional) and once
with CLM (causal), the same steps, batch and sequence length (the same tokens seen), then each fine-tuned on SST-2 and
CoNLL-2003, each scored on its own pretraining metric, and both asked to fill in held-out words.

Usage: python benchmarks/objectives.py [--minutes 12] [--steps N] [--seeds 0,1,2] [--sst2-train 2000]
       [--conll-train 1500] [--epochs 3] [--probe-words 1000] [--out benchmarks/results/objectives.json]

- Corpus: Project Gutenberg ($BERTFORGE_DATA/gutenberg, 10 MB) + WikiText-2 valid.txt, tokenised with the
  bert-base-uncased vocabulary (from all-MiniLM-L6-v2's package); split 98/2 for held-out evaluation.
- Model: 4 layers, hidden 256, 4 heads, FFN 1024, sequence 128, no sentence-pair head, fresh random weights.
- Budget: ``--steps`` optimizer steps of 32 sequences for both objectives; without it, the steps that fill
  ``--minutes`` for the slower objective (CLM: its decoder reads every position, MLM's only the 15% masked), measured
  on a few calibration steps. Each objective's wall time is reported.
- Fine-tuning (each pretrained model, each seed): SST-2, first 2,000 rows of train.tsv, scored on dev.tsv (872);
  CoNLL-2003, first 1,500 sentences of eng.train, best epoch on 500 of eng.testa, entity F1 on 1,000 of eng.testb;
  3 epochs, lr 1e-4, batch 32. A causal model's classifier reads the last real token, BERT's reads [CLS].
- Fill-in-the-blank probe: 1,000 single-piece words at least 4 tokens from either end of a WikiText-2 test.txt line
  (held out from pretraining): MLM sees [CLS] left [MASK] right [SEP] and predicts the word from both sides; CLM sees
  [CLS] left and predicts the next token from the left only. Top-1 and top-5 accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, english_corpus, vocab_file, write_result  # noqa: E402


def run_config(prefix: str, objective: str, steps: int, save: str | None, bf16: bool):
    from bertforge.config import DataConfig, OptimConfig, PretrainConfig, TrainConfig
    from bertforge.model.config import BertConfig

    model = BertConfig(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=128,
    )
    return PretrainConfig(
        model=model,
        data=DataConfig(
            data_path=[prefix],
            vocab_file=vocab_file(),
            seq_length=128,
            split="98,2,0",
            objective=objective,
            binary_head="none",
            num_workers=1,
        ),
        optim=OptimConfig(lr=5e-4, lr_warmup_fraction=0.05, weight_decay=0.01),
        train=TrainConfig(
            micro_batch_size=32,
            global_batch_size=32,
            train_iters=steps,
            log_interval=max(1, steps // 20),
            eval_interval=steps,
            eval_iters=8,
            save=save,
            bf16=bf16,
            seed=1234,
        ),
    )


def pretrain_both(prefix: str, args, tmp: Path) -> dict:
    from bertforge.training.pretrain import pretrain
    from bertforge.utils import fast_bf16

    bf16 = fast_bf16("cpu")
    steps = args.steps
    if not steps:  # calibrate on the slower objective
        cal = pretrain(run_config(prefix, "clm", 6, None, bf16), show_progress=False)
        per_step = cal.train_seconds / 6
        steps = max(20, int(args.minutes * 60 / per_step))
        print(f"calibration: CLM {per_step:.2f} s/step -> {steps} steps", flush=True)
    out = {}
    for objective in args.objectives.split(","):
        save = str(tmp / objective)
        started = time.perf_counter()
        result = pretrain(run_config(prefix, objective, steps, save, bf16), show_progress=False)
        out[objective] = {
            "dir": save + "/hf",
            "steps": steps,
            "tokens_seen": steps * 32 * 128,
            "train_seconds": round(result.train_seconds, 1),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "final_loss": round(result.losses[-1], 4),
            **{k: round(v, 4) for k, v in result.eval.items()},
        }
        print(objective, json.dumps(out[objective]), flush=True)
    out["bf16"] = bf16
    return out


def _conll_slice(src: Path, dst: Path, sentences: int) -> str:
    blocks = [b for b in src.read_text().split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    dst.write_text("\n\n".join(blocks[:sentences]) + "\n")
    return str(dst)


def finetune_all(models: dict, seeds: list[int], tmp: Path, args) -> list[dict]:
    from bertforge.config import FinetuneConfig
    from bertforge.training.finetune import finetune_classification, finetune_ner

    conll = DATA / "conll2003"
    valid = _conll_slice(conll / "eng.testa", tmp / "testa.conll", 500)
    test = _conll_slice(conll / "eng.testb", tmp / "testb.conll", 1000)
    sst = DATA / "glue" / "SST-2"
    rows = []
    for seed in seeds:
        for objective in [o for o in ("mlm", "clm") if o in models]:
            src = models[objective]["dir"]
            cfg = FinetuneConfig.build(
                epochs=args.epochs, lr=1e-4, batch_size=32, seed=seed, device="cpu", bf16=False
            )  # fine-tuning in fp32, as the README table
            r = finetune_classification(
                src,
                str(sst / "train.tsv"),
                str(sst / "dev.tsv"),
                str(tmp / f"sst-{objective}-{seed}"),
                cfg=cfg.merged({"task": {"max_train_examples": args.sst2_train, "max_length": 64}}),
                show_progress=False,
            )
            rows.append({"task": "sst2", "objective": objective, "seed": seed, "metric": r["accuracy"]})
            r = finetune_ner(
                src,
                str(conll / "eng.train"),
                valid,
                str(tmp / f"ner-{objective}-{seed}"),
                test_file=test,
                cfg=cfg.merged({"task": {"max_train_examples": args.conll_train, "max_length": 128}}),
                show_progress=False,
            )
            rows.append({"task": "conll", "objective": objective, "seed": seed, "metric": r["test_f1"]})
            print(json.dumps(rows[-2]), json.dumps(rows[-1]), flush=True)
    return rows


def probes(n: int = 1000, seed: int = 0) -> list[tuple[list[int], int, int]]:
    """(ids of the line without specials, position of the word, its id) for ``n`` held-out words."""
    import numpy as np

    from bertforge.tokenization import BertTokenizer

    tok = BertTokenizer(vocab_file())
    lines = [line.strip() for line in (DATA / "wikitext-2" / "test.txt").read_text().splitlines()]
    lines = [line for line in lines if len(line.split()) >= 12 and not line.startswith("=")]
    rng = np.random.default_rng(seed)
    out: list[tuple[list[int], int, int]] = []
    for i in rng.permutation(len(lines)):
        ids = tok.encode(lines[i], add_special_tokens=False)[:100]
        tokens = tok.convert_ids_to_tokens(ids)
        spots = [
            j
            for j in range(4, len(ids) - 4)
            if re.fullmatch(r"[a-z]{3,}", tokens[j]) and not tokens[j + 1].startswith("##")
        ]
        if spots:
            j = int(rng.choice(spots))
            out.append((ids, j, ids[j]))
        if len(out) == n:
            break
    return out


def probe(models: dict, n: int) -> dict:
    import torch

    from bertforge.model import BertForMaskedLM, BertLMHeadModel
    from bertforge.tokenization import BertTokenizer

    tok = BertTokenizer(vocab_file())
    items = probes(n)
    mlm = BertForMaskedLM.from_pretrained(models["mlm"]["dir"]).eval() if "mlm" in models else None
    clm = BertLMHeadModel.from_pretrained(models["clm"]["dir"]).eval() if "clm" in models else None
    hits = {k: [0, 0] for k in ("mlm", "clm") if k in models}
    with torch.no_grad():
        for ids, j, word in items:
            if mlm is not None:  # both sides of the blank
                both = [tok.cls_token_id] + ids[:j] + [tok.mask_token_id] + ids[j + 1 :] + [tok.sep_token_id]
                top = mlm(torch.tensor([both])).logits[0, j + 1].topk(5).indices.tolist()
                hits["mlm"][0] += top[0] == word
                hits["mlm"][1] += word in top
            if clm is not None:  # the left side only
                left = [tok.cls_token_id] + ids[:j]
                top = clm(torch.tensor([left])).logits[0, -1].topk(5).indices.tolist()
                hits["clm"][0] += top[0] == word
                hits["clm"][1] += word in top
    n = len(items)
    return {
        "words": n,
        **{f"{k}_top1": round(v[0] / n, 4) for k, v in hits.items()},
        **{f"{k}_top5": round(v[1] / n, 4) for k, v in hits.items()},
    }


def plot(record: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["SST-2 acc", "CoNLL F1 (testb)", "fill-in top-1", "fill-in top-5"]
    values: dict[str, list[float]] = {"mlm": [], "clm": []}
    for objective in ("mlm", "clm"):
        for task in ("sst2", "conll"):
            values[objective].append(100 * record["finetune_median"][task][objective])
        values[objective] += [100 * record["probe"][f"{objective}_top1"], 100 * record["probe"][f"{objective}_top5"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], values["mlm"], width=0.4, label="MLM (bidirectional, BERT)")
    ax.bar([i + 0.2 for i in x], values["clm"], width=0.4, label="CLM (causal, GPT)")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("%")
    ax.set_title(
        f"same blocks, same {record['pretraining']['mlm']['steps']} steps: medians of {len(record['seeds'])} seeds"
    )
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=12.0)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--sst2-train", type=int, default=2000)
    p.add_argument("--conll-train", type=int, default=1500)
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    p.add_argument("--probe-words", type=int, default=1000)
    p.add_argument("--objectives", default="mlm,clm", help="mlm,clm, or one of them (e.g. MLM at CLM's compute)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "objectives.json"))
    args = p.parse_args()
    import torch

    from benchmarks._common import machine

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    seeds = [int(s) for s in args.seeds.split(",")]
    record: dict = {"machine": machine(), "seeds": seeds, "setup": {k: v for k, v in vars(args).items() if k != "out"}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        prefix = english_corpus(tmp)
        record["pretraining"] = pretrain_both(prefix, args, tmp)
        record["probe"] = probe(record["pretraining"], args.probe_words)
        print("probe", json.dumps(record["probe"]), flush=True)
        rows = finetune_all(record["pretraining"], seeds, tmp, args)
    record["finetune"] = rows
    objectives = args.objectives.split(",")
    record["finetune_median"] = {
        task: {
            o: statistics.median(r["metric"] for r in rows if r["task"] == task and r["objective"] == o)
            for o in objectives
        }
        for task in ("sst2", "conll")
    }
    for objective in objectives:
        record["pretraining"][objective].pop("dir")
    write_result(args.out, record)
    if len(objectives) == 2:
        plot(record, str(Path(args.out).with_suffix(".png")))
    print(json.dumps(record["finetune_median"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
