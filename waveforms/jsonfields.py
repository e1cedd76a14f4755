"""Dataclass fields from JSON: KFP dict parameters (protobuf Struct) carry every number as a float."""

from __future__ import annotations


def whole_number(dataclass_type, name: str, value, where: str):
    """`value` as an int when the field `name` of `dataclass_type` defaults to an int and value is a whole float;
    a clear error for a fractional value there; anything else unchanged."""
    field = dataclass_type.__dataclass_fields__.get(name)
    default = field.default if field is not None else None
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{where}: {name} must be a whole number, got {value}")
        return int(value)
    return value
