"""Signal-propagation studies at initialization: ``token-alignment`` (Noci et al. 2022) and
``init-scaling`` (GPT-2's residual init).

``token-alignment`` measures under Xavier init (the paper's setting) with resnorm's default
N(0, 0.02) shown beside it as an informational contrast; ``init-scaling`` compares the plain
N(0, 0.02) init with GPT-2's scaled one, which is its claim.
"""

from __future__ import annotations

import math

from resnorm.lab.spec import Axis, Part, StudySpec, grid
from resnorm.studies.common import (
    INITS,
    PAPER_INIT,
    check_scale,
    probe_base,
    seeds,
    topo,
    where,
)


def token_alignment(scale: str = "quick") -> StudySpec:
    """Noci et al. 2022: depth aligns tokens at init unless branches are scaled by 1/sqrt(L)."""
    check_scale(scale)
    depths = [2, 4, 8, 16, 32, 64, 128] if scale == "quick" else [2, 4, 8, 16, 32, 64, 128, 256]
    points = []
    for n in depths:
        points += [
            {**topo("post_ln"), "model.n_layers": n},
            {**topo("pre_ln"), "model.n_layers": n},
            {
                **topo("layerscale", "pre_ln, 1/sqrt(L) branches", init=1 / math.sqrt(n)),
                "model.n_layers": n,
            },
        ]
    base = probe_base(scale, ["token_cosine"])
    base["batch"]["source"] = "random"
    q: dict[str, dict] = {}
    for init in INITS:
        q[f"post_32_{init}"] = {
            "of": "cosine",
            "where": where(label="post_ln", model__init=init, model__n_layers=32),
        }
        q[f"pre_trend_{init}"] = {
            "trend": "cosine",
            "x": "model.n_layers",
            "where": where(label="pre_ln", model__init=init),
        }
        q[f"scaled_max_{init}"] = {
            "of": "cosine",
            "agg": "max",
            "where": where(label="pre_ln, 1/sqrt(L) branches", model__init=init),
        }
    x = PAPER_INIT
    return StudySpec(
        name="token-alignment",
        title="Token alignment with depth at init",
        claim="At init, depth aligns the token representations (rank collapse) unless the "
        "residual branches are scaled down by 1/sqrt(L).",
        source="Noci et al. 2022, Signal Propagation in Transformers (arXiv:2206.03126)",
        parts=(
            Part(
                name="cosine",
                run="probe",
                base=base,
                axes=(Axis("list", points=tuple(points)), grid(model__init=list(INITS))),
                seeds=seeds(scale),
            ),
        ),
        scalars={"cosine": {"probe": "token_cosine", "key": "decoder", "layer": "last"}},
        quantities=q,
        checks=(
            {"expr": f"post_32_{x} > 0.9", "label": "post_ln: cosine > 0.9 at L = 32"},
            {"expr": f"pre_trend_{x} >= 0.999", "label": "pre_ln: cosine increasing in L"},
            {"expr": f"scaled_max_{x} < 0.3", "label": "1/sqrt(L)-scaled: cosine < 0.3 at every L"},
            {
                "expr": "post_32_normal > 0.9 and pre_trend_normal >= 0.999 and "
                "scaled_max_normal < 0.3",
                "informational": True,
                "label": "the same at resnorm's default init N(0, 0.02)",
            },
        ),
        figures=(
            {
                "type": "scaling",
                "y": "cosine",
                "x": "model.n_layers",
                "series": "label",
                "panels": "model.init",
                "logx": True,
                "logy": False,
                "title": "Mean pairwise token cosine after the last layer",
                "ylabel": "token cosine",
            },
            {
                "type": "layers",
                "probe": "token_cosine",
                "key": "decoder",
                "where": where(model__n_layers=64),
                "series": "label",
                "panels": "model.init",
                "logy": False,
                "title": "Token cosine per layer, L = 64",
                "ylabel": "token cosine",
            },
        ),
        notes="Causal decoder on uniform random tokens (the input tokens are nearly orthogonal, "
        "cosine ~0). Branch scaling: LayerScale with every channel's scale fixed at 1/sqrt(L) at "
        "init.",
        scale=scale,
    )


def init_scaling(scale: str = "quick") -> StudySpec:
    """GPT-2's 1/sqrt(2N) residual init keeps the stream from growing with depth."""
    check_scale(scale)
    depths = [2, 4, 8, 16, 32, 64, 96] if scale == "quick" else [2, 4, 8, 16, 32, 64, 96, 192]
    return StudySpec(
        name="init-scaling",
        title="Residual-stream growth at init: plain vs GPT-2 scaled init",
        claim="GPT-2's 1/sqrt(2N) initialization of the residual output projections keeps the "
        "residual stream from growing with depth.",
        source="Radford et al. 2019, Language Models are Unsupervised Multitask Learners (GPT-2)",
        parts=(
            Part(
                name="stream",
                run="probe",
                base=probe_base(scale, ["stream_rms"]),
                axes=(
                    grid(
                        model__topology=["pre_ln"],
                        model__init=["normal", "gpt2"],
                        model__n_layers=depths,
                    ),
                ),
                seeds=seeds(scale),
            ),
        ),
        scalars={
            "rms_embed": {"probe": "stream_rms", "key": "decoder.embed"},
            "rms_last": {"probe": "stream_rms", "key": "decoder.mlp", "layer": "last"},
            "growth": {"expr": "rms_last / rms_embed"},
        },
        quantities={
            "slope_plain": {
                "slope": "growth",
                "x": "model.n_layers",
                "where": where(model__init="normal"),
            },
            "slope_scaled": {
                "slope": "growth",
                "x": "model.n_layers",
                "where": where(model__init="gpt2"),
            },
        },
        checks=(
            {"expr": "slope_plain >= 0.35", "label": "plain init: log-log slope >= 0.35"},
            {"expr": "slope_scaled <= 0.05", "label": "scaled init: log-log slope <= 0.05"},
        ),
        figures=(
            {
                "type": "scaling",
                "y": "growth",
                "x": "model.n_layers",
                "series": "model.init",
                "logx": True,
                "logy": True,
                "title": "RMS(x_L) / RMS(x_0) at init",
                "ylabel": "stream RMS growth",
            },
            {
                "type": "layers",
                "probe": "stream_rms",
                "key": "decoder.mlp",
                "where": where(model__n_layers=96),
                "series": "model.init",
                "logy": True,
                "title": "Stream RMS per layer, L = 96",
                "ylabel": "RMS",
            },
        ),
        notes="Pre-LN decoder, one batch of the built-in corpus; x_0 is the embedding output and "
        "x_L the stream after the last layer, before the final norm.",
        scale=scale,
    )
