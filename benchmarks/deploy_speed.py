"""Serving a fine-tuned model on this CPU: bertforge fp32 / bf16 / int8 against onnxruntime fp32 / int8 on
the same checkpoint: SST-2 dev accuracy (872 sentences) and speed on three workloads, one process, interleaved.

Usage: python benchmarks/deploy_speed.py --model DIR (a sentence classifier, e.g. the distillation benchmark's SST-2
       teacher) [--rounds 3] [--out benchmarks/results/deploy_speed.json]

Workloads (sentences/s, best of the rounds): "variable" = the dev set in batches of 32 as they come (padded to each
batch's longest); "full" = batches of 32 x 128 tokens (the sentences padded to 128); "single" = one sentence of 32
tokens at a time. bertforge int8 = ``dtype="int8"`` (dynamic int8 linear layers, one weight scale per output row);
onnxruntime int8 = ``onnxruntime.quantization.quantize_dynamic`` of the exported graph (QInt8 weights per channel,
as bertforge's); "transformers' graph" is the same checkpoint as transformers' model exported by torch.onnx, run by
the same onnxruntime (export vs runtime). bf16 runs only where the CPU has native bf16. The machine (CPU, flags,
matmul peaks) is recorded in the file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, write_result  # noqa: E402


def _export_transformers(model: str, path: Path) -> None:
    """transformers' BertForSequenceClassification of the same checkpoint, exported with torch.onnx (TorchScript
    exporter, eager attention), to tell the export's cost from onnxruntime's."""
    import warnings

    import transformers

    hf = transformers.BertForSequenceClassification.from_pretrained(model, attn_implementation="eager").eval()

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = tuple(torch.ones(2, 16, dtype=torch.long) for _ in names)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(hf).eval(),
            example,
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names},
            dynamo=False,
            opset_version=17,
        )


def ner_f1(model_dir: str, bf16: bool, sentences: int = 1000) -> dict[str, float]:
    """Entity F1 (CoNLL's, micro over entities) of a token classifier on eng.testb in fp32, bf16 and int8."""
    from bertforge.deploy import quantize_int8
    from bertforge.model import BertForTokenClassification
    from bertforge.tasks import metrics as M
    from bertforge.tasks.features import predict
    from bertforge.tasks.ner import ner_features, word_predictions
    from bertforge.tasks.readers import read_conll
    from bertforge.tokenization import load_tokenizer

    data = read_conll(str(DATA / "conll2003" / "eng.testb"))[:sentences]
    tok = load_tokenizer(model_dir)
    fp32 = BertForTokenClassification.from_pretrained(model_dir).eval()
    labels = [fp32.config.id2label[i] for i in range(fp32.config.num_labels)]
    feats = ner_features(tok, [s["tokens"] for s in data], 128, 32)
    systems = {"bertforge fp32": fp32, "bertforge int8": quantize_int8(fp32)}
    if bf16:
        systems["bertforge bf16"] = BertForTokenClassification.from_pretrained(model_dir).eval().to(torch.bfloat16)
    out = {}
    for name, model in systems.items():
        scores = predict(model, feats, 64, lambda o: [o.logits.float()], pad_token_id=tok.pad_token_id, per_token=True)
        words = word_predictions(feats, [s[0] for s in scores], [len(s["tokens"]) for s in data])
        pred = [[labels[int(np.argmax(w))] if w is not None else "O" for w in sent] for sent in words]
        out[name] = round(M.entity_scores(pred, [s["tags"] for s in data])["f1"], 4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--ner-model",
        default=None,
        help="also a token classifier fine-tuned on CoNLL-2003: its entity F1 on the first 1,000 sentences of "
        "eng.testb in fp32, bf16 and int8",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "deploy_speed.json"))
    args = ap.parse_args()
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from benchmarks._common import machine
    from bertforge.deploy import export_onnx, quantize_int8
    from bertforge.model import BertForSequenceClassification
    from bertforge.tasks.readers import read_table
    from bertforge.tokenization import load_tokenizer
    from bertforge.utils import fast_bf16

    rows = read_table(str(DATA / "glue" / "SST-2" / "dev.tsv"), "sentence", "label")
    texts, gold = [r["text"] for r in rows], np.array([int(r["label"]) for r in rows])
    tok = load_tokenizer(args.model)
    fp32 = BertForSequenceClassification.from_pretrained(args.model).eval()
    work = Path(tempfile.mkdtemp(prefix="bf-deploy-"))
    export = export_onnx(fp32, work / "model.onnx")
    quantize_dynamic(
        str(work / "model.onnx"), str(work / "model.int8.onnx"), weight_type=QuantType.QInt8, per_channel=True
    )
    _export_transformers(args.model, work / "transformers.onnx")  # the anchor: transformers' own graph
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    sessions = {
        name: ort.InferenceSession(str(work / f), options, providers=["CPUExecutionProvider"])
        for name, f in (
            ("onnxruntime fp32", "model.onnx"),
            ("onnxruntime int8", "model.int8.onnx"),
            ("onnxruntime fp32, transformers' graph", "transformers.onnx"),
        )
    }
    systems: dict = {"bertforge fp32": fp32, "bertforge int8": quantize_int8(fp32)}
    if fast_bf16("cpu"):
        systems["bertforge bf16"] = BertForSequenceClassification.from_pretrained(args.model).eval().to(torch.bfloat16)
    systems.update(sessions)
    names = export["inputs"]

    def run(system, batch: dict) -> np.ndarray:
        if isinstance(system, ort.InferenceSession):
            return system.run(None, {k: batch[k].numpy() for k in names})[0]
        with torch.inference_mode():
            return system(**batch).logits.float().numpy()

    variable = [tok(texts[i : i + 32], padding=True, return_tensors="pt") for i in range(0, len(texts), 32)]
    full = [
        tok(texts[i : i + 32], padding="max_length", truncation=True, max_length=128, return_tensors="pt")
        for i in range(0, 256, 32)
    ]
    single = [tok(t, truncation=True, max_length=32, padding="max_length", return_tensors="pt") for t in texts[:64]]
    workloads = {"variable (dev, batch 32)": variable, "full (32 x 128)": full, "single (1 x 32)": single}
    record: dict = {"machine": machine(), "model": args.model, "onnx_export": export, "accuracy": {}, "speed": {}}
    for name, system in systems.items():
        logits = np.concatenate([run(system, b) for b in variable])
        record["accuracy"][name] = round(float((logits.argmax(-1) == gold).mean()), 4)
        print(f"{name}: accuracy {record['accuracy'][name]:.4f}", flush=True)
    best = {w: {n: 0.0 for n in systems} for w in workloads}
    for _ in range(args.rounds):
        for w, batches in workloads.items():
            count = sum(int(b["input_ids"].shape[0]) for b in batches)
            for name, system in systems.items():  # interleaved: machine noise hits every system alike
                start = time.perf_counter()
                for b in batches:
                    run(system, b)
                best[w][name] = max(best[w][name], count / (time.perf_counter() - start))
    record["speed"] = {w: {n: round(v, 1) for n, v in r.items()} for w, r in best.items()}
    print(json.dumps(record["speed"], indent=1))
    if args.ner_model:
        record["ner_entity_f1"] = ner_f1(args.ner_model, fast_bf16("cpu"))
        print(json.dumps(record["ner_entity_f1"]))
    write_result(args.out, record, WORK=work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
