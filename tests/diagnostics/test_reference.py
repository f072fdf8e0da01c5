"""The probes against an independent plain-PyTorch transformer (``reference.py``) on the same
float64 weights and batch: each probe's number equals the reference's quantity to 1e-6, a
tolerance that tells a quantity from its square or its root."""

from __future__ import annotations

import math

import pytest
import torch

from diagnostics.reference import (
    Trace,
    down_grad_norms,
    forward,
    output_change,
    rank_collapse,
    rms,
    token_cosine,
)
from resnorm.diagnostics import random_batch, run_at_init
from resnorm.diagnostics.perturb import OutputChange, weight_noise
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import Transformer, build_model

RTOL = 1e-6
N_LAYERS, N_HEADS = 3, 2
PROBES = ["grad_norm", "stream_rms", "rank_collapse", "token_cosine"]
CASES = [("pre_ln", "learned"), ("post_ln", "learned"), ("pre_ln", "none"), ("post_ln", "none")]


class Setup:
    """A float64 model, a batch, the probes' records on them, and the reference's pass."""

    def __init__(self, topology: str, positional: str) -> None:
        cfg = ModelConfig(
            topology=topology,
            positional=positional,
            vocab_size=32,
            d_model=16,
            n_layers=N_LAYERS,
            n_heads=N_HEADS,
            max_seq_len=16,
        )
        torch.manual_seed(0)
        self.topology = topology
        self.model: Transformer = build_model(cfg).double()
        with torch.no_grad():  # norm gains and biases away from 1 and 0: no value sits near 1
            for name, p in self.model.named_parameters():
                if "norm" in name:
                    p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0))
        self.ids, self.targets = random_batch(cfg, batch_size=2, seq_len=8, seed=1)
        change = OutputChange(eps=0.01, samples=2, seed=5)
        records = run_at_init(self.model, (self.ids, self.targets), [*PROBES, change])
        self.got = {(r.probe, r.layer, r.key): r.value for r in records}
        self.sd = self.model.state_dict()
        assert self.sd["lm_head.weight"] is self.sd["embed.tok.weight"] or torch.equal(
            self.sd["lm_head.weight"], self.sd["embed.tok.weight"]
        ), "the reference ties its head"
        self.ref: Trace = forward(self.sd, self.ids, topology, N_HEADS)


@pytest.fixture(scope="module", params=CASES, ids=[f"{t}-{p}_positions" for t, p in CASES])
def setup(request: pytest.FixtureRequest) -> Setup:
    return Setup(*request.param)


def same(probe: float, reference: float) -> None:
    # |log q| > 100 RTOL: q^2 and sqrt(q) then differ from q by more than the tolerance.
    assert abs(math.log(abs(reference))) > 100 * RTOL, "a value this close to 1 proves nothing"
    assert probe == pytest.approx(reference, rel=RTOL)


def test_the_reference_computes_the_models_logits(setup: Setup) -> None:
    with torch.no_grad():
        logits = setup.model(setup.ids)
    torch.testing.assert_close(setup.ref.logits, logits, rtol=1e-10, atol=1e-12)


def test_stream_rms_after_each_sublayer_and_its_growth_equal_the_reference(setup: Setup) -> None:
    got, ref = setup.got, setup.ref
    same(got[("stream_rms", None, "decoder.embed")], rms(ref.embed))
    for (i, s), x in ref.streams.items():
        same(got[("stream_rms", i, f"decoder.{s}")], rms(x))
    last = got[("stream_rms", N_LAYERS - 1, "decoder.mlp")]
    growth = rms(ref.streams[(N_LAYERS - 1, "mlp")]) / rms(ref.embed)
    same(last / got[("stream_rms", None, "decoder.embed")], growth)


@pytest.mark.parametrize("probe", ["rank_collapse", "token_cosine"])
def test_rank_collapse_and_token_cosine_of_the_stream_after_each_layer_equal_the_reference(
    setup: Setup, probe: str
) -> None:
    fn = {"rank_collapse": rank_collapse, "token_cosine": token_cosine}[probe]
    same(setup.got[(probe, None, "decoder.embed")], fn(setup.ref.embed))
    for i in range(N_LAYERS):
        same(setup.got[(probe, i, "decoder")], fn(setup.ref.streams[(i, "mlp")]))


def test_grad_norm_of_each_ffn_output_matrix_equals_the_reference_autograd(setup: Setup) -> None:
    ref = down_grad_norms(setup.sd, setup.ids, setup.targets, setup.topology, N_HEADS)
    for i, norm in enumerate(ref):
        same(setup.got[("grad_norm", i, "decoder.mlp.down.weight")], norm)


def test_output_change_is_the_reference_variance_ratio_of_the_hidden_state(setup: Setup) -> None:
    noise = [dict(weight_noise(setup.model, 0.01, 5 + k)) for k in range(2)]
    ref = output_change(setup.sd, setup.ids, setup.topology, N_HEADS, noise)
    same(setup.got[("output_change", None, "hidden")], ref)
