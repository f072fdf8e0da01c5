"""Nothing lost: a real training process killed (SIGKILL, also mid-checkpoint) or interrupted
(SIGINT), then the same command again, ends bitwise equal to an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from trainkit import (
    KINDS,
    TINY_TOML,
    assert_same_results,
    cli_command,
    results,
    run_cli,
    run_record,
    subprocess_env,
    tiny_config,
)

from resnorm.store import Store
from resnorm.train import train
from resnorm.train.checkpoint import KILL_HOOK, checkpoint_dir
from resnorm.train.cli import main

# Dropout makes the resumed run depend on the restored RNG state too.
OVERRIDES = ["model.dropout=0.1"]
SLOW = {"RESNORM_TEST_STEP_SLEEP": "0.25"}  # test hook: time to act between steps


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run's results."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lab = tmp_path_factory.mktemp("reference") / "lab"
        train(tiny_config(lab, OVERRIDES), progress=False)
    finally:
        torch.set_num_threads(threads)
    return results(lab)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


def _start(
    config: Path, lab: Path, env: dict[str, str], overrides: list[str] = OVERRIDES
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_command(config, lab, overrides),
        env=subprocess_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_run_then_same_command_equals_uninterrupted(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    config, lab = _config(tmp_path), tmp_path / "lab"
    run_id = tiny_config(lab, OVERRIDES).run_id
    process = _start(config, lab, SLOW)
    _wait_for(checkpoint_dir(lab, run_id) / "step-00000004.json", process)
    time.sleep(0.6)  # a few steps past the checkpoint, whose rows must be dropped and redone
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    with Store(lab) as store:
        assert store.get_run(run_id).status == "running"  # type: ignore[union-attr]
        assert max(m.step for m in store.metrics(run_id)) > 4
    again = run_cli(config, lab, OVERRIDES)
    assert again.returncode == 0, again.stderr
    assert_same_results(results(lab), reference)
    with Store(lab) as store:
        (resume,) = store.events(run_id, "resume")
    assert resume.step in (4, 8)
    argv = ["--config", str(config), "--lab", str(lab), "--no-progress", "-o", OVERRIDES[0]]
    assert main(argv) == 0  # a finished run is reported, not rerun
    assert_same_results(results(lab), reference)


@pytest.mark.parametrize("point", ["tensors", "json"])
def test_kill_while_writing_a_checkpoint_then_same_command_equals_uninterrupted(
    tmp_path: Path, reference: dict[str, Any], point: str
) -> None:
    config, lab = _config(tmp_path), tmp_path / "lab"
    run_id = tiny_config(lab, OVERRIDES).run_id
    killed = run_cli(config, lab, OVERRIDES, env={KILL_HOOK: f"8:{point}"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = checkpoint_dir(lab, run_id)
    left = sorted(p.name for p in folder.iterdir())
    if point == "tensors":  # the temporary file, never renamed; step 4 still the newest
        assert left[0].startswith(".step-00000008.safetensors.tmp-"), left
        assert left[1:] == ["step-00000004.json", "step-00000004.safetensors"]
    else:  # step 8's tensors in place, but not committed by their JSON
        assert left[0].startswith(".step-00000008.json.tmp-"), left
        assert "step-00000008.safetensors" in left and "step-00000008.json" not in left
    assert main(["--config", str(config), "--lab", str(lab), "--no-progress",
                 *(a for o in OVERRIDES for a in ("-o", o))]) == 0  # fmt: skip
    assert_same_results(results(lab), reference)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # cleaned up


def test_sigint_checkpoints_marks_interrupted_exits_130_and_resumes(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    config, lab = _config(tmp_path), tmp_path / "lab"
    run_id = tiny_config(lab, OVERRIDES).run_id
    process = _start(config, lab, SLOW)
    _wait_for(checkpoint_dir(lab, run_id) / "step-00000004.json", process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in out
    record = run_record(lab)
    assert record.status == "interrupted"
    step = record.summary["step"]
    assert 4 < step < 12
    assert (checkpoint_dir(lab, run_id) / f"step-{step:08d}.json").exists()
    assert main(["--config", str(config), "--lab", str(lab), "--no-progress",
                 *(a for o in OVERRIDES for a in ("-o", o))]) == 0  # fmt: skip
    assert_same_results(results(lab), reference)


@pytest.mark.parametrize("kind", ["encoder", "encoder_decoder"])
def test_sigkill_then_same_command_equals_uninterrupted_for_every_model_kind(
    tmp_path: Path, kind: str
) -> None:
    """A masked-LM encoder (masks re-drawn per batch) and an encoder-decoder (keyword batches
    with an attention mask) resume bitwise too: metrics, diagnostics and weights. The process
    is SIGKILLed while writing its step-8 checkpoint, with steps 5-8 already logged."""
    overrides = [*OVERRIDES, *KINDS[kind]]
    train(tiny_config(tmp_path / "reference" / "lab", overrides), progress=False)
    reference = results(tmp_path / "reference" / "lab")
    assert any(m[1] == "val_accuracy" for m in reference["metrics"])
    config, lab = _config(tmp_path), tmp_path / "lab"
    run_id = tiny_config(lab, overrides).run_id
    killed = run_cli(config, lab, overrides, env={KILL_HOOK: "8:tensors"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Store(lab) as store:
        assert store.get_run(run_id).status == "running"  # type: ignore[union-attr]
        assert max(m.step for m in store.metrics(run_id)) > 4, "rows past step 4 to drop"
    argv = ["--config", str(config), "--lab", str(lab), "--no-progress"]
    assert main([*argv, *(a for o in overrides for a in ("-o", o))]) == 0
    with Store(lab) as store:
        (resume,) = store.events(run_id, "resume")
    assert resume.step == 4
    assert_same_results(results(lab), reference)
