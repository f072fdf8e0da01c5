"""Golden loss curve: a tiny deterministic run reproduces the committed curve.

The file is written only by ``scripts/make_golden.py``. The tolerance (1e-4 relative) allows
for CPUs whose kernels round differently (AVX2 vs AVX-512); any change to the model, data, init,
optimizer or loop moves the curve by far more. On the machine that wrote it, it is bitwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnorm.config import RunConfig
from resnorm.store import Store
from resnorm.train import train

GOLDEN = Path(__file__).parent / "golden" / "loss_tiny.json"


def test_tiny_run_reproduces_the_golden_loss_curve(tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    cfg = RunConfig.from_dict({**golden["config"], "lab": str(tmp_path / "lab")})
    result = train(cfg, progress=False)
    with Store(tmp_path / "lab") as store:
        loss = [m.value for m in store.metrics(result.run_id, "loss")]
        val = {str(m.step): m.value for m in store.metrics(result.run_id, "val_loss")}
    assert result.status == golden["status"] == "done"
    assert len(loss) == len(golden["loss"]) == cfg.train.steps
    assert loss == pytest.approx(golden["loss"], rel=1e-4)
    assert val == pytest.approx(golden["val_loss"], rel=1e-4)
    assert golden["loss"][-1] < 0.2 * golden["loss"][0]  # the curve shows learning
