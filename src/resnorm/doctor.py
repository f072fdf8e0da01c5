"""`resnorm doctor`: what this machine is, how fast it multiplies matrices, which precision to use.

`doctor()` detects the CPU (``/proc/cpuinfo``), torch's BLAS and oneDNN build, CUDA, and
measures the fp32 and bf16 matmul throughput for a few seconds; `format_doctor` prints it. The
precision it prints is the trainer's own policy (`resnorm.train.precision.choose_precision`,
what ``train.precision = "auto"`` takes), applied to this longer measurement.
"""

from __future__ import annotations

import os
import platform
import re
from typing import Any

import torch

from resnorm.errors import ConfigError
from resnorm.train.precision import (
    BF16_MIN_D_MODEL,
    BF16_MIN_SPEEDUP,
    choose_precision,
    matmul_gflops,
)

# The precision policy's names are re-exported: the doctor is where people look for them.
__all__ = [
    "BF16_FLAGS",
    "BF16_MIN_D_MODEL",
    "BF16_MIN_SPEEDUP",
    "blas_info",
    "choose_precision",
    "cpu_info",
    "cuda_info",
    "doctor",
    "format_doctor",
    "format_store",
    "matmul_gflops",
]

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


#: Longest matmul measurement per device, seconds (the default, 3 s, is plenty).
MAX_SECONDS = 60.0


def doctor(seconds: float = 3.0) -> dict[str, Any]:
    """Everything `resnorm doctor` reports, measured for about ``seconds`` per device.

    Raises:
        ConfigError: ``seconds`` is not a finite number in (0, `MAX_SECONDS`] (a NaN would
            never end the measurement loop).
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ConfigError("seconds", f"got {seconds!r}, expected a number")
    if not 0 < seconds <= MAX_SECONDS:
        raise ConfigError("seconds", f"must be in (0, {MAX_SECONDS:g}], got {seconds}")
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


def format_store(health: dict[str, Any]) -> str:
    """``resnorm doctor --lab``: a lab store's state, as `resnorm.store.integrity.store_health`
    reports it."""
    lines = [f"store:          {health['path']}", f"state:          {health['state']}"]
    if health["detail"]:
        lines.append(f"detail:         {health['detail']}")
    if health["schema_version"] is not None:
        lines.append(f"schema version: {health['schema_version']}")
    if health["runs"] is not None:
        lines.append(f"runs:           {health['runs']}")
    return "\n".join(lines)
