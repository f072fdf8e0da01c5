"""Diagnostics: probes attached to a model by hooks, at init and during training.

* :class:`Record` — one typed measurement ``(probe, layer, key, value, unit)``.
* :data:`PROBES` — the registered probes (``PROBES.names()``), see :mod:`.probes`.
* :func:`run_at_init` — one batch through a model with probes on; all hooks removed after.
* :class:`Monitor` — the same probes every k steps inside a training loop.
* :func:`inspect_model`, :func:`inspect_comparison`, :func:`format_table` — `resnorm inspect`.

The model never imports this package; probes find its parts by their stable module names.
"""

from __future__ import annotations

from resnorm.diagnostics.base import (
    PROBES,
    GradProbe,
    HookProbe,
    PassProbe,
    Probe,
    Record,
    UpdateProbe,
    cross_entropy,
    entropy,
    rank_collapse,
    rms,
    token_cosine,
)
from resnorm.diagnostics.inspect import (
    format_table,
    grad_ratio,
    inspect_comparison,
    inspect_model,
    random_batch,
)
from resnorm.diagnostics.monitor import Monitor
from resnorm.diagnostics.probes import run_at_init

__all__ = [
    "PROBES",
    "GradProbe",
    "HookProbe",
    "Monitor",
    "PassProbe",
    "Probe",
    "Record",
    "UpdateProbe",
    "cross_entropy",
    "entropy",
    "format_table",
    "grad_ratio",
    "inspect_comparison",
    "inspect_model",
    "random_batch",
    "rank_collapse",
    "rms",
    "run_at_init",
    "token_cosine",
]
