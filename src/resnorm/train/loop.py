"""`train(cfg)`: the training loop, with resume, a divergence guard, probes and DDP.

Steps are 0-based: iteration ``s`` runs the forward and backward passes of batch ``s`` on the
weights after ``s`` optimizer steps, then takes optimizer step ``s + 1``. A row logged at step
``s`` describes iteration ``s`` (``loss``, ``lr``, ``grad_norm``, ``tokens_per_s``; the
diagnostics of the Monitor) or the weights it starts from (``val_loss``); the final
``val_loss`` is logged at step ``steps``. A checkpoint at step ``k`` holds the weights after
``k`` optimizer steps, so a run resumed from it re-runs iteration ``k`` on: rows at steps
``>= k`` are deleted first and logged again, identically (on CPU, bitwise).

Statuses written to the store: ``running``; then ``done``; ``stuck`` (final validation loss above
the data's ``unigram_loss - stuck_margin``, see `stuck_reason`); ``diverged`` (a non-finite loss
or gradient; the weights are those before that step and are checkpointed); ``interrupted``
(SIGINT/SIGTERM: a checkpoint is written at the end of the current step); ``failed`` (an
exception, re-raised).

Test hook: ``RESNORM_TEST_STEP_SLEEP=<seconds>`` sleeps after every step, so that tests can
SIGKILL or SIGINT a real training process at a moment of their choosing.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from resnorm.config import RunConfig
from resnorm.data import IGNORE_INDEX, Data, TaskData, build_data, objectives
from resnorm.data.batch import Batch, batch_chunks, batch_to, call_model
from resnorm.diagnostics.gradients import total_grad_norm
from resnorm.errors import ConfigError
from resnorm.nn.model import Transformer, build_model
from resnorm.train.distributed import World, all_reduce_sum, broadcast, setup, teardown
from resnorm.train.lineage import parent_checkpoint, record_parent, start_from
from resnorm.train.optim import build_optimizer, clip_grads_, lr_at, set_lr
from resnorm.train.precision import resolve_precision
from resnorm.train.probing import Probing
from resnorm.train.result import TrainResult
from resnorm.train.session import Session, open_session
from resnorm.train.sinks import check_sinks
from resnorm.train.summary import start_summary

INTERRUPTED_EXIT = 130  # what `resnorm train` returns for an interrupted run (128 + SIGINT)


class _Diverged(Exception):
    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"{reason} at step {step}")
        self.step = step


class _StopRequest:
    """SIGINT/SIGTERM set a flag checked after each step; a second signal acts as usual."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True
        signal.signal(signum, self._old[signum])

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


@contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def token_loss_sum(logits: Tensor, targets: Tensor) -> Tensor:
    """Summed next-token cross-entropy (fp32) over positions whose target is not ignored."""
    return F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: list[Batch],
    device: torch.device,
    autocast: Any = nullcontext,
    *,
    exact_match: bool = False,
) -> dict[str, float]:
    """The objective's metrics over ``batches``, in eval mode.

    Returns:
        ``val_loss``: mean cross-entropy per supervised token (nats);
        ``val_accuracy``: share of supervised tokens whose argmax prediction is the target
        (next-token accuracy; the masked positions' for masked LM; teacher-forced for seq2seq);
        ``val_exact_match`` (when ``exact_match``, for tasks): share of sequences whose every
        supervised token is predicted. For a seq2seq answer this is greedy decoding's exact
        match too: greedy decoding emits the target as long as every teacher-forced argmax
        is right, so the two agree sequence by sequence.
    """
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64), 0
    correct, rows, exact = 0, 0, 0
    for batch in batches:
        inputs, y = batch_to(batch, device)
        with autocast():
            logits = call_model(model, inputs)
        total += token_loss_sum(logits, y).double().cpu()
        supervised = y != IGNORE_INDEX
        count += int(supervised.sum())
        hit = (logits.argmax(dim=-1) == y) & supervised
        correct += int(hit.sum())
        has_target = supervised.any(dim=1)
        rows += int(has_target.sum())
        exact += int(((hit == supervised).all(dim=1) & has_target).sum())
    model.train(was_training)
    out = {"val_loss": float(total) / max(count, 1), "val_accuracy": correct / max(count, 1)}
    if exact_match:
        out["val_exact_match"] = exact / max(rows, 1)
    return out


def environment(
    cfg: RunConfig, world: World, precision: tuple[str, str], data: Data
) -> dict[str, Any]:
    """Where and how the run executes (stored with the run, not part of its identity)."""
    dev = world.device
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.machine(),
        "precision": precision[0],
        "precision_reason": precision[1],
        "compile": cfg.train.compile,
        "deterministic": cfg.train.deterministic and dev.type == "cpu",
        "world_size": world.world_size,
        "threads": torch.get_num_threads(),
        "data": data.manifest(),
    }


def train(
    cfg: RunConfig, *, store: Any = None, progress: bool = True, summary: bool | None = None
) -> TrainResult:
    """Train (or resume, or report) the run ``cfg`` describes.

    Running the same config again resumes an interrupted run from its newest checkpoint and
    returns a finished one (``done``, ``stuck``, ``diverged``) without training. Under
    ``torchrun`` each process calls this; rank 0 alone writes the store and checkpoints.

    Args:
        cfg: the resolved run config.
        store: the open `resnorm.store.Store` of ``cfg.lab`` (checkpoints go beside it);
            default: opened here.
        progress: show a progress bar (rank 0).
        summary: print the start-of-run summary (`resnorm.train.summary`) to stdout before the
            first step (rank 0); default: when ``progress`` is on.

    Returns:
        The outcome, with the trained model (eval mode), the config and the metric history.

    Raises:
        ConfigError: bad input (data path, vocabulary, batch split, a checkpoint that is
            truncated or of another run, a lab database that is not a resnorm store, a
            ``train.log`` sink whose package is missing), raised before anything is written.
    """
    world = setup(cfg.train.device)
    try:
        return _train(cfg, world, store, progress, progress if summary is None else summary)
    finally:
        teardown(world)


def _train(cfg: RunConfig, world: World, store: Any, progress: bool, summary: bool) -> TrainResult:
    t, device = cfg.train, world.device
    check_sinks(t.log)
    data = build_data(cfg.data)
    if data.vocab_size > cfg.model.vocab_size:
        extra = (
            f" (256 bytes + the {data.objective} objective's own tokens)"
            if data.objective in objectives.TEXT_OBJECTIVES
            else ""
        )
        raise ConfigError(
            "model.vocab_size",
            f"{cfg.model.vocab_size} is smaller than the data's vocabulary, {data.vocab_size}"
            f"{extra}: set model.vocab_size = {data.vocab_size}",
        )
    per_rank, rem = divmod(cfg.data.batch_size, world.world_size * t.grad_accum)
    if rem or not per_rank:
        raise ConfigError(
            "data.batch_size",
            f"{cfg.data.batch_size} does not split into {world.world_size} ranks x "
            f"{t.grad_accum} micro-batches (train.grad_accum)",
        )
    # Rank 0 decides (a CPU measurement could differ between processes) and tells the others.
    mine = resolve_precision(t.precision, device, cfg.model.d_model) if world.is_main else None
    precision: tuple[str, str] = broadcast(mine, world)
    torch.manual_seed(t.seed)
    model = build_model(cfg.model).to(device)
    optimizer = build_optimizer(model, t)
    parent = parent_checkpoint(cfg) if cfg.parent is not None else None  # checked before writing
    session = open_session(cfg, world, store, model, optimizer)
    if session.finished is not None:
        rec = session.finished
        return TrainResult(
            session.run_id, rec.status, rec.detail, int((rec.summary or {}).get("step", 0)),
            dict(rec.summary or {}), skipped=True, lab=cfg.lab,
        ).bind(cfg)  # fmt: skip
    if parent is not None and session.resumed_from is None:
        start_from(parent, model, optimizer)
    try:  # from here on a failure (disk full, read-only lab) marks the run failed
        session.begin(environment(cfg, world, precision, data))
        if parent is not None:
            record_parent(session, parent)
        if summary and world.is_main:
            text = start_summary(
                cfg, model, data, precision, session.folder.parent, session.resumed_from
            )
            print(text, flush=True)
        with _StopRequest() as stop, _deterministic(t.deterministic and device.type == "cpu"):
            trainer = _Trainer(cfg, world, data, model, optimizer, session, precision[0])
            return _loop(trainer, stop, progress).bind(cfg, model)
    except BaseException as e:
        session.fail(e)
        raise


class _Trainer:
    """The state of one process's training loop (model, wrappers, optimizer, probes)."""

    def __init__(
        self,
        cfg: RunConfig,
        world: World,
        data: Data,
        model: Transformer,
        optimizer: torch.optim.AdamW,
        session: Session,
        precision: str,
    ) -> None:
        self.cfg, self.t, self.world, self.data = cfg, cfg.train, world, data
        self.model, self.optimizer, self.session = model, optimizer, session
        self.device, self.precision = world.device, precision
        self.fwd: Any = model
        self.ddp: Any = None
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.fwd = self.ddp = DistributedDataParallel(model, device_ids=ids)
        if self.t.compile:
            self.fwd = torch.compile(self.fwd)
        self.probing = Probing(cfg, model, data, session) if world.is_main else None
        self.val = data.val_batches(self.t.eval_batches) if world.is_main else []
        self.params = [p for p in model.parameters() if p.requires_grad]

    def autocast(self) -> Any:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def evaluate(self) -> dict[str, float]:
        tasks = isinstance(self.data, TaskData)
        return evaluate(self.model, self.val, self.device, self.autocast, exact_match=tasks)

    def iteration(self, s: int, stop: bool) -> tuple[float, float, bool]:
        """Forward and backward passes of batch ``s``: (loss, grad norm, stop on any rank).

        The gradient is of the mean loss over the supervised tokens of the whole global batch
        (every rank and micro-batch), so it does not depend on how the batch is split.
        """
        t, world, monitor = self.t, self.world, self.probing and self.probing.monitor
        if monitor:
            monitor.before_step(s)
        batch = batch_to(self.data.train_batch(s, world.rank, world.world_size), self.device)
        n_tokens = all_reduce_sum((batch[1] != IGNORE_INDEX).sum().double(), world).clamp_min(1)
        scale = (world.world_size / n_tokens).float()  # DDP averages gradients over ranks
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for i, (xm, ym) in enumerate(batch_chunks(batch, t.grad_accum)):
            sync = self.ddp is None or i == t.grad_accum - 1
            with nullcontext() if sync else self.ddp.no_sync(), self.autocast():
                ce = token_loss_sum(call_model(self.fwd, xm), ym)
                if s == t.inject_nan_at_step and t.inject_nan_into == "loss" and i == 0:
                    ce = ce * float("nan")  # test hook: train.inject_nan_at_step
            (ce * scale).backward()
            loss_sum += ce.detach().double()
        if s == t.inject_nan_at_step and t.inject_nan_into == "grad":
            grads = [p.grad for p in self.params if p.grad is not None]
            grads[0].view(-1)[0] = float("nan")  # test hook: train.inject_nan_into = "grad"
        stats = all_reduce_sum(torch.stack([loss_sum, loss_sum.new_tensor(float(stop))]), world)
        norm = total_grad_norm(self.params)  # once: the monitor's per-step value and the clipping's
        if monitor:
            monitor.after_backward(s, grad_norm=norm)
        if t.grad_clip is not None:
            clip_grads_(self.params, t.grad_clip, norm)
        return float(stats[0] / n_tokens), float(norm), bool(stats[1])

    def update(self, s: int) -> None:
        """Optimizer step ``s + 1``, the topology's post-step hook, the step's probe records."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.after_step()
        if self.probing is not None:
            self.probing.after_step(s)

    def checkpoint(self, step: int) -> None:
        self.session.checkpoint(step, self.model, self.optimizer)


def _loop(tr: _Trainer, stop: _StopRequest, progress: bool) -> TrainResult:
    cfg, t, session, data, main = tr.cfg, tr.t, tr.session, tr.data, tr.world.is_main
    start = session.start_step
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len
    last = dict(session.last)
    bar = tqdm(
        total=t.steps,
        initial=start,
        disable=not (progress and main),
        desc=cfg.name or session.run_id,
        unit="step",
        dynamic_ncols=True,
    )
    if tr.probing is not None and start == 0:
        tr.probing.at_init(tr.val[0] if tr.val else data.val_batches(1)[0])
    sleep = float(os.environ.get("RESNORM_TEST_STEP_SLEEP", "0"))  # test hook
    clock, clock_step = time.perf_counter(), start
    tr.model.train()
    try:
        for s in range(start, t.steps):
            if main and (s == 0 or (t.eval_every and s % t.eval_every == 0)):
                session.log(s, tr.evaluate())
            lr = lr_at(s, t)
            set_lr(tr.optimizer, lr)
            loss, gnorm, stopping = tr.iteration(s, stop.requested)
            if not math.isfinite(loss) or not math.isfinite(gnorm):
                session.log(s, {"loss": loss, "lr": lr, "grad_norm": gnorm})
                what, value = ("loss", loss) if not math.isfinite(loss) else ("gradient", gnorm)
                raise _Diverged(s, f"non-finite {what} ({value})")
            tr.update(s)
            bar.update(1)
            if sleep:
                time.sleep(sleep)
            if s % t.log_every == 0 or s == t.steps - 1:
                now = time.perf_counter()
                tps = tokens_per_step * (s + 1 - clock_step) / max(now - clock, 1e-9)
                clock, clock_step = now, s + 1
                last = {"loss": loss, "lr": lr, "grad_norm": gnorm, "tokens_per_s": tps}
                session.log(s, last)
                session.last = last
                bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}", refresh=False)
            if stopping:
                tr.checkpoint(s + 1)
                detail = f"interrupted after step {s + 1} of {t.steps}; run again to resume"
                session.end("interrupted", detail, s + 1, {**last, "step": s + 1})
                return _result(session, "interrupted", detail, s + 1, last)
            if (s + 1) % t.checkpoint_every == 0 and s + 1 < t.steps:
                tr.checkpoint(s + 1)
    except _Diverged as d:
        if tr.probing is not None:
            tr.probing.monitor.close()
        tr.optimizer.zero_grad(set_to_none=True)
        tr.checkpoint(d.step)  # the weights before the failed step
        summary = {**last, "step": d.step, **_reference_losses(data)}
        session.end("diverged", str(d), d.step, summary)
        return _result(session, "diverged", str(d), d.step, summary)
    finally:
        bar.close()
    return _finish(tr, last)


def _finish(tr: _Trainer, last: dict[str, float]) -> TrainResult:
    """Final evaluation and checkpoint; ``done``, or ``stuck`` if it learned nothing."""
    t, session, data = tr.t, tr.session, tr.data
    summary = {**last, "step": t.steps, **_reference_losses(data)}
    if tr.world.is_main:
        metrics = tr.evaluate()
        summary.update(metrics)
        session.log(t.steps, metrics)
    tr.checkpoint(t.steps)
    final = summary.get("val_loss", summary.get("loss", math.nan))
    detail = stuck_reason(final, data, t.stuck_margin)
    status, detail = session.agree(("done" if detail is None else "stuck", detail))
    session.end(status, detail, t.steps, summary)
    return _result(session, status, detail, t.steps, summary)


def _reference_losses(data: Data) -> dict[str, float]:
    return {"uniform_loss": data.uniform_loss, "unigram_loss": data.unigram_loss}


def stuck_reason(final: float, data: Data, margin: float) -> str | None:
    """Why a run whose final validation loss is ``final`` is ``stuck``, or None if it is not.

    A run is stuck when ``final > reference - margin``, the reference being the data's unigram
    loss: the best loss a model that ignores context can reach, so a text run that only learned
    byte frequencies is stuck even far below the uniform loss ln(V). The uniform loss stands in
    only where the data has no unigram loss (on the synthetic tasks the two coincide).
    """
    reference, name = getattr(data, "unigram_loss", None), "unigram"
    if reference is None or not math.isfinite(reference):
        reference, name = data.uniform_loss, "uniform"
    if final < reference - margin:  # False for a NaN: a run without a final loss is stuck
        return None
    same = name == "unigram" and math.isclose(reference, data.uniform_loss, rel_tol=1e-9)
    what = f"the data's {name} loss {reference:.4f}" + (" (= its uniform loss)" if same else "")
    return (
        f"final validation loss {final:.4f} is not {margin} nats below {what}: the run learned "
        "nothing a context-free predictor would not"
    )


def _result(
    session: Session, status: str, detail: str | None, step: int, metrics: dict[str, float]
) -> TrainResult:
    return TrainResult(
        session.run_id, status, detail, step, dict(metrics), session.resumed_from,
        lab=session.cfg.lab,
    )  # fmt: skip
