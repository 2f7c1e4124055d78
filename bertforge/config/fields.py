"""Typed config fields: ``opt`` declares a field with its command-line metadata (flag, aliases, choices, range), and
``validate`` checks and converts every field of a section -- a YAML string where a number belongs, a null where a value
is needed, a value out of range -- into one ValueError naming the section and the field."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import field
from typing import Any


def opt(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    choices: tuple[str, ...] | None = None,
    cli: bool = True,
    minimum: float | None = None,
    maximum: float | None = None,
    metavar: str | None = None,
    tasks: tuple[str, ...] = (),
) -> Any:
    """A config field with command-line metadata: ``flag`` (default ``--field-name``), extra ``aliases``, allowed
    ``choices``, a ``minimum`` value, or ``cli=False`` for fields set by the program rather than by users.
    ``tasks``: the fine-tuning tasks whose command line shows the flag (all when empty)."""
    meta = {
        "tasks": tasks,
        "flag": flag,
        "aliases": aliases,
        "choices": choices,
        "cli": cli,
        "minimum": minimum,
        "maximum": maximum,
        "metavar": metavar,
    }
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _check(section: object, f: dataclasses.Field, hint: Any) -> None:
    """Validate one field against its type and metadata (choices, minimum, maximum); a wrong type (a YAML string
    where a number belongs, ``bf16: 'no'``) or value is a ValueError that names the section and field."""
    value = getattr(section, f.name)
    label = f"{type(section).__name__.removesuffix('Config').lower()}.{f.name}"
    if value is None:
        if not _optional(hint):
            raise ValueError(f"{label} must be set (got null)")
        return
    value = _typed(label, value, hint)
    object.__setattr__(section, f.name, value)
    choices, minimum, maximum = (f.metadata.get(k) for k in ("choices", "minimum", "maximum"))
    if choices and value not in choices and not (isinstance(value, (tuple, list)) and set(value) <= set(choices)):
        raise ValueError(f"{label} {value!r} must be one of {', '.join(choices)}")
    if minimum is not None and isinstance(value, (int, float)) and value < minimum:
        raise ValueError(f"{label} must be >= {minimum}, got {value}")
    if maximum is not None and isinstance(value, (int, float)) and value > maximum:
        raise ValueError(f"{label} must be <= {maximum}, got {value}")


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _typed(label: str, value: Any, hint: Any) -> Any:
    """``value`` as the annotated type: numbers from numeric strings (PyYAML reads ``1e-3`` as a string), lists from
    a single string or a comma list; anything else of the wrong type is refused."""
    if _optional(hint):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{label} must be true or false, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"{label} must be an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{label} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{label} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{label} must be a finite number, got {value!r}")
        return float(value)
    elif hint is str:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValueError(f"{label} must be a string, got {value!r}")
    elif origin in (list, tuple):
        items = [x.strip() for x in value.split(",")] if isinstance(value, str) and origin is tuple else value
        items = [items] if isinstance(items, str) else items
        if not isinstance(items, (list, tuple)) or not all(isinstance(x, (str, int, float)) for x in items):
            raise ValueError(f"{label} must be a list of strings, got {value!r}")
        return tuple(str(x) for x in items) if origin is tuple else [str(x) for x in items]
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A config class's field types, resolved once (every config construction validates against them)."""
    return typing.get_type_hints(cls)


def validate(section: object) -> None:
    """Check (and convert) every field of a config section against its type and metadata."""
    hints = _hints(type(section))  # type: ignore[arg-type]  # classes are hashable
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        _check(section, f, hints[f.name])
