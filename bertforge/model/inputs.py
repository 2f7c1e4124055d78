"""The encoder's inputs, prepared beside it: the public inputs checked and completed (``check_inputs``); a soft
prompt's tokens put in front and the positions moved past a prefix or a key/value cache (``prepare_padded``); and the
one conversion of the public attention mask, with the padding-free decision (``attention_plan``).

Host syncs: the range checks read values on the host (free on CPU; on an accelerator only outside training), and
``attention_plan`` reads the padding count and the longest sequence once per forward (the one sync per forward on an
accelerator, which packed batches avoid).
"""

from __future__ import annotations

import torch

from bertforge.model.config import BertConfig
from bertforge.model.padding import Packing, packing, worth_unpadding


def prepare_padded(
    config: BertConfig,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    prompt_tokens: int = 0,
    prefix_tokens: int = 0,
    cached: int = 0,
):
    """(input_ids, attention_mask, token_type_ids, position_ids), each (B, P + S): checked, completed, with a soft
    prompt's P tokens in front (real to the mask, segment 0, positions 0..P-1, then the input's moved by P); the
    input's default positions start after a prefix's and a cache's (as transformers does after cached keys)."""
    offset = prefix_tokens + cached
    if offset and position_ids is None and isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2:
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device) + offset
        position_ids = (position_ids + config.position_offset).expand_as(input_ids)
    input_ids, attention_mask, token_type_ids, position_ids = check_inputs(
        config, input_ids, attention_mask, token_type_ids, position_ids, extra=prompt_tokens
    )
    if prompt_tokens:
        B, P = input_ids.shape[0], prompt_tokens
        front = torch.ones(B, P, dtype=torch.long, device=input_ids.device)
        if attention_mask is not None:
            attention_mask = torch.cat([front.to(attention_mask.dtype), attention_mask], dim=1)
        token_type_ids = torch.cat([torch.zeros_like(front), token_type_ids], dim=1)
        first = torch.arange(P, device=front.device) + config.position_offset
        position_ids = torch.cat([first.expand(B, -1), position_ids + P], 1)
    return input_ids, attention_mask, token_type_ids, position_ids


def attention_plan(
    attention_mask: torch.Tensor | None, padding_free: bool, backend: str
) -> tuple[torch.Tensor | None, Packing | None]:
    """The one conversion of the public mask, (B, S) 1 = real -> (B, 1, 1, S) bool, True = attend, and the packing of
    a padded batch's real tokens when that pays: (key mask or None, packing or None). No padding drops the mask (SDPA
    then takes its unmasked kernels); much padding packs the batch (SDPA backend only)."""
    real = None if attention_mask is None else attention_mask.bool()
    if real is None:
        padding = longest = 0
    elif torch.compiler.is_compiling():  # a data-dependent branch would break the graph: keep the mask, padded
        padding = longest = -1
    else:
        padding, longest = torch.stack([(~real).sum(), real.sum(-1).max()]).tolist() if real.numel() else (0, 0)
    key_mask = real[:, None, None, :] if padding and real is not None else None
    packed = None
    if padding_free and backend == "sdpa" and padding > 0 and attention_mask is not None:
        if worth_unpadding(padding, attention_mask.numel()):
            packed = packing(attention_mask, total=attention_mask.numel() - padding, max_seqlen=longest)
    return key_mask, packed


def check_inputs(config: BertConfig, input_ids, attention_mask, token_type_ids, position_ids, extra: int = 0):
    """Validate and complete the public inputs; raise ValueError naming the bad input and by how much. ``extra``:
    positions the model adds in front (a soft prompt's tokens)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        got = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a (batch, sequence) tensor of token ids, got {got}")
    if input_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    B, S = input_ids.shape
    if S == 0 or B == 0:
        raise ValueError(f"input_ids has shape {(B, S)}: a batch needs at least one sequence of at least one token")
    if S + extra > config.max_tokens and position_ids is None:
        with_prompt = f" (with the {extra} prompt tokens)" if extra else ""
        covered = "" if config.max_tokens == config.max_position_embeddings else f", {config.max_tokens} tokens"
        raise ValueError(
            f"input has {S} tokens{with_prompt}, {S + extra - config.max_tokens} more than the model's "
            f"max_position_embeddings ({config.max_position_embeddings}{covered}); truncate or window the input"
        )
    for name, t in (
        ("attention_mask", attention_mask),
        ("token_type_ids", token_type_ids),
        ("position_ids", position_ids),
    ):
        if t is not None and tuple(t.shape) != (B, S):
            raise ValueError(f"{name} has shape {tuple(t.shape)} but input_ids has shape {(B, S)}; they must match")
    # Range checks read values on the host: free on CPU; on an accelerator they would sync every step, so they run
    # there only outside training (the id-range failure on device is a clear device-side assert anyway).
    if (input_ids.device.type == "cpu" or not torch.is_grad_enabled()) and not torch.compiler.is_compiling():
        _check_range("input_ids", input_ids, config.vocab_size, "vocab_size")
        if token_type_ids is not None and config.has_token_types:
            _check_range("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size")
        if position_ids is not None:
            _check_range(
                "position_ids", position_ids + extra, config.max_position_embeddings, "max_position_embeddings"
            )
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    if position_ids is None and config.position_offset:
        # RoBERTa's rule: real tokens count up from pad + 1, padding ids sit at the padding position (left padding too)
        real = input_ids.ne(config.pad_token_id)
        position_ids = (real.cumsum(1) * real + config.pad_token_id).long()
    elif position_ids is None:
        position_ids = torch.arange(S, device=input_ids.device).expand(B, S)
    return input_ids, attention_mask, token_type_ids, position_ids


def _check_range(name: str, t: torch.Tensor, limit: int, limit_name: str) -> None:
    if t.numel() == 0:
        return
    lo, hi = int(t.min()), int(t.max())
    if hi >= limit:
        raise ValueError(
            f"{name} holds {hi}, which is {hi - limit + 1} past the last valid id ({limit - 1}; {limit_name} = {limit})"
        )
    if lo < 0:
        raise ValueError(f"{name} holds {lo}; ids must be >= 0")
