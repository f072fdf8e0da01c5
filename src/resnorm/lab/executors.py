"""Executors: where the run function (`resnorm.lab.tasks.execute`) runs.

* ``local`` (default): a process pool, by default one single-threaded worker per core (on tiny
  models that is 1.23x faster than one process with two threads), or one worker per GPU, each
  pinned to its own device, where CUDA is available. Workers are started with
  ``spawn`` and exit by themselves when the driver dies (a watchdog thread), so a killed study
  leaves no orphan training the same run.
* ``ray``: the same function as Ray tasks (``num_cpus = threads``) on the cluster at
  ``--address HOST:PORT``, or on a local Ray started for the study when no address is given.
  A local Ray may take ``start_timeout`` seconds to start (`RAY_START_TIMEOUT`, or
  ``RESNORM_RAY_START_TIMEOUT``); one that does not is a ConfigError saying what to do.
* ``serial``: in this process, one task after another (debugging, tests).

Every executor keeps at most ``slots`` tasks in flight and calls ``started(task)`` as it hands
one over, so the driver can mark exactly those runs ``running``. Outputs come back as they
complete; a worker that dies is reported as a ``failed`` output, never as an exception.
"""

from __future__ import annotations

import importlib.util
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from resnorm.errors import ConfigError, choice_error
from resnorm.lab.tasks import Output, empty_output, execute

Task = Mapping[str, Any]
Started = Callable[[Task], None]
EXECUTORS = ("local", "ray", "serial")
#: Seconds a local Ray may take to start: generous, since a loaded machine starts it slowly.
#: Ray reads it as ``RAY_raylet_start_wait_time_s``, how long its driver waits for the raylet
#: to register (Ray's Python side adds a fixed 30 s wait of its own, ``ray/_private/node.py``).
RAY_START_TIMEOUT = 300.0
RAY_START_ENV = "RESNORM_RAY_START_TIMEOUT"
RAY_WAIT_ENV = "RAY_raylet_start_wait_time_s"
#: What Ray's startup wait raises, a bare Exception (ray/_private/node.py).
RAY_START_FAILURE = "timed out during startup"


def gpu_count() -> int:
    """CUDA devices visible to this process (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _lost(task: Task, detail: str) -> Output:
    out = empty_output(task["run_id"], task["run"], task["config"])
    out["detail"] = detail
    return out


class Executor:
    """Runs tasks, ``slots`` at a time, yielding their outputs as they complete."""

    name = ""

    def __init__(self, workers: int | None = None, threads: int | None = None) -> None:
        cores, self.gpus = cpu_count(), gpu_count()
        for label, value in (("workers", workers), ("threads", threads)):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ConfigError(label, f"must be a positive integer, got {value}")
        # One worker per core on a CPU; one per GPU where there are GPUs (full scale).
        self.workers = workers or self.gpus or cores
        self.threads = threads or max(1, cores // self.workers)

    @property
    def slots(self) -> int:
        return self.workers

    def describe(self) -> str:
        return f"{self.name}: {self.workers} worker(s) x {self.threads} thread(s)"

    def imap(self, tasks: Iterable[Task], started: Started) -> Iterator[Output]:
        raise NotImplementedError


class SerialExecutor(Executor):
    """In this process, one task at a time."""

    name = "serial"

    def __init__(self, workers: int | None = None, threads: int | None = None) -> None:
        super().__init__(1, threads)

    def imap(self, tasks: Iterable[Task], started: Started) -> Iterator[Output]:
        import torch

        previous = torch.get_num_threads()
        try:
            for task in tasks:
                started(task)
                yield execute(task, self.threads)
        finally:
            torch.set_num_threads(previous)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)  # the driver is gone: stop, the next study run resumes this run


def _init_worker(threads: int, parent: int, gpus: int, counter: Any) -> None:
    if gpus:  # pin worker i to GPU i mod n, before anything initializes CUDA
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


NO_START = (
    "the local executor's worker processes died before finishing any run; a script that runs "
    "studies must guard its entry point with `if __name__ == '__main__':` (workers are spawned "
    "and import the main module)"
)


class LocalExecutor(Executor):
    """A pool of ``workers`` processes with ``threads`` torch threads each.

    Workers are spawned, so a script calling `resnorm.lab.run_study` with this executor needs
    the ``if __name__ == "__main__":`` guard; without it the pool cannot start and a
    RuntimeError says so.
    """

    name = "local"

    def imap(self, tasks: Iterable[Task], started: Started) -> Iterator[Output]:
        queue = iter(tasks)
        exhausted = False
        while not exhausted:
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.threads, os.getpid(), self.gpus, context.Value("i", 0)),
            )
            pending: dict[Future[Output], Task] = {}
            broken, completed = False, 0
            try:
                while True:
                    while not broken and len(pending) < self.workers:
                        task = next(queue, None)
                        if task is None:
                            exhausted = True
                            break
                        started(task)
                        pending[pool.submit(execute, task, self.threads)] = task
                    if not pending:
                        break
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        task = pending.pop(future)
                        try:
                            out = future.result()
                        except BrokenProcessPool:
                            if not completed:
                                raise RuntimeError(NO_START) from None
                            broken = True
                            out = _lost(task, "the worker process died (killed, or out of memory)")
                        completed += 1
                        yield out
                    if broken and not pending:
                        break  # start a fresh pool for the remaining tasks
            finally:
                pool.shutdown(wait=not pending, cancel_futures=True)
            if not broken:
                break


def resolve_start_timeout(value: float | None) -> float:
    """``value``, else ``RESNORM_RAY_START_TIMEOUT``, else `RAY_START_TIMEOUT`: seconds in
    (0, 86400]."""
    field = "start_timeout"
    if value is None and RAY_START_ENV in os.environ:
        field, text = RAY_START_ENV, os.environ[RAY_START_ENV]
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(field, f"got {text!r}, expected a number of seconds") from None
    if value is None:
        return RAY_START_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86400:
        raise ConfigError(field, f"must be a number of seconds in (0, 86400], got {value!r}")
    return float(value)


class RayExecutor(Executor):
    """Ray tasks on a cluster (``address``) or on a local Ray started for the study, which may
    take ``start_timeout`` seconds to start (see `resolve_start_timeout`)."""

    name = "ray"

    def __init__(
        self,
        workers: int | None = None,
        threads: int | None = None,
        address: str | None = None,
        start_timeout: float | None = None,
    ) -> None:
        # Here, when the executor is chosen, not at the first task: by then the lab and its
        # store exist and every run has been planned.
        if importlib.util.find_spec("ray") is None:
            raise ConfigError(
                "executor",
                "the ray executor needs Ray, which is not installed: "
                "pip install 'resnorm[ray]' (or run with --executor local)",
            )
        super().__init__(workers, threads or 1)
        self.address = address
        self.start_timeout = resolve_start_timeout(start_timeout)
        self._explicit_workers = workers

    def describe(self) -> str:
        where = self.address or "a local Ray"
        return f"ray at {where}: {self.workers} task(s) in flight x {self.threads} thread(s)"

    def _start(self, ray: Any) -> None:
        """``ray.init`` for this executor; its failures as ConfigErrors that say what to do."""
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address:
            kwargs["address"] = self.address
        else:
            kwargs["num_cpus"] = cpu_count()
        begun = time.monotonic()
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            if self.address:
                raise ConfigError("address", f"cannot reach Ray at {self.address}: {e}") from None
            raise ConfigError("executor", f"cannot start a local Ray: {e}") from None
        except Exception as e:  # Ray's startup wait raises a bare Exception
            if RAY_START_FAILURE not in str(e):
                raise
            ray.shutdown()  # whatever part of it did start
            raise ConfigError(
                "executor",
                f"a local Ray failed to start, giving up after {time.monotonic() - begun:.0f} s "
                f"(start timeout {self.start_timeout:g} s; Ray: {str(e).strip()}), which "
                f"happens on a loaded machine; raise the start timeout, e.g. "
                f"--ray-start-timeout 900 or {RAY_START_ENV}=900, or start Ray once yourself "
                "(ray start --head) and pass its --address, or run with --executor local",
            ) from None

    def imap(self, tasks: Iterable[Task], started: Started) -> Iterator[Output]:
        # Set before Ray is imported and started, so that its driver and the processes it
        # spawns read it; a value the user exported wins.
        previous = os.environ.get(RAY_WAIT_ENV)
        os.environ.setdefault(RAY_WAIT_ENV, str(math.ceil(self.start_timeout)))
        try:
            try:
                import ray
            except ImportError:
                raise ConfigError(
                    "executor", "the ray executor needs Ray: pip install 'resnorm[ray]'"
                ) from None
            owns = not ray.is_initialized()
            if owns:
                self._start(ray)
        finally:
            if previous is None:
                os.environ.pop(RAY_WAIT_ENV, None)
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.workers = self._explicit_workers or max(1, cpus // self.threads)
            remote = ray.remote(num_cpus=self.threads, max_retries=0)(execute)
            queue = iter(tasks)
            pending: dict[Any, Task] = {}
            while True:
                while len(pending) < self.workers:
                    task = next(queue, None)
                    if task is None:
                        break
                    started(task)
                    pending[remote.remote(dict(task), self.threads)] = task
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    task = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as e:  # a task whose worker died
                        yield _lost(task, f"ray task lost: {type(e).__name__}: {e}")
        finally:
            if owns:
                ray.shutdown()


def make_executor(
    name: str,
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    ray_start_timeout: float | None = None,
) -> Executor:
    """The executor called ``name`` (``local``, ``ray``, ``serial``); ``ray_start_timeout``:
    the seconds a local Ray may take to start (default `RAY_START_TIMEOUT`)."""
    if name == "ray":
        return RayExecutor(workers, threads, address, ray_start_timeout)
    if address is not None:
        raise ConfigError("address", f"only the ray executor connects to an address, not {name!r}")
    if ray_start_timeout is not None:
        raise ConfigError("ray_start_timeout", f"only the ray executor starts Ray, not {name!r}")
    if name == "local":
        return LocalExecutor(workers, threads)
    if name == "serial":
        return SerialExecutor(workers, threads)
    raise choice_error("executor", name, EXECUTORS)
