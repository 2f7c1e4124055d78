"""Fine-tuning with BERT's recipe for the three task families of its paper.

Recipe (the defaults of ``FinetuneConfig``): AdamW, lr 3e-5, weight decay 0.01 off biases and LayerNorm, 10% linear
warm-up then linear decay, gradient clipping 1.0, batch 32, 3 epochs, max length 128 (384 with doc_stride 128 for QA).
Each epoch ends with an evaluation on the validation file; the best epoch by the task metric is written to
``OUTPUT/best`` as a Hugging Face directory (config with id2label/label2id, weights, tokenizer files), LoRA merged in;
metrics go to ``OUTPUT/metrics.jsonl`` (one line per epoch) and the best epoch's validation predictions to
``OUTPUT/predictions_validation.jsonl``. A test file, when given, is scored once with the best checkpoint.

- ``finetune_classification``: single texts or pairs; single-label, multi-label (sigmoid, one output per label) or
  regression (one output, MSE).
- ``finetune_ner``: CoNLL files (IOB1 converted to IOB2), first sub-word piece labelled, windows between words.
- ``finetune_qa``: SQuAD v1.1 / v2.0 JSON, windows with doc_stride, n-best span search, the null answer for v2.0.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from bertforge.config import OptimConfig
from bertforge.model import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from bertforge.tasks import metrics as M
from bertforge.tasks.features import autocast_context, collate, predict
from bertforge.tasks.lora import apply_lora, merge_lora
from bertforge.tasks.ner import label_list, ner_features, word_predictions
from bertforge.tasks.qa import best_answers, qa_features
from bertforge.tasks.readers import read_conll, read_squad, read_table
from bertforge.tokenization import BertTokenizer
from bertforge.training.optim import build_optimizer, build_scheduler
from bertforge.utils import (atomic_directory, atomic_write_text, default_device, logger, progress,
                             warn_if_emulated_bf16)

TASKS = ("classification", "ner", "qa")


@dataclass(kw_only=True)
class FinetuneConfig:
    epochs: int = 3
    lr: float = 3e-5
    batch_size: int = 32
    eval_batch_size: int = 64
    max_length: int | None = None
    """Tokens per window; None means 128 (classification, NER) or 384 (QA)."""
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    clip_grad: float = 1.0
    seed: int = 42
    bf16: bool = False
    device: str | None = None
    """"cpu", "cuda", "cuda:1"...; None picks CUDA when available."""
    early_stopping_patience: int | None = None
    """Stop after this many epochs without improvement of the task metric."""
    freeze_encoder: bool = False
    lora_r: int | None = None
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("query", "value")
    max_train_examples: int | None = None
    """Use only the first N training examples (quick runs, learning curves)."""
    max_eval_examples: int | None = None
    stride: int | None = None
    """Overlap of consecutive windows in tokens: NER default (max_length - 2) // 4, QA (doc_stride) default 128."""
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_threshold: float = 0.0
    """SQuAD v2.0: predict no answer when null score - best span score exceeds this."""

    def length(self, task: str) -> int:
        return self.max_length or (384 if task == "qa" else 128)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device(cfg: FinetuneConfig) -> torch.device:
    return default_device(cfg.device or None)


def _prepare(model: torch.nn.Module, cfg: FinetuneConfig) -> int:
    """Freeze the encoder or wrap it with LoRA as asked; returns the number of trainable parameters."""
    if cfg.freeze_encoder and cfg.lora_r:
        raise ValueError("freeze_encoder and lora_r are exclusive: LoRA already freezes the encoder's weights")
    if cfg.freeze_encoder:
        for p in model.bert.parameters():
            p.requires_grad_(False)
    if cfg.lora_r:
        apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, tuple(cfg.lora_targets))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _save_best(model, tok, directory: str) -> None:
    """The model as a plain Hugging Face directory (LoRA merged into a copy) with the tokenizer, atomically."""
    plain = copy.deepcopy(model).cpu()
    merge_lora(plain)
    for p in plain.parameters():
        p.requires_grad_(True)
    with atomic_directory(directory) as tmp:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def _write_jsonl(path: str, records: Sequence[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _fit(model, tok, train_features: list[dict], evaluate: Callable[[torch.nn.Module], tuple[dict, list]],
         cfg: FinetuneConfig, output_dir: str, metric: str, *, token_label_keys: Sequence[str] = (),
         label_dtype: torch.dtype = torch.long, describe: str = "", show_progress: bool = True) -> dict:
    """BERT's fine-tuning loop over pre-encoded features; returns the best epoch's validation metrics."""
    if not train_features:
        raise ValueError("no training examples")
    device = _device(cfg)
    if cfg.bf16:
        warn_if_emulated_bf16(device.type, "--bf16")
    trainable = _prepare(model, cfg)
    model.to(device)
    steps_per_epoch = math.ceil(len(train_features) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optim_cfg = OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, clip_grad=cfg.clip_grad,
                            lr_warmup_fraction=cfg.warmup_ratio, lr_decay_style="linear")
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_scheduler(optimizer, optim_cfg, total)
    params = [p for p in model.parameters() if p.requires_grad]
    os.makedirs(output_dir, exist_ok=True)
    metrics_path = os.path.join(output_dir, "metrics.jsonl")
    open(metrics_path, "w").close()
    logger.info("fine-tuning %s: %d training features, %s trainable parameters, %d steps on %s",
                describe, len(train_features), f"{trainable:,}", total, device)
    best, best_epoch, stale = None, -1, 0
    rng = np.random.default_rng(cfg.seed)
    started = time.perf_counter()
    train_seconds = 0.0
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(train_features))
        start = time.perf_counter()
        losses = torch.zeros((), device=device)
        recent: list[float] = []
        with progress(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                      enabled=show_progress) as bar:
            for b in range(steps_per_epoch):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                batch = collate([train_features[i] for i in idx], tok.pad_token_id, token_label_keys,
                                label_dtype, device)
                with autocast_context(device, cfg.bf16):
                    loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses += loss.detach()
                if (b + 1) % 10 == 0 or b + 1 == steps_per_epoch:  # sync with the device only now and then
                    recent.append(float(loss.detach()))
                    bar.set_postfix_str(f"loss {recent[-1]:.4f}")
                bar.update(1)
        train_seconds += time.perf_counter() - start
        scores, predictions = evaluate(model)
        record = {"epoch": epoch + 1, "train_loss": float(losses) / steps_per_epoch,
                  "train_seconds": time.perf_counter() - start, **{f"eval_{k}": v for k, v in scores.items()}}
        with open(metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        logger.info("epoch %d: %s", epoch + 1, json.dumps(record))
        if metric not in scores:
            raise ValueError(f"metric {metric!r} is not one this task computes ({', '.join(scores)})")
        if best is None or scores[metric] > best[metric]:
            best, best_epoch, stale = scores, epoch + 1, 0
            _save_best(model, tok, os.path.join(output_dir, "best"))
            _write_jsonl(os.path.join(output_dir, "predictions_validation.jsonl"), predictions)
        else:
            stale += 1
            if cfg.early_stopping_patience is not None and stale >= cfg.early_stopping_patience:
                logger.info("early stopping after epoch %d (best epoch %d)", epoch + 1, best_epoch)
                break
    return {"best_epoch": best_epoch, **best, "trainable_parameters": trainable,
            "train_seconds": round(train_seconds, 2), "total_seconds": round(time.perf_counter() - started, 2)}


def _finish(result: dict, cfg: FinetuneConfig, output_dir: str, task: str, model_class: type,
            test: Callable[[torch.nn.Module], tuple[dict, list]] | None) -> dict:
    """Score the test data once with the best checkpoint (``test(model)`` -> metrics, predictions) when there is
    one, and write finetune_result.json."""
    if test is not None:
        best = model_class.from_pretrained(os.path.join(output_dir, "best")).to(_device(cfg))
        scores, records = test(best)
        _write_jsonl(os.path.join(output_dir, "predictions_test.jsonl"), records)
        result.update({f"test_{k}": v for k, v in scores.items()})
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    atomic_write_text(os.path.join(output_dir, "finetune_result.json"),
                      json.dumps({"task": task, "result": result, "config": config}, indent=2) + "\n")
    return result


def _load_tokenizer(model_dir: str) -> BertTokenizer:
    return BertTokenizer.from_pretrained(model_dir)


# ---- classification ---------------------------------------------------------------------------------------------
def _is_number(x) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def _split_labels(value, separator: str) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(separator) if v.strip()]


def classification_labels(rows: list[dict], path: str, kind: str, label2id: dict[str, int] | None,
                          separator: str = ","):
    """Label values for ``kind`` "single" (ids), "multi" (0/1 vectors) or "regression" (floats), and the label map
    (built from ``rows`` when None). An unknown or malformed label names the file and line."""
    if kind == "regression":
        for r in rows:
            if not _is_number(r["label"]):
                raise ValueError(f"{path}: line {r['line']}: label {r['label']!r} is not a number")
        return [float(r["label"]) for r in rows], None
    per_row = [_split_labels(r["label"], separator) if kind == "multi" else [str(r["label"])] for r in rows]
    if label2id is None:
        names = sorted({name for names in per_row for name in names})
        if not names:
            raise ValueError(f"{path}: no labels found in column for labels")
        label2id = {name: i for i, name in enumerate(names)}
    values = []
    for r, names in zip(rows, per_row):
        for name in names:
            if name not in label2id:
                raise ValueError(f"{path}: line {r['line']}: label {name!r} was not seen in training "
                                 f"(labels: {', '.join(label2id)})")
        if kind == "multi":
            vec = [0.0] * len(label2id)
            for name in names:
                vec[label2id[name]] = 1.0
            values.append(vec)
        else:
            values.append(label2id[names[0]])
    return values, label2id


def classification_metrics(pred, gold, kind: str, num_labels: int) -> dict[str, float]:
    """Metrics for predicted vs gold labels: ids (single), 0/1 vectors (multi) or floats (regression)."""
    if kind == "regression":
        return {"pearson": M.pearson(pred, gold), "spearman": M.spearman(pred, gold),
                "mse": float(np.mean((np.asarray(pred) - np.asarray(gold)) ** 2))}
    if kind == "multi":
        return M.multilabel_scores(pred, gold)
    out = {"accuracy": M.accuracy(pred, gold), "f1_macro": M.f1(pred, gold, average="macro"),
           "matthews": M.matthews_corrcoef(pred, gold)}
    if num_labels == 2:
        out["f1"] = M.f1(pred, gold)
    return out


def _encode_rows(tok: BertTokenizer, rows: list[dict], max_length: int, labels: list | None) -> list[dict]:
    texts = [r["text"] for r in rows]
    pairs = [r["text_pair"] for r in rows] if rows and rows[0]["text_pair"] is not None else None
    enc = tok(texts, pairs, truncation=True, max_length=max_length, return_attention_mask=False)
    feats = [{"input_ids": ids, "token_type_ids": types} for ids, types in zip(enc["input_ids"], enc["token_type_ids"])]
    if labels is not None:
        for f, y in zip(feats, labels):
            f["labels"] = y
    return feats


def finetune_classification(model_dir: str, train_file: str, validation_file: str, output_dir: str, *,
                            test_file: str | None = None, text_column: str | int = "sentence",
                            label_column: str | int = "label", text_pair_column: str | int | None = None,
                            has_header: bool = True, regression: bool = False, multi_label: bool = False,
                            label_separator: str = ",", metric: str | None = None,
                            cfg: FinetuneConfig | None = None, show_progress: bool = True) -> dict:
    """Fine-tune a BERT checkpoint for sequence classification; returns the best epoch's validation metrics (and the
    test file's, prefixed ``test_``, when one is given).

    ``multi_label``: each row has any number of labels (a JSON list, or a string split on ``label_separator``); one
    sigmoid output per label, predicted where it is above 0.5. ``regression``: numeric labels, MSE.
    """
    cfg = cfg or FinetuneConfig()
    if regression and multi_label:
        raise ValueError("regression and multi_label are exclusive")
    kind = "regression" if regression else "multi" if multi_label else "single"
    metric = metric or {"regression": "pearson", "multi": "f1_micro", "single": "accuracy"}[kind]
    _seed(cfg.seed)
    max_length = cfg.length("classification")
    train_rows = read_table(train_file, text_column, label_column, text_pair_column, has_header)
    if not train_rows:
        raise ValueError(f"{train_file} holds no rows")
    train_rows = train_rows[: cfg.max_train_examples or None]
    valid_rows = read_table(validation_file, text_column, label_column, text_pair_column, has_header)
    valid_rows = valid_rows[: cfg.max_eval_examples or None]
    y_train, label2id = classification_labels(train_rows, train_file, kind, None, label_separator)
    y_valid, _ = classification_labels(valid_rows, validation_file, kind, label2id, label_separator)
    tok = _load_tokenizer(model_dir)
    num_labels = 1 if kind == "regression" else len(label2id)
    extra = {} if kind == "regression" else {"id2label": {i: n for n, i in label2id.items()}, "label2id": label2id}
    problem = {"regression": "regression", "multi": "multi_label_classification",
               "single": "single_label_classification"}[kind]
    model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels, problem_type=problem,
                                                           ignore_mismatched_sizes=True, **extra)
    train_features = _encode_rows(tok, train_rows, max_length, y_train)

    def evaluate_rows(m, rows, feats, gold):
        logits = np.stack([o[0] for o in predict(m, feats, cfg.eval_batch_size, lambda out: [out.logits],
                                                 pad_token_id=tok.pad_token_id, bf16=cfg.bf16)])
        if kind == "regression":
            pred = logits[:, 0].tolist()
        elif kind == "multi":
            pred = (logits > 0).astype(float).tolist()  # sigmoid(x) > 0.5
        else:
            pred = logits.argmax(-1).tolist()
        id2label = {i: n for n, i in (label2id or {}).items()}
        records = []
        for r, p, lg in zip(rows, pred, logits):
            shown = p if kind == "regression" else ([id2label[k] for k, v in enumerate(p) if v] if kind == "multi"
                                                   else id2label[p])
            records.append({"line": r["line"], "prediction": shown, "label": r["label"],
                            "logits": [round(float(x), 5) for x in lg]})
        return classification_metrics(pred, gold, kind, num_labels), records

    valid_features = _encode_rows(tok, valid_rows, max_length, None)  # encoded once, evaluated every epoch
    result = _fit(model, tok, train_features, lambda m: evaluate_rows(m, valid_rows, valid_features, y_valid), cfg,
                  output_dir, metric, label_dtype=torch.long if kind == "single" else torch.float,
                  describe=f"{model_dir} for {kind} classification ({num_labels} outputs)",
                  show_progress=show_progress)

    def test(best):
        rows = read_table(test_file, text_column, label_column, text_pair_column, has_header)
        gold, _ = classification_labels(rows, test_file, kind, label2id, label_separator)
        return evaluate_rows(best, rows, _encode_rows(tok, rows, max_length, None), gold)

    return _finish(result, cfg, output_dir, "classification", BertForSequenceClassification,
                   test if test_file else None)


# ---- NER ------------------------------------------------------------------------------------------------------------
def finetune_ner(model_dir: str, train_file: str, validation_file: str, output_dir: str, *,
                 test_file: str | None = None, scheme: str = "auto", metric: str = "f1",
                 cfg: FinetuneConfig | None = None, show_progress: bool = True) -> dict:
    """Fine-tune for token classification on CoNLL column files; entity-level precision / recall / F1 (IOB2 spans,
    as conlleval and seqeval count them) on whole words."""
    cfg = cfg or FinetuneConfig()
    _seed(cfg.seed)
    max_length = cfg.length("ner")
    stride = (max_length - 2) // 4 if cfg.stride is None else cfg.stride
    train = read_conll(train_file, scheme)[: cfg.max_train_examples or None]
    valid = read_conll(validation_file, scheme)[: cfg.max_eval_examples or None]
    labels = label_list([s["tags"] for s in train])
    label2id = {t: i for i, t in enumerate(labels)}
    for s in valid:
        unknown = [t for t in s["tags"] if t not in label2id]
        if unknown:
            raise ValueError(f"{validation_file}: line {s['line']}: tag {unknown[0]!r} was not seen in training "
                             f"(tags: {', '.join(labels)})")
    tok = _load_tokenizer(model_dir)
    model = BertForTokenClassification.from_pretrained(
        model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id,
        ignore_mismatched_sizes=True)
    train_features = ner_features(tok, [s["tokens"] for s in train], max_length, stride,
                                  [s["tags"] for s in train], label2id)

    def features(sentences):
        return ner_features(tok, [s["tokens"] for s in sentences], max_length, stride)

    def evaluate_sentences(m, sentences, feats):
        scores = predict(m, feats, cfg.eval_batch_size, lambda out: [out.logits], pad_token_id=tok.pad_token_id,
                         bf16=cfg.bf16, per_token=True)
        words = word_predictions(feats, [s[0] for s in scores], [len(s["tokens"]) for s in sentences])
        pred = [[labels[int(np.argmax(w))] if w is not None else "O" for w in sent] for sent in words]
        gold = [s["tags"] for s in sentences]
        records = [{"line": s["line"], "tokens": s["tokens"], "prediction": p, "label": s["tags"]}
                   for s, p in zip(sentences, pred)]
        return M.entity_scores(pred, gold), records

    valid_features = features(valid)  # encoded once, evaluated every epoch
    result = _fit(model, tok, train_features, lambda m: evaluate_sentences(m, valid, valid_features), cfg, output_dir,
                  metric, token_label_keys=("labels",), describe=f"{model_dir} for NER ({len(labels)} tags)",
                  show_progress=show_progress)

    def test(best):
        sentences = read_conll(test_file, scheme)
        return evaluate_sentences(best, sentences, features(sentences))

    return _finish(result, cfg, output_dir, "ner", BertForTokenClassification, test if test_file else None)


# ---- QA -------------------------------------------------------------------------------------------------------------
def finetune_qa(model_dir: str, train_file: str, validation_file: str, output_dir: str, *,
                test_file: str | None = None, version_2: bool | None = None, metric: str = "f1",
                cfg: FinetuneConfig | None = None, show_progress: bool = True) -> dict:
    """Fine-tune for extractive QA on SQuAD-style JSON; EM and F1 with SQuAD's official normalisation.

    ``version_2``: allow the null answer (None: when the training file has unanswerable questions).
    """
    cfg = cfg or FinetuneConfig()
    _seed(cfg.seed)
    max_length, stride = cfg.length("qa"), 128 if cfg.stride is None else cfg.stride
    train = read_squad(train_file)[: cfg.max_train_examples or None]
    valid = read_squad(validation_file)[: cfg.max_eval_examples or None]
    if version_2 is None:
        version_2 = any(ex.is_impossible for ex in train)
    tok = _load_tokenizer(model_dir)
    model = BertForQuestionAnswering.from_pretrained(model_dir, num_labels=2, ignore_mismatched_sizes=True)
    train_features = qa_features(tok, train, max_length, stride, cfg.max_query_length, train=True)

    def features(examples):
        return qa_features(tok, examples, max_length, stride, cfg.max_query_length)

    def evaluate_examples(m, examples, feats):
        logits = predict(m, feats, cfg.eval_batch_size, lambda out: [out.start_logits, out.end_logits],
                         pad_token_id=tok.pad_token_id, bf16=cfg.bf16, per_token=True)
        answers = best_answers(examples, feats, logits, cfg.n_best, cfg.max_answer_length, version_2,
                               cfg.null_threshold)
        predictions = {ex.id: a[0].text for ex, a in zip(examples, answers)}
        references = {ex.id: ex.answers for ex in examples}
        scores = M.squad_scores(predictions, references)
        if version_2:
            for name, keep in (("has_ans", lambda e: not e.is_impossible), ("no_ans", lambda e: e.is_impossible)):
                subset = {ex.id: ex.answers for ex in examples if keep(ex)}
                if subset:
                    part = M.squad_scores(predictions, subset)
                    scores[f"{name}_exact_match"], scores[f"{name}_f1"] = part["exact_match"], part["f1"]
        records = [{"id": ex.id, "prediction": a[0].text, "answers": ex.answers,
                    "n_best": [{"text": c.text, "score": round(c.score, 4)} for c in a[:5]]}
                   for ex, a in zip(examples, answers)]
        return scores, records

    valid_features = features(valid)  # encoded once, evaluated every epoch
    result = _fit(model, tok, train_features, lambda m: evaluate_examples(m, valid, valid_features), cfg, output_dir,
                  metric, describe=f"{model_dir} for {'SQuAD v2.0' if version_2 else 'SQuAD v1.1'} QA",
                  show_progress=show_progress)

    def test(best):
        examples = read_squad(test_file)
        return evaluate_examples(best, examples, features(examples))

    return _finish(result, cfg, output_dir, "qa", BertForQuestionAnswering, test if test_file else None)


def finetune(task: str, model_dir: str, train_file: str, validation_file: str, output_dir: str, **kwargs) -> dict:
    """``finetune("classification" | "ner" | "qa", ...)``: the function for the task, with its keyword arguments."""
    functions = {"classification": finetune_classification, "ner": finetune_ner, "qa": finetune_qa}
    if task not in functions:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    return functions[task](model_dir, train_file, validation_file, output_dir, **kwargs)
