"""`TrainResult`: what `train(cfg)` returns: the run's outcome, its model, config and history.

The model is the one trained in this process (eval mode); for a run that was already finished
in the store (``skipped``) it is read back from the run's newest checkpoint on first use
(`resnorm.load_model`), so that a lab re-reporting finished runs loads no weights. The history is
read from the store, the source of truth, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resnorm.config import RunConfig
    from resnorm.nn.model import Transformer

#: ``{metric name: (steps, values)}``; ``plt.plot(*history["loss"])`` draws one curve.
History = dict[str, tuple[list[int], list[float]]]


@dataclass
class TrainResult:
    """What a run ended with.

    Attributes:
        run_id: the run's identity (config hash).
        status: ``done``, ``stuck``, ``diverged`` or ``interrupted``.
        detail: why (divergence step and reason, stuck margin, interruption step), or None.
        step: optimizer steps taken.
        metrics: final scalars (``loss``, ``val_loss``, ``uniform_loss``, ``unigram_loss``, ...).
        resumed_from: the checkpoint step this process started from, if it resumed.
        skipped: the run was already complete in the store; nothing was trained.
        lab: the lab folder.
        config: the resolved run config.
        model: the trained model, in eval mode (see the module docstring).
        history: every logged scalar by name, as ``(steps, values)`` (see `History`).
    """

    run_id: str
    status: str
    detail: str | None
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    resumed_from: int | None = None
    skipped: bool = False
    lab: str = ""
    config: RunConfig | None = None

    def __post_init__(self) -> None:
        self._model: Transformer | None = None

    def bind(self, config: RunConfig, model: Transformer | None = None) -> TrainResult:
        """This result with its config and (when trained in this process) its model."""
        self.config = config
        if model is not None:
            self._model = model.eval()
        return self

    @property
    def model(self) -> Transformer:
        if self._model is None:
            from resnorm.load import load_model

            self._model, _ = load_model(self.run_id, lab=self.lab)
        return self._model

    @cached_property
    def history(self) -> History:
        from resnorm.store import Store

        with Store(self.lab) as store:
            rows = store.metrics(self.run_id)
        out: History = {}
        for step, name, value in rows:
            steps, values = out.setdefault(name, ([], []))
            steps.append(step)
            values.append(value)
        return out
