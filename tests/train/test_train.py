"""`train()` in-process: what a run logs, its statuses, the divergence guard, finished runs."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from trainkit import KINDS, results, run_record, tiny_config

from resnorm.store import Store
from resnorm.train import load_latest, load_weights, train
from resnorm.train.checkpoint import checkpoint_dir
from resnorm.train.loop import stuck_reason


def test_run_logs_scalars_evals_probes_and_a_final_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "lab")
    result = train(cfg, progress=False)
    assert result.status in ("done", "stuck") and result.step == 12 and not result.skipped
    with Store(tmp_path / "lab") as store:
        record = store.get_run(result.run_id)
        metrics = store.metrics(result.run_id)
        diagnostics = store.diagnostics(result.run_id)
    assert record is not None and record.status == result.status
    assert record.config == cfg.to_dict() and result.run_id == cfg.run_id
    assert record.environment is not None and record.summary is not None
    assert record.environment["precision"] == "fp32" and record.environment["world_size"] == 1
    assert record.environment["precision_reason"].startswith("d_model 16 < 256")
    steps = {
        name: [m.step for m in metrics if m.name == name] for name in {m.name for m in metrics}
    }
    assert steps["loss"] == list(range(12)) == steps["lr"] == steps["grad_norm"]
    assert steps["tokens_per_s"] == list(range(12))
    assert steps["val_loss"] == [0, 4, 8, 12]
    assert all(math.isfinite(m.value) and m.value > 0 for m in metrics if m.name == "loss")
    assert {d.step for d in diagnostics} == {0, 4, 8}
    assert {"grad_norm", "stream_rms", "update_ratio"} <= {d.probe for d in diagnostics}
    ckpt = load_latest(checkpoint_dir(cfg.lab, result.run_id), result.run_id)
    assert ckpt is not None and ckpt.step == 12
    assert record.summary["val_loss"] == result.metrics["val_loss"]
    # The logged grad norm (computed once, then clipped with) is the probe's global one.
    logged = {m.step: m.value for m in metrics if m.name == "grad_norm"}
    probed = {d.step: d.value for d in diagnostics if d.probe == "grad_norm" and d.layer is None
              and d.key is None}  # fmt: skip
    assert probed == pytest.approx({s: logged[s] for s in (0, 4, 8)}, rel=1e-6)


def _text_config(lab: Path, text: Path, steps: int):
    overrides = ["model.vocab_size=256", "data.source='text'", f"data.path='{text}'"]
    overrides += ["data.params={}", f"train.steps={steps}", "train.probe_every=0"]
    return tiny_config(lab, [*overrides, "train.eval_every=0", "train.checkpoint_every=100"])


def test_a_text_run_is_stuck_until_it_ends_below_the_unigram_loss(tmp_path: Path) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    few = train(_text_config(tmp_path / "few", text, 12), progress=False)
    unigram, uniform = few.metrics["unigram_loss"], few.metrics["uniform_loss"]
    assert uniform == pytest.approx(math.log(256)) and unigram < uniform - 2
    # Far below ln(V), yet above what byte frequencies alone give: a researcher's "stuck".
    assert few.metrics["val_loss"] < uniform - 1 and few.status == "stuck"
    assert f"unigram loss {unigram:.4f}" in (few.detail or ""), few.detail
    assert run_record(tmp_path / "few").status == "stuck"
    well = train(_text_config(tmp_path / "well", text, 60), progress=False)
    assert well.status == "done", well.detail
    assert well.metrics["val_loss"] < unigram - 0.25


def test_on_a_synthetic_task_the_unigram_loss_is_the_uniform_one(tmp_path: Path) -> None:
    stuck = train(tiny_config(tmp_path / "b", ["train.lr=1e-6"]), progress=False)
    assert stuck.status == "stuck" and "(= its uniform loss)" in (stuck.detail or "")
    assert stuck.metrics["unigram_loss"] == stuck.metrics["uniform_loss"]


@pytest.mark.parametrize(
    ("final", "unigram", "stuck"),
    [(2.8, 3.0, True), (2.7, 3.0, False), (3.5, 3.0, True), (math.nan, 3.0, True),
     (5.0, math.nan, False), (5.4, math.nan, True)],
)  # fmt: skip
def test_stuck_is_within_the_margin_of_the_unigram_loss_or_else_the_uniform_one(
    final: float, unigram: float, stuck: bool
) -> None:
    data = SimpleNamespace(unigram_loss=unigram, uniform_loss=math.log(256))  # 5.545
    reason = stuck_reason(final, data, 0.25)  # type: ignore[arg-type]
    assert (reason is not None) == stuck
    if reason is not None:
        assert ("unigram" if math.isfinite(unigram) else "uniform") in reason


def test_finished_run_is_reported_not_rerun(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "lab")
    first = train(cfg, progress=False)
    before = results(tmp_path / "lab")
    again = train(cfg.replace(name="renamed"), progress=False)  # same identity
    assert again.skipped and again.status == first.status and again.run_id == first.run_id
    after = results(tmp_path / "lab")
    assert before["metrics"] == after["metrics"]


@pytest.mark.parametrize("kind", ["decoder", "encoder", "encoder_decoder", "span_corruption"])
@pytest.mark.parametrize("where", ["loss", "grad"])
def test_non_finite_step_never_updates_the_weights(tmp_path: Path, where: str, kind: str) -> None:
    constant = ["train.schedule='constant'", "train.warmup_steps=0", *KINDS[kind]]
    nan = ["train.inject_nan_at_step=5", f"train.inject_nan_into='{where}'"]
    result = train(tiny_config(tmp_path / "nan", constant + nan), progress=False)
    assert result.status == "diverged" and result.step == 5
    detail = result.detail or ""
    assert "step 5" in detail and where.replace("grad", "gradient") in detail
    record = run_record(tmp_path / "nan")
    assert record.status == "diverged" and "step 5" in record.detail
    # The weights it kept are those after 5 clean steps: a run of 5 steps ends with the same.
    clean = train(tiny_config(tmp_path / "clean", [*constant, "train.steps=5"]), progress=False)
    kept, expected = (
        load_weights(tmp_path / "nan", result.run_id),
        load_weights(tmp_path / "clean", clean.run_id),
    )
    assert all(torch.equal(kept[k], expected[k]) for k in expected)
    with Store(tmp_path / "nan") as store:
        losses = {m.step: m.value for m in store.metrics(result.run_id, "loss")}
    assert max(losses) == 5 and (math.isnan(losses[5]) or where == "grad")
    assert train(tiny_config(tmp_path / "nan", constant + nan), progress=False).skipped


def test_gradient_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    one = train(tiny_config(tmp_path / "one"), progress=False)
    two = train(tiny_config(tmp_path / "two", ["train.grad_accum=2"]), progress=False)
    with Store(tmp_path / "one") as a, Store(tmp_path / "two") as b:
        la = [m.value for m in a.metrics(one.run_id, "loss")]
        lb = [m.value for m in b.metrics(two.run_id, "loss")]
    assert la == pytest.approx(lb, rel=1e-5)


@pytest.mark.parametrize("kind", ["decoder", "encoder", "encoder_decoder", "span_corruption"])
def test_bf16_autocast_runs_on_cpu_and_is_recorded(tmp_path: Path, kind: str) -> None:
    bf16 = ["train.precision='bf16'", "train.probe_every=0", *KINDS[kind]]
    result = train(tiny_config(tmp_path / "lab", bf16), progress=False)
    assert math.isfinite(result.metrics["val_loss"])
    assert 0.0 <= result.metrics["val_accuracy"] <= 1.0
    assert run_record(tmp_path / "lab").environment["precision"] == "bf16"
    # bf16 rounds the matmuls, so its losses follow fp32's closely but not bitwise.
    fp32 = ["train.precision='fp32'", "train.probe_every=0", *KINDS[kind]]
    ref = train(tiny_config(tmp_path / "fp32", fp32), progress=False)
    with Store(tmp_path / "lab") as a, Store(tmp_path / "fp32") as b:
        la = [m.value for m in a.metrics(result.run_id, "loss")]
        lb = [m.value for m in b.metrics(ref.run_id, "loss")]
    assert len(la) == len(lb) == 12 and la != lb
    assert la == pytest.approx(lb, rel=0.05)


def test_auto_precision_follows_the_cpu_measurement_and_records_why(tmp_path: Path) -> None:
    from resnorm.train.precision import auto_precision

    overrides = ["model.d_model=256", "train.steps=2", "train.probe_every=0"]
    result = train(tiny_config(tmp_path / "lab", overrides), progress=False)
    env = run_record(tmp_path / "lab").environment
    expected = auto_precision("cpu", 256)  # this process's measurement (cached)
    assert (env["precision"], env["precision_reason"]) == expected
    assert "GFLOP/s" in env["precision_reason"] and math.isfinite(result.metrics["loss"])
    pinned = train(tiny_config(tmp_path / "pinned", [*overrides, "train.precision='fp32'"]),
                   progress=False)  # fmt: skip
    env = run_record(tmp_path / "pinned").environment
    assert (env["precision"], env["precision_reason"]) == ("fp32", "set by train.precision")
    assert pinned.status in ("done", "stuck")


def test_a_run_being_trained_elsewhere_is_refused(tmp_path: Path) -> None:
    import fcntl

    from resnorm.errors import ConfigError

    cfg = tiny_config(tmp_path / "lab")
    lock = checkpoint_dir(cfg.lab, cfg.run_id).parent / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another process"):
            train(cfg, progress=False)
    assert train(cfg, progress=False).status in ("done", "stuck")
