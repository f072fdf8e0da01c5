"""Studies of what training does to the residual stream: ``curse-of-depth`` (Sun et al. 2025;
Li et al. 2024) and ``peri`` (Kim et al. 2025; Ding et al. 2021).

Both papers study LLaMA-style Pre-LN decoders (RMSNorm, SwiGLU, RoPE, N(0, 0.02) init), so
these studies use that model for every topology (`LLAMA_MODEL`). Comparisons run 3 seeds at
``quick`` scale (5 at ``full``), checked per seed with effect sizes over seeds.
"""

from __future__ import annotations

from typing import Any

from resnorm.lab.spec import Part, StudySpec, grid
from resnorm.studies.common import SHARED_DEPARTURES, check_scale, seeds, study, train_base, where

#: The LLaMA-style decoder of the curse-of-depth, Mix-LN and Peri-LN papers.
LLAMA_MODEL: dict[str, Any] = {
    "norm": "rmsnorm",
    "mlp": "swiglu",
    "positional": "rope",
    "init": "normal",
    "init_std": 0.02,
    "embed_scale": False,
}
LLAMA_DEPARTURES = (
    SHARED_DEPARTURES[0],
    (
        "d = 64 and 12 layers (quick) instead of 130M-3B parameter models trained on billions "
        "of tokens",
        "CPU scale: the depth effects are those of a short training run",
    ),
)


def _llama_base(scale: str, steps: int, **train: Any) -> dict[str, Any]:
    base = train_base(scale, steps, **train)
    base["model"] = {**base["model"], **LLAMA_MODEL}
    return base


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
        "drop_lastq": {"probe": "layer_drop", "key": "decoder", "fraction": lastq, "step": "last"},
    }
    q: dict[str, dict] = {}
    for t in ("pre_ln", "lns", "mix_ln"):
        for s in ("var_growth", "drop_lastq", "final_loss"):
            q[f"{s}_{t}"] = {"of": s, "where": where(model__topology=t)}
    q["drop_lns_minus_pre"] = {"expr": "drop_lastq_lns - drop_lastq_pre_ln"}
    q["drop_mix_minus_pre"] = {"expr": "drop_lastq_mix_ln - drop_lastq_pre_ln"}
    q["var_pre_over_lns"] = {"expr": "var_growth_pre_ln / var_growth_lns"}
    drop_paper = {
        "reports": "removing one of Pre-LN's deep layers barely changes performance; with LNS "
        "(and Mix-LN) the deep layers matter",
        "where": "Sun et al. (layer-removal performance drop per layer); Li et al. Mix-LN",
    }
    return study(
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
                base=_llama_base(scale, steps),
                axes=(grid(model__topology=["pre_ln", "lns", "mix_ln"], model__n_layers=[n]),),
                seeds=seeds(scale),
                after=tuple(after),
            ),
        ),
        scalars=scalars,
        quantities=q,
        checks=(
            {
                "expr": "drop_lns_minus_pre > 0",
                "per_seed": True,
                "effect": "drop_lns_minus_pre",
                "unit": "nats",
                "label": "dropping a last-quarter layer costs more loss with lns than pre_ln",
                "paper": drop_paper,
            },
            {
                "expr": "drop_mix_minus_pre > 0",
                "per_seed": True,
                "effect": "drop_mix_minus_pre",
                "unit": "nats",
                "label": "dropping a last-quarter layer costs more loss with mix_ln than pre_ln",
                "paper": drop_paper,
            },
            {
                "expr": "var_pre_over_lns > 1",
                "per_seed": True,
                "effect": "var_pre_over_lns",
                "unit": "x",
                "label": "the stream variance grows more from the first to the last layer in "
                "pre_ln than in lns",
                "paper": {
                    "reports": "Pre-LN's output variance grows exponentially with depth; LNS "
                    "bounds its growth",
                    "where": "Sun et al., abstract and Sec. 3 (variance analysis)",
                },
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
                "caption": "Pre-LN's stream should grow steadily with depth; LNS's less.",
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
                "caption": "The paper's measure: how much loss one layer's removal costs. Pre-LN's "
                "deep layers should cost little; LNS's and Mix-LN's more.",
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
                "caption": "Shown for context; not part of the criterion.",
            },
        ),
        notes=f"L = {n}, {steps} steps, no warmup. Measured after training on one validation "
        "batch: stream RMS after each layer, branch RMS, layer-drop loss increase (both "
        "branches of the layer zeroed), gradient norm per layer. Last quarter = layers "
        f"{int(0.75 * n) + 1}..{n}.",
        protocol={
            "mirrors": "Sun et al. train LLaMA-style Pre-LN decoders (130M-1B parameters) with "
            "and without LayerNorm Scaling (the norm's output times 1/sqrt(l)) and measure how "
            "much performance drops when each layer is removed; Mix-LN (Post-LN in the first "
            "25% of layers) is measured the same way.",
            "init": "N(0, 0.02), RMSNorm, SwiGLU, RoPE (LLaMA's) for all three",
            "metric": "loss increase when one layer's sublayer outputs are zeroed, after "
            "training (the paper: performance drop on benchmarks); variance growth = "
            "(RMS of the last layer's stream / the first's)^2",
        },
        departures=(
            *LLAMA_DEPARTURES,
            (
                "the loss increase on held-out text instead of benchmark accuracy",
                "no evaluation suites at this scale",
            ),
        ),
        headline={"figure": 1, "check": 0},
        scale=scale,
    )


def peri(scale: str = "quick") -> StudySpec:
    """Kim et al. 2025; Ding et al. 2021: Pre-LN's hidden states grow, Peri/Sandwich bound them."""
    check_scale(scale)
    quick = scale == "quick"
    steps, n, lr = (300, 12, 3e-3) if quick else (3000, 24, 3e-3)
    base = _llama_base(
        scale, steps, lr=lr, probe_every=50 if quick else 250, probes=["stream_rms", "stream_max"]
    )
    scalars = {
        "rms_start": {"probe": "stream_rms", "key": "decoder.*", "reduce": "max", "step": "first"},
        "rms_end": {"probe": "stream_rms", "key": "decoder.*", "reduce": "max", "step": "last"},
        "rms_growth": {"expr": "rms_end / rms_start"},
        "max_abs": {"probe": "stream_max", "key": "decoder.*", "reduce": "max", "step": "last"},
    }
    q: dict[str, dict] = {}
    for t in ("pre_ln", "peri_ln", "sandwich_ln"):
        for s in ("rms_growth", "max_abs", "diverged", "final_loss"):
            q[f"{s}_{t}"] = {"of": s, "where": where(model__topology=t)}
    q["pre_over_peri"] = {"expr": "rms_growth_pre_ln / rms_growth_peri_ln"}
    q["pre_over_sandwich"] = {"expr": "rms_growth_pre_ln / rms_growth_sandwich_ln"}
    fig1 = "Kim et al. Fig. 1 (hidden-state variance per layer from init through training)"
    return study(
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
                "expr": "pre_over_peri > 1",
                "per_seed": True,
                "effect": "pre_over_peri",
                "unit": "x",
                "label": "the largest stream RMS grows more during training in pre_ln than in "
                "peri_ln",
                "paper": {
                    "reports": "Pre-LN's hidden-state variance grows to massive activations "
                    "during training; Peri-LN's stays balanced",
                    "where": fig1,
                },
            },
            {
                "expr": "pre_over_sandwich > 1",
                "per_seed": True,
                "effect": "pre_over_sandwich",
                "unit": "x",
                "label": "... and more than in sandwich_ln",
                "paper": {
                    "reports": "Sandwich-LN stops the value explosion of deep layers",
                    "where": "Ding et al. Sec. 2.4",
                },
            },
            {
                "expr": "diverged_peri_ln <= diverged_pre_ln",
                "label": "peri_ln diverges on no more seeds than pre_ln",
                "paper": {
                    "reports": "Peri-LN trains more stably than Pre-LN",
                    "where": "Kim et al., abstract",
                },
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
                "caption": "Peri-LN's stream starts larger by construction (its embedding is "
                "normalized); the claim is about growth, in the next figure.",
            },
            {
                "type": "bars",
                "value": "rms_growth",
                "x": "model.n_layers",
                "series": "model.topology",
                "title": "Growth of the largest stream RMS during training (end / start)",
                "caption": "Pre-LN's should be the largest.",
            },
            {
                "type": "curves",
                "metric": "loss",
                "series": "model.topology",
                "title": f"Training loss, L = {n}, lr = {lr}",
                "hline": "unigram_loss",
                "caption": "Stability at the high learning rate.",
            },
        ),
        notes=f"L = {n}, {steps} steps, lr {lr}, no warmup; stream RMS and max |x| after every "
        f"sublayer every {base['train']['probe_every']} steps; growth = the largest stream RMS "
        "at the last probe step over the first.",
        protocol={
            "mirrors": "Kim et al. train LLaMA-style decoders (400M-3.2B) as Pre-LN, Post-LN and "
            "Peri-LN and track each layer's hidden-state variance from init through training: "
            "Pre-LN's grows to massive activations, Peri-LN's stays balanced.",
            "init": "N(0, 0.02), RMSNorm, SwiGLU, RoPE for all three",
            "metric": "growth during training of the largest per-layer stream RMS",
        },
        departures=(
            *LLAMA_DEPARTURES,
            (
                f"a high learning rate ({lr}) over {steps} steps instead of billions of tokens",
                "growth has to show within a short run",
            ),
        ),
        headline={"figure": 1, "check": 0},
        scale=scale,
    )
