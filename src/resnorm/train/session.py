"""A run's bookkeeping: the store row, its lock, resuming from a checkpoint, rank 0 as sole writer.

`open_session` decides what a process does with a run, reading only: a finished run (``done``,
``stuck``, ``diverged``) is reported, not rerun; an interrupted one resumes from its newest
checkpoint, validated in full before anything is written (`resnorm.train.resume`: a damaged
checkpoint is moved aside and the run resumes from the previous good one, or is refused).
Under DDP rank 0 decides and the other ranks follow (`resnorm.train.distributed.broadcast`);
every write below is rank 0's.

A run folder ``<lab>/runs/<run_id>/`` holds ``checkpoints/`` and a ``lock`` file that the
running process holds (``flock``), so a second process on the same run is refused instead of
interleaving with it; the kernel drops the lock of a killed process.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnorm.config import RunConfig
from resnorm.errors import ConfigError
from resnorm.store import COMPLETE_STATUSES, RunRecord, Store
from resnorm.train import checkpoint as ckpt_io
from resnorm.train.distributed import World, broadcast
from resnorm.train.resume import Damaged, find_resumable
from resnorm.train.sinks import Sink, open_sinks

try:
    import fcntl
except ImportError:  # Windows: no advisory lock
    fcntl = None  # type: ignore[assignment]


class Session:
    """What a process writes about its run (every method is a no-op on ranks other than 0).

    Attributes:
        run_id: the run's identity.
        start_step: the step this process starts from (a checkpoint's, or 0).
        resumed_from: the checkpoint step, when resuming.
        finished: the stored run when it is already complete (nothing to train).
    """

    def __init__(self, cfg: RunConfig, world: World, run_id: str) -> None:
        self.cfg, self.world, self.run_id = cfg, world, run_id
        self.folder = ckpt_io.checkpoint_dir(cfg.lab, run_id)
        self.start_step = 0
        self.resumed_from: int | None = None
        self.finished: RunRecord | None = None
        self.last: dict[str, float] = {}  # the latest logged scalars (kept in checkpoints)
        self.store: Store | None = None
        self._own_store = False
        self._lock: Any = None
        self.sinks: list[Sink] = []  # train.log's live-curve mirrors of log/log_diagnostics
        self.damaged: list[Damaged] = []  # checkpoints moved aside before resuming (rank 0)

    @property
    def writes(self) -> bool:
        return self.world.is_main and self.store is not None

    def begin(self, environment: Mapping[str, Any]) -> None:
        """Record the run as running; drop rows a killed process logged after the checkpoint."""
        if not self.writes:
            return
        assert self.store is not None
        cfg = self.cfg
        self.store.upsert_run(self.run_id, cfg.to_dict(), name=cfg.name, environment=environment)
        self.store.delete_metrics_after(self.run_id, self.start_step - 1)
        self.store.set_status(self.run_id, "running", step=self.start_step)
        self.sinks = open_sinks(cfg.train.log, self.folder.parent, self.start_step)
        for d in self.damaged:
            self.store.log_event(
                self.run_id, "checkpoint_damaged", f"{d.reason}; moved aside to {d.moved_to}",
                data={"checkpoint": str(d.path), "moved_to": str(d.moved_to)},
            )  # fmt: skip
            print(f"warning: {d.reason}; moved aside to {d.moved_to}", file=sys.stderr)
        if self.resumed_from is not None:
            self.store.log_event(
                self.run_id, "resume", f"resumed from the checkpoint at step {self.resumed_from}",
                step=self.resumed_from, data={"checkpoint": str(self.folder)},
            )  # fmt: skip

    def log(self, step: int, values: Mapping[str, float]) -> None:
        if self.writes:
            assert self.store is not None
            self.store.log_metrics(self.run_id, step, values)
            for sink in self.sinks:
                sink.scalars(step, values)

    def log_diagnostics(self, step: int, records: Sequence[Any]) -> None:
        if self.writes and records:
            assert self.store is not None
            self.store.log_diagnostics(self.run_id, step, records)
            for sink in self.sinks:
                sink.diagnostics(step, records)

    def checkpoint(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Rank 0 writes the checkpoint; under DDP every rank learns whether it could.

        Every rank calls this at the same steps. If rank 0 cannot write (disk full, read-only
        lab) the others raise the same environment error here, together, instead of walking
        into the next collective against a rank that is gone (a peer-lost traceback on each).
        """
        failure: str | None = None
        if self.world.is_main:
            meta = {
                "run_id": self.run_id,
                "config": self.cfg.to_dict(),
                "world_size": self.world.world_size,
                "last": self.last,
            }
            try:
                ckpt_io.save(self.folder, step, ckpt_io.capture(model, optimizer), meta)
            except (OSError, sqlite3.Error) as exc:
                if self.world.distributed:
                    self.agree(" ".join(str(exc).split()) or type(exc).__name__)
                raise
        if self.world.distributed:
            failure = self.agree(None)
        if failure is not None:  # rank 0 raised above; this is a follower
            raise OSError(f"rank 0 could not write the step-{step} checkpoint: {failure}")

    def end(self, status: str, detail: str | None, step: int, summary: Mapping[str, Any]) -> None:
        if self.writes:
            assert self.store is not None
            self.store.set_status(self.run_id, status, detail, dict(summary), step=step)
        self.close()

    def fail(self, exc: BaseException) -> None:
        """Mark the run ``failed`` (``interrupted`` for KeyboardInterrupt); never raises."""
        try:
            if self.writes:
                assert self.store is not None
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                self.store.set_status(self.run_id, status, f"{type(exc).__name__}: {exc}")
        except Exception:
            pass
        self.close()

    def agree(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        return broadcast(value, self.world)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self._own_store and self.store is not None:
            self.store.close()
            self.store = None

    def _acquire(self) -> None:
        run_dir = self.folder.parent
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / "lock", "a+")  # noqa: SIM115 (held until close)
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise ConfigError(
                    "lab", f"run {self.run_id} is being trained by another process ({run_dir})"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle


def _plan(
    session: Session, store: Store | None, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[ckpt_io.Checkpoint | None, dict[str, Any]]:
    """Rank 0's decision, from reads only: finished, resume from a checkpoint, or start."""
    cfg = session.cfg
    if store is None:
        store = Store(cfg.lab)
        session._own_store = True
    elif Path(store.folder).resolve() != Path(cfg.lab).resolve():
        raise ConfigError(
            "lab", f"the store given ({store.folder}) is not the one of the run's lab ({cfg.lab})"
        )
    session.store = store
    record = store.get_run(session.run_id)
    if record is not None and record.status in COMPLETE_STATUSES:
        return None, {"finished": record}
    ckpt, session.damaged = find_resumable(session.folder, session.run_id, model, optimizer)
    if ckpt is not None and ckpt.step > cfg.train.steps:
        raise ConfigError(
            "train.steps", f"the run's checkpoint is at step {ckpt.step}, past its budget"
        )
    session._acquire()
    return ckpt, {"start": ckpt.step if ckpt is not None else 0, "resume": ckpt is not None}


def open_session(
    cfg: RunConfig,
    world: World,
    store: Store | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
) -> Session:
    """Decide (rank 0) and follow (all ranks): report, resume into ``model``/``optimizer``, or
    start fresh. Raises ConfigError, on every rank, before anything is written."""
    session = Session(cfg, world, cfg.run_id)
    ckpt: ckpt_io.Checkpoint | None = None
    plan: dict[str, Any]
    if world.is_main:
        try:
            ckpt, plan = _plan(session, store, model, optimizer)
        except ConfigError as e:
            session.close()
            plan = {"error": (e.field, str(e))}
        except (OSError, sqlite3.Error) as e:  # read-only or full lab: an environment failure
            session.close()
            plan = {"environment": f"{type(e).__name__}: {e}"}
    else:
        plan = {}
    plan = broadcast(plan, world)
    if "environment" in plan:
        raise OSError(plan["environment"])
    if "error" in plan:
        field, message = plan["error"]
        raise ConfigError(field, message.removeprefix(f"{field}: "))
    if "finished" in plan:
        session.finished = plan["finished"]
        session.close()
        return session
    session.start_step = int(plan["start"])
    if plan["resume"]:
        if ckpt is None:  # the other ranks read the checkpoint rank 0 validated
            ckpt = ckpt_io.load_latest(session.folder, session.run_id)
            assert ckpt is not None and ckpt.step == session.start_step, "checkpoint changed"
        ckpt_io.restore(ckpt, model, optimizer)
        session.resumed_from = ckpt.step
        session.last = dict(ckpt.meta.get("last") or {})
    return session
