"""`resnorm doctor`: what this machine is, how fast it multiplies matrices, which precision to use.

`doctor()` detects the CPU (``/proc/cpuinfo``), torch's BLAS and oneDNN build, CUDA, and
measures the fp32 and bf16 matmul throughput for a few seconds; `format_doctor` prints it. The
precision decision (`choose_precision`) is the one ``train.precision = "auto"`` takes (the
trainer calls `auto_precision` and records the decision and its reason in the run's environment):

* CUDA with bf16 support: ``bf16`` (autocast).
* CPU: ``bf16`` when the measured bf16 matmul peak is at least `BF16_MIN_SPEEDUP` times the fp32
  one (AMX / AVX512-BF16 through oneDNN; also on AMD CPUs, where torch's MKL takes a generic
  fp32 path), else ``fp32``: where bf16 is emulated it is slower, and it always costs accuracy.
  Models narrower than `BF16_MIN_D_MODEL` stay ``fp32`` on a CPU.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import time
from typing import Any

import torch

#: bf16 must beat fp32 matmuls by this factor before autocast is worth its rounding on a CPU.
BF16_MIN_SPEEDUP = 1.3
#: Narrower models stay fp32 on a CPU (bench/: bf16 autocast is slower at d_model 64).
BF16_MIN_D_MODEL = 256
#: CPU flags that say the hardware multiplies bf16 natively.
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "avx_ne_convert")
_FLAGS_OF_INTEREST = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "sve",
    "bf16",
)


def cpu_info() -> dict[str, Any]:
    """CPU model, vendor, logical CPUs usable by this process and the relevant ISA flags."""
    model, vendor = platform.processor() or platform.machine(), ""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and value:
                    model = value
                elif key in ("vendor_id", "CPU implementer") and not vendor:
                    vendor = value
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model,
        "vendor": vendor,
        "arch": platform.machine(),
        "cpus": usable,
        "flags": [f for f in _FLAGS_OF_INTEREST if f in flags],
        "native_bf16": any(f in flags for f in BF16_FLAGS),
    }


def blas_info() -> dict[str, Any]:
    """How torch multiplies matrices on the CPU: BLAS library, oneDNN, SIMD level, threads."""
    config = torch.__config__.show()

    def line(pattern: str) -> str | None:
        m = re.search(pattern, config)
        return m.group(1).strip() if m else None

    blas = line(r"BLAS_INFO=([^,\n]+)")
    try:
        onednn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn_bf16 = False
    return {
        "blas": blas,
        "mkl": line(r"(Intel\(R\) (?:oneAPI )?Math Kernel Library[^\n]*?Version [0-9.]+)"),
        "mkl_available": torch.backends.mkl.is_available(),
        "onednn": line(r"(Intel\(R\) MKL-DNN v[0-9.]+)"),
        "onednn_available": torch.backends.mkldnn.is_available(),
        "onednn_bf16": onednn_bf16,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def cuda_info() -> dict[str, Any]:
    """CUDA devices torch sees, and whether the first supports bf16."""
    if not torch.cuda.is_available():
        return {"available": False}
    return {
        "available": True,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "bf16": bool(torch.cuda.is_bf16_supported()),
        "cuda": torch.version.cuda,
    }


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


def auto_precision(device: str = "cpu", d_model: int | None = None) -> tuple[str, str]:
    """``(precision, reason)`` for ``train.precision = "auto"``: `choose_precision` after a
    short matmul measurement (about 0.5 s, once per process; skipped for a model narrower than
    `BF16_MIN_D_MODEL`, which stays fp32 on a CPU anyway)."""
    if device == "cuda":
        return choose_precision("cuda", None, cuda_info().get("bf16", False))
    narrow = d_model is not None and d_model < BF16_MIN_D_MODEL
    return choose_precision("cpu", None if narrow else _cpu_peaks(), d_model=d_model)


@functools.lru_cache(maxsize=1)
def _cpu_peaks() -> dict[str, float]:
    return matmul_gflops(0.5)


def doctor(seconds: float = 3.0) -> dict[str, Any]:
    """Everything `resnorm doctor` reports, measured for about ``seconds`` per device."""
    cuda = cuda_info()
    peaks = {"cpu": matmul_gflops(seconds, "cpu")}
    if cuda["available"]:
        peaks["cuda"] = matmul_gflops(seconds, "cuda", sizes=(4096,))
    device = "cuda" if cuda["available"] else "cpu"
    precision, reason = choose_precision(device, peaks["cpu"], cuda.get("bf16", False))
    cpu = cpu_info()
    notes = []
    if cpu["vendor"] == "AuthenticAMD" and blas_info()["blas"] == "mkl":
        notes.append("MKL on an AMD CPU takes a generic code path: fp32 matmuls run below peak")
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "blas": blas_info(),
        "cuda": cuda,
        "matmul_gflops": peaks,
        "device": device,
        "precision": precision,
        "reason": reason,
        "notes": notes,
    }


def format_doctor(d: dict[str, Any]) -> str:
    """The report of `doctor` as aligned text lines."""
    cpu, blas, cuda = d["cpu"], d["blas"], d["cuda"]
    rows = [
        ("torch", f"{d['torch']} (Python {d['python']})"),
        ("CPU", f"{cpu['model']} [{cpu['vendor'] or cpu['arch']}], {cpu['cpus']} CPUs"),
        ("ISA", ", ".join(cpu["flags"]) or "-"),
        ("BLAS", f"{blas['blas']}: {blas['mkl'] or 'MKL not built in'}"),
        (
            "oneDNN",
            f"{blas['onednn'] or 'not built in'}"
            + (", bf16 kernels" if blas["onednn_bf16"] else ", no bf16 kernels"),
        ),
        ("SIMD", f"{blas['cpu_capability']}, {blas['threads']} threads"),
        (
            "CUDA",
            ", ".join(cuda["devices"]) + (" (bf16)" if cuda["bf16"] else "")
            if cuda["available"]
            else "not available",
        ),
    ]
    for dev, p in d["matmul_gflops"].items():
        ratio = p["bf16"] / max(p["fp32"], 1e-9)
        rows.append(
            (
                f"matmul {dev}",
                f"fp32 {p['fp32']:.0f} GFLOP/s, bf16 {p['bf16']:.0f} GFLOP/s ({ratio:.2f}x)",
            )
        )
    rows.append(("precision", f"{d['precision']} on {d['device']}: {d['reason']}"))
    if d["device"] == "cpu" and d["precision"] == "bf16":
        rows.append(("", f"(models with d_model < {BF16_MIN_D_MODEL} stay fp32)"))
    rows += [("note", n) for n in d["notes"]]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
