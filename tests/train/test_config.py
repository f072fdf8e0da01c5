"""`load_config`: TOML + dotted overrides, validation with errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnorm.config import RunConfig, TrainConfig, load_config, parse_value
from resnorm.errors import ConfigError


def test_toml_and_overrides_resolve_into_typed_sections(tiny_toml: Path) -> None:
    cfg = load_config(
        tiny_toml,
        [
            "model.n_layers=3",
            "train.lr=3e-4",
            "model.topology=post_ln",
            "train.probes=['grad_norm']",
            "train.grad_clip=2",
        ],
    )
    assert cfg.model.n_layers == 3 and cfg.model.d_model == 16
    assert cfg.train.lr == 3e-4 and cfg.model.topology == "post_ln"
    assert cfg.train.probes == ("grad_norm",)
    assert cfg.train.grad_clip == 2.0 and isinstance(cfg.train.grad_clip, float)
    assert cfg.data.params == {"vocab_size": 16}
    assert cfg.name == "tiny"  # from the file


def test_nested_override_reaches_topology_params() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.topology_params.alpha=1.5"])
    assert e.value.field == "model.topology_params.alpha"  # pre_ln takes no parameters


def test_defaults_without_a_file() -> None:
    assert load_config(None, []) == RunConfig()


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("3e-4", 3e-4), ("true", True), ("[1, 2]", [1, 2]), ("{a = 1}", {"a": 1}),
     ('"x y"', "x y"), ("post_ln", "post_ln"), ("/data/a.txt", "/data/a.txt")],
)  # fmt: skip
def test_override_values_are_toml_literals_else_strings(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nn_layers = 2\nd_model = = 3\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "field", "hint"),
    [
        ("model.n_layer=3", "model.n_layer", "n_layers"),
        ("train.lrr=0.1", "train.lrr", "'lr'"),
        ("trian.lr=0.1", "trian", "'train'"),
        ("data.sed=1", "data.sed", "seed"),
    ],
)
def test_unknown_key_suggests_the_closest(override: str, field: str, hint: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert e.value.field == field and hint in str(e.value)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.lr=fast", "train.lr"),
        ("model.n_layers=2.5", "model.n_layers"),
        ("train.compile=1", "train.compile"),
        ("train.schedule=cosin", "train.schedule"),
        ("train.steps=0", "train.steps"),
        ("train.probes=['nope']", "train.probes[0]"),
        ("model=3", "model"),
        ("name=3", "name"),
        ("model.n_layers.x=1", "model.n_layers"),
        ("train.grad_accum=3", "train.grad_accum"),  # 3 does not divide batch_size 32
        ("data.seq_len=512", "data.seq_len"),  # > model.max_seq_len
        ("data.objective=mlm", "data.objective"),  # a decoder trains causal_lm only
        ("nonsense", "override"),
    ],
)
def test_bad_values_name_their_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert e.value.field == field, str(e.value)


def test_run_id_ignores_cosmetic_fields_only() -> None:
    base = RunConfig()
    assert base.replace(name="x", lab="elsewhere").run_id == base.run_id
    cosmetic = base.replace(train=TrainConfig(checkpoint_every=7))
    assert cosmetic.run_id == base.run_id
    assert base.replace(train=TrainConfig(lr=0.5)).run_id != base.run_id
    assert "name" not in base.identity() and "checkpoint_every" not in base.identity()["train"]


def test_a_stored_config_without_a_name_reads_back_as_the_same_run() -> None:
    """A run's stored config holds ``name = None``; evaluating or continuing it reads it back."""
    cfg = RunConfig.from_dict({"model": {"d_model": 16, "n_heads": 2}})
    again = RunConfig.from_dict(cfg.to_dict())
    assert cfg.to_dict()["name"] is None and again.run_id == cfg.run_id
