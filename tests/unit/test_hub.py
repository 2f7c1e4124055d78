"""Model names resolve as in transformers, offline: an installed model package, the Hugging Face cache layout
(HF_HUB_CACHE / HF_HOME), and a one-line error listing what is here when a name is nowhere local."""

from __future__ import annotations

import shutil

import pytest

import bertforge
from bertforge.cli.main import main
from bertforge.hub import local_models, resolve_model

FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture
def hub_cache(tmp_path, minilm, monkeypatch):
    """A Hugging Face cache with google-bert/bert-test (the MiniLM files) at commit abc123."""
    repo = tmp_path / "hf" / "hub" / "models--google-bert--bert-test"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in FILES:
        if (minilm / name).exists():
            shutil.copy(minilm / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


def test_names_resolve_from_the_cache_and_the_package(hub_cache, minilm):
    assert resolve_model("google-bert/bert-test") == str(hub_cache)
    assert resolve_model("bert-test") == str(hub_cache)  # no organisation: any organisation's copy
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == str(minilm)
    assert resolve_model("all-MiniLM-L6-v2") == str(minilm)
    names = {m.name for m in local_models()}
    assert {"google-bert/bert-test", "all-minilm-l6-v2"} <= names
    model = bertforge.BertModel.from_pretrained("bert-test")
    tok = bertforge.BertTokenizer.from_pretrained("bert-test")
    assert model.config.hidden_size == 384 and tok.vocab_size == 30522
    emb = bertforge.pipeline("sentence-embedding", model="google-bert/bert-test")
    assert len(emb(["a sentence"])[0]) == 384


def test_hf_hub_cache_wins_over_hf_home(hub_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="not a directory, an installed model package or in the Hugging Face cache"):
        resolve_model("bert-test")


def test_an_unknown_name_offline_is_one_line_listing_what_is_here(hub_cache, capsys):
    with pytest.raises(ValueError, match=r"'bert-base-uncased'.*HF_HUB_OFFLINE is set. Models here: .*bert-test"):
        resolve_model("bert-base-uncased")
    assert main(["info", "bert-base-uncased"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bert-base-uncased" in err
    assert main(["models"]) == 0
    assert "google-bert/bert-test" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model("./no/such/dir")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model("runs/typo/hf")  # two slashes: a path, never sent to the Hub


def test_online_a_name_not_here_is_downloaded_into_the_cache(hub_cache, monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []

    def fake_download(name, allow_patterns, cache_dir):
        calls.append((name, cache_dir))
        return str(hub_cache)

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert resolve_model("google-bert/bert-base-uncased") == str(hub_cache)
    assert calls == [("google-bert/bert-base-uncased", str(tmp_path / "hf" / "hub"))]
