"""Strategy adapter: bottleneck adapters (``model/adapters.py``) after attention and after the feed-forward block
(Houlsby et al. 2019), or after the feed-forward block only (Pfeiffer et al. 2020)."""

from __future__ import annotations

from typing import Any

from bertforge.model.adapters import BottleneckAdapter


def apply(model: Any, backbone: Any, cfg: Any, tokenizer: Any) -> None:
    H = backbone.config.hidden_size
    for layer in backbone.layers:
        if cfg.adapter_placement == "houlsby":
            layer.adapter_attn = BottleneckAdapter(H, cfg.adapter_size)
        layer.adapter_ffn = BottleneckAdapter(H, cfg.adapter_size)
