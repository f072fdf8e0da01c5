"""Strategies and bookkeeping shared by the fuzz tests.

Inputs are drawn from the real schema (the config dataclasses' fields, the study grammar's keys)
mixed with junk, so that most examples reach deep validation instead of failing on the first key.
Every example goes through `guarded`, which times it out (a hang), sorts its outcome and checks
that the folder it ran in is byte-identical when the input was refused. `TALLY` is what the
suite's summary line reports (see ``conftest.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from resnorm.config import TrainConfig
from resnorm.data import DataConfig
from resnorm.errors import ConfigError
from resnorm.nn.config import ModelConfig

#: Outcomes over the whole session: cases, clean (ConfigError or exit 1/2 with one line),
#: accepted, tracebacks, hangs, modified (a refused input changed a file).
TALLY: Counter[str] = Counter()

#: Seconds one example may take before it counts as a hang.
HANG_SECONDS = 30

#: Deterministic, bounded, and quiet about function-scoped fixtures (each example makes its own
#: temporary folder, so nothing leaks between examples).
FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in the code under
    test can swallow it."""


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (folders as ``<dir>``)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def guarded(folder: Path, call: Callable[[], Any]) -> bool:
    """Run ``call`` (a library entry point); True if it accepted the input, False if it raised
    a ConfigError. Anything else (another exception, a hang, a refused input that changed a file
    under ``folder``) is tallied and fails the example."""
    before = snapshot(folder)
    TALLY["cases"] += 1
    try:
        with alarm(HANG_SECONDS):
            call()
    except ConfigError as e:
        assert str(e).strip(), "a ConfigError without a message"
        after = snapshot(folder)
        if after != before:
            TALLY["modified"] += 1
            raise AssertionError(f"a refused input changed files: {before} -> {after}") from e
        TALLY["clean"] += 1
        return False
    except Hang:
        TALLY["hangs"] += 1
        raise
    except Exception:
        TALLY["tracebacks"] += 1
        raise
    TALLY["accepted"] += 1
    return True


def cli_refuses(folder: Path, capsys: Any, argv: list[str]) -> int:
    """Run ``resnorm ARGV`` in-process on an input the library refused: it must exit 1 or 2
    with a one-line message, no traceback, and leave every file under ``folder`` as it was.
    Returns the exit status."""
    from resnorm.cli import main

    before = snapshot(folder)
    TALLY["cases"] += 1
    capsys.readouterr()
    try:
        with alarm(HANG_SECONDS):
            code = main(argv)
    except Hang:
        TALLY["hangs"] += 1
        raise
    except BaseException:
        TALLY["tracebacks"] += 1
        raise
    out, err = capsys.readouterr()
    after = snapshot(folder)
    lines = [line for line in err.splitlines() if line.strip()]
    if "Traceback" in out + err:
        TALLY["tracebacks"] += 1
        raise AssertionError(f"resnorm {argv[0]} printed a traceback:\n{err}")
    if after != before:
        TALLY["modified"] += 1
        raise AssertionError(f"resnorm {argv[0]} changed files on refused input: {after}")
    assert code in (1, 2), f"resnorm {argv[0]} exited {code} on refused input; stderr: {err}"
    assert len(lines) == 1, f"expected a one-line error, got {lines}"
    TALLY["clean"] += 1
    return code


# --- values ---------------------------------------------------------------------------------

HUGE_INTS = [2**63, -(2**63) - 1, 2**64, 10**12, 10**18, 10**400, -1, 0, 1]
NASTY_TEXT = ["", "\x00", "a\x00b", "\ud800", "x\udcff", "../../escaped", "/", "\n", "é" * 300]

small_text = st.text(max_size=12)
junk_key = st.one_of(st.from_regex(r"[a-z_]{2,9}", fullmatch=True), st.text(min_size=1))
text = st.one_of(small_text, st.sampled_from(NASTY_TEXT), st.text(min_size=5000, max_size=5000))
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324]),
)
ints = st.one_of(st.integers(-10, 300), st.integers(), st.sampled_from(HUGE_INTS))
scalars = st.one_of(st.booleans(), ints, floats, text, st.none())


def deep(depth: int, leaf: Any = 1) -> Any:
    """A table nested ``depth`` levels deep (built iteratively)."""
    node: Any = leaf
    for i in range(depth):
        node = {"k": node} if i % 2 else [node]
    return node


values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(small_text, scalars, max_size=3),
    st.sampled_from([1, 2, 30, 40, 5000]).map(deep),
)


def schema(section: type) -> dict[str, Any]:
    """Field name -> default of a config dataclass."""
    out = {}
    for f in dataclasses.fields(section):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


SECTIONS = {"model": schema(ModelConfig), "data": schema(DataConfig), "train": schema(TrainConfig)}
DOTTED = [f"{s}.{k}" for s, fields in SECTIONS.items() for k in fields]
TOPOLOGIES = ["pre_ln", "post_ln", "deepnorm", "rezero", "no_such_topology"]


@st.composite
def field_value(draw: st.DrawFn, default: Any) -> Any:
    """A value for a field whose default is ``default``: the default, a neighbour of it, or
    junk of any type."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return default
    if kind == 1 and isinstance(default, (int, float)) and not isinstance(default, bool):
        factor = draw(st.sampled_from([0, -1, 2, 0.5, 10**6, 10**13]))
        return type(default)(default * factor) if isinstance(default, int) else default * factor
    if kind == 2 and isinstance(default, str):
        return draw(st.sampled_from([*TOPOLOGIES, "rmsnorm", "layernorm", "fp32", "bf16"]))
    return draw(values)


@st.composite
def run_tree(draw: st.DrawFn) -> dict[str, Any]:
    """A run config as a nested dict: real sections and fields, with junk mixed in."""
    tree: dict[str, Any] = {}
    for section, fields in SECTIONS.items():
        if draw(st.booleans()):
            continue
        chosen = draw(st.lists(st.sampled_from(sorted(fields)), max_size=4, unique=True))
        table: Any = {k: draw(field_value(fields[k])) for k in chosen}
        if draw(st.integers(0, 9)) == 0:
            table[draw(junk_key)] = draw(values)
        if draw(st.integers(0, 19)) == 0:
            table = draw(values)  # a section that is not a table
        tree[section] = table
    for key in ("name", "lab", "parent"):
        if draw(st.integers(0, 4)) == 0:
            tree[key] = draw(st.one_of(text, scalars))
    if draw(st.integers(0, 9)) == 0:
        tree[draw(junk_key)] = draw(values)
    return tree


@st.composite
def override(draw: st.DrawFn) -> str:
    """A ``-o KEY=VALUE`` string: a real or junk key, a literal or junk value text."""
    key = draw(st.one_of(st.sampled_from(DOTTED), small_text, st.just("a." * 3000 + "b")))
    value = draw(
        st.one_of(
            st.sampled_from(["3", "1e-3", "nan", "inf", "-inf", "true", "[1, 2]", "{a = 1}"]),
            st.sampled_from(["18446744073709551616", "9" * 5000, "[" * 2000, "post_ln", '"x"']),
            ints.map(str),
            small_text,
        )
    )
    sep = draw(st.sampled_from(["=", "=", "=", "", "=="]))
    return f"{key}{sep}{value}"


# --- TOML text ------------------------------------------------------------------------------


def _toml_string(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF:
            out.append(f"\\u{ord(c):04X}")  # a surrogate escape is itself invalid TOML: fuzz
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """``value`` as a TOML inline literal (None, which TOML lacks, as ``null``: a syntax
    error, on purpose)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**4000 else "1" + "0" * 4400
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{_toml_string(str(k))} = {toml_value(v)}" for k, v in value.items())
            + "}"
        )
    raise TypeError(f"no TOML for {value!r}")


def toml_text(tree: dict[str, Any]) -> str:
    """``tree`` as TOML: one ``key = value`` line per top-level key (a value too deep to
    write recursively as an equally deep array literal)."""
    lines = []
    for k, v in tree.items():
        try:
            literal = toml_value(v)
        except RecursionError:
            literal = "[" * 5000 + "]" * 5000
        lines.append(f"{_toml_string(str(k))} = {literal}\n")
    return "".join(lines)


toml_junk = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["[model\n", "model = ", "[[model]]\nx=1\n", "a = 1\na = 2\n", "\x00"]),
    st.sampled_from(["x = " + "[" * 3000 + "]" * 3000, "x = " + "{a=" * 3000 + "1" + "}" * 3000]),
)
