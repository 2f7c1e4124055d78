"""Attention kernels behind one dispatch function, ``attend``.

The encoder hands ``attend`` its fused projections (B, S, 3H) -- or, padding-free, the packed (T, 3H) with their
``Packing`` -- and gets the context back in the same layout. Which kernel runs:

- packed, CUDA, fp16/bf16, no attention dropout: FlashAttention's varlen kernel (``torch.nn.attention.varlen``), no
  padding anywhere;
- packed, CPU training with attention dropout, batches of ``PER_SEQUENCE_MIN_LENGTH``+ tokens: one sequence at a time
  (sum(len^2) score entries instead of B x max_len^2);
- otherwise (packed): the sequences are scattered into a padded block for SDPA with the key mask and gathered back;
- padded: SDPA's fused kernels (``attention``), or the explicit softmax (``eager_attention``) when the probabilities
  are asked for, and on the CPU with attention dropout (SDPA would fall back to the same math with PyTorch's slow
  mask sampler; the fast mask of ``dropout.py`` is used instead).

Shapes: B batch, S sequence, N heads, D head size, H = N x D, T packed tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bertforge.model.dropout import dropout
from bertforge.model.padding import Packing, pad, unpad

try:  # PyTorch's FlashAttention varlen kernel (CUDA, fp16/bf16)
    from torch.nn.attention.varlen import varlen_attn as _varlen_attn
except ImportError:  # older PyTorch
    _varlen_attn = None  # type: ignore[assignment]

PER_SEQUENCE_MIN_LENGTH = 128
"""CPU training with attention dropout computes attention one sequence at a time from this batch length on (sum of
len^2 score entries instead of B x max_len^2); below it the Python loop costs more than it saves (measured:
benchmarks/README.md)."""


def attend(
    qkv: torch.Tensor,
    num_heads: int,
    key_mask: torch.Tensor | None,
    dropout_p: float,
    backend: str = "sdpa",
    packed: Packing | None = None,
    prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    causal: bool = False,
    cache: KVCache | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head attention on fused projections laid out [q | k | v].

    qkv (B, S, 3H) with key_mask (B, 1, 1, S) bool (True = attend) or None; or packed (T, 3H) with ``packed``.
    ``prefix``: trained keys and values (N, P, D) each (prefix tuning) that every query also attends to.
    ``causal``: each position attends to itself and earlier ones only (and to any prefix or cached keys before it).
    ``cache``: this layer's keys and values of earlier positions (incremental decoding, padded layout, no padding); the
    new ones are appended to it.
    ``backend`` "eager" returns the probabilities (B, N, S, S) (or (B, N, S, P + S) with a prefix) too (padded
    layout only). Returns the context in the layout of the input, (B, S, H) or (T, H), and the probabilities or None.
    """
    H = qkv.shape[-1] // 3
    D = H // num_heads
    if packed is not None:
        return _packed(qkv, num_heads, D, key_mask, dropout_p, packed, prefix, causal), None
    B, S, _ = qkv.shape
    q, k, v = qkv.view(B, S, 3, num_heads, D).permute(2, 0, 3, 1, 4)  # (B, S, 3H) -> 3 x (B, N, S, D)
    if cache is not None:
        if key_mask is not None:
            raise ValueError("incremental decoding takes sequences without padding")
        k, v = cache.append(k, v)
    if prefix is not None:
        k, v, key_mask = with_prefix(k, v, key_mask, prefix)
    probs = None
    if backend == "eager":
        ctx, probs = eager_attention(q, k, v, key_mask, dropout_p, causal)
    else:
        ctx = attention(q, k, v, key_mask, dropout_p, causal)
    return ctx.transpose(1, 2).reshape(B, S, H), probs  # (B, N, S, D) -> (B, S, H)


class KVCache:
    """One layer's keys and values (B, N, L, D) of the positions decoded so far."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is not None and self.v is not None:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.k, self.v = k, v
        return k, v


def causal_mask(q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    """(q_len, k_len) bool, True = attend: query i (the last q_len of k_len positions) sees keys up to its own."""
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)


def _with_causal(key_mask: torch.Tensor | None, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    allowed = causal_mask(q.shape[-2], k.shape[-2], q.device)[None, None]  # (1, 1, Sq, Sk)
    return allowed if key_mask is None else allowed & key_mask


def with_prefix(
    k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, prefix: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keys and values (B, N, S, D) with the prefix (N, P, D) in front, and the key mask widened to match."""
    B = k.shape[0]
    pk, pv = (t.to(k.dtype).unsqueeze(0).expand(B, -1, -1, -1) for t in prefix)
    k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
    if key_mask is not None:
        ones = key_mask.new_ones(*key_mask.shape[:-1], pk.shape[2]).expand(B, -1, -1, -1)
        key_mask = torch.cat([ones, key_mask.expand(B, -1, -1, -1)], dim=-1)
    return k, v, key_mask


def _packed(
    qkv: torch.Tensor,
    num_heads: int,
    D: int,
    key_mask: torch.Tensor | None,
    dropout_p: float,
    p: Packing,
    prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    causal: bool = False,
) -> torch.Tensor:
    T, H3 = qkv.shape
    H = H3 // 3
    # a prefix joins each sequence's keys: it takes the padded block route below, where every row sees it
    fused = prefix is None and qkv.is_cuda and qkv.dtype in (torch.float16, torch.bfloat16) and dropout_p == 0.0
    if _varlen_attn is not None and fused:
        q, k, v = qkv.view(T, 3, num_heads, D).unbind(1)  # each (T, N, D)
        window = (-1, 0) if causal else (-1, -1)  # causal: no keys to the right
        ctx = _varlen_attn(q, k, v, p.cu_seqlens, p.cu_seqlens, p.max_seqlen, p.max_seqlen, window_size=window)
        return ctx.reshape(T, H)  # type: ignore[union-attr]  # a tensor unless return_aux is asked for
    if prefix is None and dropout_p > 0.0 and not qkv.is_cuda and p.max_seqlen >= PER_SEQUENCE_MIN_LENGTH:
        return _per_sequence(qkv, num_heads, D, p, dropout_p, causal)
    B, S = p.batch, p.seq
    blocks = pad(qkv, p)  # (B, S, 3H): the sequences apart, for SDPA with the key mask
    q, k, v = blocks.view(B, S, 3, num_heads, D).permute(2, 0, 3, 1, 4)
    if prefix is not None:
        k, v, key_mask = with_prefix(k, v, key_mask, prefix)
    ctx = attention(q, k, v, key_mask, dropout_p, causal)
    return unpad(ctx.transpose(1, 2).reshape(B, S, H), p)


def _per_sequence(
    qkv: torch.Tensor, num_heads: int, D: int, p: Packing, dropout_p: float, causal: bool = False
) -> torch.Tensor:
    """Attention one sequence at a time on the packed (T, 3H) projections -> (T, H).

    Used for training on CPU with attention dropout, where attention is the explicit softmax path: its softmax,
    dropout mask and products cost per score entry, and sum(len^2) over the sequences is far below B x max_len^2 on
    batches of mixed lengths (see ``PER_SEQUENCE_MIN_LENGTH``)."""
    bounds = p.cu_seqlens.tolist()  # on the CPU already: no device sync
    parts = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = qkv[start:end].view(1, end - start, 3, num_heads, D).permute(2, 0, 3, 1, 4)
        ctx = attention(q, k, v, None, dropout_p, causal)  # (1, N, L, D)
        parts.append(ctx[0].transpose(0, 1).reshape(end - start, num_heads * D))
    return torch.cat(parts)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
    dropout_p: float,
    causal: bool = False,
) -> torch.Tensor:
    """Attention context for q, k, v (B, N, S, D): SDPA's fused kernels, except with dropout on the CPU, where SDPA
    falls back to its math path with PyTorch's slow mask generator: the same math spelled out (``eager_attention``)
    with the fast mask of ``dropout.py`` is used there instead. ``causal`` with queries and keys of one length and
    no mask takes SDPA's causal kernels; otherwise the causal pattern joins the mask (queries are the last positions
    of the keys: a cache or a prefix before them is visible)."""
    if dropout_p > 0.0 and q.device.type == "cpu" and not torch.compiler.is_compiling():
        return eager_attention(q, k, v, key_mask, dropout_p, causal)[0]
    if causal and key_mask is None and q.shape[-2] == k.shape[-2]:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    if causal:
        key_mask = _with_causal(key_mask, q, k)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p)


def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
    dropout_p: float,
    causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(D) + mask) v, spelled out; q, k, v (B, N, S, D). Returns context and probabilities.

    The softmax runs in fp32 whatever the input dtype, so bf16 runs keep exact statistics.
    """
    if causal:
        key_mask = _with_causal(key_mask, q, k)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, N, S, S)
    scores = scores.float()
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
    probs = scores.softmax(dim=-1).to(q.dtype)
    ctx = torch.matmul(dropout(probs, dropout_p) if dropout_p else probs, v)
    return ctx, probs
