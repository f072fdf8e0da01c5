"""Training objectives: what a model of each kind learns to predict from the same data.

=================  ===============  ==========================================================
objective          model kind       batch
=================  ===============  ==========================================================
``causal_lm``      decoder          next token of a text window or of a task's answer
``mlm``            encoder          BERT's masked LM on text windows (`mask_tokens`)
``seq2seq``        encoder_decoder  a pair task's prompt -> answer, teacher-forced
``span_corruption``encoder_decoder  T5's span corruption of text windows (`corrupt_spans`)
=================  ===============  ==========================================================

``data.objective = "auto"`` (the default) picks by the model kind and the source: a decoder's
is ``causal_lm``, an encoder's ``mlm``, an encoder-decoder's ``seq2seq`` on a pair task and
``span_corruption`` on text. Setting it explicitly is checked against both.

Extra vocabulary: text is bytes (0-255); ``mlm`` adds a [MASK] token (256), ``span_corruption``
a decoder start token (256) and its sentinels (257 on), so those runs need a larger
``model.vocab_size`` (`vocab_size` says how large).
"""

from __future__ import annotations

import itertools

import torch

from resnorm.data.synthetic import IGNORE_INDEX
from resnorm.errors import ConfigError, choice_error

OBJECTIVES = ("auto", "causal_lm", "mlm", "seq2seq", "span_corruption")
KIND_OBJECTIVES = {
    "decoder": ("causal_lm",),
    "encoder": ("mlm",),
    "encoder_decoder": ("seq2seq", "span_corruption"),
}
#: Objectives on byte-level text; the others (seq2seq) need a pair task, causal_lm takes either.
TEXT_OBJECTIVES = ("mlm", "span_corruption")
PAIR_TASKS = ("copy", "reverse", "sorting", "translate", "addition")

BYTES = 256
MASK = 256  # mlm's [MASK]
DECODER_START = 256  # span_corruption's first decoder input
FIRST_SENTINEL = 257

#: BERT (Devlin et al. 2019, Sec. 3.1, "Task #1: Masked LM"): 15% of the positions are chosen;
#: of those, 80% become [MASK], 10% a random token, 10% stay unchanged.
MLM_PROBABILITY, MLM_MASK_SHARE, MLM_RANDOM_SHARE = 0.15, 0.8, 0.1
#: T5 (Raffel et al. 2020, Sec. 3.1.4 and 3.3.4): 15% noise in spans of mean length 3.
NOISE_DENSITY, MEAN_SPAN_LENGTH = 0.15, 3.0


def resolve(objective: str, kind: str, source: str) -> str:
    """The concrete objective of a ``kind`` model on ``source`` (``auto`` resolved).

    Raises:
        ConfigError: naming data.source, when no objective of ``kind`` trains on ``source``
            (an encoder on a synthetic task, an encoder-decoder on a task without pairs), so
            the message says what to change rather than blaming an objective nobody set.
    """
    if objective != "auto":
        return objective
    from resnorm.data.loader import TEXT_SOURCES

    text = ", ".join(TEXT_SOURCES)
    if kind == "encoder_decoder":
        if source in PAIR_TASKS:
            return "seq2seq"
        if source in TEXT_SOURCES:
            return "span_corruption"
        raise ConfigError(
            "data.source",
            f"an encoder_decoder model trains on (prompt, answer) pairs (data.objective "
            f"'seq2seq': {', '.join(PAIR_TASKS)}) or on text (data.objective 'span_corruption': "
            f"{text}); {source!r} is neither: use one of those",
        )
    if kind == "encoder" and source not in TEXT_SOURCES:
        raise ConfigError(
            "data.source",
            f"an encoder model trains with masked LM (data.objective 'mlm') on byte-level text; "
            f"{source!r} is a synthetic task: use data.source = one of {text} (a synthetic task "
            f"trains a decoder or an encoder_decoder)",
        )
    return KIND_OBJECTIVES[kind][0]


def check(objective: str, source: str, kind: str | None = None) -> None:
    """ConfigError unless ``objective`` fits the data ``source`` (and the model ``kind``)."""
    if objective not in OBJECTIVES:
        raise choice_error("data.objective", objective, OBJECTIVES)
    if objective == "auto":
        return
    from resnorm.data.loader import TEXT_SOURCES

    if objective in TEXT_OBJECTIVES and source not in TEXT_SOURCES:
        raise ConfigError(
            "data.objective",
            f"{objective!r} corrupts byte-level text; data.source {source!r} is a synthetic "
            f"task (use one of {', '.join(TEXT_SOURCES)})",
        )
    if objective == "seq2seq" and source not in PAIR_TASKS:
        raise ConfigError(
            "data.source",
            f"'seq2seq' needs (prompt, answer) pairs, which {source!r} does not have; use one "
            f"of {', '.join(PAIR_TASKS)}, or the 'span_corruption' objective on text",
        )
    if kind is not None and objective not in KIND_OBJECTIVES[kind]:
        fits = ", ".join(KIND_OBJECTIVES[kind])
        raise ConfigError(
            "data.objective",
            f"{objective!r} does not train a {kind!r} model; it takes: {fits} (or 'auto')",
        )


def span_counts(length: int) -> tuple[int, int]:
    """(noise tokens, noise spans) of a window of ``length`` tokens, as T5 computes them."""
    noise = min(max(round(length * NOISE_DENSITY), 1), length - 1)
    spans = max(round(noise / MEAN_SPAN_LENGTH), 1)
    return noise, spans


def vocab_size(objective: str, seq_len: int) -> int:
    """Tokens a text run with ``objective`` needs: the bytes plus the objective's own."""
    if objective == "mlm":
        return BYTES + 1
    if objective == "span_corruption":
        return FIRST_SENTINEL + span_counts(seq_len)[1] + 1  # a sentinel per span + the last
    return BYTES


def mask_tokens(
    ids: torch.Tensor,
    generator: torch.Generator,
    attention_mask: torch.Tensor | None = None,
    n_tokens: int = BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of (B, T) ``ids``: (corrupted inputs, labels).

    Each real position (``attention_mask`` 1; every position without one) is chosen with
    probability 0.15; a chosen one becomes [MASK] with probability 0.8, a random token of the
    ``n_tokens`` data tokens with 0.1, and stays with 0.1. Labels hold the original token at
    the chosen positions and `IGNORE_INDEX` elsewhere (padding is never chosen). Dynamic
    masking (a fresh draw per batch, as RoBERTa), deterministic per ``generator``.
    """
    u = torch.rand(ids.shape, generator=generator)
    chosen = u < MLM_PROBABILITY
    if attention_mask is not None:
        chosen &= attention_mask.bool()
    how = torch.rand(ids.shape, generator=generator)
    random = torch.randint(0, n_tokens, ids.shape, generator=generator)
    inputs = torch.where(chosen & (how < MLM_MASK_SHARE), MASK, ids)
    swap = chosen & (how >= MLM_MASK_SHARE) & (how < MLM_MASK_SHARE + MLM_RANDOM_SHARE)
    inputs = torch.where(swap, random, inputs)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs, labels


def _segments(total: int, n: int, generator: torch.Generator) -> list[int]:
    """``total`` split into ``n`` positive parts at uniformly random cut points."""
    cuts = (torch.randperm(total - 1, generator=generator)[: n - 1] + 1).sort().values.tolist()
    bounds = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(bounds)]


def corrupt_spans(
    ids: torch.Tensor, generator: torch.Generator
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """T5's span corruption of (B, T) ``ids``: (model inputs, labels).

    Per row, `span_counts` noise tokens in that many spans (lengths and places drawn as T5's
    ``random_spans_noise_mask``: the noise and the kept tokens each cut at random points, the
    row starting with kept tokens) are each replaced by one sentinel in the encoder input. The
    decoder predicts ``S0 span0 S1 span1 ... Sk``: every span after its sentinel, then a last
    sentinel; it reads the same shifted right after the decoder start token. Every row has the
    same lengths, so nothing is padded.
    """
    B, T = ids.shape
    if T < 2:
        raise ValueError(f"span corruption needs windows of at least 2 tokens, got {T}")
    noise, spans = span_counts(T)
    keep_len, target_len = T - noise + spans, noise + spans + 1
    inputs = torch.empty(B, keep_len, dtype=torch.long)
    labels = torch.empty(B, target_len, dtype=torch.long)
    for b in range(B):
        noise_parts = _segments(noise, spans, generator)
        kept_parts = _segments(T - noise, spans, generator)
        row, src, tgt, at = ids[b].tolist(), list[int](), list[int](), 0
        for i, (k, n) in enumerate(zip(kept_parts, noise_parts, strict=True)):
            src += [*row[at : at + k], FIRST_SENTINEL + i]
            tgt += [FIRST_SENTINEL + i, *row[at + k : at + k + n]]
            at += k + n
        inputs[b], labels[b] = torch.tensor(src), torch.tensor([*tgt, FIRST_SENTINEL + spans])
    start = torch.full((B, 1), DECODER_START, dtype=torch.long)
    decoder_inputs = torch.cat([start, labels[:, :-1]], dim=1)
    return {"input_ids": inputs, "decoder_input_ids": decoder_inputs}, labels


def describe(objective: str, seq_len: int) -> dict[str, float | int | str]:
    """What a run records about its objective (JSON-ready)."""
    out: dict[str, float | int | str] = {"objective": objective}
    if objective == "mlm":
        out.update(
            mask_probability=MLM_PROBABILITY,
            mask_share=MLM_MASK_SHARE,
            random_share=MLM_RANDOM_SHARE,
            mask_token=MASK,
        )
    elif objective == "span_corruption":
        noise, spans = span_counts(seq_len)
        out.update(
            noise_density=NOISE_DENSITY,
            mean_span_length=MEAN_SPAN_LENGTH,
            noise_tokens=noise,
            spans=spans,
            decoder_start=DECODER_START,
            first_sentinel=FIRST_SENTINEL,
        )
    return out
