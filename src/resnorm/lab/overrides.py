"""A study run with other seeds or another base config: ``--seeds 0-9`` and ``-o key=value``.

`apply_overrides(spec, seeds, overrides)` returns a new `StudySpec`:

* ``seeds`` replaces every part's seeds (`parse_seeds` reads ``0-9``, ``0,1,5``, ``3-5,8``);
* each override ``key = value`` is set in the base config of every part whose run kind has that
  config path (``model.d_model`` reaches the ``train`` and ``probe`` parts, not a measurement
  whose config has no ``model``). A key no part accepts, a key that is a seed (use the seeds), or
  a key one of those parts sweeps as an axis (its points would overwrite the base, so the
  override would change nothing there) is a ConfigError naming the key.

Every run of the new spec is resolved before it is returned (`resnorm.lab.runner.plan`), so a bad
value fails here, naming its key, before anything is run or written. What was applied is recorded
in the spec's ``overrides`` (with ``seeds`` when they were given), which the study's manifest and
report carry.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from resnorm.config import split_override
from resnorm.errors import ConfigError
from resnorm.lab.runner import plan, set_dotted
from resnorm.lab.spec import TAGS, Part, StudySpec
from resnorm.lab.tasks import config_keys, has_path, seed_fields

#: Seeds one study run may ask for: each is a run per point, so a million is a typo, not a plan
#: (and expanding such a range would hang before anything could be refused).
MAX_SEEDS = 10_000


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-9"``, ``"0,1,5"``, ``"3-5,8"`` -> the seeds, in order, each once."""
    seeds: list[int] = []
    for item in text.split(","):
        lo, dash, hi = item.strip().partition("-")
        try:
            first, last = int(lo), int(hi if dash else lo)
        except ValueError:
            raise ConfigError(
                "--seeds", f"{text!r}: expected seeds and ranges such as 0-9, 0,1,5 or 3-5,8"
            ) from None
        if first < 0 or last < first:
            raise ConfigError("--seeds", f"{item.strip()!r}: expected 0 <= first <= last")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise ConfigError("--seeds", f"{text!r}: more than {MAX_SEEDS} seeds")
        known = set(seeds)
        seeds += [s for s in range(first, last + 1) if s not in known]
    return tuple(seeds)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["model.d_model=128", "train.lr=3e-3"]`` -> ``{key: value}``, values parsed as
    ``resnorm train -o`` parses them (TOML literals, else plain strings); a later one wins."""
    return dict(split_override(item) for item in items)


def apply_overrides(
    spec: StudySpec, seeds: tuple[int, ...] | None, overrides: Mapping[str, Any]
) -> StudySpec:
    """``spec`` with ``seeds`` in every part and ``overrides`` in the base config of every part
    that accepts them (see the module docstring); ``spec`` itself when there is nothing to do.

    Raises:
        ConfigError: a seed that is not an integer >= 0; an override key no part accepts, that
            is a seed or an axis of a part; a value that does not resolve (named by its key).
    """
    if seeds is None and not overrides:
        return spec
    if seeds is not None:
        _check_seeds(seeds)
    applied: dict[str, list[str]] = {key: [] for key in overrides}
    parts = []
    for part in spec.parts:
        base = copy.deepcopy(dict(part.base))
        for key, value in overrides.items():
            if has_path(part.run, key):
                _not_an_axis(spec, part, key)
                set_dotted(base, key, value)
                applied[key].append(part.name)
        new_seeds = part.seeds if seeds is None else tuple(seeds)
        parts.append(dataclasses.replace(part, base=base, seeds=new_seeds))
    for key, where in applied.items():
        if not where:
            raise _unaccepted(spec, key)
    recorded = {**spec.overrides, **copy.deepcopy(dict(overrides))}
    if seeds is not None:
        recorded["seeds"] = list(seeds)
    new = dataclasses.replace(spec, parts=tuple(parts), overrides=recorded)
    _resolve_all(spec, new, overrides)
    return new


def _check_seeds(seeds: tuple[int, ...]) -> None:
    if not seeds:
        raise ConfigError("--seeds", "no seeds given")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError("--seeds", f"got {s!r}, expected integers >= 0")


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _not_an_axis(spec: StudySpec, part: Part, key: str) -> None:
    for axis in part.axes:
        swept = list(axis.values) + [k for p in axis.points for k in p]
        for k in swept:
            if k not in TAGS and _overlaps(k, key):
                raise ConfigError(
                    key,
                    f"part {part.name!r} of study {spec.name!r} sweeps {k!r} as an axis; an "
                    "override sets the base config its points start from, so it would change "
                    "nothing there",
                )


def _unaccepted(spec: StudySpec, key: str) -> ConfigError:
    if any(key in seed_fields(p.run) for p in spec.parts):
        return ConfigError(key, "a seed: set the seeds with --seeds (e.g. --seeds 0-9)")
    listing = "; ".join(f"{', '.join(config_keys(p.run))} (part {p.name!r})" for p in spec.parts)
    tops = [k for p in spec.parts for k in config_keys(p.run)]
    close = difflib.get_close_matches(key.split(".")[0], tops, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(
        key,
        f"no part of study {spec.name!r} has this config path.{hint} Valid top-level sections: "
        f"{listing}",
    )


def _resolve_all(old: StudySpec, new: StudySpec, overrides: Mapping[str, Any]) -> None:
    """Resolve every run of ``new``; an error the overrides caused names the key it is about
    (or all of them, when it is about a field they changed together)."""
    plan(old, "lab")  # an error of the study itself is reported as such, not blamed on -o
    try:
        plan(new, "lab")
    except ConfigError as e:
        # plan's field is ``study.part.field`` and its message repeats the field: keep the gist
        message = str(e).removeprefix(f"{e.field}: ")
        blamed = [k for k in overrides if k in e.field or k in message]
        field = blamed[0] if len(blamed) == 1 else e.field
        message = message.removeprefix(f"{field}: ")
        given = " ".join(f"-o {k}={v!r}" for k, v in overrides.items())
        raise ConfigError(field, f"{message} (study {new.name!r} with {given})") from None
