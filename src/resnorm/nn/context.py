"""`Context`: what every sublayer of one stack needs in one forward pass besides the stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from resnorm.nn.cache import KVCache


@dataclass
class Context:
    """Per-forward, per-stack state shared by the layers.

    Attributes:
        mask: boolean self-attention mask broadcastable to (B, 1, T, T), True = may attend;
            None with ``causal`` means plain causal attention (the fused fast path).
        causal: self-attention is causal.
        local_mask: the mask of sliding-window layers (None when the model has none).
        rope: ``(cos, sin)`` of shape (T, Dh) for rotary positions, or None.
        memory: the encoder output that cross-attention reads (encoder-decoder decoder only).
        memory_mask: boolean (B, 1, 1, S) mask over ``memory``, or None.
        scratch: state a topology carries across layers within this pass (value residual's V_1).
        cache: the decoder's self-attention keys/values of earlier positions (generation), or None.
    """

    mask: Tensor | None = None
    causal: bool = False
    local_mask: Tensor | None = None
    rope: tuple[Tensor, Tensor] | None = None
    memory: Tensor | None = None
    memory_mask: Tensor | None = None
    scratch: dict[str, Any] = field(default_factory=dict)
    cache: KVCache | None = None
