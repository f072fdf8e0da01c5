"""Build frozen dataclasses from plain mappings (JSON, TOML, overrides) with checked types.

Every config object of resnorm (model, topology parameters, training, data) is a frozen dataclass;
this module turns user input into one and names the field of anything it rejects.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from resnorm.errors import ConfigError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, field: str) -> Any:
    """Check `value` against the annotation `tp`, converting only lossless cases (int -> float)."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is typing.Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(c) for c in get_args(tp))
            raise ConfigError(field, f"got {value!r}; valid choices: {choices}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, field)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(field, f"got {value!r}, expected {_type_name(tp)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(field, f"got {value!r}, expected a list")
        args = get_args(tp)
        item = args[0] if args else Any
        return tuple(coerce(v, item, f"{field}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(field, f"got {value!r}, expected a table of key = value")
        return dict(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(field, f"got {value!r}, expected a table")
        return from_mapping(tp, value, field)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(field, f"got {value!r}, expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(field, f"got {value!r}, expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(field, f"got {value!r}, expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(field, f"got {value!r}, expected a string")
        return value
    return value


def from_mapping(cls: type[T], data: Mapping[str, Any], field: str) -> T:
    """`cls(**data)` with every key known and every value of its annotated type.

    Args:
        cls: a dataclass.
        data: user input.
        field: the dotted name of `data` itself, for error messages (``"model.topology_params"``).
    """
    assert dataclasses.is_dataclass(cls), f"{cls} is not a dataclass"
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(names) if names else "(none: this takes no parameters)"
            raise ConfigError(f"{field}.{key}", f"unknown key.{hint} Valid keys: {valid}")
        kwargs[key] = coerce(value, hints[key], f"{field}.{key}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """A JSON-ready copy of a (nested) dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
