"""Signal-propagation studies at initialization: ``token-alignment`` (Noci et al. 2022) and
``init-scaling`` (GPT-2's residual init).

``token-alignment`` measures under the papers' Transformer init (Xavier, sqrt(d) embeddings);
``init-scaling`` compares GPT-2's plain N(0, 0.02) init with its scaled one, which is its claim.
"""

from __future__ import annotations

import math

from resnorm.lab.spec import Axis, Part, StudySpec, grid
from resnorm.studies.common import (
    SHARED_DEPARTURES,
    check_scale,
    probe_base,
    seeds,
    study,
    topo,
    where,
)


def token_alignment(scale: str = "quick") -> StudySpec:
    """Noci et al. 2022: depth aligns tokens at init unless branches are scaled by 1/sqrt(L)."""
    check_scale(scale)
    depths = [2, 4, 8, 16, 32, 64, 128] if scale == "quick" else [2, 4, 8, 16, 32, 64, 128, 256]
    deep = depths[-1]
    scaled = "pre_ln, 1/sqrt(L) branches"
    points = []
    for n in depths:
        points += [
            {**topo("post_ln"), "model.n_layers": n},
            {**topo("pre_ln"), "model.n_layers": n},
            {**topo("layerscale", scaled, init=1 / math.sqrt(n)), "model.n_layers": n},
        ]
    base = probe_base(scale, ["token_cosine"])
    base["batch"]["source"] = "random"
    q: dict[str, dict] = {}
    for key, label in (("post", "post_ln"), ("pre", "pre_ln"), ("scaled", scaled)):
        for n in (depths[0], deep):
            q[f"{key}_{n}"] = {"of": "cosine", "where": where(label=label, model__n_layers=n)}
        q[f"{key}_rise"] = {"expr": f"{key}_{deep} - {key}_{depths[0]}"}
    q["pre_minus_scaled"] = {"expr": f"pre_{deep} - scaled_{deep}"}
    paper = "Fig. 1 and Sec. 3 (token correlation through depth at init)"
    return study(
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
                axes=(Axis("list", points=tuple(points)),),
                seeds=seeds(scale),
            ),
        ),
        scalars={"cosine": {"probe": "token_cosine", "key": "decoder", "layer": "last"}},
        quantities=q,
        checks=(
            {
                "expr": "post_rise > 0",
                "per_seed": True,
                "effect": "post_rise",
                "label": f"post_ln: the token cosine after the last layer rises from "
                f"L = {depths[0]} to {deep}",
                "paper": {
                    "reports": "without residual scaling, token alignment rises with depth",
                    "where": paper,
                },
            },
            {
                "expr": "pre_rise > 0",
                "per_seed": True,
                "effect": "pre_rise",
                "label": f"pre_ln: the token cosine rises from L = {depths[0]} to {deep}",
                "paper": {
                    "reports": "without residual scaling, token alignment rises with depth",
                    "where": paper,
                },
            },
            {
                "expr": "pre_minus_scaled > 0 and scaled_rise < pre_rise",
                "per_seed": True,
                "effect": "pre_minus_scaled",
                "label": f"1/sqrt(L) branch scaling: a lower cosine than pre_ln at L = {deep} "
                "and a smaller rise with depth",
                "paper": {
                    "reports": "scaling the residual branches by 1/sqrt(L) prevents the "
                    "alignment (rank collapse) as depth grows",
                    "where": "Sec. 3, residual scaling",
                },
            },
        ),
        figures=(
            {
                "type": "scaling",
                "y": "cosine",
                "x": "model.n_layers",
                "series": "label",
                "logx": True,
                "logy": False,
                "title": "Mean pairwise token cosine after the last layer",
                "ylabel": "token cosine",
                "caption": "Unscaled stacks should align their tokens more as they deepen; the "
                "1/sqrt(L)-scaled one should rise less.",
            },
            {
                "type": "layers",
                "probe": "token_cosine",
                "key": "decoder",
                "where": where(model__n_layers=64),
                "series": "label",
                "logy": False,
                "title": "Token cosine per layer, L = 64",
                "ylabel": "token cosine",
                "caption": "Within one 64-layer stack: how the cosine builds up layer by layer.",
            },
        ),
        notes="Causal decoder on uniform random tokens (nearly orthogonal inputs, cosine ~0). "
        "Branch scaling: LayerScale with every channel's scale fixed at 1/sqrt(L) at init.",
        protocol={
            "mirrors": "Noci et al. study the correlation (cosine) between token representations "
            "through depth at init, and show that scaling the residual branches by 1/sqrt(L) "
            "keeps tokens from aligning (rank collapse), which otherwise hinders training.",
            "init": "Xavier-uniform matrices, embeddings N(0, 1/d) x sqrt(d)",
            "metric": "mean pairwise cosine between the tokens of a sequence after the last layer",
        },
        departures=(
            *SHARED_DEPARTURES,
            (
                "the paper's numbers are not used: its criterion here is the direction of the "
                "effect, per seed",
                "the paper's figures show trends, not thresholds",
            ),
        ),
        headline={"figure": 0, "check": 2},
        scale=scale,
    )


def init_scaling(scale: str = "quick") -> StudySpec:
    """GPT-2's 1/sqrt(2N) residual init keeps the stream from growing with depth."""
    check_scale(scale)
    depths = [2, 4, 8, 16, 32, 64, 96] if scale == "quick" else [2, 4, 8, 16, 32, 64, 96, 192]
    gpt2_base = probe_base(scale, ["stream_rms"])
    gpt2_base["model"]["embed_scale"] = False  # GPT-2's embeddings are not scaled
    return study(
        name="init-scaling",
        title="Residual-stream growth at init: plain vs GPT-2 scaled init",
        claim="GPT-2's 1/sqrt(2N) initialization of the residual output projections keeps the "
        "residual stream from growing with depth.",
        source="Radford et al. 2019, Language Models are Unsupervised Multitask Learners (GPT-2)",
        parts=(
            Part(
                name="stream",
                run="probe",
                base=gpt2_base,
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
            {
                "expr": "slope_plain > 0.25",
                "per_seed": True,
                "effect": "slope_plain",
                "label": "plain N(0, 0.02): the stream grows with depth, a log-log slope closer "
                "to 1/2 (2L branches adding variance) than to 0",
                "paper": {
                    "reports": "the residual path accumulates with depth (the reason for the "
                    "scaled init); no number given",
                    "where": "Sec. 2.3",
                },
            },
            {
                "expr": "slope_scaled < 0.25",
                "per_seed": True,
                "effect": "slope_scaled",
                "label": "GPT-2 scaled init: a slope closer to 0 than to 1/2",
                "paper": {
                    "reports": "scaling the residual layers' weights by 1/sqrt(N) accounts for "
                    "the accumulation",
                    "where": "Sec. 2.3",
                },
            },
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
                "slopes": [{"slope": 0.5, "label": "L^1/2"}, {"slope": 0.0, "label": "L^0"}],
                "caption": "With 2L branches each adding a fixed variance the stream grows as "
                "L^1/2; GPT-2's 1/sqrt(2L) scaling should keep it flat.",
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
        protocol={
            "mirrors": "GPT-2 (a Pre-LN decoder, N(0, 0.02) init, unscaled embeddings) scales "
            "the residual layers' output projections by 1/sqrt(N) at init, N the number of "
            "residual layers, to account for their accumulation on the residual path.",
            "init": "N(0, 0.02) (plain) vs GPT-2's scaled N(0, 0.02 / sqrt(2L)) projections",
            "embedding": "unscaled, as in GPT-2",
            "metric": "RMS(x_L) / RMS(x_0), the log-log slope over L",
        },
        departures=(
            *SHARED_DEPARTURES[:1],
            (
                "the thresholds are the midpoint between the two depth exponents of the "
                "variance argument (1/2 and 0)",
                "the paper states the reason, not a number",
            ),
        ),
        headline={"figure": 0, "check": 0},
        scale=scale,
    )
