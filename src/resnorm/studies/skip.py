"""The ``skip`` study: rank collapse without skip connections (Dong et al. 2021).

Dong et al. 2021 (Attention is not all you need, arXiv:2103.03404) show that a stack of pure
self-attention layers loses rank doubly exponentially with depth, and that skip connections (and,
less, MLPs) counter it. The ``init`` part runs the ``skip_paths`` measurement
(`resnorm.diagnostics.paths`): the rank-collapse residual of one encoder's layers wired four ways
(attention only, attention + skip, attention + MLP + LN without skip, full Pre-LN), in float64.
The study adds a training part: ``no_residual`` against ``pre_ln``.
"""

from __future__ import annotations

import math

from resnorm.diagnostics.paths import PATHS
from resnorm.lab.spec import Part, StudySpec, grid
from resnorm.studies.common import SHARED_DEPARTURES, check_scale, seeds, study, train_base, where

#: Dong et al.'s models are BERT-family (N(0, 0.02) at d = 768); the same init width-matched.
BERT_WIDTH = 768


def skip(scale: str = "quick") -> StudySpec:
    """Dong et al. 2021: pure attention loses rank doubly exponentially; skips prevent it."""
    check_scale(scale)
    quick = scale == "quick"
    d = 64 if quick else 256
    init_std = round(0.02 * math.sqrt(BERT_WIDTH / d), 5)
    init_part = Part(
        name="init",
        run="skip_paths",
        base={
            "n_layers": 24,
            "d_model": d,
            "n_heads": 4 if quick else 8,
            "seq_len": 64 if quick else 128,
            "batch_size": 8 if quick else 32,
            "init": "normal",
            "init_std": init_std,
        },
        axes=(grid(path=list(PATHS)),),
        seeds=seeds(scale, quick=6, full=10),
    )
    train_depth = 12 if quick else 24
    train_part = Part(
        name="train",
        run="train",
        base=train_base(scale, 150 if quick else 2000),
        axes=(grid(model__topology=["no_residual", "pre_ln"], model__n_layers=[train_depth]),),
        seeds=seeds(scale),
    )

    def r(path: str) -> dict:
        return {"of": "r12_rel", "where": {"part": "init", "path": path}}

    nores = where(part="train", model__topology="no_residual")
    pre = where(part="train", model__topology="pre_ln")
    fig = "the rank-collapse figure (residual vs layer, at init and pretrained, y-axis 0 to 1)"
    return study(
        name="skip",
        title="Skip connections prevent rank collapse",
        claim="Without skip connections, pure attention loses rank doubly exponentially with "
        "depth; skip connections prevent it. A deep stack without skips does not train.",
        source="Dong, Cordonnier & Loukas 2021, Attention is not all you need (arXiv:2103.03404)",
        parts=(init_part, train_part),
        scalars={
            "r0": {"probe": "rank_collapse", "key": "encoder.embed"},
            "r12": {"probe": "rank_collapse", "key": "encoder", "layer": 11},
            "r12_rel": {"expr": "r12 / r0"},
        },
        quantities={
            "attn": r("attention_only"),
            "skip": r("attention_skip"),
            "mlp_ln": r("attention_mlp_ln"),
            "full": r("pre_ln"),
            "loss_nores": {"of": "final_loss", "where": nores},
            "loss_pre": {"of": "final_loss", "where": pre},
            "stuck_nores": {"of": "stuck", "where": nores},
            "stuck_pre": {"of": "stuck", "where": pre},
            "loss_gap": {"expr": "loss_nores - loss_pre"},
        },
        checks=(
            {
                "expr": "attn < 0.01",
                "per_seed": True,
                "effect": "attn",
                "label": "attention only: the residual after 12 layers is under 1% of the "
                "input's (indistinguishable from 0 on the paper's 0-1 axis)",
                "paper": {
                    "reports": "pure attention (SAN) collapses to rank 1 within a few layers; "
                    "Theorem: the residual decays doubly exponentially with depth",
                    "where": fig + "; the main theorem (Sec. 2)",
                },
            },
            {
                "expr": "skip > 0.5",
                "per_seed": True,
                "effect": "skip",
                "label": "attention + skip: the residual after 12 layers keeps over half of "
                "the input's (the upper half of the paper's 0-1 axis)",
                "paper": {
                    "reports": "with skip connections the residual does not collapse",
                    "where": fig,
                },
            },
            {
                "expr": "stuck_nores > 0.5 and stuck_pre < 0.5",
                "per_seed": True,
                "effect": "loss_gap",
                "unit": "nats",
                "label": f"training, L = {train_depth}: no_residual ends stuck at the unigram "
                "loss (within 0.25 nats) while pre_ln does not",
                "paper": {
                    "reports": "skip connections keep the token information that training "
                    "needs (the seed's claim; the paper shows collapse, not training curves)",
                    "where": "Sec. 1 and the SAN vs transformer comparison",
                },
            },
        ),
        figures=(
            {
                "type": "layers",
                "probe": "rank_collapse",
                "key": "encoder",
                "where": {"part": "init"},
                "series": "path",
                "logy": True,
                "title": "Rank-collapse residual r_l at init (X ~ N(0,1), bidirectional)",
                "ylabel": "||X - mean(X)|| / ||X||",
                "hlines": [
                    {"y": 0.5, "label": "skip threshold 0.5"},
                    {"y": 0.01, "label": "collapse threshold 0.01"},
                ],
                "caption": "Attention alone should fall towards 0 within a few layers; with a "
                "skip the residual should stay near its input.",
            },
            {
                "type": "curves",
                "metric": "loss",
                "where": {"part": "train"},
                "series": "model.topology",
                "title": f"Training loss, L = {train_depth}",
                "hline": "unigram_loss",
                "caption": "Dashed: the corpus's unigram loss, what a model ignoring context "
                "reaches. no_residual should stay on it; pre_ln should go below.",
            },
        ),
        notes="r_l is measured in float64 on one bidirectional encoder per seed whose layers are "
        "wired four ways (attention only; attention + skip; attention + MLP + LayerNorm without "
        "skip, i.e. the no_residual topology; full Pre-LN). r_12 is taken relative to the "
        "input's r_0. Training: built-in corpus, no warmup.",
        protocol={
            "mirrors": "Dong et al. pass text through BERT-family models (12 layers, d = 768, "
            "N(0, 0.02) init, at init and pretrained) with their skip connections and/or MLPs "
            "removed, and plot the relative residual ||res(X_l)|| / ||X_l|| per layer.",
            "init": f"N(0, {init_std}^2) = 0.02 sqrt(768 / d): BERT's init, width-matched",
            "embedding": "X ~ N(0, 1) tokens, like BERT's LayerNorm-ed embeddings",
            "depth": "12 layers checked (BERT's), 24 drawn",
            "metric": "Frobenius residual ratio ||X - 1 mean(X)||_F / ||X||_F",
        },
        departures=(
            *SHARED_DEPARTURES[:1],
            (
                "Gaussian tokens instead of embedded wiki_bio text",
                "at init the embeddings are random too; no download",
            ),
            (
                "the Frobenius norm instead of the paper's composite ||.||_{1,inf}",
                "both vanish together at rank 1; Frobenius is the probe checked against a "
                "reference",
            ),
            (
                "the paths have no LayerNorm after attention (the theorem's pure attention); "
                "the paper's surgery keeps BERT's post-attention LayerNorm",
                "the claim is about attention itself",
            ),
        ),
        headline={"figure": 0, "check": 0},
        scale=scale,
    )
