"""The run function: one task (a resolved run config) in, its results as plain rows out.

`execute(task)` is what every executor runs, in a worker process or as a Ray task. It never
writes the lab's store: a training run works in its own lab folder, ``<lab>/work/<run_id>/``
(its store and checkpoints; ``lab`` is cosmetic, so the run id is the same), where the trainer's
own resume logic takes over when a run was interrupted, and `execute` returns every row of that
store; the driver copies them into the lab's store, the single writer (`resnorm.lab.runner`).

Run kinds:

* ``train``: `resnorm.train.train` on a `RunConfig`; then the task's ``after`` probes on the
  final weights (one validation batch), logged at the final step.
* ``probe``: a model at init and `resnorm.diagnostics.run_at_init` on one batch (random tokens
  or the built-in corpus), seeded.
* a registered measurement (`resnorm.diagnostics.measures.MEASURES`): a function of its own
  typed config returning records, for what is not a resnorm model (the attention-only paths of
  the ``skip`` study).
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnorm.errors import ConfigError, choice_error
from resnorm.registry import Registry
from resnorm.typed import from_mapping, to_dict

if TYPE_CHECKING:
    from resnorm.diagnostics.measures import Measure

#: A task's output: JSON-ready rows for the driver to store (see `empty_output`).
Output = dict[str, Any]


@dataclass(frozen=True)
class BatchConfig:
    """The batch a ``probe`` run measures on.

    Attributes:
        source: ``random`` (uniform tokens, seeded) or ``builtin`` (windows of the built-in
            corpus, drawn with the run's seed).
        size: sequences in the batch.
        seq_len: tokens per sequence.
    """

    source: str = "random"
    size: int = 8
    seq_len: int = 64

    def __post_init__(self) -> None:
        if self.source not in ("random", "builtin"):
            raise choice_error("batch.source", self.source, ("random", "builtin"))
        for name in ("size", "seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"batch.{name}", f"got {value!r}, expected an integer >= 1")


@dataclass(frozen=True)
class ProbeConfig:
    """A ``probe`` run: probes on one batch through a freshly initialized model.

    Attributes:
        model: the model (`resnorm.nn.config.ModelConfig` fields).
        batch: the batch (`BatchConfig`).
        probes: registered probe names (`resnorm.diagnostics.PROBES`).
        params: constructor arguments per probe, e.g. ``{output_change = {eps = 0.01}}``.
        seed: seeds the model's init and the batch.
    """

    model: Any = None
    batch: BatchConfig = field(default_factory=BatchConfig)
    probes: tuple[str, ...] = ("grad_norm", "stream_rms")
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        from resnorm.diagnostics import PROBES
        from resnorm.nn.config import ModelConfig

        model = self.model if self.model is not None else {}
        if not isinstance(model, ModelConfig):
            if not isinstance(model, Mapping):
                raise ConfigError("model", f"got {model!r}, expected a table")
            object.__setattr__(self, "model", ModelConfig.from_dict(model))
        for i, name in enumerate(self.probes):
            PROBES.get(name, f"probes[{i}]")
        for name in self.params:
            if name not in self.probes:
                raise ConfigError(f"params.{name}", f"not one of the probes {list(self.probes)}")


def _measures() -> Registry[Measure]:
    # Imported when needed: the diagnostics package imports torch, which `import resnorm.lab`
    # (the CLI's study status, the report) does not need.
    from resnorm.diagnostics.measures import MEASURES

    return MEASURES


def run_kinds() -> list[str]:
    """Every run kind a study part can name."""
    return ["train", "probe", *_measures().names()]


def seed_fields(run: str) -> tuple[str, ...]:
    """The config fields a part's seed sets."""
    if run == "train":
        return ("train.seed", "data.seed")
    if run == "probe":
        return ("seed",)
    return (_measures().get(run, "run").seed_field,)


def config_class(run: str) -> type:
    """The config dataclass of a run kind (`RunConfig` for ``train``)."""
    if run == "train":
        from resnorm.config import RunConfig

        return RunConfig
    if run == "probe":
        return ProbeConfig
    return _measures().get(run, "run").config


def config_keys(run: str) -> list[str]:
    """The top-level keys of a run kind's config that a study's base may set (the runner sets
    its seeds, the lab folder and the run's name)."""
    unset = {*seed_fields(run), "lab", "name"}
    return [f.name for f in dataclasses.fields(config_class(run)) if f.init and f.name not in unset]


def has_path(run: str, key: str) -> bool:
    """Whether the dotted ``key`` names a field of the run kind's config (below a free-form
    table, such as ``model.topology_params``, any key does)."""
    from resnorm.nn.config import ModelConfig

    if key in seed_fields(run) or key.split(".")[0] not in config_keys(run):
        return False
    node: Any = config_class(run)
    for name in key.split("."):
        if not (dataclasses.is_dataclass(node) and isinstance(node, type)):
            # a table (``Mapping``/``dict``/``Any``) takes any key; a scalar has no fields
            return node is Any or typing.get_origin(node) in (dict, Mapping) or node is dict
        hints = typing.get_type_hints(node)
        if name not in hints:
            return False
        # `ProbeConfig.model` is typed Any (the model config is built in __post_init__)
        node = ModelConfig if (node is ProbeConfig and name == "model") else hints[name]
        args = [a for a in typing.get_args(node) if a is not type(None)]
        if typing.get_origin(node) in (typing.Union, types.UnionType) and len(args) == 1:
            node = args[0]  # ``X | None``
    return True


def resolve(run: str, tree: Mapping[str, Any], lab: str | Path) -> tuple[str, dict[str, Any]]:
    """Validate a run's config tree: its ``(run_id, config)``, the config resolved (defaults
    filled in, JSON-ready). A training run's id is its `RunConfig.run_id`."""
    if run == "train":
        from resnorm.config import RunConfig

        cfg = RunConfig.from_dict({**tree, "lab": str(lab)})
        return cfg.run_id, cfg.to_dict()
    from resnorm.store import config_hash

    if run == "probe":
        resolved = to_dict(from_mapping(ProbeConfig, tree, "base"))
    else:
        resolved = to_dict(from_mapping(_measures().get(run, "run").config, tree, "base"))
    return config_hash({"run": run, **resolved}), resolved


def empty_output(run_id: str, run: str, config: Mapping[str, Any]) -> Output:
    return {
        "run_id": run_id,
        "run": run,
        "config": dict(config),
        "status": "failed",
        "detail": None,
        "step": 0,
        "summary": {},
        "environment": None,
        "metrics": [],
        "diagnostics": [],
        "events": [],
        "seconds": 0.0,
    }


def execute(task: Mapping[str, Any], threads: int | None = None) -> Output:
    """Run one task; never raises (an error is a ``failed`` output with its traceback).

    Args:
        task: ``{"run_id", "run", "config", "after"}`` as the runner made it.
        threads: torch intra-op threads for this process (``None``: leave as is).
    """
    start = time.perf_counter()
    out = empty_output(task["run_id"], task["run"], task["config"])
    try:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        if task["run"] == "train":
            _train(task, out)
        else:
            _measure(task, out)
    except BaseException as e:  # a worker reports, the driver decides
        if isinstance(e, KeyboardInterrupt):
            out["status"], out["detail"] = "interrupted", "interrupted; run the study again"
        else:
            out["status"], out["detail"] = "failed", f"{type(e).__name__}: {e}"
            out["events"].append((None, "error", out["detail"], {"traceback": _tb()}))
    out["seconds"] = time.perf_counter() - start
    return out


def _tb() -> str:
    return "".join(traceback.format_exc(limit=20))[-4000:]


def _measure(task: Mapping[str, Any], out: Output) -> None:
    import platform

    import torch

    run = task["run"]
    records: Sequence[Any]
    if run == "probe":
        config = from_mapping(ProbeConfig, task["config"], "config")
        records, summary = probe_at_init(config)
    else:
        measure = _measures().get(run, "run")
        records, summary = measure.fn(from_mapping(measure.config, task["config"], "config"))
    from resnorm.store.records import Diagnostic

    out["diagnostics"] = [Diagnostic(0, r.probe, r.layer, r.key, r.value, r.unit) for r in records]
    out["summary"] = dict(summary)
    out["status"] = "done"
    out["environment"] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }


def probe_at_init(config: ProbeConfig) -> tuple[list[Any], dict[str, float]]:
    """Build ``config.model`` seeded by ``config.seed`` and run its probes on one batch."""
    import torch

    from resnorm.diagnostics import PROBES, random_batch, run_at_init
    from resnorm.nn.model import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(config.model)
    b = config.batch
    if b.source == "random":
        batch = random_batch(config.model, b.size, b.seq_len, config.seed)
    else:
        from resnorm.data import DataConfig, build_data

        data = build_data(
            DataConfig(source="builtin", seq_len=b.seq_len, batch_size=b.size, seed=config.seed)
        )
        batch = data.train_batch(0)
    probes = [PROBES.get(n, "probes")(**config.params.get(n, {})) for n in config.probes]
    records = run_at_init(model, batch, probes)
    return records, {"records": float(len(records))}


def _train(task: Mapping[str, Any], out: Output) -> None:
    from resnorm.config import RunConfig
    from resnorm.store import Store
    from resnorm.train import train

    data = {k: v for k, v in task["config"].items() if not (k == "name" and v is None)}
    cfg = RunConfig.from_dict(data)
    assert cfg.run_id == task["run_id"], "task id is not its config's run id"
    # The run trains in its own lab folder (``lab`` is cosmetic: the run id is unchanged).
    cfg = cfg.replace(lab=str(private_lab(cfg.lab, cfg.run_id)))
    Path(cfg.lab).mkdir(parents=True, exist_ok=True)
    with Store(cfg.lab) as store:
        result = train(cfg, store=store, progress=False)
        after: Sequence[str] = task.get("after") or ()
        if after and result.status in ("done", "stuck"):  # trained to the end, finite weights
            store.log_diagnostics(cfg.run_id, cfg.train.steps, probe_trained(cfg, after))
        record = store.get_run(cfg.run_id)
        assert record is not None, "the trainer did not record its run"
        out.update(
            status=record.status,
            detail=record.detail,
            step=int((record.summary or {}).get("step", result.step)),
            summary=dict(record.summary or result.metrics),
            environment={**(record.environment or {}), "pid": os.getpid()},
            metrics=store.metrics(cfg.run_id),
            diagnostics=store.diagnostics(cfg.run_id),
            events=[
                (e.step, e.kind, e.message, e.data)
                for e in store.events(cfg.run_id)
                if e.kind != "status"
            ],
        )


def private_lab(lab: str | Path, run_id: str) -> Path:
    """The lab folder a study's training run works in: its own store and checkpoints."""
    return Path(lab) / "work" / run_id


def probe_trained(cfg: Any, probes: Sequence[str]) -> list[Any]:
    """``probes`` on the final weights of the finished run ``cfg``, on its first validation
    batch."""
    import torch

    from resnorm.data import build_data
    from resnorm.diagnostics import run_at_init
    from resnorm.nn.model import build_model
    from resnorm.train import load_weights
    from resnorm.train.checkpoint import model_tensors

    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.model)
    weights = load_weights(cfg.lab, cfg.run_id)
    with torch.no_grad():
        for name, t in model_tensors(model).items():  # a tied head is stored once
            t.copy_(weights[name])
    batch = build_data(cfg.data).val_batches(1)[0]
    return run_at_init(model, batch, list(probes))
