"""``resnorm study run NAME --seeds 0-9 -o key=value``: seeds replace every part's, an override
reaches every part whose config has its path, and every mistake is a ConfigError naming the key
before anything is run or written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from labkit import tiny_study

from resnorm.cli import main
from resnorm.errors import ConfigError
from resnorm.lab import plan
from resnorm.lab.overrides import apply_overrides, parse_overrides, parse_seeds
from resnorm.store import Store


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("0-9", tuple(range(10))), ("0,1,5", (0, 1, 5)), ("3-5,8", (3, 4, 5, 8)), ("2,1-2", (2, 1))],
)
def test_seeds_are_lists_and_inclusive_ranges(text: str, seeds: tuple[int, ...]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "5-3", "-1", "1,,2", "0-x"])
def test_malformed_seeds_name_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds(text)


def test_seeds_and_overrides_reach_every_part_that_has_the_path(tmp_path: Path) -> None:
    _, spec = tiny_study(tmp_path)
    overrides = parse_overrides(["model.d_model=32", "batch.size=3", "train.lr=3e-3"])
    assert overrides == {"model.d_model": 32, "batch.size": 3, "train.lr": 0.003}
    new = apply_overrides(spec, (4, 5, 6), overrides)
    assert [p.seeds for p in new.parts] == [(4, 5, 6), (4, 5, 6)]
    runs = plan(new, tmp_path / "lab")
    assert {r.seed for r in runs} == {4, 5, 6} and len(runs) == 3 * len(plan(spec, "lab")) // 2
    for r in runs:
        assert r.config["model"]["d_model"] == 32
        if r.run == "probe":  # batch.* is the probe part's alone, train.* the training part's
            assert r.config["batch"]["size"] == 3 and "train" not in r.config
        else:
            assert r.config["train"]["lr"] == 0.003 and "batch" not in r.config
    recorded = new.to_dict()["overrides"]
    assert recorded == {**overrides, "seeds": [4, 5, 6]}
    assert spec.parts[0].base["model"]["d_model"] == 16, "the original spec is left as it was"
    assert apply_overrides(spec, None, {}) is spec


@pytest.mark.parametrize(
    ("override", "field", "says"),
    [
        ("modle.d_model=32", "modle.d_model", "Did you mean 'model'?"),
        ("model.d_model=abc", "model.d_model", "expected an integer"),
        ("model.d_model=15", "model.d_model", "not divisible by n_heads"),
        ("model.n_layers=8", "model.n_layers", "sweeps 'model.n_layers' as an axis"),
        ("train.seed=3", "train.seed", "--seeds"),
        ("lab=elsewhere", "lab", "Valid top-level sections: model, batch, probes, params"),
    ],
)
def test_a_bad_override_is_a_config_error_naming_its_key(
    tmp_path: Path, override: str, field: str, says: str
) -> None:
    _, spec = tiny_study(tmp_path)
    with pytest.raises(ConfigError) as info:
        apply_overrides(spec, None, parse_overrides([override]))
    assert info.value.field == field and says in str(info.value), str(info.value)


def _probe_study(folder: Path) -> Path:
    path = folder / "probes.toml"
    path.write_text(
        'name = "probes"\nclaim = "c"\nsource = "s"\nrun = "probe"\nseeds = [0]\n'
        'axes = [ { grid = { "model.topology" = ["pre_ln", "post_ln"] } } ]\n'
        "[base]\n"
        "model = { vocab_size = 16, d_model = 16, n_heads = 2, n_layers = 2, max_seq_len = 8 }\n"
        'batch = { size = 2, seq_len = 8 }\nprobes = ["stream_rms"]\n'
        '[quantities]\nrms = { of = "done" }\n[[checks]]\nexpr = "rms > 0"\n'
    )
    return path


def test_the_command_runs_the_overridden_study_and_records_what_it_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    lab = tmp_path / "lab"
    args = ["study", "run", str(_probe_study(tmp_path)), "--lab", str(lab), "--executor"]
    args += ["serial", "--no-progress", "--no-report", "--seeds", "3-4", "-o", "model.n_layers=3"]
    assert main(args) == 0, capsys.readouterr().err
    with Store(lab, readonly=True) as store:
        runs = store.runs(study="probes")
    assert len(runs) == 4 and {r.config["seed"] for r in runs} == {3, 4}
    assert {r.config["model"]["n_layers"] for r in runs} == {3}
    manifest = json.loads((lab / "studies" / "probes.json").read_text())
    assert manifest["spec"]["overrides"] == {"model.n_layers": 3, "seeds": [3, 4]}


def test_the_command_rejects_a_bad_override_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    lab = tmp_path / "lab"
    args = ["study", "run", str(_probe_study(tmp_path)), "--lab", str(lab), "--executor"]
    assert main([*args, "serial", "-o", "model.n_layres=3"]) == 2
    err = capsys.readouterr().err
    assert "model.n_layres" in err and "Traceback" not in err and not lab.exists()
    assert main([*args, "serial", "--seeds", "1-x"]) == 2
    assert "--seeds" in capsys.readouterr().err and not lab.exists()
