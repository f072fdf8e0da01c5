"""Issue 12, item 17: a local Ray that times out during startup (a loaded machine) is one clear
error that says how to raise the start timeout, and the timeout is configurable.

The failure is simulated: ``ray.init`` raises what Ray's startup wait raises
(``ray/_private/node.py``), so this tests our handling of it, not Ray."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import ray  # a dev dependency: this test never skips
from labkit import TINY_STUDY

from resnorm.cli import main
from resnorm.errors import ConfigError
from resnorm.lab.executors import (
    RAY_START_ENV,
    RAY_START_TIMEOUT,
    RAY_WAIT_ENV,
    RayExecutor,
    make_executor,
)

RAY_MESSAGE = (
    "The current node timed out during startup. This could happen because some of the raylet "
    "failed to startup or the GCS has become overloaded."
)


@pytest.fixture
def slow_ray(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``ray.init`` fails as on a loaded machine; records what it saw and whether Ray was shut
    down after."""
    seen: dict[str, Any] = {"shutdown": False}

    def init(**kwargs: Any) -> None:
        seen["wait"] = os.environ.get(RAY_WAIT_ENV)
        raise Exception(RAY_MESSAGE)

    monkeypatch.delenv(RAY_WAIT_ENV, raising=False)
    monkeypatch.delenv(RAY_START_ENV, raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: seen.update(shutdown=True))
    return seen


def test_startup_timeout_says_how_to_raise_it_and_passes_the_timeout_to_ray(
    slow_ray: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError) as e:
        next(RayExecutor(start_timeout=120).imap([], lambda task: None))
    message = str(e.value)
    assert e.value.field == "executor" and "\n" not in message
    for words in ("start timeout 120 s", f"{RAY_START_ENV}=900", "--address", "timed out"):
        assert words in message, message
    assert slow_ray == {"wait": "120", "shutdown": True}
    assert RAY_WAIT_ENV not in os.environ  # set for Ray's start only


def test_start_timeout_comes_from_the_option_the_environment_or_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(RAY_START_ENV, raising=False)
    assert RayExecutor().start_timeout == RAY_START_TIMEOUT >= 300
    monkeypatch.setenv(RAY_START_ENV, "900")
    assert RayExecutor().start_timeout == 900 and RayExecutor(start_timeout=60).start_timeout == 60
    assert make_executor("ray", ray_start_timeout=42).start_timeout == 42  # type: ignore[attr-defined]
    for bad in ("abc", "0", "nan", "-5"):
        monkeypatch.setenv(RAY_START_ENV, bad)
        with pytest.raises(ConfigError) as e:
            RayExecutor()
        assert e.value.field == RAY_START_ENV
    with pytest.raises(ConfigError, match="only the ray executor starts Ray"):
        make_executor("local", ray_start_timeout=42)


def test_study_run_on_ray_that_cannot_start_is_one_line_and_exit_2(
    slow_ray: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_STUDY)
    argv = ["study", "run", str(spec), "--executor", "ray", "--lab", str(tmp_path / "lab")]
    assert main([*argv, "--no-progress", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "error: executor: a local Ray failed to start" in err and RAY_START_ENV in err
    assert not (tmp_path / "lab" / "runs").exists()  # no run started


def test_the_cli_passes_its_ray_start_timeout_and_refuses_a_nonsense_one(
    slow_ray: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_STUDY)
    argv = ["study", "run", str(spec), "--executor", "ray", "--lab", str(tmp_path / "lab")]
    assert main([*argv, "--ray-start-timeout", "nan", "--no-progress"]) == 2
    assert "--ray-start-timeout: got nan" in capsys.readouterr().err
    assert not (tmp_path / "lab").exists()  # refused before anything was written
    assert main([*argv, "--ray-start-timeout", "7", "--no-progress", "--no-report"]) == 2
    assert "(start timeout 7 s;" in capsys.readouterr().err  # the timeout it was given
