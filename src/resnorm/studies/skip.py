"""The ``skip`` study: rank collapse without skip connections (Dong et al. 2021).

Dong et al. 2021 (Attention is not all you need, arXiv:2103.03404) show that a stack of pure
self-attention layers loses rank doubly exponentially with depth, and that skip connections (and,
less, MLPs) counter it. The ``init`` part runs the ``skip_paths`` measurement
(`resnorm.diagnostics.paths`): the rank-collapse residual of one encoder's layers wired four ways
(attention only, attention + skip, attention + MLP + LN without skip, full Pre-LN), in float64.
The study adds a training part: ``no_residual`` against ``pre_ln``.
"""

from __future__ import annotations

from resnorm.diagnostics.paths import PATHS
from resnorm.lab.spec import Part, StudySpec, grid
from resnorm.studies.common import INITS, PAPER_INIT, check_scale, seeds, train_base, where


def skip(scale: str = "quick") -> StudySpec:
    """Dong et al. 2021: pure attention loses rank doubly exponentially; skips prevent it."""
    check_scale(scale)
    quick = scale == "quick"
    depth = 32
    init_part = Part(
        name="init",
        run="skip_paths",
        base={
            "n_layers": depth,
            "d_model": 64 if quick else 256,
            "n_heads": 4 if quick else 8,
            "seq_len": 32 if quick else 128,
            "batch_size": 4 if quick else 8,
        },
        axes=(
            grid(
                path=list(PATHS),
                init=list(INITS),
            ),
        ),
        seeds=seeds(scale),
    )
    train_depth = 12 if quick else 24
    train_part = Part(
        name="train",
        run="train",
        base=train_base(scale, 150 if quick else 2000),
        axes=(grid(model__topology=["no_residual", "pre_ln"], model__n_layers=[train_depth]),),
        seeds=seeds(scale),
    )

    def r(layer: int, path: str, init: str, agg: str) -> dict:
        return {
            "of": f"r{layer}",
            "where": {"part": "init", "path": path, "init": init},
            "agg": agg,
        }

    nores = where(part="train", model__topology="no_residual")
    pre = where(part="train", model__topology="pre_ln")
    return StudySpec(
        name="skip",
        title="Skip connections prevent rank collapse",
        claim="Without skip connections, pure attention loses rank doubly exponentially with "
        "depth; skip connections prevent it. A deep stack without skips does not train.",
        source="Dong, Cordonnier & Loukas 2021, Attention is not all you need (arXiv:2103.03404)",
        parts=(init_part, train_part),
        scalars={
            "r4": {"probe": "rank_collapse", "key": "encoder", "layer": 3},
            "r8": {"probe": "rank_collapse", "key": "encoder", "layer": 7},
            "r32": {"probe": "rank_collapse", "key": "encoder", "layer": "last"},
        },
        quantities={
            "r4_attn": r(4, "attention_only", PAPER_INIT, "max"),
            "r8_skip": r(8, "attention_skip", PAPER_INIT, "min"),
            "r4_attn_normal": r(4, "attention_only", "normal", "max"),
            "r8_skip_normal": r(8, "attention_skip", "normal", "min"),
            "loss_nores": {"of": "final_loss", "where": nores},
            "loss_pre": {"of": "final_loss", "where": pre},
            "unigram": {"of": "unigram_loss", "where": pre},
            "nores_above_unigram": {"expr": "loss_nores - unigram"},
            "pre_below_unigram": {"expr": "unigram - loss_pre"},
        },
        checks=(
            {"expr": "r4_attn < 1e-3", "label": "attention-only collapses within 4 layers"},
            {"expr": "r8_skip > 0.5", "label": "attention+skip keeps rank at 8 layers"},
            {
                "expr": "abs(nores_above_unigram) <= 0.25",
                "per_seed": True,
                "min_seeds": 3,
                "label": f"no_residual (L={train_depth}) ends within 0.25 nats of the unigram loss",
            },
            {
                "expr": "pre_below_unigram >= 0.3",
                "per_seed": True,
                "min_seeds": 3,
                "label": f"pre_ln (L={train_depth}) ends >= 0.3 nats below the unigram loss",
            },
            {
                "expr": "r4_attn_normal < 1e-3 and r8_skip_normal > 0.5",
                "informational": True,
                "label": "the same at resnorm's default init N(0, 0.02)",
            },
        ),
        figures=(
            {
                "type": "layers",
                "probe": "rank_collapse",
                "key": "encoder",
                "where": {"part": "init"},
                "series": "path",
                "panels": "init",
                "logy": True,
                "title": "Rank-collapse residual r_l at init (X ~ N(0,1), bidirectional)",
                "ylabel": "||X - mean(X)|| / ||X||",
            },
            {
                "type": "curves",
                "metric": "loss",
                "where": {"part": "train"},
                "series": "model.topology",
                "title": f"Training loss, L = {train_depth}",
                "hline": "unigram_loss",
            },
        ),
        notes="r_l is measured in float64 on one bidirectional encoder per seed whose layers are "
        "wired four ways (attention only; attention + skip; attention + MLP + LayerNorm without "
        "skip, i.e. the no_residual topology; full Pre-LN). Xavier init as in the paper's "
        "transformers; N(0, 0.02) shown as a contrast. Training: built-in corpus, no warmup.",
        scale=scale,
    )
