"""`resnorm.doctor`: the precision decision, the measurement, the report."""

from __future__ import annotations

import pytest

from resnorm.doctor import (
    BF16_MIN_SPEEDUP,
    blas_info,
    choose_precision,
    cpu_info,
    doctor,
    format_doctor,
    matmul_gflops,
)


def test_cuda_with_bf16_support_chooses_bf16() -> None:
    assert choose_precision("cuda", None, cuda_bf16=True)[0] == "bf16"
    assert choose_precision("cuda", None, cuda_bf16=False)[0] == "fp32"


@pytest.mark.parametrize(
    ("bf16", "expected"),
    [(100.0 * BF16_MIN_SPEEDUP, "bf16"), (100.0 * BF16_MIN_SPEEDUP - 1, "fp32"), (50.0, "fp32")],
)
def test_cpu_chooses_bf16_only_when_its_matmul_peak_clearly_beats_fp32(
    bf16: float, expected: str
) -> None:
    precision, reason = choose_precision("cpu", {"fp32": 100.0, "bf16": bf16})
    assert precision == expected
    assert "GFLOP/s" in reason


def test_cpu_without_a_measurement_stays_fp32() -> None:
    assert choose_precision("cpu", None)[0] == "fp32"


def test_matmul_measurement_gives_positive_rates_for_both_dtypes() -> None:
    peaks = matmul_gflops(seconds=0.05, sizes=(64,))
    assert set(peaks) == {"fp32", "bf16"}
    assert all(v > 0 for v in peaks.values())


def test_cpu_and_blas_detection_report_what_torch_was_built_with() -> None:
    cpu, blas = cpu_info(), blas_info()
    assert cpu["cpus"] >= 1 and isinstance(cpu["flags"], list)
    assert blas["threads"] >= 1 and blas["cpu_capability"]


def test_report_names_the_cpu_the_peaks_and_the_decision() -> None:
    d = doctor(seconds=0.05)
    text = format_doctor(d)
    assert d["precision"] in ("fp32", "bf16")
    for needle in ("CPU", "BLAS", "matmul cpu", "precision", d["reason"]):
        assert needle in text


def test_a_narrow_model_stays_fp32_on_cpu_even_where_bf16_matmuls_are_faster() -> None:
    from resnorm.doctor import BF16_MIN_D_MODEL

    peaks = {"fp32": 100.0, "bf16": 400.0}
    assert choose_precision("cpu", peaks, d_model=BF16_MIN_D_MODEL)[0] == "bf16"
    precision, reason = choose_precision("cpu", peaks, d_model=BF16_MIN_D_MODEL // 4)
    assert precision == "fp32" and "d_model" in reason
