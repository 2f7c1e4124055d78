"""Fine-tuning with BERT's recipe: AdamW (lr 3e-5, weight decay 0.01 off biases and LayerNorm), 10% linear warm-up
then linear decay, gradient clipping 1.0, batch 32, 3 epochs, max length 128; evaluation each epoch, the best epoch
(by the task metric) kept as a Hugging Face directory with id2label and the tokenizer; optional early stopping, bf16,
a frozen encoder (train the head only), or LoRA adapters (merged into the saved weights).

Implemented task family so far: sequence classification (single texts or pairs; single-label, or regression when the
labels are numbers and ``regression=True``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from bertforge.config import OptimConfig
from bertforge.model import BertForSequenceClassification
from bertforge.tasks import metrics as M
from bertforge.tasks.lora import apply_lora, merge_lora
from bertforge.tasks.readers import read_table
from bertforge.tokenization import BertTokenizer
from bertforge.training.optim import build_optimizer, build_scheduler
from bertforge.utils import atomic_directory, logger, progress


@dataclass(kw_only=True)
class FinetuneConfig:
    epochs: int = 3
    lr: float = 3e-5
    batch_size: int = 32
    eval_batch_size: int = 64
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    clip_grad: float = 1.0
    seed: int = 42
    bf16: bool = False
    early_stopping_patience: int | None = None
    """Stop after this many epochs without improvement of the task metric."""
    freeze_encoder: bool = False
    lora_r: int | None = None
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("query", "value")
    max_train_examples: int | None = None
    """Use only the first N training rows (quick runs, learning curves)."""


def _labels(rows: list[dict], path: str, regression: bool, label2id: dict[str, int] | None):
    if regression:
        try:
            return [float(r["label"]) for r in rows], None
        except (TypeError, ValueError):
            bad = next(r for r in rows if not _is_number(r["label"]))
            raise ValueError(f"{path}: line {bad['line']}: label {bad['label']!r} is not a number") from None
    if label2id is None:
        names = sorted({str(r["label"]) for r in rows})
        label2id = {name: i for i, name in enumerate(names)}
    ids = []
    for r in rows:
        if str(r["label"]) not in label2id:
            raise ValueError(f"{path}: line {r['line']}: label {r['label']!r} was not seen in training "
                             f"(labels: {', '.join(label2id)})")
        ids.append(label2id[str(r["label"])])
    return ids, label2id


def _is_number(x) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def classification_metrics(pred, gold, regression: bool, num_labels: int) -> dict[str, float]:
    if regression:
        return {"pearson": M.pearson(pred, gold), "spearman": M.spearman(pred, gold)}
    out = {"accuracy": M.accuracy(pred, gold), "f1_macro": M.f1(pred, gold, average="macro"),
           "matthews": M.matthews_corrcoef(pred, gold)}
    if num_labels == 2:
        out["f1"] = M.f1(pred, gold)
    return out


def finetune_classification(model_dir: str, train_file: str, validation_file: str, output_dir: str, *,
                            text_column: str | int = "sentence", label_column: str | int = "label",
                            text_pair_column: str | int | None = None, has_header: bool = True,
                            regression: bool = False, metric: str | None = None,
                            cfg: FinetuneConfig | None = None, show_progress: bool = True) -> dict:
    """Fine-tune a BERT checkpoint for sequence classification; returns the best epoch's validation metrics."""
    cfg = cfg or FinetuneConfig()
    metric = metric or ("pearson" if regression else "accuracy")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_rows = read_table(train_file, text_column, label_column, text_pair_column, has_header)
    if cfg.max_train_examples:
        train_rows = train_rows[: cfg.max_train_examples]
    valid_rows = read_table(validation_file, text_column, label_column, text_pair_column, has_header)
    if not train_rows:
        raise ValueError(f"{train_file} holds no rows")
    y_train, label2id = _labels(train_rows, train_file, regression, None)
    y_valid, _ = _labels(valid_rows, validation_file, regression, label2id)
    tok = BertTokenizer.from_pretrained(model_dir)
    num_labels = 1 if regression else len(label2id)
    extra = {} if regression else {"id2label": {i: n for n, i in label2id.items()}, "label2id": label2id}
    model = BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=num_labels, problem_type="regression" if regression else "single_label_classification",
        ignore_mismatched_sizes=True, **extra)
    if cfg.freeze_encoder:
        for p in model.bert.parameters():
            p.requires_grad_(False)
    if cfg.lora_r:
        apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, tuple(cfg.lora_targets))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    steps_per_epoch = -(-len(train_rows) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optim_cfg = OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, clip_grad=cfg.clip_grad,
                            lr_warmup_fraction=cfg.warmup_ratio, lr_decay_style="linear")
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_scheduler(optimizer, optim_cfg, total)
    os.makedirs(output_dir, exist_ok=True)
    metrics_path = os.path.join(output_dir, "metrics.jsonl")
    open(metrics_path, "w").close()
    logger.info("fine-tuning %s: %d train / %d validation rows, %d labels, %s trainable parameters, %d steps",
                model_dir, len(train_rows), len(valid_rows), num_labels, f"{trainable:,}", total)
    best, best_epoch, stale = None, -1, 0
    rng = np.random.default_rng(cfg.seed)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if cfg.bf16 else contextlib.nullcontext
    label_dtype = torch.float if regression else torch.long
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(train_rows))
        start = time.perf_counter()
        losses = []
        with progress(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                      enabled=show_progress) as bar:
            for b in range(steps_per_epoch):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                batch = _encode(tok, [train_rows[i] for i in idx], cfg.max_length)
                labels = torch.tensor([y_train[i] for i in idx], dtype=label_dtype)
                with autocast():
                    loss = model(**batch, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.clip_grad)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix_str(f"loss {np.mean(losses[-20:]):.4f}")
        scores = evaluate_classification(model, tok, valid_rows, y_valid, cfg, regression, num_labels)
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "seconds": time.perf_counter() - start,
                  **{f"eval_{k}": v for k, v in scores.items()}}
        with open(metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        logger.info("epoch %d: %s", epoch + 1, json.dumps(record))
        if best is None or scores[metric] > best[metric]:
            best, best_epoch, stale = scores, epoch + 1, 0
            _save_best(model, tok, output_dir)
        else:
            stale += 1
            if cfg.early_stopping_patience is not None and stale >= cfg.early_stopping_patience:
                logger.info("early stopping after epoch %d (best epoch %d)", epoch + 1, best_epoch)
                break
    result = {"best_epoch": best_epoch, **best, "trainable_parameters": trainable}
    with open(os.path.join(output_dir, "finetune_result.json"), "w", encoding="utf-8") as fh:
        json.dump({"result": result, "config": {k: (list(v) if isinstance(v, tuple) else v)
                                                for k, v in asdict(cfg).items()}}, fh, indent=2)
    return result


def _encode(tok: BertTokenizer, rows: list[dict], max_length: int) -> dict:
    texts = [r["text"] for r in rows]
    pairs = [r["text_pair"] for r in rows] if rows and rows[0]["text_pair"] is not None else None
    enc = tok(texts, pairs, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")}


@torch.no_grad()
def evaluate_classification(model, tok, rows, gold, cfg: FinetuneConfig, regression: bool, num_labels: int):
    model.eval()
    preds = []
    for i in range(0, len(rows), cfg.eval_batch_size):
        logits = model(**_encode(tok, rows[i:i + cfg.eval_batch_size], cfg.max_length)).logits.float()
        preds.extend(logits.squeeze(-1).tolist() if regression else logits.argmax(-1).tolist())
    return classification_metrics(preds, gold, regression, num_labels)


def _save_best(model, tok, output_dir: str) -> None:
    """The model as a plain Hugging Face directory (LoRA merged into a copy) with the tokenizer, atomically."""
    import copy

    plain = copy.deepcopy(model)
    merge_lora(plain)
    for p in plain.parameters():
        p.requires_grad_(True)
    with atomic_directory(os.path.join(output_dir, "best")) as tmp:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
