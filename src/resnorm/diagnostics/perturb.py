"""Probes that run their own forward passes: output change under a weight perturbation (Admin,
with its noise draw :func:`weight_noise`) and the loss increase when one layer is dropped.

Both run without gradients and leave the model exactly as they found it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from resnorm.diagnostics.base import (
    LossFn,
    PassProbe,
    Record,
    layer_modules,
    model_output,
    register,
    upcast,
    variance,
)


def weight_noise(model: nn.Module, eps: float, seed: int) -> Iterator[tuple[str, Tensor]]:
    """``(name, dW)`` of one seeded perturbation, for each matrix of ``model``.

    The matrices are the parameters with >= 2 dims (embeddings included; a tied one once), in
    ``named_parameters`` order. ``dW = eps * std(W) * z``: ``z ~ N(0, 1)`` drawn in fp32 on the
    CPU from one generator seeded ``seed`` (the same numbers on every device and dtype), ``std``
    that matrix's own. Lazy: one matrix's noise in memory at a time.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            z = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            w = p.detach()
            yield name, z.to(w.device, w.dtype) * (eps * upcast(w).std()).to(w.dtype)


@register
class OutputChange(PassProbe):
    """Output change under a random weight perturbation, relative to the output's variance
    (Liu et al. 2020, Admin, Understanding the Difficulty of Training Transformers,
    arXiv:2004.08249, Theorem 2)::

        change = mean_k  Var[h(x, W + dW_k) - h(x, W)] / Var[h(x, W)]

    ``h`` is the last hidden state, what the output head reads (after the final norm when the
    topology has one; ``output="logits"`` measures the logits instead). ``Var`` is over all
    B x T x d_model entries of the batch. ``dW_k`` (:func:`weight_noise`, seed ``seed + k``)
    perturbs every matrix W by ``eps * std(W) * N(0, 1)``, for ``k < samples``.

    The paper bounds ``Var[F(x0, W) - F(x0, W*)]`` for a perturbation ``W* - W`` independent of
    W (random, as here): it grows O(N) with depth for Post-LN and O(log N) for Pre-LN. Its F
    ends in a LayerNorm, so ``Var[F] ~ 1`` and the paper needs no denominator; dividing by
    ``Var[h]`` keeps that scale-free reading for topologies without a final norm. Its
    reference code (LiyuanLucasLiu/Transformer-Clinic, img/output_change.png) plots the squared
    norm ``|F(x0, W) - F(x0, W + delta)|_2^2``: a squared quantity, not a norm ratio.

    Runs without gradients; the weights are restored bit-exactly, also when the model raises.
    One record: layer ``None``, key the output (``hidden`` or ``logits``).
    """

    name = "output_change"
    unit = "ratio"

    def __init__(
        self, eps: float = 0.01, samples: int = 3, seed: int = 0, output: str = "hidden"
    ) -> None:
        assert output in ("logits", "hidden"), f"output_change: unknown output {output!r}"
        self.eps, self.samples, self.seed, self.output = eps, samples, seed, output

    @torch.no_grad()
    def measure(
        self,
        model: nn.Module,
        inputs: Tensor | Mapping[str, Tensor],
        targets: Tensor,
        loss_fn: LossFn,
    ) -> list[Record]:
        params = dict(model.named_parameters())
        saved = {n: p.detach().clone() for n, p in params.items() if p.dim() >= 2}
        base = model_output(model, inputs, self.output)
        changes = []
        try:
            for k in range(self.samples):
                for name, dw in weight_noise(model, self.eps, self.seed + k):
                    params[name].add_(dw)
                out = model_output(model, inputs, self.output)
                changes.append(variance(out - base) / variance(base))
                _restore(params, saved)
        finally:
            _restore(params, saved)
        return [self.record(None, self.output, float(torch.stack(changes).mean()))]


def _restore(params: Mapping[str, Tensor], saved: Mapping[str, Tensor]) -> None:
    for name, w in saved.items():
        params[name].copy_(w)


@register
class LayerDrop(PassProbe):
    """Loss increase (nats) when one layer's sublayer outputs (attn, cross, mlp) are all zeroed,
    per layer (key ``<stack>``): how much the trained model relies on that layer (Sun et al.
    2025, The Curse of Depth, arXiv:2502.05795)."""

    name = "layer_drop"
    unit = "nats"

    @torch.no_grad()
    def measure(
        self,
        model: nn.Module,
        inputs: Tensor | Mapping[str, Tensor],
        targets: Tensor,
        loss_fn: LossFn,
    ) -> list[Record]:
        base = float(loss_fn(model_output(model, inputs), targets))
        branches: dict[tuple[str, int], list[nn.Module]] = {}
        for stack, i, _, module in layer_modules(model, r"attn|cross|mlp"):
            branches.setdefault((stack, i), []).append(module)
        out = []
        for (stack, i), modules in branches.items():
            handles = [m.register_forward_hook(_zero_output) for m in modules]
            try:
                dropped = float(loss_fn(model_output(model, inputs), targets))
            finally:
                for h in handles:
                    h.remove()
            out.append(self.record(i, stack, dropped - base))
        return out


def _zero_output(module: nn.Module, args: object, output: Tensor) -> Tensor:
    return torch.zeros_like(output)
