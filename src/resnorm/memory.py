"""Will it fit: the memory of this machine, and a clear refusal of work that cannot fit in it.

Config validation estimates a lower bound of the bytes a run (or a probe at init) needs and calls
`check_memory`; a size no memory here can hold is then one `ConfigError` at the boundary, with
the estimate and the machine's memory in it, instead of an allocator traceback, a hang or a
swapping machine minutes later.

The capacity is the most one process here can use: the larger of the RAM and the largest CUDA
device (a data-parallel rank holds a full replica, so GPUs do not add up). A study driver that
validates runs executed elsewhere (a Ray cluster of bigger machines) states their memory in the
environment variable ``RESNORM_MEMORY_GIB``.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from resnorm.errors import ConfigError

if TYPE_CHECKING:
    from resnorm.nn.config import ModelConfig

MEMORY_ENV = "RESNORM_MEMORY_GIB"


def fmt_bytes(n_bytes: float) -> str:
    """A byte count for a message: ``"13 MiB"``, ``"3.2 GiB"``, ``"1.1 TiB"``."""
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes / 2**20:.3g} MiB"


def ram_bytes() -> int | None:
    """Physical memory of this machine (psutil if installed, else sysconf); None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None


def gpu_bytes() -> int:
    """Memory of the largest CUDA device torch sees (0 without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return 0
    return max(
        torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())
    )


def _stated() -> int | None:
    text = os.environ.get(MEMORY_ENV)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 2**40:
        raise ConfigError(MEMORY_ENV, f"got {text!r}, expected a number of GiB > 0")
    return int(value * 2**30)


def check_memory(field: str, need: int, what: str) -> None:
    """Raise a ConfigError naming ``field`` when ``need`` bytes exceed what one process here can
    hold. ``what`` says what needs them and how the estimate is made up (for the message)."""
    stated = _stated()
    if stated is not None:
        if need <= stated:
            return
        have = f"the {fmt_bytes(stated)} that {MEMORY_ENV} states"
    else:
        ram = ram_bytes()
        if ram is None or need <= ram:  # the common case never touches CUDA
            return
        gpu = gpu_bytes()
        if need <= gpu:
            return
        gpus = f", largest GPU {fmt_bytes(gpu)}" if gpu else ", no CUDA GPU"
        have = f"this machine's memory (RAM {fmt_bytes(ram)}{gpus})"
    raise ConfigError(
        field,
        f"{what} needs at least {fmt_bytes(need)}, more than {have}; make it smaller, or if it "
        f"runs on a bigger machine, set {MEMORY_ENV} to that machine's memory in GiB",
    )


def check_model_fits(
    model: ModelConfig,
    batch_size: int,
    seq_len: int,
    *,
    doing: str,
    held: str,
    per_param: int,
    per_number: int,
    batch_field: str,
) -> None:
    """Refuse ``doing`` (``"training this run"``) with ``model`` on batches of ``batch_size`` x
    ``seq_len`` tokens when it cannot fit here.

    The estimate is a lower bound: ``per_param`` bytes a parameter (``held`` says what they
    hold: weights, gradients, optimizer moments) plus the RoPE tables, and ``per_number`` bytes
    for each number the activations keep (`ModelConfig.activation_floats`). The error names
    ``batch_field`` when the activations dominate, else the size that adds the most parameters.
    """
    weights = per_param * model.param_count() + model.buffer_bytes()
    activations = per_number * model.activation_floats(batch_size, seq_len)
    terms = model.param_terms()
    field = batch_field if activations > weights else f"model.{max(terms, key=terms.__getitem__)}"
    what = (
        f"{doing} ({held} {fmt_bytes(weights)}; activations of {batch_size} x {seq_len} tokens "
        f"{fmt_bytes(activations)})"
    )
    check_memory(field, weights + activations, what)
