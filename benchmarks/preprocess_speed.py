"""Preprocessing throughput and memory, and sample-builder + masking speed.

Usage: python benchmarks/preprocess_speed.py [--out DIR]
- MB/s of `bertforge preprocess` on $BERTFORGE_DATA/gutenberg (10.4 MB) with 1 and 2 workers, each in a fresh process,
  with its peak RSS; and the same corpus concatenated 10x (~100 MB) to show that memory does not grow with input size.
- The ceiling: `tokenizers` encode_batch alone on the same sentences (MB/s).
- Samples/s of PretrainingSamples.get + Masker (NSP, seq 128).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import DATA, vocab_file  # noqa: E402


def run_preprocess(inputs: list[str], prefix: str, workers: int) -> dict:
    """Preprocess in a child process; report its wall time and peak RSS (ru_maxrss of the children)."""
    code = (
        "import sys, json; from bertforge.data.preprocess import preprocess; "
        f"s = preprocess({inputs!r}, {prefix!r}, {vocab_file()!r}, workers={workers}, errors='replace', "
        "show_progress=False); print(json.dumps(s.__dict__))"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    secs = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "workers": workers,
        "MB": stats["bytes_read"] / 1e6,
        "seconds": secs,
        "MB/s": stats["bytes_read"] / 1e6 / secs,
        "peak_rss_MB_max_child": max(peak, before) / 1024,
        "tokens": stats["tokens"],
        "documents": stats["documents"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="where to write results.json (default: a temp dir)")
    args = ap.parse_args()
    files = sorted(str(p) for p in (DATA / "gutenberg").glob("*.txt"))
    work = Path(tempfile.mkdtemp(prefix="bf-bench-"))
    from benchmarks._common import machine

    results: dict = {"machine": machine(peaks=False)}
    for workers in (1, 2):
        r = run_preprocess(files, str(work / f"g{workers}"), workers)
        results[f"gutenberg_{workers}_workers"] = r
        print(f"gutenberg 10 MB, {workers} worker(s): {r['MB/s']:.2f} MB/s ({r['seconds']:.1f}s)")
    big = work / "big.txt"
    with open(big, "wb") as out:
        for _ in range(10):
            for f in files:
                out.write(Path(f).read_bytes())
                out.write(b"\n\n")
    small = work / "small.txt"
    small.write_bytes(big.read_bytes()[: 10 * 1024 * 1024])
    # Fresh processes so that each peak RSS is its own (ru_maxrss of children is a running max, so small runs first).
    for name, path in (("10MB", small), ("100MB", big)):
        code = (
            "import json, resource; from bertforge.data.preprocess import preprocess; "
            f"s = preprocess([{str(path)!r}], {str(work / name)!r}, {vocab_file()!r}, workers=2, errors='replace',"
            " show_progress=False); "
            "print(json.dumps({'MB': s.bytes_read / 1e6, 's': s.seconds, "
            "'rss_MB': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
            "'worker_rss_MB': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[f"memory_{name}"] = r
        print(
            f"{name}: {r['MB']:.0f} MB in {r['s']:.1f}s ({r['MB'] / r['s']:.2f} MB/s); peak RSS main "
            f"{r['rss_MB']:.0f} MB, largest worker {r['worker_rss_MB']:.0f} MB"
        )
    # Ceiling: the tokenizer alone on the same sentences.
    from bertforge.data.sentences import split_sentences
    from bertforge.tokenization import BertTokenizer

    tok = BertTokenizer(vocab_file()).backend
    text = "".join(Path(f).read_bytes().decode("latin-1") for f in files)
    sentences = [s for block in text.split("\n\n") for s in split_sentences(block)]
    start = time.perf_counter()
    for i in range(0, len(sentences), 4096):
        tok.encode_batch(sentences[i : i + 4096], add_special_tokens=False)
    secs = time.perf_counter() - start
    results["tokenizers_encode_MB/s"] = len(text) / 1e6 / secs
    start = time.perf_counter()
    split_sentences(text)
    results["sentence_split_MB/s"] = len(text) / 1e6 / (time.perf_counter() - start)
    print(
        f"ceiling: tokenizers encode_batch alone {results['tokenizers_encode_MB/s']:.2f} MB/s; "
        f"sentence splitting alone {results['sentence_split_MB/s']:.2f} MB/s"
    )
    # Sample builder + masking.

    from bertforge.data.dataset import PretrainingStream
    from bertforge.data.indexed import IndexedDataset
    from bertforge.data.masking import Masker
    from bertforge.data.samples import PretrainingSamples, SpecialIds

    full = BertTokenizer(vocab_file())
    ds = IndexedDataset(str(work / "g1_text_sentence"))
    start = time.perf_counter()
    samples = PretrainingSamples(
        ds, SpecialIds.from_tokenizer(full), max_seq_length=128, binary_head="nsp", seed=0, cache_dir=str(work)
    )
    index_secs = time.perf_counter() - start
    stream = PretrainingStream([samples], Masker.from_tokenizer(full), seed=0)
    n = 20000
    start = time.perf_counter()
    for p in range(n):
        stream[p]
    secs = time.perf_counter() - start
    results["sample_index"] = {"samples": len(samples), "build_seconds": index_secs}
    results["samples_per_second"] = n / secs
    print(
        f"sample index: {len(samples):,} samples in {index_secs:.1f}s; sample + mask: {n / secs:,.0f} samples/s "
        f"(seq 128, NSP, one process)"
    )
    out_dir = Path(args.out) if args.out else work
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "preprocess_results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {out_dir / 'preprocess_results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
