"""Positions: a learned table, rotary embeddings (RoPE), or none."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021, arXiv:2104.09864), half-split layout.

    Channel ``i`` of the first half rotates with channel ``i`` of the second half, as in
    GPT-NeoX and Hugging Face Llama (``rotate_half``), at frequency ``theta^(-2i/d)``.
    """

    cos: Tensor
    sin: Tensor

    def __init__(self, head_dim: int, max_seq_len: int, theta: float) -> None:
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("cos", torch.empty(0), persistent=False)
        self.register_buffer("sin", torch.empty(0), persistent=False)
        self._build(max_seq_len)

    def _build(self, n: int) -> None:
        inv_freq = 1.0 / self.theta ** (
            torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim
        )
        angles = torch.outer(torch.arange(n, dtype=torch.float32), inv_freq)  # (T, Dh/2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, Dh)
        self.cos, self.sin = angles.cos(), angles.sin()

    def forward(self, seq_len: int, offset: int = 0) -> tuple[Tensor, Tensor]:
        """``(cos, sin)`` of shape (T, Dh) for positions offset..offset+seq_len-1."""
        end = offset + seq_len
        if end > self.cos.shape[0]:
            self._build(end)
        return self.cos[offset:end], self.sin[offset:end]

    def rebuild(self, max_seq_len: int) -> None:
        """Recompute the (non-persistent) tables, e.g. after the model was built on ``meta``."""
        self._build(max_seq_len)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` of shape (B, H, T, Dh) by the angles in ``cos``/``sin`` (T, Dh)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)
