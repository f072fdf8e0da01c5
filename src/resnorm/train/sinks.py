"""Live-curve sinks: copies of a run's scalars and diagnostics for TensorBoard (``train.log``).

The SQLite store is the source of truth; a sink only mirrors what `Session.log` and
`Session.log_diagnostics` write to it, on rank 0, so that curves can be watched while a run
trains. A sink is three methods (`Sink`); `SINKS` maps the names ``train.log`` accepts to their
classes and the package extra each needs. A requested sink whose package is missing is a
`ConfigError` raised by `check_sinks` before anything is trained or written.

TensorBoard files go to ``<lab>/runs/<run_id>/tensorboard/``. Tags: a metric keeps its stored
name (``loss``, ``val_loss``, ``eval/<name>/loss``); a diagnostic is
``diagnostics/<probe>[/<key>]`` for a model-wide value and
``diagnostics/<probe>[/<key>]/layer_<NN>`` for a layer's, so each probe is one chart group.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from resnorm.errors import ConfigError
from resnorm.store.records import diagnostic_fields


class Sink(Protocol):
    """Where a run's logged values are mirrored besides the store."""

    def scalars(self, step: int, values: Mapping[str, float]) -> None: ...

    def diagnostics(self, step: int, records: Sequence[Any]) -> None: ...

    def close(self) -> None: ...


def diagnostic_tag(probe: str, layer: int, key: str) -> str:
    """The TensorBoard tag of one diagnostic (``layer`` -1 and ``key`` "" mean none)."""
    tag = f"diagnostics/{probe}" + (f"/{key}" if key else "")
    return tag + (f"/layer_{layer:02d}" if layer >= 0 else "")


class TensorBoardSink:
    """TensorBoard event files in ``folder`` (``torch.utils.tensorboard.SummaryWriter``)."""

    def __init__(self, folder: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run logs steps >= start_step again: purge_step hides the killed process's
        # events from there on, as the store deletes its rows.
        self.writer = SummaryWriter(str(folder), purge_step=start_step or None)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, float(value), step)

    def diagnostics(self, step: int, records: Sequence[Any]) -> None:
        for record in records:
            probe, layer, key, value, _ = diagnostic_fields(record)
            if value is not None:
                self.writer.add_scalar(diagnostic_tag(probe, layer, key), float(value), step)

    def close(self) -> None:
        self.writer.close()


#: ``train.log`` name -> (the importable module it needs, the extra that installs it).
REQUIREMENTS = {"tensorboard": ("tensorboard", "tensorboard")}


def check_sinks(names: Sequence[str]) -> None:
    """Raise `ConfigError` ("train.log") if a requested sink's package is not installed."""
    for name in names:
        module, extra = REQUIREMENTS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                "train.log",
                f"{name!r} needs the {module!r} package, which is not installed: "
                f"pip install 'resnorm[{extra}]' (or drop {name!r} from train.log)",
            )


def open_sinks(names: Sequence[str], run_folder: Path, start_step: int) -> list[Sink]:
    """The sinks ``names`` asks for, writing beside the run in ``run_folder``."""
    check_sinks(names)
    sinks: list[Sink] = []
    for name in names:
        assert name == "tensorboard", f"unhandled sink {name!r}"
        sinks.append(TensorBoardSink(run_folder / "tensorboard", start_step))
    return sinks
