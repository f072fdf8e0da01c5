"""Bad model configurations: each a ValueError (ConfigError) that names the field."""

from __future__ import annotations

from typing import Any

import pytest

from resnorm import ConfigError, ModelConfig


def error(**kw: Any) -> ConfigError:
    with pytest.raises(ValueError) as info:
        ModelConfig(**kw)
    assert isinstance(info.value, ConfigError)
    return info.value


def test_unknown_topology_lists_choices_and_closest_match() -> None:
    e = error(topology="pre_layernorm")
    assert e.field == "model.topology"
    assert "Did you mean 'pre_ln'?" in str(e) and "deepnorm" in str(e) and "ngpt" in str(e)


def test_unknown_norm_lists_choices_and_closest_match() -> None:
    e = error(norm="rms_norm")
    assert e.field == "model.norm" and "Did you mean 'rmsnorm'?" in str(e)
    assert "layernorm" in str(e) and "dyt" in str(e)


def test_d_model_not_divisible_by_heads() -> None:
    e = error(d_model=30, n_heads=4)
    assert e.field == "model.d_model" and "n_heads=4" in str(e)


@pytest.mark.parametrize(
    "field, value",
    [("vocab_size", 0), ("d_model", -8), ("n_layers", 0), ("n_heads", 0), ("max_seq_len", 0)],
)
def test_non_positive_sizes(field: str, value: int) -> None:
    assert error(**{field: value}).field == f"model.{field}"


def test_unknown_topology_parameter_lists_valid_keys() -> None:
    e = error(topology="deepnorm", topology_params={"alpah": 2.0})
    assert e.field == "model.topology_params.alpah"
    assert "Did you mean 'alpha'?" in str(e) and "beta" in str(e)


def test_parameter_of_a_topology_without_parameters() -> None:
    e = error(topology="post_ln", topology_params={"alpha": 2.0})
    assert "takes no parameters" in str(e)


def test_wrong_type_of_topology_parameter() -> None:
    e = error(topology="mix_ln", topology_params={"post_fraction": "half"})
    assert e.field == "model.topology_params.post_fraction" and "expected a number" in str(e)


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"kind": "seq2seq"}, "model.kind"),
        ({"mlp": "swish"}, "model.mlp"),
        ({"positional": "alibi"}, "model.positional"),
        ({"qk_norm": "yes"}, "model.qk_norm"),
        ({"init": "kaiming"}, "model.init"),
        ({"n_heads": 4, "n_kv_heads": 3}, "model.n_kv_heads"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"n_decoder_layers": 2}, "model.n_decoder_layers"),
        ({"positional": "rope", "d_model": 24, "n_heads": 8}, "model.head_dim"),
        ({"topology": "mix_ln", "topology_params": {"post_fraction": 1.5}}, None),
    ],
)
def test_invalid_choices_and_combinations(kw: dict, field: str | None) -> None:
    e = error(**kw)
    assert e.field == (field or "model.topology_params.post_fraction")


def test_from_dict_rejects_unknown_field_with_closest_key() -> None:
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict({"n_layer": 3})
    assert info.value.field == "model.n_layer" and "Did you mean 'n_layers'?" in str(info.value)


def test_sequence_longer_than_learned_positions() -> None:
    import torch

    from resnorm import build_model

    model = build_model(ModelConfig(d_model=16, n_heads=2, n_layers=1, max_seq_len=8))
    with pytest.raises(ConfigError, match="max_seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
