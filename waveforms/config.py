"""Configuration: frozen dataclasses from dicts, JSON/YAML files and command-line flags, all checked the same way.

    file (.json/.yaml) ──read_file──▶ dict ──from_dict(cls)──▶ instance.validate()
    named preset ─────────────────────▶ dict ─┘   (load: a preset or a file, then overrides)
    flags ──add_options(parser, cls)──▶ argparse.Namespace ──from_options(cls)──▶ instance

Values are coerced to their field's annotated type before the dataclass sees them: a whole float becomes an int (kfp
2.13 hands dict parameters over as a protobuf Struct, so every number arrives as a float: 200 -> 200.0), a list
becomes a tuple, a lone string for a tuple of strings becomes a one-item tuple. Anything else is left to the
dataclass's own `validate()`, so every error stays one line naming the field.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


@functools.cache
def field_types(cls) -> dict[str, Any]:
    """The resolved annotation of every field of the dataclass `cls` (modules use `from __future__ import
    annotations`, so `dataclasses.fields` only holds strings)."""
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls)}


def _members(annotation) -> tuple:
    """`int | None` -> (int, NoneType); `int` -> (int,)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def coerce(annotation, value, name: str, source: str):
    """`value` as the type `annotation` asks for where JSON or YAML lost it; ValueError for a fractional number in a
    whole-number field; anything it cannot mend unchanged (the dataclass's validate() judges it)."""
    members = _members(annotation)
    if isinstance(value, float) and int in members and float not in members:
        if not value.is_integer():
            raise ValueError(f"{source}: {name} must be a whole number, got {value}")
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and float in members and int not in members:
        return float(value)
    sequence = next((m for m in members if typing.get_origin(m) is tuple), None)
    if sequence is not None:
        inner = typing.get_args(sequence)[:1]
        if isinstance(value, str) and inner == (str,):
            return (value,)  # one name, not its characters
        if isinstance(value, list | tuple):
            nested = inner and typing.get_origin(inner[0]) is tuple
            return tuple(tuple(item) if nested and isinstance(item, list) else item for item in value)
    return value


def coerce_fields(cls, values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """`values` with those that name a field of `cls` coerced to that field's type; other names pass unchanged."""
    known = field_types(cls)
    return {
        name: coerce(known[name], value, name, source) if name in known else value for name, value in values.items()
    }


def check_fields(cls, data, source: str) -> None:
    """ValueError unless `data` is a mapping whose keys are all fields of `cls`."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping of {cls.__name__} fields, got {type(data).__name__}")
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(known)}")


def from_dict(cls, data, source: str = "config"):
    """An instance of the dataclass `cls` from a mapping of its fields, coerced, then validated (when `cls` has a
    `validate()`). A field that is itself a dataclass takes a mapping laid over its default."""
    check_fields(cls, data, source)
    values = coerce_fields(cls, data, source)
    for field in dataclasses.fields(cls):
        if field.name in values and dataclasses.is_dataclass(field_types(cls)[field.name]):
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            given = values[field.name]
            if isinstance(given, field_types(cls)[field.name]):
                continue
            if isinstance(given, Mapping) and dataclasses.is_dataclass(default):
                given = {**dataclasses.asdict(default), **given}
            values[field.name] = from_dict(field_types(cls)[field.name], given, f"{source} ({field.name})")
    instance = cls(**values)
    return instance.validate() if hasattr(instance, "validate") else instance


def read_file(path: str | Path, what: str = "config") -> Any:
    """The contents of a .json, .yaml or .yml file; one-line ValueErrors naming the file."""
    import yaml

    path = Path(path)
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        raise ValueError(f"{what} {str(path)!r}: not a .json/.yaml/.yml file")
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r}: file not found")
    text = path.read_text()
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:  # both messages name the line
        raise ValueError(f"{what} {str(path)!r}: cannot parse: {' '.join(str(error).split())}") from error


def load(cls, name_or_path: str, named: Mapping[str, Any], what: str = "config", **overrides):
    """A named preset of `named` or a .json/.yaml file of `cls` fields, then `overrides`; all validated."""
    if name_or_path in named:
        base = dataclasses.asdict(named[name_or_path])
    elif Path(name_or_path).suffix.lower() in CONFIG_SUFFIXES:
        base = dataclasses.asdict(from_dict(cls, read_file(name_or_path, what), source=str(name_or_path)))
    else:
        raise ValueError(
            f"{what} {name_or_path!r}: not a named configuration ({', '.join(named)}) nor a .json/.yaml/.yml file"
        )
    if not overrides:
        return from_dict(cls, base, source=str(name_or_path))
    return from_dict(cls, {**base, **overrides}, source=f"{name_or_path} with overrides {overrides}")


# ------------------------------------------------------------------------------------------ command-line options


@dataclass(frozen=True)
class Option:
    """One command-line flag for one dataclass field; its type and default come from the field."""

    field: str
    help: str | None = None
    flag: str = ""  # default: --field-name
    negate: bool = False  # a true-by-default bool field, turned off by a store_true flag (e.g. --no-jit)
    choices: Sequence[Any] | None = None
    metavar: str | None = None

    @property
    def option_string(self) -> str:
        return self.flag or "--" + self.field.replace("_", "-")

    @property
    def dest(self) -> str:
        return self.option_string.lstrip("-").replace("-", "_")


def add_options(parser: argparse.ArgumentParser, cls, options: Sequence[Option]) -> None:
    """One argparse option per `Option`, typed and defaulted by the field of `cls` it sets (required when the field
    has no default)."""
    defaults = {field.name: field.default for field in dataclasses.fields(cls)}
    annotations = field_types(cls)
    for option in options:
        default = defaults[option.field]
        if option.negate or annotations[option.field] is bool:
            if option.negate != (default is True):
                raise TypeError(f"{cls.__name__}.{option.field}: a negated flag needs a field that defaults to True")
            parser.add_argument(option.option_string, action="store_true", help=option.help)
            continue
        kind = next(m for m in _members(annotations[option.field]) if m is not type(None))
        extra = {"required": True} if default is dataclasses.MISSING else {"default": default}
        if option.choices is not None:
            extra["choices"] = option.choices
        if option.metavar:
            extra["metavar"] = option.metavar
        parser.add_argument(option.option_string, type=kind, help=option.help, **extra)


def option_values(args: argparse.Namespace, options: Sequence[Option]) -> dict[str, Any]:
    """The fields the flags of `options` set, read from parsed `args`."""
    values = {}
    for option in options:
        value = getattr(args, option.dest)
        values[option.field] = (not value) if option.negate else value
    return values


def from_options(cls, args: argparse.Namespace, options: Sequence[Option], **values):
    """An instance of `cls` from parsed flags (the fields `options` name) plus `values`; not validated here, so the
    library reports bad values exactly as it does for any caller."""
    return cls(**{**option_values(args, options), **values})
