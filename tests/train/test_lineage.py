"""`resnorm train --from RUN`: a new run that starts from a finished run's weights and optimizer
state, records its parent and has an id of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trainkit import tiny_config

from resnorm.nn.model import build_model
from resnorm.runs import show_run
from resnorm.store import Store
from resnorm.train import train
from resnorm.train.checkpoint import checkpoint_dir, load_latest
from resnorm.train.cli import main
from resnorm.train.lineage import child_config, start_from
from resnorm.train.optim import build_optimizer


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    lab = tmp_path_factory.mktemp("lineage") / "lab"
    result = train(tiny_config(lab), progress=False)
    assert result.status in ("done", "stuck")
    return lab, result.run_id


def test_the_child_records_its_parent_and_starts_from_its_final_weights(
    parent: tuple[Path, str],
) -> None:
    lab, parent_id = parent
    cfg = child_config(parent_id[:8], lab, ["train.steps=3"])
    assert cfg.parent == parent_id and cfg.run_id != parent_id
    assert child_config(parent_id, lab).run_id != parent_id  # even with nothing changed
    child = train(cfg, progress=False)
    with Store(lab, readonly=True) as store:
        record = store.get_run(child.run_id)
        assert record is not None and record.config["parent"] == parent_id
        (event,) = store.events(child.run_id, "parent")
        assert event.data == {"parent": parent_id, "parent_step": 12}
        first = store.metrics(child.run_id, "val_loss")[0]
        last = store.metrics(parent_id, "val_loss")[-1]
    # Validation batches do not depend on the seed: the same weights give the same loss.
    assert (first.step, last.step) == (0, 12) and first.value == last.value
    shown = show_run(child.run_id, lab)
    assert f"parent: {parent_id}" in shown and "parent: started from run" in shown


def test_a_resumed_child_keeps_its_own_weights(parent: tuple[Path, str]) -> None:
    """The parent's state goes into a fresh child only: an interrupted child resumes from its
    own checkpoint (here the final one, so resuming only evaluates it again)."""
    lab, parent_id = parent
    cfg = child_config(parent_id, lab, ["train.steps=4", "train.lr=0.05"])
    child = train(cfg, progress=False)
    with Store(lab) as store:
        store.set_status(child.run_id, "interrupted")
    again = train(cfg, progress=False)
    assert again.resumed_from == 4 and not again.skipped
    assert again.metrics["val_loss"] == child.metrics["val_loss"]
    assert again.metrics["val_loss"] != train(tiny_config(lab), progress=False).metrics["val_loss"]


def test_start_from_copies_weights_and_adamw_state_but_not_the_rng(
    parent: tuple[Path, str],
) -> None:
    lab, parent_id = parent
    cfg = child_config(parent_id, lab)
    ckpt = load_latest(checkpoint_dir(lab, parent_id), parent_id)
    assert ckpt is not None
    torch.manual_seed(123)
    model = build_model(cfg.model)
    optimizer = build_optimizer(model, cfg.train)
    rng = torch.get_rng_state()
    start_from(ckpt, model, optimizer)
    assert torch.equal(torch.get_rng_state(), rng)
    for name, tensor in model.state_dict().items():
        if f"model.{name}" in ckpt.tensors:
            assert torch.equal(tensor, ckpt.tensors[f"model.{name}"]), name
    group = optimizer.param_groups[0]
    name, p = group["names"][0], group["params"][0]
    assert torch.equal(optimizer.state[p]["exp_avg"], ckpt.tensors[f"optim.{name}.exp_avg"])
    assert float(optimizer.state[p]["step"]) == 12


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], field: str, *words: str) -> None:
    assert main([*argv, "--no-progress"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"resnorm train: error: {field}: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def test_a_missing_unfinished_or_different_parent_is_one_line_and_exit_2(
    parent: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab, parent_id = parent
    _fails(capsys, ["--from", "0000", "--lab", str(lab)], "--from", "no run '0000'")
    _fails(
        capsys,
        ["--from", parent_id, "--lab", str(lab), "-o", "model.n_layers=3"],
        "model",
        "n_layers",
        "keeps its parent's model",
    )
    other = tmp_path / "lab"
    unfinished = tiny_config(other, ["train.steps=2"])
    with Store(other) as store:
        store.upsert_run(unfinished.run_id, unfinished.to_dict())
        store.set_status(unfinished.run_id, "interrupted")
    _fails(capsys, ["--from", unfinished.run_id, "--lab", str(other)], "parent", "interrupted")
    with Store(other, readonly=True) as store:
        assert [r.run_id for r in store.runs()] == [unfinished.run_id]  # nothing written
