"""Studies on the other model kinds: ``depth-seq2seq`` (encoder-decoders) and ``warmup-mlm``
(masked-LM encoders).

The papers behind the trainability findings trained these kinds, not decoders: Admin and
DeepNet deep encoder-decoder translation models, Xiong et al. translation models and BERT. The
protocol is that of the decoder studies (`resnorm.studies.training`: the papers' Transformer
init, the same optimizer, steps and learning rates), on the kind and objective of the paper:

* ``depth-seq2seq``: an encoder-decoder on the synthetic ``translate`` task (a fixed random
  lexicon plus local reordering; `resnorm.data.TranslateParams`), N encoder and N decoder layers,
  teacher-forced cross-entropy on the target tokens; DeepNorm with its encoder-decoder
  constants (DeepNet Table 1), Admin with omega per stack (2N encoder and 3N decoder residual
  sublayers).
* ``warmup-mlm``: a BERT-style encoder trained with masked LM (15% of positions; 80% [MASK],
  10% random, 10% kept) on the built-in corpus.

Losses are final validation losses (a diverged run counts at the uniform loss). A run fails
when it diverged or ended stuck within 0.25 nats of the unigram loss of its targets.
"""

from __future__ import annotations

from typing import Any

from resnorm.lab.spec import Part, StudySpec, grid
from resnorm.studies.common import (
    SHARED_DEPARTURES,
    check_scale,
    model,
    seeds,
    study,
    train_base,
    where,
)
from resnorm.studies.training import FAILS, warmup_arms

SEQ2SEQ_TOPOLOGIES = ["post_ln", "pre_ln", "deepnorm", "admin"]

#: Where the encoder-decoder and encoder studies depart from their papers besides CPU scale.
#: (The first of `SHARED_DEPARTURES` is about decoder-only text and does not apply.)
KIND_DEPARTURES = SHARED_DEPARTURES[1:]

ADMIN_T1 = (
    "Admin Table 1 (WMT14 En-De, BLEU: Post-LN trains at 6L-6L and diverges at 18L-18L; "
    "Admin trains at both and scores above Pre-LN at both)"
)
DEEPNET_T1 = (
    "DeepNet Sec. 5.1 and its WMT-17 En-De depth table (BLEU: Post-LN diverges from "
    "18L-18L on; DeepNorm trains from 6L-6L to 100L-100L, at or above Pre-LN at every depth)"
)


def seq2seq_base(scale: str, steps: int) -> dict[str, Any]:
    """An encoder-decoder run on the ``translate`` task at ``scale``: `train_base`'s optimizer
    and schedule, the studies' default model as an encoder-decoder."""
    quick = scale == "quick"
    base = train_base(scale, steps)
    vocab = 32 if quick else 256
    base["model"] = model(scale, kind="encoder_decoder", vocab_size=vocab)  # the task's own
    base["data"] = {
        "source": "translate",
        "seq_len": 32 if quick else 64,
        "batch_size": 16 if quick else 32,
        "params": {"vocab_size": vocab, "length": 12 if quick else 24, "window": 3},
    }
    return base


def mlm_base(scale: str, steps: int) -> dict[str, Any]:
    """A masked-LM encoder run on the built-in corpus at ``scale``: `train_base` with an
    encoder of the byte vocabulary plus [MASK]."""
    base = train_base(scale, steps)
    base["model"] = model(scale, kind="encoder", vocab_size=257)
    base["data"] = {**base["data"], "objective": "mlm"}
    return base


def depth_seq2seq(scale: str = "quick") -> StudySpec:
    """Wang et al. 2022 (DeepNet); Liu et al. 2020 (Admin): deep Post-LN encoder-decoders fail
    or lag; DeepNorm and Admin train and match or beat Pre-LN."""
    check_scale(scale)
    quick = scale == "quick"
    steps = 300 if quick else 4000
    deep = 24 if quick else 50  # DeepNet reports 18L-18L to 100L-100L; Admin 18L-18L
    depths = [6, deep] if quick else [6, 18, deep]
    tops = SEQ2SEQ_TOPOLOGIES
    cell = where(model__n_layers=deep)
    q: dict[str, dict[str, Any]] = {
        f"{s}_{t}": {"of": s, "where": {**cell, "model.topology": t}}
        for t in tops
        for s in ("final_loss", "fails")
    }
    q["fails_post_ln_6"] = {
        "of": "fails",
        "where": where(model__n_layers=6, model__topology="post_ln"),
    }
    q["gap"] = {"expr": "final_loss_post_ln - final_loss_deepnorm"}
    q["post_lag"] = {"expr": "final_loss_post_ln - final_loss_pre_ln"}
    q["deepnorm_vs_pre"] = {"expr": "final_loss_pre_ln - final_loss_deepnorm"}
    q["admin_vs_pre"] = {"expr": "final_loss_pre_ln - final_loss_admin"}
    stacks = f"{deep}L-{deep}L"
    checks: list[dict[str, Any]] = [
        {
            "expr": "fails_post_ln > 0.5 or post_lag > 0",
            "per_seed": True,
            "effect": "post_lag",
            "unit": "nats",
            "label": f"post_ln, {stacks}: fails (diverges, or ends stuck), or ends behind pre_ln; "
            "effect: loss(post_ln) - loss(pre_ln)",
            "paper": {"reports": "deep Post-LN encoder-decoders diverge", "where": DEEPNET_T1},
        },
        {
            "expr": "fails_deepnorm < 0.5",
            "per_seed": True,
            "effect": "gap",
            "unit": "nats",
            "label": f"deepnorm, {stacks}: trains (neither diverged nor stuck); effect: "
            "loss(post_ln) - loss(deepnorm)",
            "paper": {"reports": "DeepNorm trains where Post-LN diverges", "where": DEEPNET_T1},
        },
        {
            "expr": "fails_admin < 0.5",
            "per_seed": True,
            "label": f"admin, {stacks}: trains",
            "paper": {"reports": "Admin trains where Post-LN diverges", "where": ADMIN_T1},
        },
        {
            "expr": "deepnorm_vs_pre >= 0",
            "per_seed": True,
            "effect": "deepnorm_vs_pre",
            "unit": "nats",
            "label": f"{stacks}: deepnorm ends at or below pre_ln's loss; effect: "
            "loss(pre_ln) - loss(deepnorm)",
            "paper": {"reports": "DeepNorm matches or beats Pre-LN", "where": DEEPNET_T1},
        },
        {
            "expr": "admin_vs_pre >= 0",
            "per_seed": True,
            "effect": "admin_vs_pre",
            "unit": "nats",
            "label": f"{stacks}: admin ends at or below pre_ln's loss; effect: "
            "loss(pre_ln) - loss(admin)",
            "paper": {"reports": "Admin scores above Pre-LN", "where": ADMIN_T1},
        },
        {
            "expr": "fails_post_ln_6 < 0.5",
            "per_seed": True,
            "label": "post_ln, 6L-6L: trains (the failure is one of depth)",
            "paper": {"reports": "6L-6L Post-LN trains", "where": ADMIN_T1},
        },
    ]
    return study(
        name="depth-seq2seq",
        title="Deep encoder-decoders: which topologies train",
        claim="Deep Post-LN encoder-decoders fail to train or lag; DeepNorm and Admin train at "
        "the same depth and match or beat Pre-LN.",
        source="Wang et al. 2022 DeepNet (arXiv:2203.00555); Liu et al. 2020 Admin "
        "(arXiv:2004.08249)",
        parts=(
            Part(
                name="depth",
                run="train",
                base=seq2seq_base(scale, steps),
                axes=(grid(model__topology=tops, model__n_layers=depths),),
                seeds=seeds(scale),
            ),
        ),
        scalars={
            **FAILS,
            "exact_match": {"metric": "val_exact_match", "reduce": "last"},
        },
        quantities=q,
        checks=tuple(checks),
        figures=(
            {
                "type": "bars",
                "value": "final_loss",
                "x": "model.n_layers",
                "series": "model.topology",
                "title": "Final validation loss (nats per target token), no warmup",
                "hline": "unigram_loss",
                "caption": "Dashed: the loss of a model that ignores the source (the answer "
                "tokens' entropy). A bar on or above it learned nothing (stuck); a diverged run "
                "counts at the uniform loss.",
            },
            {
                "type": "curves",
                "metric": "loss",
                "where": cell,
                "series": "model.topology",
                "title": f"Training loss at {stacks}",
                "hline": "unigram_loss",
                "caption": "Deep Post-LN should stall at the dashed line or diverge; DeepNorm "
                "and Admin should train like (or better than) Pre-LN.",
            },
            {
                "type": "curves",
                "metric": "val_accuracy",
                "where": cell,
                "series": "model.topology",
                "title": f"Validation token accuracy (teacher-forced) at {stacks}",
                "caption": "The share of target tokens predicted; whole-answer exact match (equal "
                "to greedy decoding's) is logged as val_exact_match.",
            },
        ),
        notes=f"{steps} steps, no warmup, lr 1e-3, cosine decay, AdamW(0.9, 0.98), grad "
        "clip 1; N encoder and N decoder layers. A diverged run is scored at the uniform loss.",
        protocol={
            "mirrors": "DeepNet and Admin train Post-LN, Pre-LN, DeepNorm and Admin "
            "encoder-decoder translation models of growing depth (6L-6L to 100L-100L; Xavier "
            "init, sqrt(d) embeddings, shared embeddings, Adam with warmup) and report that "
            "Post-LN diverges from 18L-18L on while DeepNorm and Admin train and score at or "
            "above Pre-LN.",
            "init": "Xavier-uniform, embeddings N(0, 1/d) x sqrt(d), shared by encoder, "
            "decoder and output, for all; DeepNorm's encoder-decoder alpha and beta and "
            "Admin's omega (closed form, per stack) on top",
            "depth": f"{' and '.join(str(d) for d in depths)} layers in each stack",
            "task": "translate: sequences of 12 (full: 24) tokens mapped through a fixed random "
            "lexicon and reversed within blocks of 3, a synthetic stand-in for translation",
            "metric": "final validation cross-entropy of the target tokens (the papers: BLEU); "
            "fails = diverged, or stuck within 0.25 nats of the targets' unigram loss",
        },
        departures=(
            *KIND_DEPARTURES,
            (
                "a synthetic translation task (lexicon + local reordering) instead of WMT/IWSLT",
                "no download and minutes on 2 CPU cores; the task has a source-target alignment "
                "that cross-attention must learn, as translation does",
            ),
            (
                f"no warmup and {steps} steps, where the papers warm up over 4000 steps or more",
                "CPU scale, and the protocol of the decoder `depth` study; the papers' Post-LN "
                "diverges even with warmup",
            ),
            ("d = 64 (full: 256) instead of 512-1024", "CPU scale"),
        ),
        headline={"figure": 0, "check": 1},
        scale=scale,
    )


def warmup_mlm(scale: str = "quick") -> StudySpec:
    """Xiong et al. 2020 (BERT pre-training): a Post-LN masked-LM encoder needs learning-rate
    warmup, a Pre-LN one does not."""
    check_scale(scale)
    quick = scale == "quick"
    # The decoder `warmup` study's schedule, so that the two kinds compare.
    steps, warm, n = (600, 500, 12) if quick else (4000, 1000, 12)
    lrs = [1e-3, 3e-3] if quick else [5e-4, 1e-3, 2e-3]
    lr = 1e-3
    kinds, q = warmup_arms(warm, lr)
    sec = "Sec. 4.2 and Fig. 3 (BERT pre-training: validation loss of Post-LN and Pre-LN BERT)"
    return study(
        name="warmup-mlm",
        title="Masked-LM encoders: Post-LN needs warmup, Pre-LN does not",
        claim="A Post-LN masked-LM encoder (BERT) needs learning-rate warmup; a Pre-LN one "
        "trains without it.",
        source="Xiong et al. 2020 (arXiv:2002.04745); Devlin et al. 2019 BERT (arXiv:1810.04805)",
        parts=(
            Part(
                name="warmup",
                run="train",
                base=mlm_base(scale, steps),
                axes=(kinds, grid(model__n_layers=[n], train__lr=lrs)),
                seeds=seeds(scale),
            ),
        ),
        scalars={**FAILS, "accuracy": {"metric": "val_accuracy", "reduce": "last"}},
        quantities=q,
        checks=(
            {
                "expr": "warmup_gain > 0",
                "per_seed": True,
                "effect": "warmup_gain",
                "unit": "nats",
                "label": f"lr {lr}: post_ln ends worse without warmup than with {warm} steps",
                "paper": {
                    "reports": "Post-LN needs the warmup stage; without it, it trains worse "
                    "(shown on translation, Fig. 1-2; BERT's Post-LN is trained with warmup)",
                    "where": "Xiong et al. Sec. 3 and Fig. 1-2",
                },
            },
            {
                "expr": "pre_gain > 0",
                "per_seed": True,
                "effect": "pre_gain",
                "unit": "nats",
                "label": f"lr {lr}: pre_ln without warmup ends better than post_ln without it",
                "paper": {
                    "reports": "Pre-LN BERT trains without warmup",
                    "where": sec,
                },
            },
            {
                "expr": "pre_vs_warm > 0",
                "per_seed": True,
                "effect": "pre_vs_warm",
                "unit": "nats",
                "informational": True,
                "label": f"lr {lr}: pre_ln without warmup ends below post_ln with warmup",
                "paper": {
                    "reports": "Pre-LN BERT without warmup reaches a given validation loss "
                    "faster than Post-LN BERT with warmup (at a larger learning rate, 3e-4 "
                    "vs 1e-4; here both share one, hence informational)",
                    "where": sec,
                },
            },
        ),
        figures=(
            {
                "type": "curves",
                "metric": "loss",
                "series": "label",
                "panels": "train.lr",
                "title": f"Training masked-LM loss, L = {n}",
                "hline": "unigram_loss",
                "caption": "Post-LN without warmup should lag (or stall) early; with warmup it "
                "should catch up; Pre-LN should not need it.",
            },
            {
                "type": "bars",
                "value": "final_loss",
                "x": "train.lr",
                "series": "label",
                "title": "Final validation masked-LM loss (nats per masked byte)",
                "hline": "unigram_loss",
                "caption": "Dashed: the unigram loss of the bytes.",
            },
        ),
        notes=f"L = {n} encoder layers, {steps} steps, linear warmup then cosine decay; BERT's "
        "masking (15%; 80/10/10) drawn afresh for every batch.",
        protocol={
            "mirrors": "Xiong et al. pre-train BERT-base (12 layers) as Post-LN with warmup and "
            "as Pre-LN without it, and train Post-LN/Pre-LN translation models with and without "
            "warmup; the Post-LN models fail or slow down without warmup, the Pre-LN ones do not.",
            "init": "Xavier-uniform, embeddings N(0, 1/d) x sqrt(d)",
            "depth": f"{n} encoder layers (BERT-base's 12)",
            "task": "masked LM as BERT: 15% of positions, 80% [MASK], 10% random, 10% kept; "
            "loss on the chosen positions",
            "metric": "final validation masked-LM loss (the paper: validation loss curves)",
        },
        departures=(
            *KIND_DEPARTURES,
            (
                "byte-level masked LM on the Python standard library's source instead of "
                "word-piece BERT pre-training on BooksCorpus and Wikipedia, and no "
                "next-sentence prediction",
                "no download and minutes on 2 CPU cores",
            ),
            (
                f"{steps} steps with {warm} warmup steps; BERT's 10,000 warmup steps of 1M",
                "CPU scale; the schedule of the decoder `warmup` study, so the kinds compare",
            ),
        ),
        headline={"figure": 0, "check": 0},
        scale=scale,
    )
