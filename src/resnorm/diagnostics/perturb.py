"""Probes that run their own forward passes: output change under a weight perturbation (Admin)
and the loss increase when one layer is dropped.

Both run without gradients and leave the model exactly as they found it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from resnorm.diagnostics.base import (
    LossFn,
    PassProbe,
    Record,
    layer_modules,
    model_output,
    register,
)


@register
class OutputChange(PassProbe):
    """Relative output change ``||f(W + dW) - f(W)||_F / ||f(W)||_F`` when every matrix ``W``
    (every parameter with >= 2 dims, embeddings included) gets ``dW ~ N(0, (eps std(W))^2)``,
    averaged over ``samples`` seeded perturbations (Liu et al. 2020, Admin, arXiv:2004.08249).

    Post-LN's output change grows O(N) with depth, Pre-LN's O(log N). The weights are restored
    bit-exactly afterwards. One record: layer ``None``, key ``output`` (``logits``/``hidden``).
    """

    name = "output_change"
    unit = "ratio"

    def __init__(
        self, eps: float = 0.01, samples: int = 3, seed: int = 0, output: str = "logits"
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
        matrices = [p for p in model.parameters() if p.dim() >= 2]
        saved = [p.detach().clone() for p in matrices]
        base = model_output(model, inputs, self.output).float()
        changes = []
        try:
            for k in range(self.samples):
                gen = torch.Generator(device="cpu").manual_seed(self.seed + k)
                for p, w in zip(matrices, saved, strict=True):
                    noise = torch.randn(w.shape, generator=gen, dtype=torch.float32)
                    p.add_(noise.to(p.device, p.dtype) * (self.eps * w.float().std()).to(p.dtype))
                out = model_output(model, inputs, self.output).float()
                changes.append((out - base).norm() / base.norm())
                for p, w in zip(matrices, saved, strict=True):
                    p.copy_(w)
        finally:
            for p, w in zip(matrices, saved, strict=True):
                p.copy_(w)
        return [self.record(None, self.output, float(torch.stack(changes).mean()))]


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
