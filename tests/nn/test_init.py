"""Init constants against their tables: DeepNorm alpha/beta, LayerScale eps, T-Fixup, Admin,
and the cross-cutting init schemes."""

from __future__ import annotations

import math

import pytest
import torch

from resnorm import ModelConfig, build_model
from resnorm.nn.topologies.scaled import layerscale_init

SMALL = dict(vocab_size=17, d_model=32, n_heads=4)

# (N encoder layers, M decoder layers) -> Table 1 of Wang et al. 2022, written out.
DEEPNORM_TABLE = {
    "encoder": lambda n, m: ((2 * n) ** 0.25, (8 * n) ** -0.25),
    "decoder": lambda n, m: ((2 * m) ** 0.25, (8 * m) ** -0.25),
    "enc-dec encoder": lambda n, m: (0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16)),
    "enc-dec decoder": lambda n, m: ((3 * m) ** 0.25, (12 * m) ** -0.25),
}


@pytest.mark.parametrize("n, m", [(6, 6), (12, 6), (18, 18), (6, 24), (100, 100)])
def test_deepnorm_alpha_beta_equal_the_table(n: int, m: int) -> None:
    enc = build_model(ModelConfig(kind="encoder", n_layers=n, topology="deepnorm", **SMALL))
    dec = build_model(ModelConfig(kind="decoder", n_layers=m, topology="deepnorm", **SMALL))
    ed = build_model(
        ModelConfig(
            kind="encoder_decoder", n_layers=n, n_decoder_layers=m, topology="deepnorm", **SMALL
        )
    )
    got = {
        "encoder": enc.encoder.topology,
        "decoder": dec.decoder.topology,
        "enc-dec encoder": ed.encoder.topology,
        "enc-dec decoder": ed.decoder.topology,
    }
    for stack, topology in got.items():
        alpha, beta = DEEPNORM_TABLE[stack](n, m)
        assert topology.alpha == pytest.approx(alpha, rel=1e-12), stack
        assert topology.beta == pytest.approx(beta, rel=1e-12), stack


def test_deepnorm_known_values() -> None:
    """Decoder-only, 24 layers: alpha = 48^(1/4) = 2.6321, beta = 192^(-1/4) = 0.2686."""
    model = build_model(ModelConfig(n_layers=24, topology="deepnorm", **SMALL))
    assert model.decoder.topology.alpha == pytest.approx(2.6321, abs=1e-4)
    assert model.decoder.topology.beta == pytest.approx(0.2686, abs=1e-4)


def test_deepnorm_init_gain_beta_on_v_out_ffn_and_one_on_q_k() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=17, d_model=256, n_heads=4, n_layers=8, topology="deepnorm")
    model = build_model(cfg)
    beta = model.decoder.topology.beta
    xavier = lambda w: math.sqrt(2.0 / sum(w.shape))  # noqa: E731
    layer = model.decoder.layers[3]
    for w, gain in [
        (layer.attn.v_proj.weight, beta),
        (layer.attn.o_proj.weight, beta),
        (layer.mlp.up.weight, beta),
        (layer.mlp.down.weight, beta),
        (layer.attn.q_proj.weight, 1.0),
        (layer.attn.k_proj.weight, 1.0),
    ]:
        assert w.std().item() == pytest.approx(gain * xavier(w), rel=0.03)


@pytest.mark.parametrize(
    "depth, eps", [(1, 0.1), (12, 0.1), (18, 0.1), (19, 1e-5), (24, 1e-5), (25, 1e-6), (36, 1e-6)]
)
def test_layerscale_eps_equals_the_cait_table(depth: int, eps: float) -> None:
    assert layerscale_init(depth) == eps
    if depth <= 25:
        model = build_model(ModelConfig(n_layers=depth, topology="layerscale", **SMALL))
        for layer in model.decoder.layers:
            assert torch.all(layer.scale_attn == eps) and torch.all(layer.scale_mlp == eps)


def test_rezero_gates_start_at_zero() -> None:
    model = build_model(ModelConfig(n_layers=3, topology="rezero", **SMALL))
    assert all(layer.gate.item() == 0.0 for layer in model.decoder.layers)


@pytest.mark.parametrize(
    "kind, scale", [("decoder", lambda L: (9 * L) ** -0.25), ("encoder", lambda L: 0.67 * L**-0.25)]
)
def test_tfixup_scales_v_out_ffn_and_embeddings(kind: str, scale: object) -> None:
    torch.manual_seed(0)
    depth = 6
    cfg = ModelConfig(
        kind=kind, vocab_size=4096, d_model=256, n_heads=4, n_layers=depth, topology="tfixup"
    )
    model = build_model(cfg)
    s = scale(depth)  # type: ignore[operator]
    layer = model.output_stack.layers[2]
    xavier_uniform = lambda w: math.sqrt(2.0 / sum(w.shape))  # noqa: E731  (std of U(-a, a))
    for w in (layer.attn.v_proj.weight, layer.attn.o_proj.weight, layer.mlp.down.weight):
        assert w.std().item() == pytest.approx(s * xavier_uniform(w), rel=0.03)
    q = layer.attn.q_proj.weight
    assert q.std().item() == pytest.approx(xavier_uniform(q), rel=0.03)
    assert model.embed.tok.weight.std().item() == pytest.approx(s * 256**-0.5, rel=0.03)


@pytest.mark.parametrize("n_layers", [2, 6, 24])
def test_admin_closed_form_omega(n_layers: int) -> None:
    model = build_model(ModelConfig(n_layers=n_layers, topology="admin", **SMALL))
    n = 2 * n_layers  # residual sublayers of a decoder stack
    expected = math.sqrt((n + 1) / math.log(n + 1) - 1)
    for layer in model.decoder.layers:
        torch.testing.assert_close(layer.omega_attn, torch.full((32,), expected))


def test_admin_profile_sets_omega_from_branch_variances() -> None:
    """omega_1 = 1, omega_i^2 = Var[x_0] + sum_{j<i} Var[F_j], measured with omega = 1."""
    cfg = ModelConfig(n_layers=2, topology="admin", topology_params={"omega": "profile"}, **SMALL)
    torch.manual_seed(0)
    model = build_model(cfg)
    omegas = [
        layer.get_parameter(f"omega_{s}")[0].item()
        for layer in model.decoder.layers
        for s in ("attn", "mlp")
    ]
    # Recompute the variances by hand with omega = 1 (i.e. a post_ln forward).
    ids = torch.randint(0, 17, (8, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = model.embed(ids)
        ctx = model.context(ids, True, None)
        variances = [x.var().item()]
        for layer in model.decoder.layers:
            for s in ("attn", "mlp"):
                out = layer.attn(x, ctx) if s == "attn" else layer.mlp(x)
                variances.append(out.var().item())
                x = layer.norm(s)(x + out)
    expected = [1.0] + [math.sqrt(sum(variances[: i + 1])) for i in range(1, 4)]
    assert omegas == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("scheme", ["normal", "gpt2", "depth_scaled", "xavier"])
def test_init_schemes(scheme: str) -> None:
    torch.manual_seed(0)
    depth = 4
    cfg = ModelConfig(
        vocab_size=4096, d_model=256, n_heads=4, n_layers=depth, init=scheme, topology="pre_ln"
    )
    model = build_model(cfg)
    layers = model.decoder.layers
    q = layers[2].attn.q_proj.weight
    if scheme == "xavier":
        assert q.std().item() == pytest.approx(math.sqrt(2 / sum(q.shape)), rel=0.03)
        return
    assert q.std().item() == pytest.approx(0.02, rel=0.03)
    for index, layer in enumerate(layers):
        out = layer.mlp.down.weight.std().item()
        expected = {
            "normal": 0.02,
            "gpt2": 0.02 / math.sqrt(2 * depth),
            "depth_scaled": 0.02 / math.sqrt(2 * (index + 1)),
        }[scheme]
        assert out == pytest.approx(expected, rel=0.03)
