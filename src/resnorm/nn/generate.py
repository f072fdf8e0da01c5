"""Autoregressive generation: greedy or sampled (temperature, top-k, top-p).

`generate` continues a decoder's prompt. `generate_seq2seq` decodes an encoder-decoder: the
source is encoded once (padding masked by its ``attention_mask``), then the decoder runs from a
start token, one position per step, and each row stops at an end token (later steps give it
padding) or after ``max_new_tokens``. `Transformer.generate` calls the one that fits the model.

With the KV cache (the default) every new token costs one position: each self-attention module
appends its keys/values to a `KVCache` and attends over them; an encoder-decoder's cache also
keeps the encoder output, so the source is encoded once. Every topology is served, since all of
them are per position outside attention (cross-layer state such as value residual's V_1 or
ResiDual's dual stream belongs to the one position being computed). ``use_cache=False``
recomputes the whole sequence (and re-encodes the source) each step: the reference the tests
compare to.

The context is bounded: a decoder's prompt + new tokens, an encoder-decoder's decoder
positions (the start token and the tokens fed back, ``max_new_tokens``) must fit in
``model.max_seq_len`` (an error, not a sliding window, so that the positions a model sees are
always those it was trained on).
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
        raise ConfigError(
            "model.kind",
            f"generate continues a decoder's prompt, this model is {cfg.kind!r} (an "
            f"encoder_decoder decodes with generate_seq2seq; an encoder fills in masked tokens)",
        )
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


def _check_token(name: str, value: int, vocab_size: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size:
        raise ConfigError(name, f"got {value!r}, expected a token id in [0, {vocab_size})")


@torch.no_grad()
def generate_seq2seq(
    model: Transformer,
    input_ids: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    *,
    attention_mask: Tensor | None = None,
    start_token: int,
    end_token: int | None = None,
    pad_token: int = 0,
    use_cache: bool = True,
) -> Tensor:
    """An encoder-decoder's output for the source ``input_ids`` (B, S), in eval mode.

    The encoder reads ``input_ids`` once (``attention_mask`` (B, S): 1 real, 0 padding); the
    decoder starts from ``start_token`` and feeds each chosen token back (`next_token`:
    greedy when ``temperature`` is 0). A row that emits ``end_token`` is done: from then on it
    gets ``pad_token``; decoding stops when every row is done or after ``max_new_tokens``.

    Returns:
        (B, 1 + n) tokens: the start token, then the n <= ``max_new_tokens`` decoded ones (n <
        ``max_new_tokens`` only when every row ended). A row's output is its tokens up to and
        including its first ``end_token``.

    Raises:
        ConfigError: for a model that is not an encoder-decoder, an empty source or a source
            row without a real token, a mask of another shape, bad sampling settings or token
            ids, or ``max_new_tokens`` decoder positions beyond ``model.max_seq_len``.
    """
    cfg = model.cfg
    if cfg.kind != "encoder_decoder":
        raise ConfigError(
            "model.kind", f"generate_seq2seq needs an encoder_decoder model, this is {cfg.kind!r}"
        )
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ConfigError(
            "input_ids",
            f"expected a (batch, tokens) source of >= 1 token, got {tuple(input_ids.shape)}",
        )
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ConfigError(
                "attention_mask",
                f"shape {tuple(attention_mask.shape)} is not the source's {tuple(input_ids.shape)}",
            )
        if not attention_mask.bool().any(dim=1).all():
            raise ConfigError("attention_mask", "a source row has no real token to encode")
    if max_new_tokens < 0:
        raise ConfigError("max_new_tokens", f"must be >= 0, got {max_new_tokens}")
    check_sampling(temperature, top_k, top_p)
    for name, value in (("start_token", start_token), ("pad_token", pad_token)):
        _check_token(name, value, cfg.vocab_size)
    if end_token is not None:
        _check_token("end_token", end_token, cfg.vocab_size)
    if max_new_tokens > cfg.max_seq_len:
        raise ConfigError(
            "max_new_tokens",
            f"{max_new_tokens} new tokens need {max_new_tokens} decoder positions (the start "
            f"token and the tokens fed back), beyond model.max_seq_len = {cfg.max_seq_len}",
        )
    B = input_ids.shape[0]
    was_training = model.training
    model.eval()
    try:
        cache = KVCache(max(max_new_tokens, 1)) if use_cache else None
        out = torch.full((B, 1), start_token, dtype=torch.long, device=input_ids.device)
        done = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            step_ids = out[:, -1:] if cache is not None else out
            logits = model(input_ids, attention_mask, step_ids, cache=cache)[:, -1]
            token = next_token(logits, temperature, top_k, top_p, generator)
            token = token.masked_fill(done[:, None], pad_token)
            out = torch.cat([out, token], dim=1)
            if end_token is not None:
                done |= token[:, 0] == end_token
                if bool(done.all()):
                    break
        return out
    finally:
        model.train(was_training)
