"""`KVCache`: the keys and values of every self-attention module, for incremental decoding.

Generation feeds one new position per step; each self-attention module appends that position's
keys and values here and attends over everything cached, so a step costs one position instead
of a full recompute. The cache stores what a module attends with, i.e. after the topology's own
changes (RoPE, QK-norm, nGPT's scaled q/k, value residual's mixed values), which is exactly what
an uncached forward computes for those positions: everything outside attention is per position.

An encoder-decoder's cache also holds the encoder output (``memory``), computed by the first
forward and read by every later one, and each cross-attention's keys and values of it, computed
by its first call: the source does not change while the decoder runs. Later calls compute only
the queries (a cross-attention's queries read the decoder stream, never the memory).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:
    from resnorm.nn.attention import Attention
    from resnorm.nn.context import Context


class KVCache:
    """Keys and values (B, H_kv, S, Dh) per self-attention module, preallocated to ``max_len``.

    ``length`` is the number of positions cached; the model advances it after each forward, so
    every layer of one forward writes at the same offset. ``memory`` is the encoder output
    (B, S_src, d_model) of an encoder-decoder, None until its first forward; ``cross_entries``
    the keys and values (B, H_kv, S_src, Dh) of each cross-attention module.
    """

    def __init__(self, max_len: int) -> None:
        self.max_len, self.length = max_len, 0
        self.entries: dict[nn.Module, tuple[Tensor, Tensor]] = {}
        self.memory: Tensor | None = None
        self.cross_entries: dict[nn.Module, tuple[Tensor, Tensor]] = {}

    def update(self, module: nn.Module, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``module``'s new keys/values (B, H_kv, t, Dh); all of its keys/values so far."""
        start, end = self.length, self.length + k.shape[2]
        assert end <= self.max_len, f"KV cache holds {self.max_len} positions, asked for {end}"
        if module not in self.entries:
            shape = (*k.shape[:2], self.max_len, k.shape[3])
            self.entries[module] = (k.new_empty(shape), v.new_empty((*shape[:3], v.shape[3])))
        keys, values = self.entries[module]
        keys[:, :, start:end], values[:, :, start:end] = k, v
        return keys[:, :, :end], values[:, :, :end]

    def cross(self, module: Attention, x: Tensor, ctx: Context) -> tuple[Tensor, Tensor, Tensor]:
        """``module.project(x, ctx)`` of a cross-attention, the memory's keys/values reused.

        The first call projects as usual and keeps the keys/values; later ones project with
        an empty memory (so whatever a topology's ``project`` does to the queries still happens,
        and no key is computed) and return the kept keys/values.
        """
        kept = self.cross_entries.get(module)
        if kept is None:
            q, k, v = module.project(x, ctx)
            self.cross_entries[module] = (k, v)
            return q, k, v
        assert ctx.memory is not None, "cross-attention needs ctx.memory"
        q, _, _ = module.project(x, dataclasses.replace(ctx, memory=ctx.memory[:, :0]))
        return q, *kept

    def advance(self, t: int) -> None:
        """Mark ``t`` more positions as cached (called once per forward, after every layer)."""
        self.length += t

    def nbytes(self) -> int:
        memory = self.memory.nbytes if self.memory is not None else 0
        kv = [*self.entries.values(), *self.cross_entries.values()]
        return memory + sum(k.nbytes + v.nbytes for k, v in kv)
