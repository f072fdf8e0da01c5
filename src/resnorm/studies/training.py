"""Studies of trainability: ``depth``, ``warmup``, ``no-norm``.

Losses are final validation losses on the built-in corpus (`final_loss`: a diverged run counts
at the uniform loss ln 256). A run *fails* when it diverged or ended ``stuck``: its final
validation loss within 0.25 nats of the corpus's unigram loss, the best a model that ignores
context can do. Every topology shares the papers' Transformer init (`PAPER_MODEL`), with its
own init on top. Comparisons run 3 seeds at ``quick`` scale (5 at ``full``) and are checked per
seed, with the loss gap as the effect size and its 95% t interval over seeds.
"""

from __future__ import annotations

from typing import Any

from resnorm.lab.spec import Axis, Part, StudySpec, grid
from resnorm.studies.common import (
    SHARED_DEPARTURES,
    check_scale,
    seeds,
    study,
    topo,
    train_base,
    variants,
    where,
)

DEPTH_TOPOLOGIES = ["post_ln", "pre_ln", "deepnorm", "admin", "b2t"]
FAILS = {"fails": {"expr": "max(diverged, stuck)"}}


def _per_topology(
    tops: list[str], cell: dict[str, Any], scalars: tuple[str, ...] = ("final_loss", "fails")
) -> dict[str, dict]:
    return {
        f"{s}_{t}": {"of": s, "where": {**cell, "model.topology": t}} for t in tops for s in scalars
    }


def depth(scale: str = "quick", small: bool = False) -> StudySpec:
    """Wang et al. 2022; Liu et al. 2020; Takase et al. 2022: deep Post-LN fails to train.

    ``small``: the demo's decisive cell: post_ln and deepnorm at the deep L, 3 seeds.
    """
    check_scale(scale)
    quick = scale == "quick"
    steps = 300 if quick else 3000
    # 18 layers: the depth from which Admin (18L-18L) and DeepNet report Post-LN diverging.
    deep = 18 if quick else 48
    lr = 1e-3
    cell = where(model__n_layers=deep)
    if small:
        parts: tuple[Part, ...] = (
            Part(
                name="deep",
                run="train",
                base=train_base(scale, steps),
                axes=(grid(model__topology=["post_ln", "deepnorm"], model__n_layers=[deep]),),
                seeds=seeds(scale),
            ),
        )
        tops = ["post_ln", "deepnorm"]
    else:
        parts = (
            Part(
                name="deep",
                run="train",
                base=train_base(scale, steps),
                axes=(grid(model__topology=DEPTH_TOPOLOGIES, model__n_layers=[6, deep]),),
                seeds=seeds(scale),
            ),
        )
        tops = DEPTH_TOPOLOGIES
    q = _per_topology(tops, cell)
    q["gap"] = {"expr": "final_loss_post_ln - final_loss_deepnorm"}
    admin_t1 = "Admin Table 1 (WMT14 En-De: 6L Post-LN trains, 18L-18L Post-LN diverges)"
    deepnet = (
        "DeepNet Sec. 3 (18L-18L Post-LN on IWSLT-14 De-En does not converge) and its WMT-17 "
        "depth table (Post-LN diverges from 18L-18L; DeepNorm trains to 100L-100L)"
    )
    checks: list[dict[str, Any]] = [
        {
            "expr": "fails_post_ln > 0.5",
            "per_seed": True,
            "label": f"post_ln, L = {deep}: fails (diverges, or ends stuck at the unigram loss)",
            "paper": {"reports": "deep Post-LN diverges", "where": f"{deepnet}; {admin_t1}"},
        },
        {
            "expr": "fails_deepnorm < 0.5",
            "per_seed": True,
            "effect": "gap",
            "unit": "nats",
            "label": f"deepnorm, L = {deep}: trains (neither diverged nor stuck); effect: "
            "loss(post_ln) - loss(deepnorm)",
            "paper": {"reports": "DeepNorm trains where Post-LN diverges", "where": deepnet},
        },
    ]
    if not small:
        q["fails_post_ln_6"] = {
            "of": "fails",
            "where": where(model__n_layers=6, model__topology="post_ln"),
        }
        for t, paper in (
            ("admin", {"reports": "Admin trains 18L-18L and 60L-12L", "where": admin_t1}),
            (
                "b2t",
                {
                    "reports": "B2T trains deep (18L-18L) Post-LN-style models",
                    "where": "Takase et al. 2022, WMT En-De depth experiments",
                },
            ),
            ("pre_ln", {"reports": "Pre-LN trains at every depth", "where": admin_t1}),
        ):
            checks.append(
                {
                    "expr": f"fails_{t} < 0.5",
                    "per_seed": True,
                    "label": f"{t}, L = {deep}: trains",
                    "paper": paper,
                }
            )
        checks.append(
            {
                "expr": "fails_post_ln_6 < 0.5",
                "per_seed": True,
                "label": "post_ln, L = 6: trains (the failure is one of depth)",
                "paper": {"reports": "6-layer Post-LN trains", "where": admin_t1},
            }
        )
    return study(
        name="depth",
        title="Which topologies train deep, without warmup",
        claim="Deep Post-LN fails to train; DeepNorm, Admin, B2T and Pre-LN train at the same "
        "depth.",
        source="Wang et al. 2022 DeepNet (arXiv:2203.00555); Liu et al. 2020 Admin "
        "(arXiv:2004.08249); Takase et al. 2022 B2T (arXiv:2206.00330)",
        parts=parts,
        scalars=FAILS,
        quantities=q,
        checks=tuple(checks),
        figures=(
            {
                "type": "bars",
                "value": "final_loss",
                "x": "model.n_layers",
                "series": "model.topology",
                "title": "Final validation loss (nats), no warmup",
                "hline": "unigram_loss",
                "caption": "Dashed: the corpus's unigram loss. A bar on or above it learned no "
                "context (stuck); a diverged run counts at ln 256.",
            },
            {
                "type": "curves",
                "metric": "loss",
                "where": cell,
                "series": "model.topology",
                "title": f"Training loss at L = {deep}, lr = {lr}",
                "hline": "unigram_loss",
                "caption": "Deep Post-LN should stall at the unigram loss or diverge; the "
                "others should go below it.",
            },
        ),
        notes=f"{steps} steps, no warmup, lr {lr}, cosine decay, AdamW(0.9, 0.98), grad clip 1. "
        + ("Demo: the decisive cell (post_ln and deepnorm at L = 18), 3 seeds. " if small else "")
        + "A diverged run is scored at ln(256).",
        protocol={
            "mirrors": "DeepNet and Admin train Post-LN, Pre-LN, DeepNorm and Admin translation "
            "models of growing depth (6L-6L to 100L-100L; Xavier init, sqrt(d) embeddings, "
            "Adam with 4000-8000 warmup steps) and report that Post-LN diverges from 18 layers "
            "on while the others train; B2T reports the same for its fix.",
            "init": "Xavier-uniform, embeddings N(0, 1/d) x sqrt(d), for all; DeepNorm's beta "
            "and Admin's omega on top",
            "depth": f"6 and {deep} layers (decoder-only); the papers' 18+ per stack",
            "metric": "final validation loss; fails = diverged, or stuck within 0.25 nats of "
            "the unigram loss",
        },
        departures=(
            *SHARED_DEPARTURES,
            (
                f"no warmup and {steps} steps, where the papers warm up over 4000-8000 steps",
                "CPU scale; the papers' Post-LN diverges even with warmup, so dropping it "
                "makes the test no easier for Post-LN and harder for the others",
            ),
            ("d = 64 instead of 512-1024", "CPU scale"),
        ),
        headline={"figure": 1, "check": 1},
        scale=scale + (" (demo cell)" if small else ""),
    )


def warmup_arms(warm: int, lr: float) -> tuple[Axis, dict[str, dict[str, Any]]]:
    """Xiong et al.'s three arms, as an axis of variants: post_ln without warmup, post_ln with
    ``warm`` warmup steps, pre_ln without; and their final losses at ``lr`` (``post0``,
    ``postw``, ``pre0``) with the gaps the claim is about: ``warmup_gain`` (post0 - postw),
    ``pre_gain`` (post0 - pre0) and ``pre_vs_warm`` (postw - pre0)."""
    arms = (
        ("post0", "post_ln", "post_ln, no warmup", 0),
        ("postw", "post_ln", f"post_ln, warmup {warm}", warm),
        ("pre0", "pre_ln", "pre_ln, no warmup", 0),
    )
    kinds = variants(*({**topo(t, label), "train.warmup_steps": w} for _, t, label, w in arms))
    q: dict[str, dict[str, Any]] = {
        key: {"of": "final_loss", "where": where(label=label, train__lr=lr)}
        for key, _, label, _ in arms
    }
    q["warmup_gain"] = {"expr": "post0 - postw"}
    q["pre_gain"] = {"expr": "post0 - pre0"}
    q["pre_vs_warm"] = {"expr": "postw - pre0"}
    return kinds, q


def warmup(scale: str = "quick") -> StudySpec:
    """Xiong et al. 2020: Post-LN needs learning-rate warmup, Pre-LN does not."""
    check_scale(scale)
    quick = scale == "quick"
    steps, warm, n = (600, 500, 12) if quick else (4000, 1000, 12)
    lrs = [1e-3, 3e-3] if quick else [5e-4, 1e-3, 2e-3]
    lr = 1e-3  # the larger of the paper's two Adam learning rates
    kinds, q = warmup_arms(warm, lr)
    fig = "Fig. 1-2 (IWSLT14 De-En, Adam lr 5e-4 / 1e-3, warmup 0 / 500 / 4000)"
    return study(
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
                "expr": "warmup_gain > 0",
                "per_seed": True,
                "effect": "warmup_gain",
                "unit": "nats",
                "label": f"lr {lr}: post_ln ends worse without warmup than with {warm} steps",
                "paper": {
                    "reports": "Post-LN without warmup ends far below Post-LN with warmup "
                    "(about 8 vs 34 BLEU on IWSLT14 De-En, as a summary of the paper gives it)",
                    "where": fig,
                },
            },
            {
                "expr": "pre_gain > 0",
                "per_seed": True,
                "effect": "pre_gain",
                "unit": "nats",
                "label": f"lr {lr}: pre_ln without warmup ends better than post_ln without it",
                "paper": {
                    "reports": "Pre-LN without warmup reaches the BLEU of warmed-up Post-LN",
                    "where": "Fig. 2 and Sec. 4",
                },
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
                "caption": "Post-LN without warmup should lag (or stall) early; with warmup it "
                "should catch up; Pre-LN should not need it.",
            },
            {
                "type": "bars",
                "value": "final_loss",
                "x": "train.lr",
                "series": "label",
                "title": "Final validation loss",
                "hline": "unigram_loss",
                "caption": "Dashed: the unigram loss.",
            },
        ),
        notes=f"L = {n}, {steps} steps, linear warmup then cosine decay.",
        protocol={
            "mirrors": "Xiong et al. train 6-6 layer Post-LN and Pre-LN Transformers on IWSLT14 "
            "De-En with Adam at lr 5e-4 and 1e-3, with and without warmup, and find that "
            "Post-LN without warmup fails while Pre-LN without warmup trains.",
            "init": "Xavier-uniform, embeddings N(0, 1/d) x sqrt(d)",
            "depth": f"{n} decoder layers (the paper: 6 encoder + 6 decoder layers)",
            "metric": "final validation loss (the paper: BLEU)",
        },
        departures=(
            *SHARED_DEPARTURES,
            (
                f"{steps} steps with {warm} warmup steps; the paper's 4000 warmup steps over "
                "tens of thousands",
                "CPU scale",
            ),
        ),
        headline={"figure": 0, "check": 0},
        scale=scale,
    )


def no_norm(scale: str = "quick") -> StudySpec:
    """Bachlechner et al. 2020; Huang et al. 2020: ReZero and T-Fixup train without norms."""
    check_scale(scale)
    quick = scale == "quick"
    steps = 300 if quick else 3000
    deep = 24 if quick else 48
    tops = ["no_norm", "rezero", "tfixup", "pre_ln", "post_ln"]
    q = _per_topology(tops, where(model__n_layers=deep), ("final_loss", "fails", "mean_loss"))
    for t in ("rezero", "post_ln"):
        q[f"mean_loss_{t}_12"] = {
            "of": "mean_loss",
            "where": where(model__topology=t, model__n_layers=12),
        }
    q["rezero_speedup"] = {"expr": "mean_loss_post_ln_12 - mean_loss_rezero_12"}
    q["no_norm_gap"] = {"expr": "final_loss_no_norm - final_loss_tfixup"}
    q["tfixup_vs_pre"] = {"expr": "final_loss_tfixup - final_loss_pre_ln"}
    return study(
        name="no-norm",
        title="Training without normalization: ReZero and T-Fixup",
        claim="ReZero and T-Fixup train without normalization or warmup where a plain "
        "un-normalized stack does not; ReZero converges faster than the vanilla (Post-LN) "
        "Transformer.",
        source="Bachlechner et al. 2020 ReZero (arXiv:2003.04887); Huang et al. 2020 T-Fixup "
        "(ICML)",
        parts=(
            Part(
                name="runs",
                run="train",
                base=train_base(scale, steps),
                axes=(grid(model__topology=tops, model__n_layers=[12, deep]),),
                seeds=seeds(scale),
            ),
        ),
        scalars={**FAILS, "mean_loss": {"metric": "loss", "reduce": "mean"}},
        quantities=q,
        checks=(
            {
                "expr": "fails_no_norm > 0.5 or no_norm_gap > 0",
                "per_seed": True,
                "effect": "no_norm_gap",
                "unit": "nats",
                "label": f"no_norm, L = {deep}: fails, or ends worse than tfixup",
                "paper": {
                    "reports": "without LayerNorm and without T-Fixup's init, training diverges",
                    "where": "T-Fixup Sec. 3-4",
                },
            },
            {
                "expr": "fails_tfixup < 0.5",
                "per_seed": True,
                "effect": "tfixup_vs_pre",
                "unit": "nats",
                "label": f"tfixup, L = {deep}: trains without norms or warmup; effect: "
                "loss(tfixup) - loss(pre_ln)",
                "paper": {
                    "reports": "T-Fixup trains without LN or warmup and matches or beats "
                    "Pre-LN (IWSLT14 De-En 35.73 BLEU)",
                    "where": "T-Fixup's IWSLT14 De-En result (reference code's README)",
                },
            },
            {
                "expr": "rezero_speedup > 0",
                "per_seed": True,
                "effect": "rezero_speedup",
                "unit": "nats",
                "label": "L = 12: rezero's training loss averaged over the run is below "
                "post_ln's (faster convergence)",
                "paper": {
                    "reports": "a 12-layer ReZero Transformer reaches 1.2 BPB on enwik8 56% "
                    "faster than the vanilla Transformer",
                    "where": "ReZero Sec. 1",
                },
            },
        ),
        figures=(
            {
                "type": "curves",
                "metric": "loss",
                "series": "model.topology",
                "panels": "model.n_layers",
                "title": "Training loss, no warmup",
                "hline": "unigram_loss",
                "caption": "no_norm should diverge or lag; tfixup and rezero should train like "
                "pre_ln.",
            },
            {
                "type": "bars",
                "value": "final_loss",
                "x": "model.n_layers",
                "series": "model.topology",
                "title": "Final validation loss",
                "hline": "unigram_loss",
                "caption": "A diverged run counts at ln 256.",
            },
        ),
        notes=f"{steps} steps, no warmup, lr 1e-3. Convergence speed: the training loss "
        "averaged over all logged steps (lower = faster).",
        protocol={
            "mirrors": "T-Fixup trains 6-layer encoder-decoder Transformers on IWSLT14 De-En "
            "without LayerNorm and without warmup (Xavier init scaled by (9N)^-1/4 for the "
            "decoder, embeddings N(0, d^-1/2) x sqrt(d)); ReZero trains 12-layer "
            "Transformers on enwik8 with residual gains initialized at 0 and no LayerNorm.",
            "init": "Xavier-uniform, embeddings N(0, 1/d) x sqrt(d), for all; T-Fixup's and "
            "ReZero's own inits on top",
            "depth": f"12 and {deep} layers",
            "metric": "final validation loss; convergence speed as the mean training loss",
        },
        departures=(
            *SHARED_DEPARTURES,
            (
                "ReZero's 'steps to 1.2 BPB' becomes the mean training loss over the run",
                "a fixed target loss can be out of reach of both runs at CPU scale",
            ),
            (f"{steps} steps, d = 64", "CPU scale"),
        ),
        headline={"figure": 0, "check": 0},
        scale=scale,
    )
