"""`RunConfig`: everything one training run needs (model + data + train), from TOML and overrides.

A run config is three frozen, validated sections plus two cosmetic fields::

    name = "tiny"                 # a label (default: the TOML file's stem)
    lab = "lab"                   # the lab folder: results store + runs/<run_id>/ checkpoints
    parent = "3f2a..."            # optional: start from this finished run (`train --from`)
    [model]  ...                  # resnorm.nn.config.ModelConfig
    [data]   ...                  # resnorm.data.DataConfig
    [train]  ...                  # TrainConfig below

`load_config(path, ["model.n_layers=24", "train.lr=3e-4"])` reads the TOML file, applies dotted
overrides (values are TOML literals, falling back to plain strings: ``model.topology=post_ln``)
and validates everything. Every problem is one `ConfigError` naming the dotted field.

A run's identity (`RunConfig.run_id`) is the hash of the resolved config without its cosmetic
fields (`COSMETIC_FIELDS`): changing the label, the lab folder or how often checkpoints are
written does not make it a different run. A run continued from another (``parent``, see
`resnorm.train.lineage`) hashes its parent's id too; without a parent the field is left out of the
dict entirely, so the ids of runs from before it existed do not change.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnorm.data import DataConfig, objectives
from resnorm.errors import ConfigError, choice_error
from resnorm.memory import check_model_fits
from resnorm.nn.config import ModelConfig
from resnorm.typed import (
    MAX_DEPTH,
    MAX_INT,
    check_depth,
    describe_int,
    from_mapping,
    shown,
    to_dict,
)

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("fp32", "bf16", "auto")
DEVICES = ("auto", "cpu", "cuda")
NAN_TARGETS = ("loss", "grad")
#: Live-curve sinks ``train.log`` may name (`resnorm.train.sinks`); the store is always written.
LOG_SINKS = ("tensorboard",)
SECTIONS = ("model", "data", "train", "name", "lab", "parent")

#: Dotted fields that do not change what a run computes, left out of its identity.
COSMETIC_FIELDS = ("name", "lab", "train.checkpoint_every", "train.log")
#: Seeds (``train.seed``, ``data.seed``) are in [0, MAX_SEED]: torch's generators take them, and
#: the store and JSON readers hold them, without overflow.
MAX_SEED = 2**63 - 1
#: The most validation batches per evaluation (each is a forward pass at every evaluation).
MAX_EVAL_BATCHES = 100_000
#: Longest run name (a label shown in tables) and lab path (Linux's PATH_MAX).
MAX_NAME, MAX_PATH = 200, 4096


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains.

    Attributes:
        steps: optimizer steps in the run's budget.
        lr: peak learning rate (reached at the end of warmup).
        schedule: after warmup, ``cosine`` or ``linear`` decay to ``lr * min_lr_ratio`` at the
            last step, or ``constant``.
        warmup_steps: linear warmup, ``lr * (step + 1) / warmup_steps`` for step < warmup_steps.
        min_lr_ratio: the final learning rate as a fraction of ``lr``.
        weight_decay: AdamW's decoupled decay, applied to matrices only (see
            `resnorm.train.optim.param_groups`).
        decay_embeddings: also decay embedding tables (a tied output head is one); off by
            default, as in OLMo 2 and minGPT.
        beta1, beta2, eps: AdamW's moments and epsilon.
        grad_clip: clip the global gradient norm to this; ``None`` disables clipping.
        grad_accum: micro-batches per optimizer step; each rank's slice of the global batch is
            split into this many (so it must divide ``data.batch_size / world_size``).
        precision: ``fp32``, ``bf16`` (autocast) or ``auto``: bf16 on CUDA that supports
            it, and on a CPU whose measured bf16 matmuls are at least 1.3x its fp32 ones when
            ``model.d_model >= 256`` (`resnorm.train.precision.choose_precision`); else fp32.
            The one used and why are recorded in the run's environment (``precision``,
            ``precision_reason``).
        compile: wrap the model in ``torch.compile``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        seed: seeds the model's init and dropout (the data has its own ``data.seed``).
        log_every: steps between logged scalars (loss, lr, grad norm, tokens/s).
        eval_every: steps between evaluations on ``eval_batches`` fixed validation batches
            (also at init and at the end); 0 evaluates only at init and at the end.
        eval_batches: validation batches per evaluation.
        probe_every: steps between diagnostics (and at init); 0 disables probes.
        probes: probe names to run (``None``: the diagnostics' default set).
        checkpoint_every: steps between checkpoints (a final one is always written).
        stuck_margin: a run whose final validation loss is above ``unigram_loss -
            stuck_margin`` (nats) learned nothing a context-free predictor would not and is
            flagged ``stuck``; ``unigram_loss`` is the data's (the entropy of its targets' token
            distribution; on the synthetic tasks it equals the uniform loss ln(V_eff)).
        deterministic: ``torch.use_deterministic_algorithms(True)`` on CPU, so that a resumed run
            is bitwise equal to an uninterrupted one.
        inject_nan_at_step: test hook: make the loss (or one gradient, ``inject_nan_into``)
            non-finite at this step, to exercise the divergence guard.
        inject_nan_into: ``loss`` or ``grad``.
        log: extra live-curve sinks (`LOG_SINKS`, e.g. ``["tensorboard"]``) written beside the
            run; the store stays the source of truth. Cosmetic, and left out of the stored
            config when empty, so ids and stored configs of earlier runs do not change.
    """

    steps: int = 1000
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    decay_embeddings: bool = False
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    log_every: int = 10
    eval_every: int = 100
    eval_batches: int = 4
    probe_every: int = 100
    probes: tuple[str, ...] | None = None
    checkpoint_every: int = 100
    stuck_margin: float = 0.25
    deterministic: bool = True
    inject_nan_at_step: int | None = None
    inject_nan_into: str = "loss"
    log: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("steps", "grad_accum", "log_every", "eval_batches", "checkpoint_every"):
            _integer(name, getattr(self, name), 1)
        for name in ("warmup_steps", "eval_every", "probe_every"):
            _integer(name, getattr(self, name), 0)
        _integer("seed", self.seed, 0, MAX_SEED, "2**63 - 1")
        _integer("eval_batches", self.eval_batches, 1, MAX_EVAL_BATCHES)
        if self.inject_nan_at_step is not None:
            _integer("inject_nan_at_step", self.inject_nan_at_step, 0)
        for name, choices in (
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
            ("device", DEVICES),
            ("inject_nan_into", NAN_TARGETS),
        ):
            if getattr(self, name) not in choices:
                raise choice_error(f"train.{name}", getattr(self, name), choices)
        _number("lr", self.lr, positive=True)
        _number("eps", self.eps, positive=True)
        _number("weight_decay", self.weight_decay)
        _number("stuck_margin", self.stuck_margin)
        if self.grad_clip is not None:
            _number("grad_clip", self.grad_clip, positive=True)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("train.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"train.{name}", f"must be in [0, 1), got {getattr(self, name)}")
        if isinstance(self.log, str) or not isinstance(self.log, (list, tuple)):
            raise ConfigError(
                "train.log", f'got {self.log!r}, expected a list such as ["tensorboard"]'
            )
        object.__setattr__(self, "log", tuple(self.log))
        for i, sink in enumerate(self.log):
            if sink not in LOG_SINKS:
                raise choice_error(f"train.log[{i}]", sink, LOG_SINKS)
        if self.probes is not None:
            from resnorm.diagnostics import PROBES

            object.__setattr__(self, "probes", tuple(self.probes))
            for i, name in enumerate(self.probes):
                PROBES.get(name, f"train.probes[{i}]")


def _integer(
    name: str, value: object, minimum: int, maximum: int = MAX_INT, shown: str = ""
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"train.{name}", f"got {value!r}, expected an integer")
    if not minimum <= value <= maximum:
        raise ConfigError(
            f"train.{name}",
            f"got {describe_int(value)}, must be in [{minimum}, {shown or maximum}]",
        )


def _number(name: str, value: object, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"train.{name}", f"got {value!r}, expected a number")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ConfigError(f"train.{name}", f"must be {'> 0' if positive else '>= 0'}, got {value}")


@dataclass(frozen=True)
class RunConfig:
    """One training run: model, data, training, a label and the lab folder it writes to."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str | None = None
    lab: str = "lab"
    parent: str | None = None

    def __post_init__(self) -> None:
        m, d, t = self.model, self.data, self.train
        objectives.check(d.objective, d.source, m.kind)
        resolved = objectives.resolve(d.objective, m.kind, d.source)
        if resolved != d.objective:
            object.__setattr__(self, "data", dataclasses.replace(d, objective=resolved))
            d = self.data
        if d.seq_len > m.max_seq_len:
            raise ConfigError(
                "data.seq_len", f"{d.seq_len} exceeds model.max_seq_len = {m.max_seq_len}"
            )
        if d.batch_size % t.grad_accum:
            raise ConfigError(
                "train.grad_accum",
                f"{t.grad_accum} micro-batches do not split data.batch_size = {d.batch_size}",
            )
        if self.name is not None:
            check_text("name", self.name, MAX_NAME)
        check_text("lab", self.lab, MAX_PATH, path=True)
        if self.parent is not None:
            check_text("parent", self.parent, MAX_NAME)
        check_fits(self)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, JSON-ready (what a run stores); ``parent``, ``train.log`` if set."""
        out: dict[str, Any] = to_dict(self)
        if out["parent"] is None:
            del out["parent"]
        if out["data"]["objective"] == "causal_lm":  # the only one before there were others
            del out["data"]["objective"]
        if not out["train"]["log"]:
            del out["train"]["log"]
        return out

    def identity(self) -> dict[str, Any]:
        """The resolved config without `COSMETIC_FIELDS`: what the run id hashes."""
        out = self.to_dict()
        for dotted in COSMETIC_FIELDS:
            *parents, last = dotted.split(".")
            node = out
            for p in parents:
                node = node[p]
            node.pop(last, None)  # train.log is absent when empty
        return out

    @property
    def run_id(self) -> str:
        """The run's identity: `config_hash` of `identity()`."""
        from resnorm.store import config_hash

        return config_hash(self.identity())

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Build from nested user input; every error names its dotted field."""
        if not isinstance(data, Mapping):
            raise ConfigError("config", f"expected a table, got {data!r}")
        # Before any value is shown in a message: repr() of a deep tree exhausts the stack.
        check_depth(data, "config")
        for key in data:
            if key not in SECTIONS:
                close = difflib.get_close_matches(str(key), SECTIONS, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    shown(key), f"unknown key.{hint} Valid keys: {', '.join(SECTIONS)}"
                )
        kwargs: dict[str, Any] = {}
        for key, section in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
            value = data.get(key, {})
            if not isinstance(value, Mapping):
                raise ConfigError(key, f"got {value!r}, expected a table ([{key}])")
            kwargs[key] = from_mapping(section, value, key)
        for key in ("name", "lab", "parent"):
            if key in data:
                if key == "name" and data[key] is None:  # what to_dict() writes for no name
                    continue
                if not isinstance(data[key], str):
                    raise ConfigError(key, f"got {data[key]!r}, expected a string")
                kwargs[key] = data[key]
        return cls(**kwargs)


#: Bytes per parameter a training process holds: fp32 weights, gradients, AdamW's two moments.
TRAIN_BYTES_PER_PARAM = 16


def check_fits(cfg: RunConfig) -> None:
    """Refuse a run whose training cannot fit in this machine's memory (`resnorm.memory`):
    parameters with their gradients and AdamW moments, and the activations one micro-batch
    keeps, at 2 bytes a number unless the run is fp32 (bf16 autocast may halve them)."""
    d, t = cfg.data, cfg.train
    world = os.environ.get("WORLD_SIZE", "1")  # under torchrun, each rank takes its share
    ranks = int(world) if world.isdigit() and int(world) > 0 else 1
    check_model_fits(
        cfg.model,
        max(1, d.batch_size // (t.grad_accum * ranks)),
        d.seq_len,
        doing="training this run",
        held="parameters, gradients and AdamW state",
        per_param=TRAIN_BYTES_PER_PARAM,
        per_number=4 if t.precision == "fp32" else 2,
        batch_field="data.batch_size",
    )


def check_text(field: str, value: object, limit: int, path: bool = False) -> None:
    """``value`` is a string the store and the terminal can hold: UTF-8 (no lone surrogates,
    which is how Python spells undecodable bytes), no control characters (a NUL ends a C
    string; a newline breaks one-line output), at most ``limit`` characters."""
    what = "a path" if path else "a name"
    if not isinstance(value, str):
        raise ConfigError(field, f"got {value!r}, expected {what} (a string)")
    if not value:
        raise ConfigError(field, f"is empty; expected {what}")
    if len(value) > limit:
        raise ConfigError(field, f"is {len(value)} characters long; at most {limit}")
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ConfigError(field, f"{value!r} contains the control character {bad!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            field, f"{value!r} is not valid UTF-8 text (the results store keeps UTF-8 only)"
        ) from None


def parse_value(text: str) -> Any:
    """A TOML literal (``3``, ``3e-4``, ``true``, ``[1, 2]``, ``{a = 1}``, ``"x"``) or, if
    ``text`` is not one, the string itself (``post_ln``, ``/data/corpus.txt``)."""
    try:
        return _loads(f"v = {text}", "override")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _loads(text: str, field: str, where: str = "") -> dict[str, Any]:
    """``tomllib.loads`` with its non-syntax failures (a literal of over 4,300 digits, nesting
    deep enough to exhaust the stack) and nesting past `MAX_DEPTH` as ConfigErrors."""
    try:
        tree = tomllib.loads(text)
    except RecursionError:
        raise ConfigError(
            field, f"{where}nested more than {MAX_DEPTH} levels deep; flatten it"
        ) from None
    except ValueError as e:
        if isinstance(e, tomllib.TOMLDecodeError):
            raise
        raise ConfigError(field, f"{where}cannot be read: {e}") from None  # int()'s digit limit
    check_depth(tree, field, where=where)
    return tree


def split_override(override: str) -> tuple[str, Any]:
    """``"a.b.c=value"`` -> ``("a.b.c", value)``, the value parsed by `parse_value`."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("override", f"{override!r} is not of the form key=value")
    return key, parse_value(text.strip())


def apply_override(tree: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in the nested dict ``tree`` (creating tables on the way)."""
    key, value = split_override(override)
    *parents, last = key.split(".")
    node = tree
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise ConfigError(where, f"is {child!r}, not a table, so {key!r} cannot be set")
        node = child
    node[last] = value


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; a ConfigError ("config") gives the line of a syntax
    error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config", f"no such file: {str(p)!r}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("config", f"cannot read {str(p)!r}: {e}") from None
    try:
        return _loads(text, "config", f"{p}: ")
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config", f"{p}: malformed TOML: {e}") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """The run config of a TOML file (or the defaults) with dotted overrides applied.

    Args:
        path: a TOML file with ``[model]``, ``[data]``, ``[train]`` tables and optional
            ``name``/``lab``; ``None`` starts from the defaults.
        overrides: ``"section.field=value"`` strings, applied in order; values are TOML
            literals, or strings when they do not parse as one.

    Raises:
        ConfigError: malformed TOML (with its line), an unknown key (with the closest valid
            one), a value of the wrong type or out of range; the field is the dotted name.
    """
    tree: dict[str, Any] = read_toml(path) if path is not None else {}
    for override in overrides:
        apply_override(tree, override)
    check_depth(tree, "override")  # a key of thousands of dotted parts
    if path is not None and "name" not in tree:
        tree["name"] = Path(path).stem
    return RunConfig.from_dict(tree)
