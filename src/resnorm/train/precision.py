"""The trainer's precision policy: what ``train.precision = "auto"`` resolves to, and why.

`auto_precision` measures (once per process, about 0.5 s) and `choose_precision` decides;
`resnorm doctor` prints the same decision from a longer measurement (`matmul_gflops`):

* CUDA with bf16 support: ``bf16`` (autocast).
* CPU: ``bf16`` when the measured bf16 matmul peak is at least `BF16_MIN_SPEEDUP` times the fp32
  one (AMX / AVX512-BF16 through oneDNN; also on AMD CPUs, where torch's MKL takes a generic
  fp32 path), else ``fp32``: where bf16 is emulated it is slower, and it always costs accuracy.
  Models narrower than `BF16_MIN_D_MODEL` stay ``fp32`` on a CPU.

The decision and its reason are recorded in the run's environment (``precision``,
``precision_reason``).
"""

from __future__ import annotations

import functools
import time

import torch

#: bf16 must beat fp32 matmuls by this factor before autocast is worth its rounding on a CPU.
BF16_MIN_SPEEDUP = 1.3
#: Narrower models stay fp32 on a CPU (bench/: bf16 autocast is slower at d_model 64).
BF16_MIN_D_MODEL = 256


def matmul_gflops(
    seconds: float = 3.0, device: str = "cpu", sizes: tuple[int, ...] = (512, 1024)
) -> dict[str, float]:
    """Peak fp32 and bf16 matmul throughput in GFLOP/s (2 n^3 FLOPs per n x n product).

    The two dtypes are measured in alternating short bursts and each keeps its best burst, so
    that a neighbour's load on a shared machine slows both alike and the peak survives it.
    """
    dev = torch.device(device)
    mats = {
        (dt, n): (torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt))
        for dt in (torch.float32, torch.bfloat16)
        for n in sizes
    }

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for a, b in mats.values():  # warm up: oneDNN builds its kernels on first use
        a @ b
    sync()
    best = {torch.float32: 0.0, torch.bfloat16: 0.0}
    burst = max(seconds / (4 * len(mats)), 0.02)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or min(best.values()) == 0.0:
        for (dt, n), (a, b) in mats.items():
            reps, start = 0, time.perf_counter()
            while True:
                a @ b
                reps += 1
                if reps % 4 == 0:
                    sync()
                    if time.perf_counter() - start >= burst:
                        break
            rate = 2 * n**3 * reps / (time.perf_counter() - start) / 1e9
            best[dt] = max(best[dt], rate)
    return {"fp32": round(best[torch.float32], 1), "bf16": round(best[torch.bfloat16], 1)}


def choose_precision(
    device: str, peaks: dict[str, float] | None, cuda_bf16: bool = False, d_model: int | None = None
) -> tuple[str, str]:
    """``(precision, reason)`` that ``train.precision = "auto"`` resolves to on ``device``.

    On a CPU a model narrower than `BF16_MIN_D_MODEL` stays in fp32 whatever the peaks: its
    matrices are too small for the bf16 kernels to win back the casts around every product.
    """
    if device == "cuda":
        if cuda_bf16:
            return "bf16", "CUDA device supports bf16: autocast to bf16"
        return "fp32", "CUDA device without bf16 support"
    if d_model is not None and d_model < BF16_MIN_D_MODEL:
        return "fp32", (
            f"d_model {d_model} < {BF16_MIN_D_MODEL}: on a CPU, casts cost more than bf16 "
            "matmuls save at this width"
        )
    if not peaks:
        return "fp32", "no matmul measurement"
    ratio = peaks["bf16"] / max(peaks["fp32"], 1e-9)
    measured = (
        f"bf16 matmul {peaks['bf16']:.0f} GFLOP/s vs fp32 {peaks['fp32']:.0f} GFLOP/s "
        f"({ratio:.2f}x)"
    )
    if ratio >= BF16_MIN_SPEEDUP:
        return "bf16", f"{measured} >= {BF16_MIN_SPEEDUP}x: bf16 autocast pays"
    return "fp32", f"{measured} < {BF16_MIN_SPEEDUP}x: bf16 would cost accuracy for no speed"


def cuda_bf16() -> bool:
    """Whether the current CUDA device supports bf16 (False without CUDA)."""
    return torch.cuda.is_available() and bool(torch.cuda.is_bf16_supported())


def auto_precision(device: str = "cpu", d_model: int | None = None) -> tuple[str, str]:
    """``(precision, reason)`` for ``train.precision = "auto"``: `choose_precision` after a
    short matmul measurement (about 0.5 s, once per process; skipped for a model narrower than
    `BF16_MIN_D_MODEL`, which stays fp32 on a CPU anyway)."""
    if device == "cuda":
        return choose_precision("cuda", None, cuda_bf16())
    narrow = d_model is not None and d_model < BF16_MIN_D_MODEL
    return choose_precision("cpu", None if narrow else _cpu_peaks(), d_model=d_model)


def resolve_precision(
    precision: str, device: torch.device, d_model: int | None = None
) -> tuple[str, str]:
    """``(precision, reason)`` of a run: ``train.precision`` as set, or `auto_precision`'s."""
    if precision != "auto":
        return precision, "set by train.precision"
    return auto_precision("cuda" if device.type == "cuda" else "cpu", d_model)


@functools.lru_cache(maxsize=1)
def _cpu_peaks() -> dict[str, float]:
    return matmul_gflops(0.5)
