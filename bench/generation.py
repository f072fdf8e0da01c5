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
    """Tokens per second, cached vs uncached, greedy from a ``PROMPT``-token prompt, and the
    same for an encoder-decoder decoding from a ``SOURCE``-token source."""
    w = REFERENCE
    new = o.n(w.seq_len - PROMPT, 64)
    prompt = torch.randint(0, w.vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    log(f"generation: {PROMPT} + {new} tokens")
    decoder = _cached_vs_uncached(o, waiter, w.model_config(), prompt, new, "generation")
    new_s2s = o.n(SOURCE, 32)
    source = torch.randint(1, w.vocab_size, (1, SOURCE), generator=torch.Generator().manual_seed(0))
    log(f"generation (encoder-decoder): {SOURCE} source + {new_s2s} new tokens")
    seq2seq = _cached_vs_uncached(
        o, waiter, w.model_config(kind="encoder_decoder"), source, new_s2s, "seq2seq generation",
        start_token=0,
    )  # fmt: skip
    return {
        "workload": asdict(w),
        "prompt_tokens": PROMPT,
        "new_tokens": new,
        **decoder,
        "encoder_decoder": {
            "source_tokens": SOURCE,
            "new_tokens": new_s2s,
            "layers": [w.n_layers, w.n_layers],
            **seq2seq,
        },
    }


def _cached_vs_uncached(
    o: Options, waiter: IdleWaiter, cfg: Any, ids: torch.Tensor, new: int, label: str, **kw: Any
) -> dict[str, Any]:
    """``modes`` (tokens/s and times of each) and the ``speedup`` of greedy generation with the
    KV cache over recomputing, interleaved round by round; the tokens are checked equal."""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    outputs: dict[str, torch.Tensor] = {}

    def unit(use_cache: bool) -> Any:
        def run() -> None:
            key = "cached" if use_cache else "uncached"
            outputs[key] = model.generate(ids, new, temperature=0, use_cache=use_cache, **kw)

        return run

    units = {"cached": unit(True), "uncached": unit(False)}
    times = interleaved(units, rounds=o.n(3, 1), warmup=1, waiter=waiter, label=label)
    assert torch.equal(outputs["cached"], outputs["uncached"]), f"{label}: cached tokens differ"
    modes = {}
    for name, series in times.items():
        s = summarize(series)
        modes[name] = {**s, "tokens_per_s": new / s["median_s"]}
    return {"modes": modes, "speedup": ratios(times["uncached"], times["cached"])}
