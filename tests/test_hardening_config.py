"""Issue 12's config reproducers (items 9, 11, 12, 13, 15): each bad value is one ConfigError line
naming its field, exit status 2 from the CLI, no traceback, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnorm.cli import main
from resnorm.config import RunConfig, load_config
from resnorm.data import DataConfig, build_data
from resnorm.errors import ConfigError
from resnorm.memory import MEMORY_ENV
from resnorm.nn.config import ModelConfig

TINY = ["-o", "model.d_model=16", "-o", "model.n_heads=2", "-o", "model.n_layers=1"]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def refused(argv: list[str], field: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``resnorm train`` in-process with a lab in ``folder``; assert exit 2 with one line
    naming ``field`` and every file of ``folder`` as it was. Returns the line."""
    before = files(folder)
    code = main(["train", "--no-progress", "--lab", str(folder / "lab"), *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert field in err, err
    assert files(folder) == before and not (folder / "lab").exists()
    return err


@pytest.mark.parametrize(
    "override, field, words",
    [
        # 9: seeds beyond what torch's generator takes
        ("train.seed=18446744073709551616", "train.seed", "2**63 - 1"),
        ("train.seed=-1", "train.seed", "2**63 - 1"),
        ("data.seed=18446744073709551616", "data.seed", "2**63 - 1"),
        # 12: sizes beyond any model; hangs bounded
        ("model.d_model=1000000000000", "model.d_model", "65536"),
        ("model.vocab_size=1000000000000", "model.vocab_size", "16777216"),
        ("model.max_seq_len=1000000000000", "model.max_seq_len", "16777216"),
        ("data.batch_size=1000000000", "data.batch_size", "16777216"),
        ("model.n_layers=10000000", "model.n_layers", "10000"),
        ("train.eval_batches=1000000000", "train.eval_batches", "100000"),
        # 15: nonsense numbers
        ("model.norm_eps=inf", "model.norm_eps", "finite"),
        ("model.norm_eps=nan", "model.norm_eps", "finite"),
        ("model.norm_eps=0", "model.norm_eps", "> 0"),
        ("model.norm_eps=-1e-5", "model.norm_eps", "> 0"),
        ("train.grad_clip=inf", "train.grad_clip", "finite"),
        ("train.steps=" + "9" * 400, "train.steps", "400-digit"),
        # 13: a name that is not UTF-8 (how Python spells an undecodable argv byte)
        ("name=\udcff", "name", "UTF-8"),
        ("name=a\nb", "name", "control character"),
    ],
)
def test_bad_value_is_one_line_naming_the_field_and_writes_nothing(
    override: str, field: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(["-o", override], field, tmp_path, capsys)
    assert words in err


@pytest.mark.parametrize("alpha", ["-1", "nan", "inf", "0"])
def test_deepnorm_alpha_must_be_positive_and_finite(
    alpha: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["-o", "model.topology=deepnorm", "-o", f"model.topology_params.alpha={alpha}"]
    refused(argv, "model.topology_params.alpha", tmp_path, capsys)


def test_a_nul_byte_in_the_lab_path_is_refused_at_config_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.toml"
    config.write_text('lab = "lab\\u0000x"\n')
    before = files(tmp_path)
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "lab:" in err and "control character" in err
    assert files(tmp_path) == before
    with pytest.raises(ConfigError) as e:
        RunConfig(lab="a\udcffb")
    assert e.value.field == "lab" and "UTF-8" in str(e.value)


@pytest.mark.parametrize(
    "text",
    [
        "name = " + "[" * 5000 + "]" * 5000,  # tomllib itself recurses past the stack
        "name = " + "{a = " * 2000 + "1" + "}" * 2000,
        "[model.topology_params" + ".a" * 100 + "]\nb = 1\n",  # parses; too deep to use
    ],
)
def test_deeply_nested_toml_is_refused_with_the_file_named(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "deep.toml"
    config.write_text(text)
    err = refused(["--config", str(config)], "config", tmp_path, capsys)
    assert "nested more than 32 levels" in err and "deep.toml" in err


def test_deeply_nested_override_is_refused() -> None:
    for override in ("model.x=" + "[" * 3000 + "]" * 3000, "a" + ".a" * 100 + "=1"):
        with pytest.raises(ConfigError, match="nested more than") as e:
            load_config(None, [override])
        assert e.value.field == "override"


def test_a_run_too_big_for_the_memory_states_the_estimate_and_the_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MEMORY_ENV, "64")
    err = refused(["-o", "data.batch_size=1048576"], "data.batch_size", tmp_path, capsys)
    assert "needs at least 768 GiB" in err and "64 GiB" in err and MEMORY_ENV in err
    big = ["-o", "model.d_model=4096", "-o", "model.n_layers=64"]
    err = refused(big, "model.n_layers", tmp_path, capsys)
    assert "AdamW state 192 GiB" in err


def test_legitimate_large_gpu_configs_are_accepted_where_memory_holds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = {"d_model": 8192, "n_layers": 96, "n_heads": 64, "max_seq_len": 8192}
    model |= {"vocab_size": 128256, "positional": "rope", "mlp": "swiglu", "d_ff": 22016}
    cfg = ModelConfig(**model)  # a model definition is not tied to this machine
    assert 75e9 < cfg.param_count() < 80e9  # 7.88e10
    run = {"model": model, "data": {"seq_len": 8192, "batch_size": 8}, "train": {"grad_accum": 8}}
    monkeypatch.setenv(MEMORY_ENV, "4096")
    RunConfig.from_dict(run)
    monkeypatch.setenv(MEMORY_ENV, "512")
    with pytest.raises(ConfigError, match=r"needs at least 1\.\d+ TiB, more than the 512 GiB"):
        RunConfig.from_dict(run)


def test_val_fraction_the_data_cannot_split_names_it_and_the_fractions_that_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "corpus.txt"
    text.write_bytes(b"abcdefghij" * 100)
    data = ["-o", "data.source=text", "-o", f"data.path={text}", "-o", "data.seq_len=16"]
    err = refused([*TINY, *data, "-o", "data.val_fraction=0.99999999"], "", tmp_path, capsys)
    assert "data.val_fraction:" in err and "between 0.017 and 0.983" in err
    with pytest.raises(ConfigError) as e:
        build_data(DataConfig(source="text", path=str(text), seq_len=600))
    assert e.value.field == "data.seq_len" and "seq_len <= 499" in str(e.value)


@pytest.mark.parametrize("stated", ["abc", "0", "-4", "nan", "inf"])
def test_a_stated_memory_must_be_a_positive_number_of_gib(
    stated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MEMORY_ENV, stated)
    with pytest.raises(ConfigError) as e:
        RunConfig()
    assert e.value.field == MEMORY_ENV
