"""Probes on parameters: gradient norms after a backward pass, update/weight ratio of a step.

Both group the named parameters the same way (:func:`~resnorm.diagnostics.base.grouped_squares`):
the whole model (layer ``None``, key ``""``), each layer (key ``<stack>``), each of its direct
children (key ``<stack>.attn``, ``<stack>.mlp``, ``<stack>.norm_attn``, ...), each tensor in a
layer (``<stack>.mlp.down.weight`` is W2 of Xiong et al. 2020), and every tensor outside the
layers under its own name (``embed.tok.weight``, ``decoder.final_norm.weight``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from resnorm.diagnostics.base import (
    GradProbe,
    Record,
    UpdateProbe,
    grouped_squares,
    norms,
    register,
    squared_norms,
)


def grad_squares(model: nn.Module) -> tuple[list[str], list[float]]:
    """Names and squared gradient norms of the parameters that have a gradient."""
    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    return [n for n, _ in named], squared_norms([g for _, g in named])  # type: ignore[misc]


def total_grad_norm(params: Iterable[Tensor]) -> Tensor:
    """``sqrt(sum_p ||grad p||^2)`` over ``params`` that have a gradient, as an fp32 tensor
    (fp64 for fp64 gradients; 0 if none): one batched ``_foreach_norm``, no sync."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(norms(grads))


def global_grad_norm(model: nn.Module) -> float:
    """`total_grad_norm` over all of ``model``'s parameters, as a float."""
    return float(total_grad_norm(model.parameters()))


@register
class GradNorm(GradProbe):
    """L2 norms of the gradients: global, per layer, per sublayer, per tensor (after backward,
    before any clipping)."""

    name = "grad_norm"
    unit = "l2"

    def records(self, model: nn.Module) -> list[Record]:
        names, squares = grad_squares(model)
        sums = grouped_squares(names, squares)
        return [self.record(layer, key, math.sqrt(sq)) for (layer, key), sq in sums.items()]


@register
class UpdateRatio(UpdateProbe):
    """``||W_after - W_before|| / ||W_before||`` of one optimizer step, per group (NaN where
    ``||W_before|| = 0``, e.g. ReZero's gates at init).

    ``snapshot(model)`` before the step (copies every parameter), ``records(model)`` after.
    """

    name = "update_ratio"
    unit = "ratio"

    def records(self, model: nn.Module) -> list[Record]:
        assert self.before, "update_ratio: call snapshot(model) before the optimizer step"
        named = [(n, p) for n, p in model.named_parameters() if n in self.before]
        names = [n for n, _ in named]
        before = [self.before[n] for n in names]
        with torch.no_grad():
            deltas = torch._foreach_sub([p.detach() for _, p in named], before)
        dw = grouped_squares(names, squared_norms(deltas))
        w = grouped_squares(names, squared_norms(before))
        return [
            self.record(lk[0], lk[1], math.sqrt(dw[lk] / w[lk]) if w[lk] > 0 else math.nan)
            for lk in dw
        ]
