"""Continuing a finished run: a new run that starts from its parent's weights and optimizer state.

``resnorm train --from RUN -o train.steps=N`` builds the child's config from the parent's stored
config (or from ``--config``), applies the overrides and sets ``parent = RUN``. The child is a
new run (its id hashes the parent's id too, so it differs from the parent's even with no
override) with its own budget, schedule (warmup included) and progress from step 0; what it
takes from the parent is the final checkpoint's model tensors and AdamW state (moments and step
counts, so bias correction continues). It does not take the parent's RNG states: its dropout and
batches follow its own ``train.seed`` and ``data.seed``; with the parent's data seed it sees the
parent's batches again from the first, so set ``-o data.seed=...`` for fresh ones.

The parent must be in the same lab, finished (``done`` or ``stuck``: a diverged run's weights
are those before its failure) and have the same ``model`` config; anything else is a
ConfigError raised before the child writes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from resnorm.config import RunConfig, apply_override, read_toml
from resnorm.errors import ConfigError
from resnorm.train import checkpoint as ckpt_io
from resnorm.train.session import Session
from resnorm.typed import check_depth

#: Parent statuses a child may start from.
CONTINUABLE = ("done", "stuck")


def child_config(
    parent: str, lab: str | Path, overrides: Sequence[str] = (), config: str | Path | None = None
) -> RunConfig:
    """The config of a run continuing ``parent`` (an id or a unique prefix) in ``lab``: the
    parent's config, or ``config``'s file, with ``overrides`` applied."""
    from resnorm.runs import find_run, open_lab

    with open_lab(lab) as store:
        record = find_run(store, parent, "--from")
    tree = read_toml(config) if config is not None else dict(record.config)
    for override in overrides:
        apply_override(tree, override)
    check_depth(tree, "override")
    if config is not None and "name" not in tree:
        tree["name"] = Path(config).stem
    return RunConfig.from_dict({**tree, "lab": str(lab), "parent": record.run_id})


def parent_checkpoint(cfg: RunConfig) -> ckpt_io.Checkpoint:
    """The final checkpoint of ``cfg.parent``, checked: the parent exists in the lab, finished,
    with the child's model config. Reads only."""
    from resnorm.runs import find_run, open_lab

    assert cfg.parent is not None, "parent_checkpoint of a run without a parent"
    with open_lab(cfg.lab) as store:
        record = find_run(store, cfg.parent, "parent")
    if record.run_id != cfg.parent:  # the config stores full ids: a prefix is ambiguous later
        raise ConfigError("parent", f"{cfg.parent!r}: give the full run id ({record.run_id})")
    if record.status not in CONTINUABLE:
        raise ConfigError(
            "parent",
            f"run {record.run_id} is {record.status}, not finished ({' or '.join(CONTINUABLE)}):"
            " only a finished run can be continued"
            + (
                " (run its `resnorm train` again to finish it)"
                if record.status != "diverged"
                else ""
            ),
        )
    child_model = cfg.to_dict()["model"]
    parent_model = record.config.get("model")
    if parent_model != child_model:
        changed = sorted(
            k for k in set(child_model) | set(parent_model or {})
            if (parent_model or {}).get(k) != child_model.get(k)
        )  # fmt: skip
        raise ConfigError(
            "model",
            f"differs from the parent run {record.run_id}'s in {', '.join(changed)}: a continued "
            "run keeps its parent's model",
        )
    ckpt = ckpt_io.load_latest(ckpt_io.checkpoint_dir(cfg.lab, record.run_id), record.run_id)
    if ckpt is None:
        raise ConfigError("parent", f"run {record.run_id} has no checkpoint to continue from")
    return ckpt


def start_from(
    ckpt: ckpt_io.Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Put the parent's weights and optimizer state into ``model`` and ``optimizer``, keeping
    this process's RNG states (the child's seeds)."""
    own = {k: v for k, v in ckpt.tensors.items() if not k.startswith("rng.")}
    own["rng.torch"] = torch.get_rng_state()
    ckpt_io.restore(ckpt_io.Checkpoint(ckpt.step, own, {}, ckpt.path), model, optimizer)


def record_parent(session: Session, ckpt: ckpt_io.Checkpoint) -> None:
    """A ``parent`` event in the child's log: which run and step it started from."""
    if session.writes and session.resumed_from is None:
        assert session.store is not None
        parent = str(ckpt.meta.get("run_id"))
        session.store.log_event(
            session.run_id, "parent", f"started from run {parent}'s checkpoint at step {ckpt.step}",
            step=0, data={"parent": parent, "parent_step": ckpt.step},
        )  # fmt: skip
