"""Autoregressive generation for decoders: greedy or sampled (temperature, top-k, top-p).

With the KV cache (the default) the prompt is run once and every new token costs one position:
each self-attention module appends its keys/values to a `KVCache` and attends over them. Every
topology is served, since all of them are per position outside attention (cross-layer state such
as value residual's V_1 or ResiDual's dual stream belongs to the one position being computed).
``use_cache=False`` recomputes the whole sequence each step: the reference the tests compare to.

The context is bounded: prompt + new tokens must fit in ``model.max_seq_len`` (an error, not a
sliding window, so that the positions a model sees are always those it was trained on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from resnorm.errors import ConfigError
from resnorm.nn.cache import KVCache

if TYPE_CHECKING:
    from resnorm.nn.model import Transformer


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """ConfigError unless the sampling settings are usable."""
    if not temperature >= 0:
        raise ConfigError("temperature", f"must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError("top_k", f"must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError("top_p", f"must be in (0, 1], got {top_p}")


def next_token(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One token per row (B, 1) from ``logits`` (B, V): argmax when ``temperature`` is 0."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p is not None and top_p < 1:
        # Nucleus (Holtzman et al. 2020): the smallest set of top tokens whose mass reaches p.
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs >= top_p  # the top token always stays
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(outside, -torch.inf))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    model: Transformer,
    ids: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    *,
    use_cache: bool = True,
) -> Tensor:
    """``ids`` (B, T) followed by ``max_new_tokens`` tokens of a decoder, in eval mode.

    Raises:
        ConfigError: for a model that is not a decoder, an empty prompt, bad sampling settings,
            or prompt + ``max_new_tokens`` beyond ``model.max_seq_len``.
    """
    cfg = model.cfg
    if cfg.kind != "decoder":
        raise ConfigError("model.kind", f"generation needs a decoder, this model is {cfg.kind!r}")
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ConfigError(
            "ids", f"expected a (batch, tokens) prompt of >= 1 token, got {tuple(ids.shape)}"
        )
    if max_new_tokens < 0:
        raise ConfigError("max_new_tokens", f"must be >= 0, got {max_new_tokens}")
    check_sampling(temperature, top_k, top_p)
    total = ids.shape[1] + max_new_tokens
    if total > cfg.max_seq_len:
        raise ConfigError(
            "max_new_tokens",
            f"prompt ({ids.shape[1]}) + {max_new_tokens} new tokens = {total} exceeds "
            f"model.max_seq_len = {cfg.max_seq_len}",
        )
    was_training = model.training
    model.eval()
    try:
        cache = KVCache(total) if use_cache else None
        out = ids
        logits = model(ids, cache=cache)[:, -1]
        for step in range(max_new_tokens):
            token = next_token(logits, temperature, top_k, top_p, generator)
            out = torch.cat([out, token], dim=1)
            if step + 1 < max_new_tokens:
                step_ids = token if cache is not None else out
                logits = model(step_ids, cache=cache)[:, -1]
        return out
    finally:
        model.train(was_training)
