"""Fine-tuning strategies (full, head, freeze, LoRA, bottleneck adapters, prompt and prefix tuning), laid out as peft
lays out its tuners: one module per strategy behind a registry (``registry.py``), plus the code they share.

- ``registry.py``: the strategies and their facts (default learning rate, config fields, whether it inserts modules
  or merges, peft's name). Torch-free.
- ``apply.py``: ``apply_strategy`` / ``remove_strategy`` on a task model, and what counts as its head.
- one module per strategy: ``full``, ``head``, ``freeze`` (with gradual unfreezing), ``lora``, ``adapter``, ``prompt``,
  ``prefix``.
- ``peft.py``: the tensor names and ``adapter_config.json`` of peft's layout, both ways.
- ``artefact.py``: the directory a strategy run saves (``save_adapter`` / ``load_adapter`` / ``from_adapter``).

This package's ``__init__`` imports only the registry: the modules that need torch are imported where they are used.
"""

from bertforge.adapt.registry import STRATEGIES, Strategy

__all__ = ["STRATEGIES", "Strategy"]
