"""Text generation from a causal checkpoint (``BertLMHeadModel``, pretrained with ``--objective clm``).

``generate`` extends one prompt a token at a time: greedy (argmax) or sampled with temperature, top-k and top-p
(nucleus) filtering from a seeded generator; it stops after ``max_new_tokens``, at the stop token ([SEP], which ends
every pretraining sample) or at the model's last position. With ``use_cache`` each step runs only the new token
against the keys and values kept from the earlier ones (``KVCache``), otherwise the whole sequence again; both give
the same tokens (tests/unit/test_generation.py), the cache many times faster on long outputs (README).

A bidirectional checkpoint (BERT's MLM) cannot generate: in training every position saw the tokens after it, so it
never learnt to predict the next one. Asking it to is an error that says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bertforge.model.attention import KVCache

NOT_CAUSAL = (
    "{what} was trained with bidirectional attention (is_decoder false, BERT's masked-LM): every position saw the "
    "tokens after it, so it never learnt to predict the next token; generation needs a causal checkpoint "
    "(bertforge pretrain --objective clm)"
)


def check_causal(config, what: str = "this model") -> None:
    if not config.is_decoder:
        raise ValueError(NOT_CAUSAL.format(what=what))


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """(V,) logits with everything outside the top ``top_k`` and outside the smallest set whose probability reaches
    ``top_p`` set to -inf (the most likely token always stays)."""
    if top_k and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # the mass before a token already reaches top_p
        drop[0] = False
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return logits


@torch.no_grad()
def generate(
    model,
    input_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop_token_id: int | None = None,
    use_cache: bool = True,
) -> list[int]:
    """The new token ids after the prompt ``input_ids`` (one sequence; the stop token, when reached, included)."""
    check_causal(model.config)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if do_sample and temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    device = next(model.parameters()).device
    ids = torch.as_tensor(list(input_ids) if not isinstance(input_ids, torch.Tensor) else input_ids, dtype=torch.long)
    ids = ids.reshape(1, -1).to(device)
    if ids.shape[1] == 0:
        raise ValueError("the prompt has no tokens (it needs at least [CLS])")
    limit = model.config.max_tokens
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    cache = [KVCache() for _ in model.bert.layer_order] if use_cache else None
    was_training = model.training
    model.eval()
    new: list[int] = []
    step_input = ids
    try:
        for _ in range(max_new_tokens):
            if ids.shape[1] >= limit:
                break
            logits = model(step_input if use_cache else ids, cache=cache).logits[0, -1].float()
            if do_sample:
                probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            else:
                token = int(logits.argmax())
            new.append(token)
            ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)
            step_input = ids[:, -1:]
            if stop_token_id is not None and token == stop_token_id:
                break
    finally:
        model.train(was_training)
    return new
