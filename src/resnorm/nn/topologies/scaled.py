"""Post-LN made trainable by scaling: DeepNorm, Admin; and norm-free stacks: ReZero, T-Fixup,
LayerScale, plain no-norm."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from resnorm.errors import ConfigError
from resnorm.nn.config import ModelConfig
from resnorm.nn.init import stream_linears
from resnorm.nn.topologies.base import Branch, StackSpec, Topology, register
from resnorm.nn.topologies.placement import add_norms

if TYPE_CHECKING:
    from resnorm.nn.model import Layer, Stack, Transformer


def _linears(layer: Layer, *, scaled: bool) -> list[nn.Linear]:
    """The matrices DeepNet and T-Fixup scale (``scaled``: values, attention output and the
    feed-forward) or leave at gain 1 (queries and keys), from the sublayers' declarations;
    a declared matrix that is missing raises (see ``stream_linears``)."""
    scores = {name for name, _ in stream_linears(layer, "SCORES")}
    return [
        linear
        for name, linear in stream_linears(layer, "READS", "WRITES")
        if (name not in scores) == scaled
    ]


def deepnorm_constants(spec: StackSpec) -> tuple[float, float]:
    """DeepNet's (alpha, beta) for a stack (Wang et al. 2022, Table 1; N enc., M dec. layers)."""
    n, m = spec.n_encoder_layers, spec.n_decoder_layers
    if spec.kind != "encoder_decoder":
        depth = spec.n_layers
        return (2 * depth) ** 0.25, (8 * depth) ** -0.25
    if spec.role == "encoder":
        return 0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16)
    return (3 * m) ** 0.25, (12 * m) ** -0.25


@dataclass(frozen=True)
class DeepNormParams:
    """Attributes: alpha, beta: override the residual weight and init gain (default: Table 1)."""

    alpha: float | None = None
    beta: float | None = None


@register
class DeepNorm(Topology):
    """DeepNorm: Post-LN with the skip up-weighted by alpha and the branch init down-scaled by beta.

    ``x <- N(alpha x + F(x))``; V, attention-out and FFN matrices Xavier-normal with gain beta
    (Q, K gain 1); no final norm::

        x ── x alpha ──┬──────────┐
                       └── F ── (+) ── N ──>

    Wang et al. 2022, DeepNet: Scaling Transformers to 1,000 Layers (arXiv:2203.00555).
    alpha, beta per stack: see ``deepnorm_constants``. With alpha = beta = 1 it is post_ln with a
    Xavier init. Versus pre_ln: keeps Post-LN's normalized stream (and its quality) while bounding
    the model update, so deep stacks train without warmup.
    """

    name = "deepnorm"
    equation = "x <- N(alpha x + F(x)); init gain beta on V, out, FFN"
    source = "Wang et al. 2022 DeepNet (arXiv:2203.00555)"
    family = "scaled"
    Params = DeepNormParams
    final_norm = False

    @classmethod
    def check(cls, params: DeepNormParams, cfg: ModelConfig) -> None:  # type: ignore[override]
        for name in ("alpha", "beta"):
            value = getattr(params, name)
            if value is not None and not 0 < value < math.inf:
                raise ConfigError(
                    f"model.topology_params.{name}",
                    f"must be a finite number > 0 (or unset: DeepNet's Table 1), got {value}",
                )

    def __init__(self, cfg: ModelConfig, spec: StackSpec) -> None:
        super().__init__(cfg, spec)
        alpha, beta = deepnorm_constants(spec)
        self.alpha = alpha if self.params.alpha is None else self.params.alpha
        self.beta = beta if self.params.beta is None else self.params.beta

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return layer.norm(s)(self.alpha * x + f(x))  # type: ignore[no-any-return]

    def init_(self, stack: Stack) -> None:
        for layer in stack.layers:
            for linear in _linears(layer, scaled=True):
                nn.init.xavier_normal_(linear.weight, gain=self.beta)
            for linear in _linears(layer, scaled=False):
                nn.init.xavier_normal_(linear.weight, gain=1.0)


@dataclass(frozen=True)
class AdminParams:
    """Attributes:
    omega: ``closed_form`` (sqrt((n+1)/ln(n+1) - 1), n residual sublayers of the stack),
        ``profile`` (a forward pass at init measures the branch variances), or a number.
    profile_batch, profile_seq_len: the random token batch of the profiling pass.
    """

    omega: str | float = "closed_form"
    profile_batch: int = 8
    profile_seq_len: int = 64


@register
class Admin(Topology):
    """Admin: Post-LN with a learnable per-channel weight omega on the skip.

    ``x <- N(omega * x + F(x))``, omega initialised so each layer's dependency on its own branch
    stays bounded; no final norm::

        x ── * omega ──┬──────────┐
                       └── F ── (+) ── N ──>

    Liu et al. 2020, Understanding the Difficulty of Training Transformers (arXiv:2004.08249).
    ``profile``: omega_i^2 = Var[x_0] + sum_{j<i} Var[F_j] over the stack's sublayers, measured on
    a random batch with omega = 1 (``admin_profile_``). ``closed_form``: the authors' admin-torch
    value for n residual sublayers. With omega = 1 it is post_ln. Versus pre_ln: Post-LN's
    normalized stream, with the output change under parameter updates O(log N) like Pre-LN.
    """

    name = "admin"
    equation = "x <- N(omega * x + F(x)); omega per channel, from profiling or closed form"
    source = "Liu et al. 2020 (arXiv:2004.08249)"
    family = "scaled"
    Params = AdminParams
    final_norm = False

    @classmethod
    def check(cls, params: AdminParams, cfg: ModelConfig) -> None:  # type: ignore[override]
        if isinstance(params.omega, str) and params.omega not in ("closed_form", "profile"):
            raise ConfigError(
                "model.topology_params.omega",
                f"got {params.omega!r}; valid choices: 'closed_form', 'profile' or a number > 0",
            )
        if isinstance(params.omega, float) and params.omega <= 0:
            raise ConfigError("model.topology_params.omega", f"must be > 0, got {params.omega}")
        # One batch of this shape (its length cut to max_seq_len) goes through the model at init.
        for name, limit in (("profile_batch", 4096), ("profile_seq_len", 2**16)):
            value = getattr(params, name)
            if not 1 <= value <= limit:
                raise ConfigError(
                    f"model.topology_params.{name}", f"must be in [1, {limit}], got {value}"
                )

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)
        for s in layer.sublayers:
            layer.register_parameter(f"omega_{s}", nn.Parameter(torch.ones(self.cfg.d_model)))

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return layer.norm(s)(getattr(layer, f"omega_{s}") * x + f(x))  # type: ignore[no-any-return]

    def omegas(self, stack: Stack) -> list[Tensor]:
        return [getattr(layer, f"omega_{s}") for layer in stack.layers for s in layer.sublayers]

    def init_(self, stack: Stack) -> None:
        omega = self.params.omega
        if omega == "closed_form":
            n = len(self.omegas(stack))
            omega = math.sqrt((n + 1) / math.log(n + 1) - 1)
        if not isinstance(omega, str):
            with torch.no_grad():
                for w in self.omegas(stack):
                    w.fill_(omega)

    def init_shared_(self, model: Transformer, stack: Stack) -> None:
        if self.params.omega == "profile":
            admin_profile_(model, stack, self.params.profile_batch, self.params.profile_seq_len)


@torch.no_grad()
def admin_profile_(model: Transformer, stack: Stack, batch: int, seq_len: int) -> list[float]:
    """Set every omega of ``stack`` from a profiling pass (Liu et al. 2020, Sec. 5).

    Runs ``model`` once with all omegas 1 on a fixed random batch, records Var[F_j] of each
    branch output, and sets omega_1 = 1, omega_i = sqrt(Var[x_0] + sum_{j<i} Var[F_j]) for
    i >= 2 (i over the stack's sublayers, x_0 the embedding output). Returns the omegas.
    """
    topology = stack.topology
    assert isinstance(topology, Admin)
    omegas = topology.omegas(stack)
    for w in omegas:
        w.fill_(1.0)
    variances: list[float] = []
    hooks = [stack.register_forward_pre_hook(lambda m, a: variances.append(float(a[0].var())))]
    for layer in stack.layers:
        for s in layer.sublayers:
            module = getattr(layer, s)
            hooks.append(
                module.register_forward_hook(lambda m, a, o: variances.append(float(o.var())))
            )
    generator = torch.Generator().manual_seed(0)
    shape = (batch, min(seq_len, model.cfg.max_seq_len))
    ids = torch.randint(0, model.cfg.vocab_size, shape, generator=generator)
    was_training = model.training
    model.eval()
    try:
        model(ids, decoder_input_ids=ids if model.cfg.kind == "encoder_decoder" else None)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    # The first skip carries the raw embeddings at their own scale (omega_1 = 1); later skips
    # carry a normalized stream that stands for Var[x_0] + sum_{j<i} Var[F_j] of Pre-LN's.
    values = [1.0] + [math.sqrt(sum(variances[: i + 1])) for i in range(1, len(omegas))]
    for w, value in zip(omegas, values, strict=True):
        w.fill_(value)
    return values


@dataclass(frozen=True)
class ReZeroParams:
    """Attributes: init: the initial residual weight g (paper: 0, the identity map)."""

    init: float = 0.0


@register
class ReZero(Topology):
    """ReZero: no norms; each layer's branches are gated by one learnable scalar, 0 at init.

    ``x <- x + g_l F(x)`` (g_l shared by the layer's sublayers, as in the reference code)::

        x ──┬───────────────────┐
            └── F ── x g_l ── (+) ──>

    Bachlechner et al. 2020, ReZero is All You Need (arXiv:2003.04887); SkipInit (De & Smith
    2020) is the same rule. At init every layer is the identity map. Versus pre_ln: no norm at
    all, so signal scale is controlled by g alone; trains fast without warmup.
    """

    name = "rezero"
    equation = "x <- x + g_l F(x); g_l = 0 at init; no norms"
    source = "Bachlechner et al. 2020 (arXiv:2003.04887); De & Smith 2020 SkipInit"
    family = "norm_free"
    Params = ReZeroParams
    final_norm = False

    def setup_layer(self, layer: Layer) -> None:
        layer.register_parameter("gate", nn.Parameter(torch.tensor(self.params.init)))

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return x + layer.get_parameter("gate") * f(x)

    def init_(self, stack: Stack) -> None:
        with torch.no_grad():
            for layer in stack.layers:
                layer.get_parameter("gate").fill_(self.params.init)


def layerscale_init(depth: int) -> float:
    """CaiT's initial LayerScale: 0.1 up to 18 layers, 1e-5 up to 24, 1e-6 deeper."""
    return 0.1 if depth <= 18 else 1e-5 if depth <= 24 else 1e-6


@dataclass(frozen=True)
class LayerScaleParams:
    """Attributes: init: initial per-channel scale (default: by depth, ``layerscale_init``)."""

    init: float | None = None


@register
class LayerScale(Topology):
    """LayerScale: Pre-LN with a learnable per-channel scale on each branch output.

    ``x <- x + diag(lam) F(N(x))``, lam initialised small (depth-dependent); final norm::

        x ──┬───────────────────────────┐
            └── N ── F ── x diag(lam) ── (+) ──>

    Touvron et al. 2021, Going deeper with Image Transformers (CaiT, arXiv:2103.17239).
    Versus pre_ln: each branch starts near zero, so the deep stack starts near the identity.
    """

    name = "layerscale"
    equation = "x <- x + diag(lam) F(N(x)); lam = 0.1 / 1e-5 / 1e-6 by depth; final norm"
    source = "Touvron et al. 2021 CaiT (arXiv:2103.17239)"
    family = "scaled"
    Params = LayerScaleParams

    def __init__(self, cfg: ModelConfig, spec: StackSpec) -> None:
        super().__init__(cfg, spec)
        given = self.params.init
        self.init_value = layerscale_init(spec.n_layers) if given is None else given

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)
        for s in layer.sublayers:
            scale = nn.Parameter(torch.full((self.cfg.d_model,), self.init_value))
            layer.register_parameter(f"scale_{s}", scale)

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return x + getattr(layer, f"scale_{s}") * f(layer.norm(s)(x))

    def init_(self, stack: Stack) -> None:
        with torch.no_grad():
            for layer in stack.layers:
                for s in layer.sublayers:
                    getattr(layer, f"scale_{s}").fill_(self.init_value)


def tfixup_scale(spec: StackSpec) -> float:
    """T-Fixup's weight scale: decoder (9M)^(-1/4), encoder 0.67 N^(-1/4) (Huang et al. 2020)."""
    if spec.role == "decoder":
        return (9 * spec.n_layers) ** -0.25
    return 0.67 * spec.n_layers**-0.25


@register
class TFixup(Topology):
    """T-Fixup: no norms and no warmup, made stable by a depth-scaled initialization.

    ``x <- x + F(x)``; Xavier init, embeddings N(0, d^-1/2); then V, attention-out, FFN matrices
    (and the embeddings) times (9L)^(-1/4) in a decoder, 0.67 L^(-1/4) in an encoder::

        x ──┬──────────┐
            └── F ── (+) ──>     (F's weights scaled at init)

    Huang et al. 2020, Improving Transformer Optimization Through Better Initialization
    (ICML 2020). The embedding table is shared, so it takes the scale of the output stack (the
    decoder of an encoder-decoder). Versus pre_ln: no norm anywhere; stability comes from init.
    """

    name = "tfixup"
    equation = "x <- x + F(x); no norms; V, out, FFN, embeddings x (9L)^(-1/4) (dec.)"
    source = "Huang et al. 2020 T-Fixup (ICML)"
    family = "norm_free"
    final_norm = False

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return x + f(x)

    def init_(self, stack: Stack) -> None:
        scale = tfixup_scale(self.spec)
        for layer in stack.layers:
            for linear in _linears(layer, scaled=True) + _linears(layer, scaled=False):
                nn.init.xavier_uniform_(linear.weight)
            with torch.no_grad():
                for linear in _linears(layer, scaled=True):
                    linear.weight.mul_(scale)

    def init_shared_(self, model: Transformer, stack: Stack) -> None:
        if stack is not model.output_stack:
            return
        with torch.no_grad():
            nn.init.normal_(model.embed.tok.weight, std=self.cfg.d_model**-0.5)
            model.embed.tok.weight.mul_(tfixup_scale(self.spec))


@register
class NoNorm(Topology):
    """No normalization (ablation): ``x <- x + F(x)`` with the standard init.

    ``x ──┬──────────┐``
    ``    └── F ── (+) ──>``

    The ablation that ReZero and T-Fixup are measured against. Versus pre_ln: the norms removed.
    """

    name = "no_norm"
    equation = "x <- x + F(x); no norms (ablation)"
    source = "ablation"
    family = "ablation"
    final_norm = False

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return x + f(x)
