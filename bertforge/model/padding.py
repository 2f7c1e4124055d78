"""The one boundary between padded (B, S, ...) and padding-free (T, ...) tensors, T = number of real tokens.

In the padding-free layout the real tokens of a batch are packed row after row into one (T, H) tensor, so the linear
layers, GELU, LayerNorm and residual adds -- nearly all of BERT's FLOPs -- spend nothing on padding. Sequences are
delimited by ``cu_seqlens`` (B + 1,) int32, cumulative lengths as FlashAttention's varlen kernels take them.
Attention is the one place that needs the sequences apart: see ``SelfAttention``.

The public API stays padded: ``BertModel`` unpads after checking the inputs and pads its outputs back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Packing:
    """Where the real tokens of a (B, S) batch sit."""

    indices: torch.Tensor
    """(T,) flat positions (row * S + column) of the real tokens, in row order."""
    cu_seqlens: torch.Tensor
    """(B + 1,) int32: sequence b is tokens [cu_seqlens[b], cu_seqlens[b + 1]) of the packed tensor."""
    max_seqlen: int
    batch: int
    seq: int

    @property
    def total(self) -> int:
        """T, the number of real tokens."""
        return self.indices.numel()


def packing(attention_mask: torch.Tensor, total: int | None = None, max_seqlen: int | None = None) -> Packing:
    """Packing of a (B, S) mask (1 = real token). The tokens of a row need not be contiguous (left padding works).

    ``total`` (the number of real tokens) and ``max_seqlen``, when the caller has read them already, spare the two
    host reads (``nonzero`` and the longest length) that would each sync an accelerator."""
    B, S = attention_mask.shape
    real = attention_mask.reshape(-1).bool()
    lengths = attention_mask.bool().sum(-1, dtype=torch.int32)
    if total is None:
        indices = real.nonzero().squeeze(-1)
    else:
        indices = torch.nonzero_static(real, size=total).squeeze(-1)
    if max_seqlen is None:
        max_seqlen = int(lengths.max()) if B else 0
    cu = torch.zeros(B + 1, dtype=torch.int32, device=attention_mask.device)
    cu[1:] = lengths.cumsum(0)
    return Packing(indices, cu, max_seqlen, B, S)


def unpad(x: torch.Tensor, p: Packing) -> torch.Tensor:
    """(B, S, ...) -> (T, ...): the real tokens."""
    return x.reshape(p.batch * p.seq, *x.shape[2:]).index_select(0, p.indices)


def pad(x: torch.Tensor, p: Packing) -> torch.Tensor:
    """(T, ...) -> (B, S, ...), zeros at padding positions."""
    out = x.new_zeros(p.batch * p.seq, *x.shape[1:])
    out.index_copy_(0, p.indices, x)
    return out.view(p.batch, p.seq, *x.shape[1:])


def worth_unpadding(padding_tokens: int, total_tokens: int, min_fraction: float = 0.05) -> bool:
    """True when at least ``min_fraction`` of the batch is padding (below that the gathers cost more than they save)."""
    return padding_tokens > 0 and padding_tokens >= min_fraction * total_tokens


def packing_from_cu_seqlens(cu_seqlens: torch.Tensor, max_seqlen: int, total: int) -> tuple[Packing, torch.Tensor]:
    """Packing of an already packed batch (``collate_packed``): sequence b is tokens [cu[b], cu[b+1]) of ``total``.

    Computed on the tensors' device without reading them on the host (``total`` and ``max_seqlen`` are host ints
    from the collator), so a packed training step has no device sync here. Returns the packing (whose padded layout
    is (B, max_seqlen)) and each token's position within its sequence."""
    cu = cu_seqlens.to(torch.long)
    B = cu.numel() - 1
    lengths = cu[1:] - cu[:-1]
    seq = torch.repeat_interleave(torch.arange(B, device=cu.device), lengths, output_size=total)
    position = torch.arange(total, device=cu.device) - cu[:-1][seq]
    return Packing(seq * max_seqlen + position, cu_seqlens.to(torch.int32), max_seqlen, B, max_seqlen), position


def key_mask_from_cu_seqlens(cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
    """(B, 1, 1, max_seqlen) bool key mask (True = attend) of a packed batch, for attention on its padded layout."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).to(torch.long)
    return (torch.arange(max_seqlen, device=cu_seqlens.device)[None, :] < lengths[:, None])[:, None, None, :]
