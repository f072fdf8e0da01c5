"""Feed-forward sublayers: `W2 act(W1 x)` and the gated `W2 (act(W_g x) * W1 x)`."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from resnorm.nn.config import ModelConfig

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "swiglu": F.silu,
    "geglu": partial(F.gelu, approximate="tanh"),
}
GATED = ("swiglu", "geglu")


class MLP(nn.Module):
    """``down(act(up(x)))``, or gated ``down(act(gate(x)) * up(x))`` for swiglu / geglu.

    ``READS`` / ``WRITES``: the linears that read the stream and the one that writes it (see
    :class:`~resnorm.nn.attention.Attention`); ``gate`` is ``None`` unless the MLP is gated.
    """

    READS: tuple[str, ...] = ("up", "gate")
    WRITES: tuple[str, ...] = ("down",)
    SCORES: tuple[str, ...] = ()
    OPTIONAL: tuple[str, ...] = ("gate",)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.act = ACTIVATIONS[cfg.mlp]
        self.up = nn.Linear(cfg.d_model, cfg.d_ff_, bias=cfg.mlp_bias)
        self.gate = (
            nn.Linear(cfg.d_model, cfg.d_ff_, bias=cfg.mlp_bias) if cfg.mlp in GATED else None
        )
        self.down = nn.Linear(cfg.d_ff_, cfg.d_model, bias=cfg.mlp_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.hidden(x))

    def hidden(self, x: Tensor) -> Tensor:
        """The (B, T, d_ff) activation that ``down`` reads."""
        if self.gate is None:
            return self.act(self.up(x))
        return self.act(self.gate(x)) * self.up(x)
