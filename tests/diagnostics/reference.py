"""An independent plain-PyTorch decoder-only transformer and the quantities the probes report.

The oracle of ``test_reference.py``: it imports nothing from resnorm and reads a resnorm model's
weights by ``state_dict`` key (``embed.tok.weight``, ``decoder.layers.3.attn.q_proj.weight``,
``decoder.layers.3.norm_mlp.bias``, ``decoder.final_norm.weight``, ...). Pre-LN and Post-LN with
learned or no positions, LayerNorm, causal multi-head attention with an explicit softmax, a GELU
MLP and a head tied to the token embedding. Every statistic is written from its definition, not
from the probes' formulas (e.g. token cosine from the full T x T Gram matrix).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

Weights = Mapping[str, Tensor]


@dataclass
class Trace:
    """One forward pass: the stack's input, the stream after each sublayer, the head's input."""

    embed: Tensor  # x_0 (B, T, D)
    streams: dict[tuple[int, str], Tensor]  # (layer, "attn" | "mlp") -> stream after it
    hidden: Tensor  # what the head reads: after the final norm (pre_ln), the last stream (post_ln)
    logits: Tensor


def layer_norm(x: Tensor, sd: Weights, name: str, eps: float = 1e-5) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).square().mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def linear(x: Tensor, sd: Weights, name: str) -> Tensor:
    y = x @ sd[f"{name}.weight"].T
    return y + sd[f"{name}.bias"] if f"{name}.bias" in sd else y


def attention(x: Tensor, sd: Weights, name: str, n_heads: int) -> Tensor:
    b, t, _ = x.shape
    q, k, v = (
        linear(x, sd, f"{name}.{p}_proj").view(b, t, n_heads, -1).transpose(1, 2)  # (B, H, T, Dh)
        for p in "qkv"
    )
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, T)
    future = torch.ones(t, t, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(future, -math.inf)
    e = torch.exp(scores - scores.amax(-1, keepdim=True))
    y = (e / e.sum(-1, keepdim=True)) @ v  # (B, H, T, Dh)
    return linear(y.transpose(1, 2).reshape(b, t, -1), sd, f"{name}.o_proj")


def mlp(x: Tensor, sd: Weights, name: str) -> Tensor:
    h = linear(x, sd, f"{name}.up")
    return linear(0.5 * h * (1 + torch.erf(h / math.sqrt(2))), sd, f"{name}.down")  # exact GELU


def forward(sd: Weights, ids: Tensor, topology: str, n_heads: int) -> Trace:
    """``pre_ln``: x <- x + F(LN(x)), final LN; ``post_ln``: x <- LN(x + F(x)); attn then mlp."""
    assert topology in ("pre_ln", "post_ln"), topology
    x = sd["embed.tok.weight"][ids]
    if "embed.pos.weight" in sd:
        x = x + sd["embed.pos.weight"][: ids.shape[1]]
    embed, streams = x, {}
    for i in range(n_layers(sd)):
        layer = f"decoder.layers.{i}"
        for s in ("attn", "mlp"):
            norm = f"{layer}.norm_{s}"
            if topology == "pre_ln":
                x = x + branch(layer_norm(x, sd, norm), sd, layer, s, n_heads)
            else:
                x = layer_norm(x + branch(x, sd, layer, s, n_heads), sd, norm)
            streams[(i, s)] = x
    hidden = layer_norm(x, sd, "decoder.final_norm") if topology == "pre_ln" else x
    return Trace(embed, streams, hidden, hidden @ sd["embed.tok.weight"].T)


def branch(x: Tensor, sd: Weights, layer: str, s: str, n_heads: int) -> Tensor:
    return attention(x, sd, f"{layer}.attn", n_heads) if s == "attn" else mlp(x, sd, f"{layer}.mlp")


def n_layers(sd: Weights) -> int:
    return 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("decoder.layers."))


# --- the quantities --------------------------------------------------------------------------
def rms(x: Tensor) -> float:
    return float(x.square().mean().sqrt())


def rank_collapse(x: Tensor) -> float:
    """``||X - mean_tokens X||_F / ||X||_F`` of each sequence, mean over the batch."""
    ratios = [float((s - s.mean(0)).norm() / s.norm()) for s in x]
    return sum(ratios) / len(ratios)


def token_cosine(x: Tensor) -> float:
    """Mean cosine over ordered token pairs i != j of each sequence, mean over the batch."""
    u = x / x.norm(dim=-1, keepdim=True)
    gram = u @ u.transpose(-2, -1)  # (B, T, T)
    t = x.shape[1]
    off = gram.sum((-2, -1)) - gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    return float((off / (t * (t - 1))).mean())


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    logp = logits - logits.logsumexp(-1, keepdim=True)
    keep = targets != -100
    return -logp[keep].gather(-1, targets[keep][:, None]).mean()


def down_grad_norms(
    sd: Weights, ids: Tensor, targets: Tensor, topology: str, n_heads: int
) -> list[float]:
    """``||dL/dW2_l||`` of each layer's FFN output matrix, by autograd through :func:`forward`."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in sd.items()}
    loss = cross_entropy(forward(leaves, ids, topology, n_heads).logits, targets)
    downs = [leaves[f"decoder.layers.{i}.mlp.down.weight"] for i in range(n_layers(sd))]
    return [float(g.norm()) for g in torch.autograd.grad(loss, downs)]


def variance(x: Tensor) -> Tensor:
    return (x - x.mean()).square().mean()


def output_change(
    sd: Weights, ids: Tensor, topology: str, n_heads: int, noise: Sequence[Weights]
) -> float:
    """Mean over the perturbations ``dW`` of ``Var[h(W + dW) - h(W)] / Var[h(W)]``."""
    base = forward(sd, ids, topology, n_heads).hidden
    ratios = []
    for dw in noise:
        moved = {k: w + dw[k] if k in dw else w for k, w in sd.items()}
        change = forward(moved, ids, topology, n_heads).hidden - base
        ratios.append(variance(change) / variance(base))
    return float(torch.stack(ratios).mean())
