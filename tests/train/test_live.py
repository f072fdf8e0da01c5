"""Issue 10, items 7-9: TensorBoard sinks, what `train()` returns, the start-of-run summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from trainkit import tiny_config

from resnorm import load_model
from resnorm.config import TrainConfig
from resnorm.errors import ConfigError
from resnorm.store import Store
from resnorm.train import sinks as sinks_module
from resnorm.train import train
from resnorm.train.summary import data_warnings, schedule_warnings


def test_tensorboard_events_read_back_equal_the_stored_metrics_and_diagnostics(
    tmp_path: Path,
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(tmp_path / "lab", ['train.log=["tensorboard"]'])
    result = train(cfg, progress=False)
    events = EventAccumulator(str(tmp_path / "lab" / "runs" / result.run_id / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    with Store(cfg.lab) as store:
        stored = store.metrics(result.run_id)
        diagnostics = store.diagnostics(result.run_id)
    for name in ("loss", "val_loss", "lr", "grad_norm"):
        want = [(m.step, m.value) for m in stored if m.name == name]
        got = [(e.step, e.value) for e in events.Scalars(name)]
        assert [s for s, _ in got] == [s for s, _ in want], name
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), name
    layered = [d for d in diagnostics if d.layer is not None]
    assert layered, "the tiny run logs per-layer diagnostics"
    d = layered[0]
    tag = sinks_module.diagnostic_tag(d.probe, d.layer, d.key or "")
    assert tag in tags and "/layer_" in tag
    logged = [(e.step, e.value) for e in events.Scalars(tag)]
    assert (d.step, pytest.approx(d.value, rel=1e-6)) in logged


def test_a_missing_sink_package_is_a_config_error_naming_the_extra_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "tensorboard" else real(name, *args)

    monkeypatch.setattr(sinks_module.importlib.util, "find_spec", find_spec)
    lab = tmp_path / "lab"
    with pytest.raises(ConfigError) as err:
        train(tiny_config(lab, ['train.log=["tensorboard"]']), progress=False)
    assert err.value.field == "train.log" and "resnorm[tensorboard]" in str(err.value)
    assert not lab.exists()


def test_train_log_is_cosmetic_and_absent_from_the_stored_config_when_empty(
    tmp_path: Path,
) -> None:
    plain = tiny_config(tmp_path / "lab")
    logged = tiny_config(tmp_path / "lab", ['train.log=["tensorboard"]'])
    assert plain.run_id == logged.run_id
    assert "log" not in plain.to_dict()["train"]
    assert logged.to_dict()["train"]["log"] == ["tensorboard"]
    with pytest.raises(ConfigError, match=r"train.log\[0\].*tensorboard"):
        TrainConfig(log=("tensorbored",))


def test_train_returns_the_trained_model_its_config_and_the_metric_history(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "lab")
    result = train(cfg, progress=False)
    assert result.config == cfg and not result.model.training
    steps, losses = result.history["loss"]
    assert steps == list(range(cfg.train.steps)) and len(losses) == cfg.train.steps
    assert result.history["val_loss"][0][-1] == cfg.train.steps
    x = torch.randint(0, cfg.model.vocab_size, (1, 8))
    saved, _ = load_model(result.run_id, lab=cfg.lab)
    with torch.no_grad():
        assert torch.equal(result.model(x), saved(x))
        again = train(cfg, progress=False)  # finished: nothing trained, the model read back
        assert again.skipped and torch.equal(again.model(x), saved(x))
    assert again.history == result.history


def test_the_start_summary_shows_what_will_run_and_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tiny_config(tmp_path / "lab", ["train.warmup_steps=20"])
    train(cfg, progress=False)  # a study worker's call: no summary
    assert capsys.readouterr().out == ""
    cfg = tiny_config(tmp_path / "other", ["train.warmup_steps=20"])
    result = train(cfg, progress=False, summary=True)
    out = capsys.readouterr().out
    n_params = sum(p.numel() for p in result.model.parameters())
    assert f"run {cfg.run_id} (tiny)" in out
    assert "model.d_model=16" in out and "train.steps=12" in out and "data.source='copy'" in out
    assert f"parameters: {n_params:,}" in out
    assert "tokens per step: 64 (data.batch_size 4 x data.seq_len 16)" in out
    assert "precision: fp32 (" in out
    assert f"run folder: {Path(cfg.lab) / 'runs' / cfg.run_id}" in out
    assert "warning: train.warmup_steps = 20 >= train.steps = 12" in out
    assert out.index("run folder") < out.index("warning:")


def test_schedule_warnings_say_the_run_never_leaves_warmup() -> None:
    assert schedule_warnings(TrainConfig(steps=10, warmup_steps=9)) == []
    assert schedule_warnings(TrainConfig(steps=10, warmup_steps=0)) == []
    (equal,) = schedule_warnings(TrainConfig(steps=10, warmup_steps=10))
    assert "never leaves warmup" in equal and "only at the last step" in equal
    assert "cosine decay never starts" in equal
    (longer,) = schedule_warnings(TrainConfig(steps=10, warmup_steps=40, lr=1e-3))
    assert "never reaches train.lr = 0.001, peaking at 0.00025 (25%)" in longer


def test_data_warnings_say_the_run_repeats_data_smaller_than_one_epoch(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "lab")  # reads 12 steps x 4 x 16 = 768 tokens
    assert data_warnings(cfg, SimpleNamespace(n_train=768)) == []  # type: ignore[arg-type]
    (warning,) = data_warnings(cfg, SimpleNamespace(n_train=256))  # type: ignore[arg-type]
    assert "768 training tokens" in warning and "256" in warning and "3.0 epochs" in warning
    assert data_warnings(cfg, SimpleNamespace()) == []  # type: ignore[arg-type]  # synthetic


def test_a_resumed_runs_tensorboard_events_replace_those_logged_after_its_checkpoint(
    tmp_path: Path,
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    killed = sinks_module.TensorBoardSink(tmp_path, start_step=0)
    for step in range(10):
        killed.scalars(step, {"loss": 1.0})
    killed.close()
    resumed = sinks_module.TensorBoardSink(tmp_path, start_step=6)  # its checkpoint's step
    for step in range(6, 10):
        resumed.scalars(step, {"loss": 2.0})
    resumed.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    got = [(e.step, e.value) for e in events.Scalars("loss")]
    assert got == [(s, 1.0) for s in range(6)] + [(s, 2.0) for s in range(6, 10)]
