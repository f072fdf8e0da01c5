"""Diagnostics during training: the `Monitor` every ``probe_every`` steps, own-pass probes at init.

Probes that watch a training step (forward, gradient and update probes) run through
`resnorm.diagnostics.Monitor` on iterations 0, k, 2k, ... (iteration 0 sees the weights at
init). Probes that run their own forward passes (``output_change``, ``layer_drop``) cannot watch
a step; when named in ``train.probes`` they run once at init on the first validation batch
(`resnorm.diagnostics.run_at_init`). Records are logged at the iteration's step, on rank 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from resnorm.config import RunConfig
from resnorm.data import Data
from resnorm.data.batch import Batch, batch_to
from resnorm.diagnostics import PROBES, Monitor, PassProbe, run_at_init

if TYPE_CHECKING:
    from resnorm.train.session import Session

#: Probes when ``train.probes`` is unset: every cheap one that watches a training step
#: (``attention_entropy`` too when the model has eager attention, which exposes probabilities).
DEFAULT_PROBES = (
    "grad_norm",
    "stream_rms",
    "stream_max",
    "branch_rms",
    "update_ratio",
    "rank_collapse",
    "token_cosine",
    "norm_input_scale",
)


def probe_names(cfg: RunConfig) -> tuple[str, ...]:
    """The probes a run uses."""
    if cfg.train.probes is not None:
        return cfg.train.probes
    eager = ("attention_entropy",) if cfg.model.attention == "eager" else ()
    return DEFAULT_PROBES + eager


class Probing:
    """The run's `Monitor` plus its at-init passes, logging through the session."""

    def __init__(self, cfg: RunConfig, model: nn.Module, data: Data, session: Session) -> None:
        names = probe_names(cfg)
        every = cfg.train.probe_every
        self.passes = [n for n in names if issubclass(PROBES.get(n, "train.probes"), PassProbe)]
        live = [n for n in names if n not in self.passes]
        self.monitor = Monitor(model, live, every=every)
        self.model, self.session, self.every = model, session, every
        self.device = next(model.parameters()).device

    def at_init(self, batch: Batch) -> None:
        """Own-pass probes on ``batch`` with the weights at init (step 0)."""
        if self.passes and self.every:
            records = run_at_init(self.model, batch_to(batch, self.device), self.passes)
            self.session.log_diagnostics(0, records)

    def after_step(self, step: int) -> None:
        """Collect the Monitor's records of iteration ``step`` and log them on probe steps."""
        active = self.monitor.active(step)
        records = self.monitor.after_step(step)
        if active:
            self.session.log_diagnostics(step, records)
