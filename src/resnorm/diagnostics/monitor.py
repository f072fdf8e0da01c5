"""`Monitor`: probes inside a real training loop, every k steps, without an extra forward pass.

The trainer calls it at three points of each step::

    monitor = Monitor(model, ("grad_norm", "stream_rms", "update_ratio"), every=100)
    for step in range(steps):
        monitor.before_step(step)          # probe steps: attach hooks, snapshot weights
        loss = loss_fn(model(x), y); loss.backward()
        monitor.after_backward(step)       # global grad norm (every step); per-layer grad norms
                                           # (pass grad_norm= when already computed, to clip)
        clip(...); optimizer.step(); model.after_step()
        records = monitor.after_step(step) # update ratios, what the hooks saw; hooks removed

Hooks exist only between ``before_step`` and ``after_backward`` of a probe step, so other steps
pay nothing but the global gradient norm (one batched ``_foreach_norm``, or nothing when the
caller passes the norm it computed to clip, as the trainer does). With gradient
accumulation, call ``before_step`` before the first micro-batch and ``after_backward`` after the
last: forward statistics are averaged over the micro-batches. Probes that run their own passes
(``output_change``, ``layer_drop``) are not for this: use ``run_at_init`` on an eval batch.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from torch import Tensor, nn

from resnorm.diagnostics.base import (
    GradProbe,
    HookProbe,
    PassProbe,
    Probe,
    Record,
    UpdateProbe,
    make_probes,
)
from resnorm.diagnostics.gradients import GradNorm, global_grad_norm
from resnorm.errors import ConfigError

_F = TypeVar("_F", bound=Callable[..., Any])


def _timed(method: _F) -> _F:
    """Add the wall time of a `Monitor` method's call to ``self._own_seconds``."""

    @functools.wraps(method)
    def wrapper(self: Monitor, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._own_seconds += time.perf_counter() - start

    return cast(_F, wrapper)


class Monitor:
    """Runs ``probes`` on every ``every``-th step (step 0 included) of a training loop.

    Args:
        model: the model being trained (a DDP or compiled wrapper is fine: names are matched
            after their prefixes).
        probes: registered probe names or instances; not the ``pass`` kind.
        every: probe period in steps; 0 = never (only the per-step global grad norm).

    Attributes:
        last_grad_norm: the global gradient norm measured by the latest ``after_backward``.
        seconds: wall time spent in diagnostics since construction: the Monitor's calls plus
            its probes' hooks during forward passes (what the probes cost a training loop,
            measured directly rather than as the difference of two noisy step times).
    """

    def __init__(self, model: nn.Module, probes: Sequence[str | Probe] = (), every: int = 100):
        self.model, self.every = model, every
        self.probes = make_probes(probes)
        own_passes = [p.name for p in self.probes if isinstance(p, PassProbe)]
        if own_passes:
            raise ConfigError(
                "diagnostics.probes",
                f"{', '.join(own_passes)} run their own forward passes and cannot watch a "
                "training step; measure them with run_at_init on an eval batch",
            )
        if every < 0:
            raise ConfigError("diagnostics.every", f"must be >= 0, got {every}")
        self.last_grad_norm: float | None = None
        self._pending: list[Record] = []
        self._step: int | None = None
        self._own_seconds = 0.0

    @property
    def seconds(self) -> float:
        hooks = sum(p.seconds for p in self.probes if isinstance(p, HookProbe))
        return self._own_seconds + hooks

    def active(self, step: int) -> bool:
        """Whether ``step`` is a probe step."""
        return self.every > 0 and step % self.every == 0

    @_timed
    def before_step(self, step: int) -> None:
        """Before the forward pass(es) of ``step``: on probe steps, attach hooks, snapshot."""
        self.close()
        self._pending, self.last_grad_norm = [], None
        if not self.active(step):
            return
        self._step = step
        for p in self.probes:
            if isinstance(p, HookProbe):
                p.attach(self.model)
            elif isinstance(p, UpdateProbe):
                p.snapshot(self.model)

    @_timed
    def after_backward(self, step: int, grad_norm: float | Tensor | None = None) -> None:
        """After the backward pass(es), before clipping and the optimizer step.

        Args:
            step: the iteration.
            grad_norm: the global gradient norm when the caller has computed it already (a
                trainer does, to clip); default: computed here.
        """
        self.last_grad_norm = (
            float(grad_norm) if grad_norm is not None else global_grad_norm(self.model)
        )
        if self._step != step:
            return
        for p in self.probes:
            if isinstance(p, HookProbe):
                p.detach()  # the forward is over; later passes (eval) must not be counted
            elif isinstance(p, GradProbe):
                self._pending += p.records(self.model)

    @_timed
    def after_step(self, step: int) -> list[Record]:
        """After the optimizer step (and ``model.after_step()``): this step's records.

        Always the global gradient norm (probe ``grad_norm``, layer ``None``, key ``""``); on
        probe steps also every probe's records.
        """
        out: list[Record] = []
        if self._step == step:
            for p in self.probes:
                if isinstance(p, HookProbe):
                    p.detach()
                    out += p.collect()
                elif isinstance(p, UpdateProbe):
                    out += p.records(self.model)
                    p.clear()
            out += self._pending
        has_global = any(r.probe == GradNorm.name and r.layer is None and r.key == "" for r in out)
        if self.last_grad_norm is not None and not has_global:
            out.insert(0, Record(GradNorm.name, None, "", self.last_grad_norm, GradNorm.unit))
        self._pending, self._step = [], None
        return out

    def close(self) -> None:
        """Remove any hook still attached and drop any weight snapshot."""
        for p in self.probes:
            if isinstance(p, HookProbe):
                p.detach()
            elif isinstance(p, UpdateProbe):
                p.clear()
        self._step = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
