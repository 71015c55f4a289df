"""Command-line flags generated from a config dataclass: every field reachable, documented and validated once.

``add_config_flags(group, TrainConfig)`` adds one flag per field: its name (``batch_size`` -> ``--batch-size``,
plus a short alias for a few established ones, ``--out`` for ``out_dir``), its type from the annotation, its
choices from ``CHOICES``, and its help from the first sentence of the field's entry in the class docstring's
``Attributes:`` section. Booleans get ``--flag`` / ``--no-flag``; dict fields take ``KEY=VALUE`` repeatedly;
``none`` clears an optional field. Every flag defaults to "not given", so :func:`config_overrides` returns only
what the user typed, and the dataclass's own ``validate`` stays the one place where values are checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import types
import typing
from typing import Any

#: field -> the established short flag it is also reachable by (the long form ``--field-name`` always works)
ALIASES = {
    "out_dir": "out", "subset_train": "subset", "num_threads": "threads", "mixup_alpha": "mixup",
    "cutmix_alpha": "cutmix", "model_overrides": "model-option", "augment_overrides": "augment-option",
}
#: dict field -> what one ``KEY=VALUE`` changes (for the help text)
DICT_HELP = {
    "model_overrides": "model config override on top of the preset's, repeatable (e.g. cbam=false, dropout=0.3)",
    "augment_overrides": "fer_lib.data.AugmentConfig override on top of the preset's, repeatable (e.g. erase_p=0)",
}


def field_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a Google-style class docstring.

    An entry starts with ``name: text`` (or ``a / b: text`` for several fields) at the section's indent;
    more-indented lines continue it.
    """
    doc = cls.__doc__ or ""
    lines = doc.expandtabs().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return {}
    docs: dict[str, str] = {}
    indent, current = None, []
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        here = len(line) - len(line.lstrip())
        if indent is None:
            indent = here
        if here < indent:
            break
        m = re.match(r"\s*([\w ]+(?:/[\w ]+)*):\s(.*)", line) if here == indent else None
        if m:
            current = [n.strip() for n in m.group(1).split("/")]
            for name in current:
                docs[name] = m.group(2).strip()
        else:
            for name in current:
                docs[name] += " " + line.strip()
    return docs


def first_sentence(text: str) -> str:
    """The text up to its first full stop followed by a space (a URL's dots do not end it)."""
    m = re.search(r"(?<!e\.g)(?<!i\.e)(?<! al)\.\s", text + " ")
    return (text[: m.start() + 1] if m else text).replace("``", "")


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _optional(kind: Any) -> tuple[Any, bool]:
    """``int | None`` -> ``(int, True)``; anything else -> ``(kind, False)``."""
    args = typing.get_args(kind)
    if (typing.get_origin(kind) in (typing.Union, types.UnionType)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return kind, False


def _parser_for(kind: type, optional: bool, flag: str):
    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}{' or none' if optional else ''}, "
                                             f"got {text!r}") from None
    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def parse_option(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)`` with the value read as JSON when it can be (``3``, ``0.5``, ``true``)
    and as a string otherwise; ``True``/``False`` in any case are booleans."""
    if "=" not in text:
        raise ValueError(f"option {text!r}: expected KEY=VALUE, e.g. cbam=false")
    key, raw = (t.strip() for t in text.split("=", 1))
    if raw.lower() in ("true", "false"):
        return key, raw.lower() == "true"
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def add_config_flags(parser: argparse.ArgumentParser, cls: type, groups: dict[str, set[str]] | None = None,
                     skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """Add a flag for every field of dataclass ``cls`` (except ``skip``); returns ``{field: flag}``.

    Args:
        parser: where the flags go.
        cls: a dataclass with an ``Attributes:`` docstring section (and optionally a ``CHOICES`` dict).
        groups: ``{group title: fields}``; fields in none of them go to the first group.
        skip: fields that get no flag.

    Raises:
        TypeError: a field without documentation, or of a type no flag can express (so a new field cannot be
            forgotten silently).
    """
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    choices = getattr(cls, "CHOICES", {})
    titles = list(groups or {"options": set()})
    made = {t: parser.add_argument_group(t) for t in titles}
    flags = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.name not in docs:
            raise TypeError(f"{cls.__name__}.{f.name} has no entry in the class docstring's Attributes section")
        title = next((t for t in titles if groups and f.name in groups[t]), titles[0])
        names = [flag_name(f.name)] + (["--" + ALIASES[f.name]] if f.name in ALIASES else [])
        kind, optional = _optional(hints[f.name])
        common = dict(dest=f.name, default=argparse.SUPPRESS)
        help_text = first_sentence(docs[f.name])
        if kind is bool:
            made[title].add_argument(*names, action=argparse.BooleanOptionalAction, help=help_text, **common)
        elif typing.get_origin(kind) is dict:
            made[title].add_argument(*reversed(names), action="append", metavar="KEY=VALUE",
                                     help=DICT_HELP.get(f.name, help_text), **common)
        elif kind in (int, float, str):
            unset = " ('none': unset)" if optional and "None" not in help_text else ""
            made[title].add_argument(*names, type=_parser_for(kind, optional, names[0]), choices=choices.get(f.name),
                                     help=help_text + unset, **common)
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line form for type {hints[f.name]!r}")
        flags[f.name] = "--" + ALIASES[f.name] if f.name in ALIASES else names[0]
    return flags


def config_overrides(args: argparse.Namespace, cls: type, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields the user gave on the command line: ``{field: value}``.

    Dict fields merge their ``KEY=VALUE`` options on top of ``base``'s dict (a preset's ``model_overrides``
    keeps its other keys).
    """
    base = base or {}
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if typing.get_origin(_optional(hints[f.name])[0]) is dict:
            value = {**base.get(f.name, {}), **dict(parse_option(o) for o in value)}
        out[f.name] = value
    return out


def name_flags(message: str, cls_name: str, flags: dict[str, str]) -> str:
    """Rewrite ``TrainConfig.batch_size`` in a validation message as ``--batch-size (TrainConfig.batch_size)``."""
    return re.sub(rf"{cls_name}\.(\w+)", lambda m: f"{flags[m.group(1)]} ({m.group(0)})" if m.group(1) in flags
                  else m.group(0), message)
