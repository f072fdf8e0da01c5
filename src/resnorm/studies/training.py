"""Studies of trainability: ``depth``, ``warmup``, ``no-norm``.

Losses are final validation losses on the built-in corpus (`final_loss`: a diverged run counts
at the uniform loss ln 256). Every comparison of losses runs 3 seeds at ``quick`` scale (5 at
``full``) and is checked per seed: it must hold on every seed to count as reproduced, and seeds
that disagree make the study inconclusive.
"""

from __future__ import annotations

from resnorm.lab.spec import Part, StudySpec, grid
from resnorm.studies.common import check_scale, seeds, topo, train_base, variants, where

DEPTH_TOPOLOGIES = ["post_ln", "pre_ln", "deepnorm", "admin", "b2t"]


def depth(scale: str = "quick", small: bool = False) -> StudySpec:
    """Wang et al. 2022; Liu et al. 2020; Takase et al. 2022: deep Post-LN fails to train.

    ``small``: the demo's map (post_ln, pre_ln, deepnorm at L = 6 and 24, one lr, one seed).
    """
    check_scale(scale)
    quick = scale == "quick"
    steps = 300 if quick else 3000
    deep = 24 if quick else 48
    tops = ["post_ln", "pre_ln", "deepnorm"] if small else DEPTH_TOPOLOGIES
    depths = [6, deep] if small or quick else [6, 12, 24, 48]
    lrs = [1e-3] if small else [1e-3, 3e-3] if quick else [3e-4, 1e-3, 3e-3]
    lr = 1e-3
    parts = [
        Part(
            name="map",
            run="train",
            base=train_base(scale, steps),
            axes=(grid(model__topology=tops, model__n_layers=depths, train__lr=lrs),),
            seeds=(0,),
        )
    ]
    if not small:
        parts.append(
            Part(
                name="seeds",
                run="train",
                base=train_base(scale, steps),
                axes=(
                    grid(
                        model__topology=["post_ln", "pre_ln", "deepnorm"],
                        model__n_layers=[deep],
                        train__lr=[lr],
                    ),
                ),
                seeds=seeds(scale),
            )
        )
    cell = where(model__n_layers=deep, train__lr=lr)
    return StudySpec(
        name="depth",
        title="Which topologies train deep, without warmup",
        claim="Deep Post-LN fails to train; DeepNorm, Admin, B2T, Pre-LN and others train.",
        source="Wang et al. 2022 DeepNet (arXiv:2203.00555); Liu et al. 2020 Admin "
        "(arXiv:2004.08249); Takase et al. 2022 B2T (arXiv:2206.00330)",
        parts=tuple(parts),
        quantities={
            "post": {"of": "final_loss", "where": {**cell, "model.topology": "post_ln"}},
            "deepnorm": {"of": "final_loss", "where": {**cell, "model.topology": "deepnorm"}},
            "pre": {"of": "final_loss", "where": {**cell, "model.topology": "pre_ln"}},
            "gap": {"expr": "post - deepnorm"},
            "gap_pre": {"expr": "post - pre"},
        },
        checks=(
            {
                "expr": "gap >= 0.5",
                "per_seed": True,
                "min_seeds": 3,
                "label": f"L = {deep}, no warmup: loss(post_ln) - loss(deepnorm) >= 0.5 nats",
            },
            {
                "expr": "gap_pre >= 0.5",
                "per_seed": True,
                "min_seeds": 3,
                "informational": True,
                "label": f"L = {deep}: loss(post_ln) - loss(pre_ln) >= 0.5 nats",
            },
        ),
        figures=(
            {
                "type": "heatmap",
                "value": "final_loss",
                "x": "train.lr",
                "y": "model.n_layers",
                "panels": "model.topology",
                "where": {"part": "map"},
                "flag": "diverged",
                "title": "Final validation loss (nats): topology x depth x lr, no warmup",
            },
            {
                "type": "curves",
                "metric": "loss",
                "where": {**cell, "model.n_layers": deep},
                "series": "model.topology",
                "title": f"Training loss at L = {deep}, lr = {lr}",
                "hline": "unigram_loss",
            },
        ),
        notes=f"{steps} steps, no warmup, cosine decay, AdamW(0.9, 0.98), grad clip 1. "
        + ("Demo map: one seed per cell. " if small else "")
        + "A diverged run is scored at ln(256) and marked D in the heatmap.",
        scale=scale + (" (demo map)" if small else ""),
    )


def warmup(scale: str = "quick") -> StudySpec:
    """Xiong et al. 2020: Post-LN needs learning-rate warmup, Pre-LN does not."""
    check_scale(scale)
    quick = scale == "quick"
    steps, warm, n = (600, 500, 12) if quick else (4000, 1000, 16)
    lrs = [1e-3, 3e-3] if quick else [5e-4, 1e-3, 2e-3, 4e-3]
    kinds = variants(
        {**topo("post_ln", "post_ln, no warmup"), "train.warmup_steps": 0},
        {**topo("post_ln", f"post_ln, warmup {warm}"), "train.warmup_steps": warm},
        {**topo("pre_ln", "pre_ln, no warmup"), "train.warmup_steps": 0},
    )
    q: dict[str, dict] = {}
    for i, lr in enumerate(lrs):
        for key, label in (
            ("post0", "post_ln, no warmup"),
            ("postw", f"post_ln, warmup {warm}"),
            ("pre0", "pre_ln, no warmup"),
        ):
            q[f"{key}_{i}"] = {"of": "final_loss", "where": where(label=label, train__lr=lr)}
        q[f"ok_{i}"] = {"expr": f"(post0_{i} - pre0_{i} >= 0.3) * (postw_{i} - pre0_{i} <= 0.1)"}
    q["any_lr"] = {"expr": " + ".join(f"ok_{i}" for i in range(len(lrs)))}
    return StudySpec(
        name="warmup",
        title="Post-LN needs warmup, Pre-LN does not",
        claim="Post-LN needs learning-rate warmup; Pre-LN trains without it.",
        source="Xiong et al. 2020 (arXiv:2002.04745)",
        parts=(
            Part(
                name="warmup",
                run="train",
                base=train_base(scale, steps),
                axes=(kinds, grid(model__n_layers=[n], train__lr=lrs)),
                seeds=seeds(scale),
            ),
        ),
        quantities=q,
        checks=(
            {
                "expr": "any_lr >= 1",
                "per_seed": True,
                "min_seeds": 3,
                "label": "an lr where post_ln without warmup is >= 0.3 nats worse than pre_ln and "
                f"post_ln with {warm} warmup steps is within 0.1 nats of it",
            },
        ),
        figures=(
            {
                "type": "curves",
                "metric": "loss",
                "series": "label",
                "panels": "train.lr",
                "title": f"Training loss, L = {n}",
                "hline": "unigram_loss",
            },
            {
                "type": "bars",
                "value": "final_loss",
                "x": "train.lr",
                "series": "label",
                "title": "Final validation loss",
            },
        ),
        notes=f"L = {n}, {steps} steps, linear warmup then cosine decay.",
        scale=scale,
    )


def no_norm(scale: str = "quick") -> StudySpec:
    """Bachlechner et al. 2020; Huang et al. 2020: ReZero and T-Fixup train without norms."""
    check_scale(scale)
    quick = scale == "quick"
    steps = 300 if quick else 3000
    deep = 24 if quick else 48
    target = 2.8
    tops = ["no_norm", "rezero", "tfixup", "pre_ln", "post_ln"]
    q: dict[str, dict] = {}
    for t in tops:
        q[f"loss_{t}"] = {
            "of": "final_loss",
            "where": where(model__topology=t, model__n_layers=deep),
        }
        q[f"steps_{t}"] = {
            "of": "steps_to_target",
            "where": where(model__topology=t, model__n_layers=deep),
        }
        q[f"div_{t}"] = {"of": "diverged", "where": where(model__topology=t, model__n_layers=deep)}
    return StudySpec(
        name="no-norm",
        title="Training without normalization: ReZero and T-Fixup",
        claim="ReZero and T-Fixup train without normalization or warmup where a plain "
        "un-normalized stack does not.",
        source="Bachlechner et al. 2020 ReZero (arXiv:2003.04887); Huang et al. 2020 T-Fixup "
        "(ICML)",
        parts=(
            Part(
                name="deep",
                run="train",
                base=train_base(scale, steps),
                axes=(grid(model__topology=tops, model__n_layers=[deep]),),
                seeds=seeds(scale),
            ),
            Part(
                name="shallow",
                run="train",
                base=train_base(scale, steps),
                axes=(grid(model__topology=tops, model__n_layers=[6]),),
                seeds=(0,),
            ),
        ),
        scalars={"steps_to_target": {"metric": "loss", "below": target}},
        quantities={
            **q,
            "no_norm_fails": {"expr": "max(div_no_norm, (loss_no_norm - loss_pre_ln >= 0.3))"},
        },
        checks=(
            {
                "expr": "no_norm_fails >= 1",
                "per_seed": True,
                "min_seeds": 3,
                "label": f"no_norm (L = {deep}) diverges or is >= 0.3 nats worse than pre_ln",
            },
            {
                "expr": "abs(loss_tfixup - loss_pre_ln) <= 0.05",
                "per_seed": True,
                "min_seeds": 3,
                "label": "tfixup within 0.05 nats of pre_ln",
            },
            {
                "expr": "steps_rezero < steps_post_ln",
                "per_seed": True,
                "min_seeds": 3,
                "label": f"rezero reaches training loss {target} in fewer steps than post_ln",
            },
        ),
        figures=(
            {
                "type": "curves",
                "metric": "loss",
                "where": where(model__n_layers=deep),
                "series": "model.topology",
                "title": f"Training loss, L = {deep}, no warmup",
                "hline": "unigram_loss",
            },
            {
                "type": "bars",
                "value": "final_loss",
                "x": "model.n_layers",
                "series": "model.topology",
                "title": "Final validation loss",
            },
        ),
        notes=f"{steps} steps, no warmup, lr 1e-3. Steps to target: the first logged step "
        f"whose training loss (mean of 5 logged values) is <= {target} nats (never: infinity).",
        scale=scale,
    )
