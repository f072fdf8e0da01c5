"""DDP under torchrun (2 CPU processes, gloo): when rank 0 cannot write a checkpoint (disk
full), no rank hangs and none prints a traceback: rank 0 prints the one-line environment error,
the other rank stops at the same step, the run is marked failed and no temporary file is left
(issue 12)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from trainkit import TINY_TOML, run_record, subprocess_env

# Rank 0's checkpoint writer fails with ENOSPC at step FAIL_AT; the rest is `resnorm train`.
WRAPPER = """\
import errno, os, sys
import resnorm.train.checkpoint as ckpt
real = ckpt.save
def save(folder, step, *args, **kwargs):
    if os.environ["RANK"] == "0" and step == int(os.environ["FAIL_AT"]):
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(folder, step, *args, **kwargs)
ckpt.save = save
from resnorm.train.cli import main
sys.exit(main())
"""


def test_rank0_checkpoint_failure_stops_every_rank_cleanly(tmp_path: Path) -> None:
    config, wrapper, lab = tmp_path / "tiny.toml", tmp_path / "wrap.py", tmp_path / "lab"
    config.write_text(TINY_TOML)
    wrapper.write_text(WRAPPER)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(wrapper), "--config", str(config), "--lab", str(lab), "--no-progress",
        "-o", "data.batch_size=8",
    ]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(
        command,
        env=subprocess_env({"FAIL_AT": "4"}),  # the first periodic checkpoint (every 4 steps)
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert time.monotonic() - start < 120, "a rank waited for the one that failed"
    assert done.returncode == 1, done.stderr[-3000:]
    ours = [line for line in done.stderr.splitlines() if line.startswith("resnorm train")]
    assert len(ours) == 1, done.stderr[-3000:]  # rank 0's line; the follower stays quiet
    assert "No space left on device" in ours[0] and "run the same command again" in ours[0]
    assert "[rank1]: Traceback" not in done.stderr and "[rank0]: Traceback" not in done.stderr
    record = run_record(lab)
    assert record.status == "failed" and "No space left on device" in (record.detail or "")
    checkpoints = lab / "runs" / record.run_id / "checkpoints"
    assert not list(checkpoints.glob("step-*")), "no checkpoint was written"
    assert not [p for p in lab.rglob("*") if ".tmp" in p.name], "a temporary file was left"
