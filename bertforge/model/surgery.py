"""Model surgery: a smaller model cut from a larger one (DistilBERT's initialisation of a student)."""

from __future__ import annotations

from collections.abc import Sequence

from bertforge.model.pretrained import PreTrainedBert
from bertforge.utils import logger


def layers_to_keep(total: int, keep: int) -> list[int]:
    """``keep`` layer indices of ``total``, evenly spaced from the first: 6 -> 3 is [0, 2, 4], 6 -> 2 is [0, 3]."""
    if not 1 <= keep <= total:
        raise ValueError(f"a student of {keep} layers cannot be taken from a teacher of {total}")
    return [i * total // keep for i in range(keep)]


def shrink(teacher: PreTrainedBert, layers: int | Sequence[int]) -> PreTrainedBert:
    """A student of the teacher's class with the teacher's layers ``layers`` (a count, or the indices), its
    embeddings, pooler and head copied; the teacher is not changed. Half the depth is every other layer, as
    DistilBERT was initialised."""
    total = teacher.config.num_hidden_layers
    if teacher.config.num_layer_modules != total:
        raise ValueError(
            f"the teacher shares its layers across the stack ({teacher.config.num_layer_modules} distinct for "
            f"{total}): a student cannot take some of them; build the student from a config with fewer layers"
        )
    keep = layers_to_keep(total, layers) if isinstance(layers, int) else list(layers)
    if not keep or any(not 0 <= i < total for i in keep):
        raise ValueError(f"student layers {keep} must be indices of the teacher's {total} layers")
    student = type(teacher)(teacher.config.replace(num_hidden_layers=len(keep)))
    renumber = {f"bert.layers.{old}.": f"bert.layers.{new}." for new, old in enumerate(keep)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        if name.startswith("bert.layers."):
            prefix = ".".join(name.split(".")[:3]) + "."
            if prefix not in renumber:
                continue
            name = renumber[prefix] + name[len(prefix) :]
        state[name] = tensor.clone()
    student.load_state_dict(state)
    student.name_or_path = teacher.name_or_path
    logger.info("student: %d of the teacher's %d layers (%s)", len(keep), total, ", ".join(map(str, keep)))
    return student
