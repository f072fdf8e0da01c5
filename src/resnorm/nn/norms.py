"""Normalization layers, registered by name: `layernorm`, `rmsnorm`, `scalenorm`, `dyt`, `identity`.

A norm factory takes ``(dim, eps, bias)`` and returns a module mapping ``(..., dim) -> (..., dim)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from resnorm.registry import Registry

NormFactory = Callable[[int, float, bool], nn.Module]
NORMS: Registry[NormFactory] = Registry("norm")

# One line per norm: its equation, shown by `resnorm norms`.
EQUATIONS = {
    "layernorm": "y = g * (x - mean(x)) / sqrt(var(x) + eps) + b",
    "rmsnorm": "y = g * x / sqrt(mean(x^2) + eps)",
    "scalenorm": "y = g * x / max(||x||, eps), g scalar (init sqrt(d))",
    "dyt": "y = g * tanh(a * x) + b, a scalar (init 0.5)",
    "identity": "y = x",
}
SOURCES = {
    "layernorm": "Ba et al. 2016 (arXiv:1607.06450); torch.nn.LayerNorm",
    "rmsnorm": "Zhang & Sennrich 2019 (arXiv:1910.07467); torch.nn.RMSNorm",
    "scalenorm": "Nguyen & Salazar 2019 (arXiv:1910.05895)",
    "dyt": "Zhu et al. 2025, Transformers without Normalization (arXiv:2503.10622)",
    "identity": "ablation",
}


@NORMS.register("layernorm")
def layernorm(dim: int, eps: float, bias: bool) -> nn.Module:
    return nn.LayerNorm(dim, eps=eps, bias=bias)


@NORMS.register("rmsnorm")
def rmsnorm(dim: int, eps: float, bias: bool) -> nn.Module:
    return nn.RMSNorm(dim, eps=eps)


class ScaleNorm(nn.Module):
    """`g x / max(||x||, eps)` with one learnable scalar `g`, initialised to `sqrt(dim)`."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.tensor(math.sqrt(dim)))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * x / x.norm(dim=-1, keepdim=True).clamp_min(self.eps)

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, math.sqrt(self.dim))


@NORMS.register("scalenorm")
def scalenorm(dim: int, eps: float, bias: bool) -> nn.Module:
    return ScaleNorm(dim, eps)


class DyT(nn.Module):
    """Dynamic Tanh, `g tanh(a x) + b`: an element-wise stand-in for a norm (Zhu et al. 2025)."""

    def __init__(self, dim: int, alpha_init: float = 0.5, bias: bool = True) -> None:
        super().__init__()
        self.alpha_init = alpha_init
        self.alpha = nn.Parameter(torch.tensor(alpha_init))
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.weight * torch.tanh(self.alpha * x)
        return y + self.bias if self.bias is not None else y

    def reset_parameters(self) -> None:
        nn.init.constant_(self.alpha, self.alpha_init)
        nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


@NORMS.register("dyt")
def dyt(dim: int, eps: float, bias: bool) -> nn.Module:
    return DyT(dim, bias=bias)


@NORMS.register("identity")
def identity(dim: int, eps: float, bias: bool) -> nn.Module:
    return nn.Identity()


def build_norm(name: str, dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """The registered norm `name` over the last dimension of size `dim`."""
    return NORMS.get(name, "model.norm")(dim, eps, bias)


def l2_normalize(x: Tensor, dim: int = -1, eps: float = 1e-12) -> Tensor:
    """`x / ||x||` along `dim`: the projection onto the unit hypersphere (nGPT)."""
    return x / x.norm(dim=dim, keepdim=True).clamp_min(eps)
