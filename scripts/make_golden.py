"""Regenerate the golden loss curve of the training tests: ``tests/train/golden/loss_tiny.json``.

    python scripts/make_golden.py            # writes the file
    python scripts/make_golden.py --check    # compares instead, exit 1 on a difference

Run it only when a change to the model, the data or the loop is meant to change the numbers,
and say so in the commit. The file holds the resolved config, so the test
(``tests/train/test_golden.py``) trains exactly this run and compares its curve.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from resnorm.config import load_config
from resnorm.store import Store
from resnorm.train import train

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "train" / "golden" / "loss_tiny.json"

CONFIG = """\
name = "golden-tiny"

[model]
vocab_size = 6
d_model = 32
n_layers = 2
n_heads = 2
max_seq_len = 8

[data]
source = "sorting"
seq_len = 8
batch_size = 16
seed = 0
params = { vocab_size = 6 }

[train]
steps = 40
warmup_steps = 5
lr = 1e-2
seed = 0
log_every = 1
eval_every = 10
eval_batches = 2
probe_every = 0
checkpoint_every = 1000
precision = "fp32"  # pinned: "auto" picks bf16 on CPUs where it pays, at d_model >= 256
"""


def curve(config: dict[str, Any], lab: Path) -> dict[str, Any]:
    """Train ``config`` (one thread) into ``lab``; its per-step loss and eval losses."""
    from resnorm.config import RunConfig

    cfg = RunConfig.from_dict({**config, "lab": str(lab)})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(cfg, progress=False)
    finally:
        torch.set_num_threads(threads)
    with Store(lab) as store:
        loss = [m.value for m in store.metrics(result.run_id, "loss")]
        val = {str(m.step): m.value for m in store.metrics(result.run_id, "val_loss")}
    return {"status": result.status, "loss": loss, "val_loss": val}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the file, write nothing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "golden.toml"
        path.write_text(CONFIG)
        config = load_config(path).to_dict()
        config.pop("lab")
        got = curve(config, Path(tmp) / "lab")
    golden = {"config": config, "torch": torch.__version__, **got}
    if args.check:
        old = json.loads(GOLDEN.read_text())
        same = len(old["loss"]) == len(got["loss"]) and all(
            math.isclose(a, b, rel_tol=1e-5) for a, b in zip(old["loss"], got["loss"], strict=True)
        )
        print("golden curve reproduced" if same else "golden curve differs")
        return 0 if same else 1
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {GOLDEN}: {len(got['loss'])} steps, final val_loss {got['val_loss']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
