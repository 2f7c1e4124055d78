"""Command-line flags generated from config dataclass fields, so that an option is declared once (in
``config/sections.py``).

A field becomes ``--field-name`` (or the ``flag`` its metadata names, e.g. Megatron's ``--num-layers`` for
``num_hidden_layers``), plus any ``aliases``. Its help text is the field's docstring and its default; its type comes
from the annotation: bool -> a switch (``--no-x`` for fields that default to True; ``--x/--no-x`` for optional
bools), list -> one or more values, tuple -> a comma list, int/float/str -> one value checked against ``choices`` and
``minimum``. A wrong type or an out-of-range value fails at parsing, naming the flag, before any work starts.

Parsed values land under ``dest = "section.field"`` and only when given (defaults are suppressed), so that presets
and YAML recipes underneath survive; ``section_values`` turns them back into ``{section: {field: value}}``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import math
import textwrap
import types
import typing
from typing import Any


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (the string literal that follows its annotation)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) of an annotation such as ``int | None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def number(kind: type, minimum: float | None = None, maximum: float | None = None):
    """An argparse ``type`` for an int or float flag: finite, within [minimum, maximum]; argparse's error then names
    the flag ("argument --batch-size: must be >= 1, got 0")."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {text}")
        return value

    convert.__name__ = kind.__name__
    return convert


def _comma_list(choices: tuple[str, ...] | None):
    def convert(text: str) -> tuple[str, ...]:
        items = tuple(x.strip() for x in text.split(",") if x.strip())
        bad = [x for x in items if choices and x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: choose a comma list of {', '.join(choices or ())}")
        return items

    return convert


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_section(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    section: str,
    instance: Any,
    *,
    skip: frozenset[str] | set[str] = frozenset(),
    flagged_only: bool = False,
) -> list[str]:
    """Add a flag for every field of the dataclass ``instance`` (its values are the defaults shown in --help).

    ``skip``: field names left out; ``flagged_only``: only fields whose metadata names a flag (the model config,
    whose other fields are not command-line options). Returns the flags added."""
    hints = typing.get_type_hints(type(instance))
    docs = field_docs(type(instance))  # type: ignore[arg-type]  # classes are hashable
    added = []
    for f in dataclasses.fields(instance):
        meta = f.metadata
        if f.name in skip or not meta.get("cli", True) or (flagged_only and not meta.get("flag")):
            continue
        flag = flag_of(f)
        names = [flag, *meta.get("aliases", ())]
        kind, optional = _base_type(hints[f.name])
        default = getattr(instance, f.name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        help_text = docs.get(f.name, "") + (
            f" (default: {shown})" if default is not None and default is not False and default != () else ""
        )
        kw: dict[str, Any] = {
            "dest": f"{section}.{f.name}",
            "default": argparse.SUPPRESS,
            "help": help_text.replace("%", "%%"),
        }
        if kind is bool and optional:
            kw["action"] = argparse.BooleanOptionalAction
        elif kind is bool and default:
            names = [meta.get("flag") or "--no-" + f.name.replace("_", "-")]
            kw.update(action="store_false")
        elif kind is bool:
            kw["action"] = "store_true"
        elif typing.get_origin(kind) is list:
            kw.update(nargs="+", metavar=meta.get("metavar"))
        elif typing.get_origin(kind) is tuple:
            kw.update(type=_comma_list(meta.get("choices")), metavar="A,B")
        else:
            if meta.get("choices"):
                kw["choices"] = meta["choices"]
            elif kind in (int, float):
                kw["type"] = number(kind, meta.get("minimum"), meta.get("maximum"))
                kw["metavar"] = "N" if kind is int else "X"
            else:
                kw["metavar"] = meta.get("metavar") or f.name.upper()
        parser.add_argument(*names, **kw)
        added.append(names[0])
    return added


def section_values(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}`` of the generated flags given on the command line."""
    out: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." in dest:
            section, name = dest.split(".", 1)
            out.setdefault(section, {})[name] = value
    return out
