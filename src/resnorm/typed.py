"""Build frozen dataclasses from plain mappings (JSON, TOML, overrides) with checked types.

Every config object of resnorm (model, topology parameters, training, data) is a frozen dataclass;
this module turns user input into one and names the field of anything it rejects.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from resnorm.errors import ConfigError

T = TypeVar("T")

#: The largest integer a config takes: a signed 64-bit one (what torch, SQLite and JSON readers
#: hold without overflow); field-specific bounds are tighter.
MAX_INT = 2**63 - 1
#: The deepest nesting of tables and lists accepted from a config file or override. Real configs
#: nest a few levels (``model.topology_params.omega``); the bound keeps recursive code (hashing,
#: JSON, `to_dict`) far from Python's recursion limit.
MAX_DEPTH = 32


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
                errors.append(e)
        if len(errors) == 1:  # ``X | None``: X's own message says more (a bound, finiteness)
            raise errors[0]
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
        if abs(value) > MAX_INT:
            raise ConfigError(
                field, f"got {describe_int(value)}, beyond the 64-bit range ±(2**63 - 1)"
            )
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(field, f"got {value!r}, expected a number")
        try:
            number = float(value)
        except OverflowError:  # an integer literal too large for a float
            shown = describe_int(int(value))
            raise ConfigError(field, f"got {shown}, expected a finite number") from None
        if not math.isfinite(number):
            raise ConfigError(field, f"got {value!r}, expected a finite number")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(field, f"got {value!r}, expected a string")
        return value
    return value


def describe_int(value: int) -> str:
    """``value`` for a message: itself, or its digit count when it is too long to show."""
    digits = len(str(abs(value))) if abs(value) < 10**4000 else None  # str() refuses > 4300 digits
    if digits is not None and digits <= 24:
        return str(value)
    return f"a {digits or 'more than 4000'}-digit integer"


def shown(key: object) -> str:
    """A user's key as it goes into an error's field: itself, or its repr when it holds a
    character that is not printable (a control character would break the one-line message, or
    drive the terminal)."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def check_depth(value: Any, field: str, limit: int = MAX_DEPTH, where: str = "") -> None:
    """Raise a ConfigError when ``value`` nests tables/lists deeper than ``limit`` levels.

    Iterative, so a hostile input cannot exhaust the stack here as it would in recursive code.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth >= limit:
            raise ConfigError(field, f"{where}nested more than {limit} levels deep; flatten it")
        stack.extend((child, depth + 1) for child in children)


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
            raise ConfigError(f"{field}.{shown(key)}", f"unknown key.{hint} Valid keys: {valid}")
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
