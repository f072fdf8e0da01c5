"""Generation speed: tokens/s with the KV cache against recomputing the sequence every step.

At the reference config (batch 1), a short prompt continued up to ``max_seq_len``; greedy, so
both paths produce the same tokens (checked) and do the same sampling work. The same for an
encoder-decoder of the reference width with 6 + 6 layers: a source of ``SOURCE`` tokens
encoded once, ``SOURCE`` new tokens decoded (no end token, so every step runs); cached means
the decoder's self-attention keys/values and the memory's cross-attention keys/values are kept,
uncached re-runs the encoder and the whole decoder prefix every step.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from bench.contenders import REFERENCE
from bench.machine import IdleWaiter
from bench.runner import interleaved, log, ratios, summarize
from bench.speed import Options
from resnorm import build_model

PROMPT = 16  # tokens; the rest of max_seq_len is generated
SOURCE = 128  # an encoder-decoder's source tokens, and the tokens it decodes


def generation(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """Tokens per second, cached vs uncached, greedy from a ``PROMPT``-token prompt."""
    w = REFERENCE
    torch.manual_seed(0)
    model = build_model(w.model_config()).eval()
    new = o.n(w.seq_len - PROMPT, 64)
    prompt = torch.randint(0, w.vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    outputs: dict[str, torch.Tensor] = {}

    def unit(use_cache: bool) -> Any:
        def run() -> None:
            key = "cached" if use_cache else "uncached"
            outputs[key] = model.generate(prompt, new, temperature=0, use_cache=use_cache)

        return run

    units = {"cached": unit(True), "uncached": unit(False)}
    rounds = o.n(3, 1)
    log(f"generation: {PROMPT} + {new} tokens, {rounds} rounds")
    times = interleaved(units, rounds=rounds, warmup=1, waiter=waiter, label="generation")
    assert torch.equal(outputs["cached"], outputs["uncached"]), "cached tokens differ"
    rows = {}
    for name, series in times.items():
        s = summarize(series)
        rows[name] = {**s, "tokens_per_s": new / s["median_s"]}
    return {
        "workload": asdict(w),
        "prompt_tokens": PROMPT,
        "new_tokens": new,
        "modes": rows,
        "speedup": ratios(times["uncached"], times["cached"]),
        "encoder_decoder": _seq2seq(o, waiter),
    }


def _seq2seq(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """Cached vs uncached greedy decoding of an encoder-decoder (see the module docstring)."""
    w = REFERENCE
    torch.manual_seed(0)
    model = build_model(w.model_config(kind="encoder_decoder")).eval()
    new = o.n(SOURCE, 32)
    source = torch.randint(1, w.vocab_size, (1, SOURCE), generator=torch.Generator().manual_seed(0))
    outputs: dict[str, torch.Tensor] = {}

    def unit(use_cache: bool) -> Any:
        def run() -> None:
            key = "cached" if use_cache else "uncached"
            outputs[key] = model.generate(
                source, new, temperature=0, use_cache=use_cache, start_token=0
            )

        return run

    units = {"cached": unit(True), "uncached": unit(False)}
    rounds = o.n(3, 1)
    log(f"generation (encoder-decoder): {SOURCE} source + {new} new tokens, {rounds} rounds")
    times = interleaved(units, rounds=rounds, warmup=1, waiter=waiter, label="seq2seq generation")
    assert torch.equal(outputs["cached"], outputs["uncached"]), "cached tokens differ"
    rows = {}
    for name, series in times.items():
        s = summarize(series)
        rows[name] = {**s, "tokens_per_s": new / s["median_s"]}
    return {
        "source_tokens": SOURCE,
        "new_tokens": new,
        "layers": [w.n_layers, w.n_layers],
        "modes": rows,
        "speedup": ratios(times["uncached"], times["cached"]),
    }
