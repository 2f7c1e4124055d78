"""Strategy prefix: ``prefix_tokens`` trained keys and values in every layer's attention (prefix tuning, Li & Liang
2021; P-tuning v2, Liu et al. 2022), optionally reparameterised by an MLP while training and folded at save."""

from __future__ import annotations

from typing import Any

from bertforge.model.adapters import PrefixEncoder


def apply(model: Any, backbone: Any, cfg: Any, tokenizer: Any) -> None:
    config = backbone.config
    backbone.prefix = PrefixEncoder(
        cfg.prefix_tokens,
        len(config.layer_order),
        config.num_attention_heads,
        config.hidden_size,
        cfg.prefix_projection or None,
    )
