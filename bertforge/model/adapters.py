"""Modules that parameter-efficient strategies insert into the encoder (LoRA lives in ``lora.py``).

- ``BottleneckAdapter`` (Houlsby et al. 2019): h + up(act(down(h))), a small bottleneck on a sublayer's output, before
  the residual add and LayerNorm. Houlsby placement: after attention and after the feed-forward block; Pfeiffer et
  al. 2020: after the feed-forward block only. ``up`` starts at zero, so the adapted model starts as the base model
  (near-identity init).
- ``SoftPrompt`` (prompt tuning, Lester et al. 2021): P trained vectors that take the place of word embeddings in
  front of the input; position, segment embeddings and LayerNorm apply to them as to any token, and every head reads
  the outputs of the real tokens (the pooler reads position 0, the first soft token, as peft's prompt tuning does on
  transformers' BERT).
- ``PrefixEncoder`` (prefix tuning, Li & Liang 2021; P-tuning v2, Liu et al. 2022): P trained keys and values in every
  layer's attention, laid out as peft stores them, (P, layers x 2 x H), key then value per layer. Optionally
  reparameterised during training (embedding (P, H) -> Linear -> tanh -> Linear), folded to the plain table at save.
  As in peft on transformers, the real tokens' default positions start after the prefix (P, P+1, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ADAPTER_PLACEMENTS = ("houlsby", "pfeiffer")


class BottleneckAdapter(nn.Module):
    """h -> h + up(act(down(h))): H -> size -> H, ``up`` zero-initialised (the identity at the start)."""

    def __init__(self, hidden_size: int, size: int, init_std: float = 1e-2):
        super().__init__()
        if size <= 0:
            raise ValueError(f"adapter size must be positive, got {size}")
        self.down = nn.Linear(hidden_size, size)
        self.up = nn.Linear(size, hidden_size)
        with torch.no_grad():
            self.down.weight.normal_(0.0, init_std)
            self.down.bias.zero_()
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.gelu(self.down(h)))


class SoftPrompt(nn.Module):
    """P trained input vectors (prompt tuning); ``embedding`` (P, H) mirrors peft's ``prompt_encoder`` table."""

    def __init__(self, num_tokens: int, hidden_size: int, init: torch.Tensor | None = None):
        super().__init__()
        if num_tokens <= 0:
            raise ValueError(f"prompt length must be positive, got {num_tokens}")
        self.num_tokens = num_tokens
        self.embedding = nn.Embedding(num_tokens, hidden_size)
        if init is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(init)

    def forward(self) -> torch.Tensor:
        return self.embedding.weight  # (P, H)


class PrefixEncoder(nn.Module):
    """Per-layer key and value prefixes; ``forward`` gives the table (P, L x 2 x H) in peft's layout."""

    def __init__(
        self, num_tokens: int, num_layers: int, num_heads: int, hidden_size: int, projection_size: int | None = None
    ):
        super().__init__()
        if num_tokens <= 0:
            raise ValueError(f"prefix length must be positive, got {num_tokens}")
        self.num_tokens, self.num_layers, self.num_heads = num_tokens, num_layers, num_heads
        width = num_layers * 2 * hidden_size
        if projection_size:
            self.embedding = nn.Embedding(num_tokens, hidden_size)
            self.transform: nn.Sequential | None = nn.Sequential(
                nn.Linear(hidden_size, projection_size), nn.Tanh(), nn.Linear(projection_size, width)
            )
        else:
            self.embedding = nn.Embedding(num_tokens, width)
            self.transform = None

    def forward(self) -> torch.Tensor:
        w = self.embedding.weight
        return self.transform(w) if self.transform is not None else w

    def key_values(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(key, value)] per layer, each (N, P, D)."""
        P, N = self.num_tokens, self.num_heads
        table = self().view(P, self.num_layers * 2, N, -1).permute(1, 2, 0, 3)  # (L x 2, N, P, D)
        return [(table[2 * i], table[2 * i + 1]) for i in range(self.num_layers)]

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the reparameterisation by the table it computes (what is saved and used for inference)."""
        if self.transform is None:
            return
        table = self().detach().clone()
        self.embedding = nn.Embedding(table.shape[0], table.shape[1], device=table.device, dtype=table.dtype)
        self.embedding.weight.copy_(table)
        self.transform = None
