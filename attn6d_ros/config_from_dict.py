"""Frozen config dataclasses from plain dicts (YAML files, checkpoints): unknown keys and wrong types are
errors that name the key, lists become tuples."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], values: dict, what: str) -> T:
    """Builds `cls(**values)`, checking every value against the type of the field's default.

    Args:
        cls: a dataclass whose fields all have defaults.
        values: the keys to set (a subset of the fields).
        what: the config's name in error messages, e.g. "train config".

    Raises:
        ValueError: an unknown key, or a value of the wrong type (e.g. "fast" for an int).
    """
    if not isinstance(values, dict):
        raise ValueError(f"{what} must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown {what} keys {sorted(unknown)}; known: {sorted(known)}")
    converted = {}
    for key, value in values.items():
        field = known[key]
        default = field.default_factory() if field.default is MISSING else field.default
        converted[key] = _check_type(value, default, f"{what}.{key}")
    return cls(**converted)


def _check_type(value: object, default: object, name: str) -> object:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple))
        value = tuple(value) if ok else value
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        expected = type(default).__name__
        raise ValueError(f"{name} must be a {expected} (like {default!r}), got {value!r}")
    return value
