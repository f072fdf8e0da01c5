"""Which study driver runs which run: one advisory file lock per run, held while it runs.

Two ``resnorm study run`` drivers on one lab plan the same runs. Without a claim both dispatch
them; the second one's worker then finds the trainer's run lock taken and its failure was
copied into the store as an ``error`` event (for good: events are never deleted), or one
driver removed the run's private store while the other's worker still had it open. A driver
therefore takes ``<lab>/work/claims/<run_id>`` (``flock``, released by the kernel when the
driver dies, so a SIGKILLed driver never leaves a stale claim) before it dispatches a run, and
a driver that finds it taken waits for it and runs only what the other left undone.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no claims, one driver per lab
    fcntl = None  # type: ignore[assignment]


class Claims:
    """The runs this driver has claimed (their lock files stay open until `close`)."""

    def __init__(self, lab: str | Path) -> None:
        self.folder = Path(lab) / "work" / "claims"
        self._held: dict[str, IO[str]] = {}

    def _open(self, run_id: str) -> IO[str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        return open(self.folder / run_id, "a+")

    def take(self, run_id: str) -> bool:
        """Claim ``run_id`` without waiting; ``False`` if another driver holds it."""
        if run_id in self._held:
            return True
        handle = self._open(run_id)
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._held[run_id] = handle
        return True

    def wait(self, run_id: str) -> None:
        """Claim ``run_id``, waiting while another driver holds it."""
        if run_id in self._held:
            return
        handle = self._open(run_id)
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        self._held[run_id] = handle

    def release(self, run_id: str) -> None:
        """Let ``run_id`` go (once it is recorded), so a driver waiting for it goes on."""
        handle = self._held.pop(run_id, None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        """Release every claim."""
        for handle in self._held.values():
            handle.close()
        self._held = {}

    def __enter__(self) -> Claims:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
