"""Generation from causal checkpoints: greedy is argmax decoding, the key/value cache changes no token, sampling is
seeded and filtered, and a bidirectional checkpoint gets an error that says why."""

from __future__ import annotations

import pytest
import torch

import bertforge
from bertforge.generation import filter_logits, generate
from tests.conftest import tiny_config


def _model(**kw):
    torch.manual_seed(0)
    config = tiny_config(is_decoder=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kw)
    return bertforge.BertLMHeadModel(config).eval()


def test_greedy_equals_argmax_decoding_by_hand():
    model = _model()
    prompt = [2, 17, 40, 5]
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(12):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    assert generate(model, prompt, max_new_tokens=12, use_cache=False) == ids[len(prompt) :]
    assert generate(model, prompt, max_new_tokens=12, use_cache=True) == ids[len(prompt) :]


@pytest.mark.parametrize("options", [{}, {"do_sample": True, "temperature": 0.8, "top_k": 20, "top_p": 0.9}])
def test_the_cache_changes_no_token(options):
    model = _model()
    kw = dict(max_new_tokens=40, seed=3, **options)
    assert generate(model, [2, 9], use_cache=True, **kw) == generate(model, [2, 9], use_cache=False, **kw)


def test_cached_logits_equal_the_full_recomputation():
    from bertforge.model.attention import KVCache

    model = _model()
    ids = torch.tensor([[2, 30, 31, 32, 33, 34, 35]])
    cache = [KVCache() for _ in model.bert.layers]
    with torch.no_grad():
        full = model(ids).logits[0]
        first = model(ids[:, :4], cache=cache).logits[0]
        steps = [model(ids[:, t : t + 1], cache=cache).logits[0, 0] for t in range(4, 7)]
    torch.testing.assert_close(torch.cat([first, torch.stack(steps)]), full, atol=1e-5, rtol=1e-4)


def test_sampling_is_seeded_and_stops_at_the_stop_token():
    model = _model()
    a = generate(model, [2, 9], max_new_tokens=30, do_sample=True, seed=1)
    assert a == generate(model, [2, 9], max_new_tokens=30, do_sample=True, seed=1)
    assert a != generate(model, [2, 9], max_new_tokens=30, do_sample=True, seed=2)
    stop = a[3]
    out = generate(model, [2, 9], max_new_tokens=30, do_sample=True, seed=1, stop_token_id=stop)
    assert out[-1] == stop and stop not in out[:-1]
    # and never past the last position
    assert len(generate(model, [2] * 60, max_new_tokens=30)) == 4  # max_position_embeddings 64


def test_filters_keep_the_top_k_and_the_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.25, 0.15, 0.1]))
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [True, True, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [True, True, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [True, False, False, False]
    assert torch.isfinite(filter_logits(logits[[2, 0, 3, 1]], top_p=0.7)).tolist() == [False, True, False, True]


def test_a_bidirectional_checkpoint_is_told_why_it_cannot_generate(tmp_path):
    bertforge.BertForMaskedLM(tiny_config()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="bidirectional attention"):
        bertforge.pipeline("text-generation", model=str(tmp_path))
    with pytest.raises(ValueError, match="is_decoder=True"):
        bertforge.BertLMHeadModel.from_pretrained(tmp_path)


def test_text_generation_pipeline(tmp_path):
    from bertforge.tokenization import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(94)]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    model = _model()
    model.save_pretrained(tmp_path)
    pipe = bertforge.pipeline("text-generation", model=str(tmp_path))
    out = pipe("w5 w6", max_new_tokens=5)
    assert out[0]["generated_text"].startswith("w5 w6")
    new = generate(model, [2, 10, 11], max_new_tokens=5, stop_token_id=3)
    expected = pipe.tokenizer.decode([10, 11] + new, skip_special_tokens=True)
    assert out == [{"generated_text": expected}]
    assert len(pipe(["w5", "w7"], max_new_tokens=3)) == 2


def test_run_text_generation_command(tmp_path, capsys):
    import json

    from bertforge.cli.main import main
    from bertforge.tokenization import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(94)]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    _model().save_pretrained(tmp_path)
    argv = ["run", "text-generation", "--model", str(tmp_path), "w5 w6", "--max-new-tokens", "4"]
    assert main(argv + ["--do-sample", "--seed", "3", "--top-k", "10", "--top-p", "0.9"]) == 0
    sampled = json.loads(capsys.readouterr().out)
    assert main(argv + ["--do-sample", "--seed", "3", "--top-k", "10", "--top-p", "0.9", "--no-cache"]) == 0
    assert json.loads(capsys.readouterr().out) == sampled  # the same tokens without the cache
    assert sampled["result"][0]["generated_text"].startswith("w5 w6")


@pytest.mark.parametrize("kind", ["prompt", "prefix"])
def test_the_cache_works_with_soft_prompts_and_prefixes(kind):
    from bertforge.config import AdaptConfig
    from bertforge.strategies import apply_strategy

    model = _model()
    apply_strategy(model, AdaptConfig(strategy=kind, prompt_tokens=3, prefix_tokens=3, prompt_init="random"))
    model.eval()
    assert generate(model, [2, 9, 10], max_new_tokens=10, use_cache=True) == generate(
        model, [2, 9, 10], max_new_tokens=10, use_cache=False
    )
