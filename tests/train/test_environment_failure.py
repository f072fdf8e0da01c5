"""Disk full or a read-only lab: one line, exit 1, the run marked failed, no temporary file
(issue 12, item 5).

The failures are simulated at the syscall boundary (``os.fsync``/``os.replace`` raising the
``OSError`` the kernel gives, or SQLite's ``OperationalError``), in-process: tests run as root
here, and root ignores ``chmod``. What is tested is our handling of that error, not a mock of a
user path.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from trainkit import TINY_TOML

from resnorm.store import Store
from resnorm.store.sqlite import Store as SqliteStore
from resnorm.train.cli import main


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    toml, lab = tmp_path / "tiny.toml", tmp_path / "lab"
    toml.write_text(TINY_TOML)
    capsys.readouterr()
    rc = main(["--config", str(toml), "--lab", str(lab), "--no-progress"])
    return rc, capsys.readouterr().err, lab


def _assert_failed_cleanly(rc: int, err: str, lab: Path, reason: str) -> None:
    assert rc == 1
    assert len(err.strip().splitlines()) == 1, err
    assert reason in err and "Traceback" not in err
    with Store(lab) as store:
        (record,) = store.runs()
    assert record.status == "failed" and reason in (record.detail or "")
    leftovers = [p for p in (lab / "runs").rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_disk_full_while_writing_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ENOSPC from fsync of the temporary tensors file (simulated at the syscall boundary)."""

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    rc, err, lab = _run(tmp_path, capsys)
    monkeypatch.undo()
    _assert_failed_cleanly(rc, err, lab, os.strerror(errno.ENOSPC))


def test_read_only_checkpoint_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """EROFS from the rename that commits a checkpoint (simulated at the syscall boundary)."""
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if "checkpoints" in str(dst):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    rc, err, lab = _run(tmp_path, capsys)
    monkeypatch.undo()
    _assert_failed_cleanly(rc, err, lab, os.strerror(errno.EROFS))


def test_store_that_stops_accepting_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite's error for a full disk on a metric insert (simulated at the store's boundary);
    the status row still gets written, as on a disk that a cleanup freed meanwhile."""

    def log_metrics(self: Any, *args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(SqliteStore, "log_metrics", log_metrics)
    rc, err, lab = _run(tmp_path, capsys)
    monkeypatch.undo()
    _assert_failed_cleanly(rc, err, lab, "database or disk is full")


def test_read_only_runs_folder_before_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """EROFS from mkdir of the run folder (simulated at the syscall boundary): refused in one
    line before the run is recorded, so it is never left ``running``."""
    real = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if "runs" in self.parts:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    rc, err, lab = _run(tmp_path, capsys)
    monkeypatch.undo()
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert os.strerror(errno.EROFS) in err and "Traceback" not in err
    with Store(lab) as store:
        assert [r.status for r in store.runs()] == []
