"""Generation with the KV cache: the same tokens and logits as recomputing the whole sequence."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.modeltools import noisy, tiny, tokens

from resnorm import TOPOLOGIES, ConfigError
from resnorm.nn.cache import KVCache
from resnorm.nn.generate import next_token

# Variants of the attention path the cache must follow: positions, GQA, windows, the eager path.
VARIANTS: dict[str, dict[str, Any]] = {
    "rope": dict(positional="rope"),
    "gqa_qknorm": dict(n_kv_heads=2, qk_norm="head", positional="rope"),
    "sliding": dict(sliding_window=4, sliding_window_pattern=2),
    "eager": dict(attention="eager", attn_softcap=30.0),
}


def _model(topology: str, **kw: Any) -> Any:
    return noisy(tiny(topology, **kw)).double()


@pytest.mark.parametrize("topology", TOPOLOGIES.names())
def test_cached_generation_gives_the_uncached_tokens_for_every_topology(topology: str) -> None:
    model = _model(topology)
    ids = tokens(model.cfg, batch=2, seq=5)
    greedy = model.generate(ids, 12, temperature=0)
    assert torch.equal(greedy, model.generate(ids, 12, temperature=0, use_cache=False))
    sampled = [
        model.generate(
            ids, 12, temperature=1.0, top_k=20, top_p=0.9,
            generator=torch.Generator().manual_seed(3), use_cache=use_cache,
        )
        for use_cache in (True, False)
    ]  # fmt: skip
    assert torch.equal(sampled[0], sampled[1])
    assert torch.equal(greedy[:, :5], ids)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cached_generation_gives_the_uncached_tokens_for_each_attention_variant(
    variant: str,
) -> None:
    model = _model("pre_ln", **VARIANTS[variant])
    ids = tokens(model.cfg, batch=2, seq=3)
    cached = model.generate(ids, 20, temperature=0)
    assert torch.equal(cached, model.generate(ids, 20, temperature=0, use_cache=False))


@pytest.mark.parametrize("topology", TOPOLOGIES.names())
def test_cached_step_logits_equal_the_full_forward_last_position(topology: str) -> None:
    model = noisy(tiny(topology, positional="rope"))
    ids = tokens(model.cfg, batch=2, seq=10)
    cache = KVCache(10)
    with torch.no_grad():
        model(ids[:, :6], cache=cache)  # prefill
        model(ids[:, 6:8], cache=cache)  # a block of 2 positions after the cached ones
        steps = [model(ids[:, t : t + 1], cache=cache)[:, -1] for t in (8, 9)]
        full = model(ids)
    torch.testing.assert_close(steps[0], full[:, 8], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(steps[1], full[:, 9], rtol=1e-4, atol=1e-5)
    assert cache.length == 10


def test_generation_past_max_seq_len_is_an_error_naming_the_limit() -> None:
    model = noisy(tiny())  # max_seq_len 32
    with pytest.raises(ConfigError, match="max_seq_len = 32"):
        model.generate(tokens(model.cfg, seq=30), 3)
    assert model.generate(tokens(model.cfg, seq=30), 2, temperature=0).shape == (2, 32)


def test_generation_refuses_a_non_decoder_and_bad_settings() -> None:
    encoder = noisy(tiny(kind="encoder"))
    with pytest.raises(ConfigError, match=r"model\.kind"):
        encoder.generate(tokens(encoder.cfg), 2)
    model = noisy(tiny())
    for bad in (dict(temperature=-1.0), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(ConfigError):
            model.generate(tokens(model.cfg), 2, **bad)


def test_top_k_and_top_p_keep_only_the_allowed_tokens() -> None:
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(500, 1)
    g = torch.Generator().manual_seed(0)
    assert set(next_token(logits, top_k=2, generator=g).unique().tolist()) == {0, 1}
    # softmax mass: 0.64, 0.24, 0.09, ...: top_p 0.8 keeps the first two.
    assert set(next_token(logits, top_p=0.8, generator=g).unique().tolist()) == {0, 1}
    assert next_token(logits, temperature=0).unique().tolist() == [0]
