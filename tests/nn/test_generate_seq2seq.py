"""Encoder-decoder generation: the source encoded once, the decoder cached, rows ending at an end
token; the same tokens and logits as recomputing everything each step."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.modeltools import noisy, tiny, tokens

from resnorm import TOPOLOGIES, ConfigError
from resnorm.nn.cache import KVCache
from resnorm.nn.generate import generate_seq2seq

START, END, PAD = 1, 2, 0


def _model(topology: str = "pre_ln", **kw: Any) -> Any:
    return noisy(tiny(topology, kind="encoder_decoder", **kw)).double()


def _source(cfg: Any, batch: int = 3, seq: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Source tokens with padding: row 1 has 4 real tokens, row 2 has 1, the others 7."""
    ids = tokens(cfg, batch=batch, seq=seq)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[2, 1:] = 0
    return ids.masked_fill(mask == 0, PAD), mask


@pytest.mark.parametrize("topology", TOPOLOGIES.names())
def test_cached_decoding_gives_the_uncached_tokens_for_every_topology(topology: str) -> None:
    model = _model(topology)
    src, mask = _source(model.cfg)
    kw: dict[str, Any] = dict(attention_mask=mask, start_token=START)
    greedy = model.generate(src, 12, temperature=0, **kw)
    assert greedy.shape == (3, 13) and (greedy[:, 0] == START).all()
    assert torch.equal(greedy, model.generate(src, 12, temperature=0, use_cache=False, **kw))
    sampled = [
        model.generate(
            src, 12, temperature=1.0, top_k=20, top_p=0.9,
            generator=torch.Generator().manual_seed(3), use_cache=use_cache, **kw,
        )
        for use_cache in (True, False)
    ]  # fmt: skip
    assert torch.equal(sampled[0], sampled[1])
    assert not torch.equal(sampled[0], greedy)  # sampling did draw


@pytest.mark.parametrize("topology", TOPOLOGIES.names())
def test_cached_step_logits_equal_the_full_forward(topology: str) -> None:
    """Prefill, a block of 2, then single steps: each equals the uncached forward's positions;
    the encoder runs once (its output is kept in the cache)."""
    model = noisy(tiny(topology, kind="encoder_decoder", positional="rope"))
    src, mask = _source(model.cfg)
    dec = tokens(model.cfg, batch=3, seq=10, seed=2)
    cache = KVCache(10)
    calls: list[int] = []
    hook = model.encoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        first = model(src, mask, dec[:, :6], cache=cache)
        block = model(src, mask, dec[:, 6:8], cache=cache)
        steps = [model(src, mask, dec[:, t : t + 1], cache=cache)[:, -1] for t in (8, 9)]
        assert len(calls) == 1
        full = model(src, mask, dec)
    hook.remove()
    torch.testing.assert_close(first, full[:, :6], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(block, full[:, 6:8], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(steps[0], full[:, 8], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(steps[1], full[:, 9], rtol=1e-4, atol=1e-5)
    assert cache.length == 10 and cache.memory is not None


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_a_padded_source_decodes_as_the_same_source_alone(positional: str) -> None:
    """Padding is masked: each padded row gives the tokens (and logits) of its real tokens
    decoded alone, without a mask; unmasked, the padding would change them."""
    model = _model("pre_ln", positional=positional)
    src, mask = _source(model.cfg)
    batch = model.generate(src, 10, temperature=0, attention_mask=mask, start_token=START)
    for row in range(3):
        alone = src[row : row + 1, : int(mask[row].sum())]
        out = model.generate(alone, 10, temperature=0, start_token=START)
        assert torch.equal(out[0], batch[row])
        with torch.no_grad():
            a = model(alone, decoder_input_ids=batch[row : row + 1])
            b = model(src, mask, batch)[row : row + 1]
            unmasked = model(src, decoder_input_ids=batch)[row : row + 1]
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
        if row:  # rows 1 and 2 are padded: reading the padding changes their logits
            assert (unmasked - b).abs().max() > 1e-3


def test_each_row_stops_at_its_end_token_and_then_gets_padding() -> None:
    model = _model("pre_ln", vocab_size=6)  # few tokens: every row meets the end token early
    src, mask = _source(model.cfg, batch=6, seq=7)
    mask[3:] = 1
    free = model.generate(src, 20, temperature=0, attention_mask=mask, start_token=START)
    end = int(free[0, 3])  # row 0 emits it at step 3 (or before)
    out = model.generate(
        src, 20, temperature=0, attention_mask=mask, start_token=START, end_token=end, pad_token=PAD
    )
    stops = []
    for row in range(6):
        hits = (free[row, 1:] == end).nonzero()
        stop = int(hits[0]) + 1 if len(hits) else 20  # position of its end token in `out`
        stops.append(stop)
        assert torch.equal(out[row, : stop + 1], free[row, : stop + 1])
        assert (out[row, stop + 1 :] == PAD).all()
    assert stops[0] <= 3
    assert out.shape[1] == max(stops) + 1  # decoding stopped once every row had ended
    uncached = model.generate(
        src, 20, temperature=0, attention_mask=mask, start_token=START, end_token=end,
        use_cache=False,
    )  # fmt: skip
    assert torch.equal(out, uncached)


def test_decoding_stops_once_every_row_ended_and_zero_steps_give_the_start() -> None:
    model = _model()
    src = tokens(model.cfg, batch=1, seq=7).repeat(3, 1)  # three rows that end together
    free = model.generate(src, 15, temperature=0, start_token=START)
    end = int(free[0, 3])
    assert end not in free[0, 1:3].tolist()  # the first end token is at position 3
    out = model.generate(src, 15, temperature=0, start_token=START, end_token=end)
    assert torch.equal(out, free[:, :4])
    assert model.generate(src, 0, start_token=START).tolist() == [[START]] * 3


def test_bad_arguments_are_config_errors() -> None:
    model = _model()  # max_seq_len 32
    src, mask = _source(model.cfg)
    decoder = noisy(tiny())
    cases: list[tuple[Any, dict[str, Any], str]] = [
        (model, dict(), "start_token"),
        (model, dict(start_token=999), r"start_token.*\[0, 37\)"),
        (model, dict(start_token=START, end_token=-1), "end_token"),
        (model, dict(start_token=START, attention_mask=mask[:, :3]), "attention_mask"),
        (model, dict(start_token=START, attention_mask=torch.zeros_like(mask)), "no real token"),
        (model, dict(start_token=START, temperature=-1.0), "temperature"),
        (decoder, dict(start_token=START), "encoder_decoder argument"),
        (decoder, dict(attention_mask=mask), "encoder_decoder argument"),
    ]
    for m, kw, match in cases:
        with pytest.raises(ConfigError, match=match):
            m.generate(src, 3, **kw)
    with pytest.raises(ConfigError, match="max_seq_len = 32"):
        model.generate(src, 33, start_token=START)
    assert model.generate(src, 32, temperature=0, start_token=START).shape == (3, 33)
    with pytest.raises(ConfigError, match="needs an encoder_decoder"):
        generate_seq2seq(decoder, src, 3, start_token=START)
    encoder = noisy(tiny(kind="encoder"))
    with pytest.raises(ConfigError, match="an encoder fills in masked tokens"):
        encoder.generate(src, 3)
    with pytest.raises(ConfigError, match="encoder model has none"):
        encoder(src, cache=KVCache(4))


@pytest.mark.parametrize("topology", ["pre_ln", "hybrid_norm", "ngpt"])
def test_cross_attention_projects_the_memory_once_per_generation(topology: str) -> None:
    """The cache keeps each cross-attention's keys/values: k_proj reads the memory (S rows)
    on the first step only, then no memory row at all; q_proj reads one position per step.
    (hybrid_norm and ngpt have their own ``project``: normed or scaled q/k.)"""
    model = _model(topology)
    src, mask = _source(model.cfg)
    cross = model.decoder.layers[0].cross
    rows: dict[str, list[int]] = {"k": [], "q": []}
    hooks = [
        cross.k_proj.register_forward_hook(lambda m, a, o: rows["k"].append(a[0].shape[1])),
        cross.q_proj.register_forward_hook(lambda m, a, o: rows["q"].append(a[0].shape[1])),
    ]
    out = model.generate(src, 6, temperature=0, attention_mask=mask, start_token=START)
    for h in hooks:
        h.remove()
    assert rows == {"k": [7, 0, 0, 0, 0, 0], "q": [1] * 6}
    assert torch.equal(
        out,
        model.generate(
            src, 6, temperature=0, attention_mask=mask, start_token=START, use_cache=False
        ),
    )
