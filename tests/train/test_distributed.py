"""DDP under torchrun: 2 CPU processes (gloo) follow the loss trajectory of 1 process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from trainkit import KINDS, TINY_TOML, run_record, subprocess_env, tiny_config

from resnorm.store import Store
from resnorm.train import load_weights, train


@pytest.mark.parametrize("kind", ["decoder", "encoder", "encoder_decoder"])
def test_two_cpu_processes_match_one_process_with_the_same_global_batch(
    tmp_path: Path, kind: str
) -> None:
    """For a masked-LM encoder the ranks' micro-batches hold different numbers of supervised
    tokens, and an encoder-decoder's batches are keyword tensors with an attention mask: the
    loss is still normalised by the global count, so the trajectories agree."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    # Each rank takes 4 of the 8 rows and splits them into 2 micro-batches (no_sync, then sync).
    overrides = ["data.batch_size=8", "train.grad_accum=2", *KINDS[kind]]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "resnorm.train.cli", "--config", str(config), "--lab", str(tmp_path / "ddp"),
        "--no-progress", *(a for o in overrides for a in ("-o", o)),
    ]  # fmt: skip
    done = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = run_record(tmp_path / "ddp")
    assert ddp.environment["world_size"] == 2

    single = train(tiny_config(tmp_path / "one", ["data.batch_size=8", *KINDS[kind]]),
                   progress=False)  # fmt: skip
    assert single.status == ddp.status
    metrics = ["loss", "grad_norm", "val_loss", "val_accuracy"]
    if kind == "encoder_decoder":
        metrics.append("val_exact_match")
    with Store(tmp_path / "ddp") as a, Store(tmp_path / "one") as b:
        for name in metrics:
            two = [(m.step, m.value) for m in a.metrics(ddp.run_id, name)]
            one = [(m.step, m.value) for m in b.metrics(single.run_id, name)]
            assert [s for s, _ in two] == [s for s, _ in one] and one, name
            assert [v for _, v in two] == pytest.approx([v for _, v in one], rel=1e-5), name
    w2, w1 = (
        load_weights(tmp_path / "ddp", ddp.run_id),
        load_weights(tmp_path / "one", single.run_id),
    )
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-6)
