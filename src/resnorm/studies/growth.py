"""Studies of what training does to the residual stream: ``curse-of-depth`` (Sun et al. 2025;
Li et al. 2024) and ``peri`` (Kim et al. 2025; Ding et al. 2021).

Comparisons run 3 seeds at ``quick`` scale (5 at ``full``) and are checked per seed.
"""

from __future__ import annotations

from typing import Any

from resnorm.lab.spec import Part, StudySpec, grid
from resnorm.studies.common import check_scale, seeds, train_base, where


def curse_of_depth(scale: str = "quick") -> StudySpec:
    """Sun et al. 2025; Li et al. 2024: deep Pre-LN layers contribute little; LNS, Mix-LN help."""
    check_scale(scale)
    quick = scale == "quick"
    steps, n = (300, 12) if quick else (3000, 32)
    lastq = [0.75, 1.0]
    after = ["stream_rms", "branch_rms", "layer_drop", "grad_norm"]
    scalars: dict[str, dict[str, Any]] = {
        "rms_first": {
            "probe": "stream_rms",
            "key": "decoder.mlp",
            "layer": "first",
            "step": "last",
        },
        "rms_last": {"probe": "stream_rms", "key": "decoder.mlp", "layer": "last", "step": "last"},
        "var_growth": {"expr": "(rms_last / rms_first) ** 2"},
        "branch_lastq": {
            "probe": "branch_rms",
            "key": "decoder.*",
            "fraction": lastq,
            "step": "last",
        },
        "stream_lastq": {
            "probe": "stream_rms",
            "key": "decoder.mlp",
            "fraction": lastq,
            "step": "last",
        },
        "contrib_lastq": {"expr": "branch_lastq / stream_lastq"},
        "drop_lastq": {"probe": "layer_drop", "key": "decoder", "fraction": lastq, "step": "last"},
        "grad_max": {"probe": "grad_norm", "key": "decoder", "reduce": "max", "step": "last"},
        "grad_min": {"probe": "grad_norm", "key": "decoder", "reduce": "min", "step": "last"},
        "grad_spread": {"expr": "grad_max / grad_min"},
    }
    q: dict[str, dict] = {}
    for t in ("pre_ln", "lns", "mix_ln"):
        for s in ("var_growth", "contrib_lastq", "drop_lastq", "final_loss"):
            q[f"{s}_{t}"] = {"of": s, "where": where(model__topology=t)}
    return StudySpec(
        name="curse-of-depth",
        title="The curse of depth: do deep Pre-LN layers contribute?",
        claim="In Pre-LN the output variance grows with depth and deep layers contribute "
        "little; LayerNorm Scaling (LNS) and Mix-LN restore their contribution.",
        source="Sun et al. 2025, The Curse of Depth in LLMs (arXiv:2502.05795); Li et al. "
        "2024, Mix-LN (arXiv:2412.13795)",
        parts=(
            Part(
                name="trained",
                run="train",
                base=train_base(scale, steps),
                axes=(grid(model__topology=["pre_ln", "lns", "mix_ln"], model__n_layers=[n]),),
                seeds=seeds(scale),
                after=tuple(after),
            ),
        ),
        scalars=scalars,
        quantities=q,
        checks=(
            {
                "expr": "var_growth_pre_ln >= 2 * var_growth_lns",
                "per_seed": True,
                "min_seeds": 3,
                "label": "pre_ln's stream variance growth >= 2x that of lns",
            },
            {
                "expr": "contrib_lastq_lns > contrib_lastq_pre_ln and "
                "contrib_lastq_mix_ln > contrib_lastq_pre_ln",
                "per_seed": True,
                "min_seeds": 3,
                "label": "last-quarter relative block contribution larger for lns and mix_ln",
            },
            {
                "expr": "drop_lastq_lns > drop_lastq_pre_ln and drop_lastq_mix_ln > "
                "drop_lastq_pre_ln",
                "per_seed": True,
                "min_seeds": 3,
                "label": "last-quarter layer-drop loss increase larger for lns and mix_ln",
            },
        ),
        figures=(
            {
                "type": "layers",
                "probe": "stream_rms",
                "key": "decoder.mlp",
                "step": "last",
                "series": "model.topology",
                "logy": True,
                "title": "Stream RMS per layer after training",
                "ylabel": "RMS",
            },
            {
                "type": "layers",
                "probe": "layer_drop",
                "key": "decoder",
                "step": "last",
                "series": "model.topology",
                "logy": False,
                "title": "Loss increase when one layer is dropped",
                "ylabel": "nats",
            },
            {
                "type": "layers",
                "probe": "grad_norm",
                "key": "decoder",
                "step": "last",
                "series": "model.topology",
                "logy": True,
                "title": "Gradient norm per layer after training",
                "ylabel": "l2",
            },
        ),
        notes=f"L = {n}, {steps} steps, no warmup. Measured after training on one validation "
        "batch: stream RMS after each layer, branch RMS, layer-drop loss increase (both "
        "branches of the layer zeroed), gradient norm per layer. Last quarter = layers "
        f"{int(0.75 * n) + 1}..{n}.",
        scale=scale,
    )


def peri(scale: str = "quick") -> StudySpec:
    """Kim et al. 2025; Ding et al. 2021: Pre-LN's hidden states grow, Peri/Sandwich bound them."""
    check_scale(scale)
    quick = scale == "quick"
    steps, n, lr = (300, 12, 3e-3) if quick else (3000, 24, 3e-3)
    base = train_base(
        scale, steps, lr=lr, probe_every=50 if quick else 250, probes=["stream_rms", "stream_max"]
    )
    scalars = {
        "max_rms": {"probe": "stream_rms", "key": "decoder.*", "reduce": "max", "step": "last"},
        "max_abs": {"probe": "stream_max", "key": "decoder.*", "reduce": "max", "step": "last"},
    }
    q: dict[str, dict] = {}
    for t in ("pre_ln", "peri_ln", "sandwich_ln"):
        for s in ("max_rms", "max_abs", "diverged", "final_loss"):
            q[f"{s}_{t}"] = {"of": s, "where": where(model__topology=t)}
    return StudySpec(
        name="peri",
        title="Hidden-state growth: Pre-LN vs Peri-LN and Sandwich-LN",
        claim="Pre-LN's hidden states grow during training at a high learning rate; Peri-LN "
        "(and Sandwich-LN) bound them and are no less stable.",
        source="Kim et al. 2025 Peri-LN (arXiv:2502.02732); Ding et al. 2021 CogView "
        "(arXiv:2105.13290)",
        parts=(
            Part(
                name="highlr",
                run="train",
                base=base,
                axes=(
                    grid(model__topology=["pre_ln", "peri_ln", "sandwich_ln"], model__n_layers=[n]),
                ),
                seeds=seeds(scale),
            ),
        ),
        scalars=scalars,
        quantities=q,
        checks=(
            {
                "expr": "max_rms_pre_ln >= 2 * max_rms_peri_ln",
                "per_seed": True,
                "min_seeds": 3,
                "label": "pre_ln's final max-over-layers stream RMS >= 2x peri_ln's",
            },
            {
                "expr": "diverged_peri_ln <= diverged_pre_ln",
                "label": "peri_ln diverges on no more seeds than pre_ln",
            },
        ),
        figures=(
            {
                "type": "layers",
                "probe": "stream_rms",
                "key": "decoder.mlp",
                "step": "last",
                "series": "model.topology",
                "logy": True,
                "title": "Stream RMS per layer at the end of training",
                "ylabel": "RMS",
            },
            {
                "type": "curves",
                "metric": "loss",
                "series": "model.topology",
                "title": f"Training loss, L = {n}, lr = {lr}",
                "hline": "unigram_loss",
            },
        ),
        notes=f"L = {n}, {steps} steps, lr {lr}, no warmup; stream RMS and max |x| after every "
        "sublayer every 50 steps; the value counted is the one at the last probe step.",
        scale=scale,
    )
