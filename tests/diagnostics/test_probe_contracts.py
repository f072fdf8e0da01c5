"""The forward probes find their hook points by module name; a layer without the module a
probe expects fails loudly when the probe is attached, instead of measuring nothing there
(issue 12)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modeltools import tiny, tokens
from resnorm import build_model
from resnorm.diagnostics.base import PROBES, HookProbe

# probe -> the module of layer 1 it cannot do without
NEEDS = {
    "stream_rms": "tap_mlp",
    "stream_max": "tap_attn",
    "branch_rms": None,  # every sublayer is a hook point; removing one is tested below
    "rank_collapse": "tap_mlp",
    "token_cosine": "tap_mlp",
    "attention_entropy": None,
}


def _attach(name: str, model: nn.Module) -> HookProbe:
    probe = PROBES.get(name)()
    assert isinstance(probe, HookProbe)
    probe.attach(model)
    return probe


@pytest.mark.parametrize("name", [n for n, m in NEEDS.items() if m])
def test_a_layer_without_the_tap_a_probe_hooks_raises_naming_it(name: str) -> None:
    model = build_model(tiny("pre_ln", n_layers=3))
    delattr(model.decoder.layers[1], NEEDS[name])
    with pytest.raises(AssertionError, match=rf"probe {name}: .*decoder\.layers\.1[ .]"):
        _attach(name, model)


def test_attention_entropy_without_the_probs_hook_point_raises() -> None:
    model = build_model(tiny("pre_ln", n_layers=2))
    model.decoder.layers[0].attn.probs = None
    with pytest.raises(AssertionError, match=r"attention_entropy: .* decoder\.layers\.0 "):
        _attach("attention_entropy", model)


def test_a_model_without_resnorm_stacks_raises() -> None:
    with pytest.raises(AssertionError, match=r"stream_rms: no encoder/decoder stack"):
        _attach("stream_rms", nn.Sequential(nn.Linear(4, 4)))


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_each_probe_measures_every_layer_of_an_intact_model(name: str) -> None:
    model = build_model(tiny("pre_ln", n_layers=3)).eval()
    probe = _attach(name, model)
    with torch.no_grad():
        model(tokens(model.cfg))
    records = probe.collect()
    layers = {r.layer for r in records if r.layer is not None}
    assert layers == {0, 1, 2}
    assert all(torch.isfinite(torch.tensor(r.value)) for r in records)
