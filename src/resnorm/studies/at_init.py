"""Gradient and perturbation studies at initialization, without training:
``gradients-at-init`` (Xiong et al. 2020) and ``output-change`` (Liu et al. 2020).

Both use the papers' Transformer init (`PAPER_MODEL`: Xavier, sqrt(d)-scaled embeddings) for
every topology. Their thresholds come from the papers' theorems: a measured depth exponent
is read as the theoretical exponent it is closer to (the midpoint between the two predictions,
on a log scale for growth factors), which needs no number of ours.
"""

from __future__ import annotations

import math

from resnorm.lab.spec import Part, StudySpec, grid
from resnorm.studies.common import (
    PAPER_MODEL,
    SHARED_DEPARTURES,
    check_scale,
    probe_base,
    seeds,
    study,
    topo,
    variants,
    where,
)

W2 = "decoder.mlp.down.weight"


def gradients_at_init(scale: str = "quick") -> StudySpec:
    """Xiong et al. 2020: Post-LN's gradients near the output are large at init, Pre-LN's not."""
    check_scale(scale)
    quick = scale == "quick"
    depths = [2, 4, 6, 8, 12, 16, 24, 32, 64] if quick else [2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96]
    post, pre = where(model__topology="post_ln"), where(model__topology="pre_ln")
    at6 = {"model.n_layers": 6}
    quantities = {
        "ratio_post_6": {"of": "last_over_first", "where": {**post, **at6}},
        "ratio_pre_6": {"of": "last_over_first", "where": {**pre, **at6}},
        "last_post_6": {"of": "w2_last", "where": {**post, **at6}},
        "last_pre_6": {"of": "w2_last", "where": {**pre, **at6}},
        "post_over_pre_6": {"expr": "last_post_6 / last_pre_6"},
        "slope_post": {"slope": "w2_last", "x": "model.n_layers", "where": post},
        "slope_pre": {"slope": "w2_last", "x": "model.n_layers", "where": pre},
        "slope_gap": {"expr": "slope_post - slope_pre"},
    }
    fig3 = "Fig. 3 (6-layer Post-LN/Pre-LN Transformers at init, Xavier)"
    thm1 = "Theorem 1: ||dL/dW2_L|| is O(d sqrt(ln d)) for Post-LN, O(d sqrt(ln d / L)) for Pre-LN"
    return study(
        name="gradients-at-init",
        title="Gradients at init: Post-LN vs Pre-LN",
        claim="At init, Post-LN's gradients grow towards the output layer and Pre-LN's do not; "
        "the last layer's gradient is independent of depth for Post-LN and shrinks as L^-1/2 "
        "for Pre-LN.",
        source="Xiong et al. 2020, On Layer Normalization in the Transformer Architecture "
        "(arXiv:2002.04745)",
        parts=(
            Part(
                name="grads",
                run="probe",
                base=probe_base(scale, ["grad_norm"]),
                axes=(grid(model__topology=["post_ln", "pre_ln"], model__n_layers=depths),),
                seeds=seeds(scale, quick=6, full=10),
            ),
        ),
        scalars={
            "w2_first": {"probe": "grad_norm", "key": W2, "layer": "first"},
            "w2_last": {"probe": "grad_norm", "key": W2, "layer": "last"},
            "last_over_first": {"expr": "w2_last / w2_first"},
        },
        quantities=quantities,
        checks=(
            {
                "expr": "ratio_post_6 > 1",
                "per_seed": True,
                "effect": "ratio_post_6",
                "unit": "x",
                "label": "post_ln, L = 6: ||dL/dW2|| of the last layer exceeds the first's",
                "paper": {
                    "reports": "Post-LN's W2 gradient norm increases with the layer index",
                    "where": fig3,
                },
            },
            {
                "expr": "ratio_post_6 > ratio_pre_6",
                "per_seed": True,
                "label": "L = 6: the last/first gradient ratio is larger for post_ln than pre_ln",
                "paper": {
                    "reports": "Pre-LN's W2 gradient norm stays about the same across layers",
                    "where": fig3,
                },
            },
            {
                "expr": "post_over_pre_6 > 1",
                "per_seed": True,
                "effect": "post_over_pre_6",
                "unit": "x",
                "label": "L = 6: the last layer's gradient is larger for post_ln than pre_ln",
                "paper": {
                    "reports": "Post-LN's last-layer gradient is larger than Pre-LN's; by "
                    "Theorem 1 the ratio grows as sqrt(L)",
                    "where": fig3 + "; Theorem 1",
                },
            },
            {
                "expr": "slope_pre < -0.25",
                "per_seed": True,
                "effect": "slope_pre",
                "label": "pre_ln: the last layer's gradient falls with depth, a log-log slope "
                "closer to -1/2 than to 0",
                "paper": {"reports": "Pre-LN: slope -1/2 in L", "where": thm1},
            },
            {
                "expr": "slope_post > -0.25",
                "per_seed": True,
                "effect": "slope_post",
                "label": "post_ln: the last layer's gradient does not fall with depth, a "
                "log-log slope closer to 0 than to -1/2",
                "paper": {"reports": "Post-LN: slope 0 in L (independent of depth)", "where": thm1},
            },
        ),
        figures=(
            {
                "type": "layers",
                "probe": "grad_norm",
                "key": W2,
                "where": where(model__n_layers=[6, 24]),
                "series": "model.topology",
                "panels": "model.n_layers",
                "logy": True,
                "title": "||dL/dW2|| per layer at init",
                "ylabel": "gradient norm of W2",
                "caption": "The paper's Fig. 3 at L = 6 (left): Post-LN's gradient rises towards "
                "the output, Pre-LN's stays level.",
            },
            {
                "type": "scaling",
                "y": "w2_last",
                "x": "model.n_layers",
                "series": "model.topology",
                "logx": True,
                "logy": True,
                "title": "Last layer's ||dL/dW2|| vs depth",
                "ylabel": "gradient norm",
                "slopes": [
                    {"slope": 0.0, "label": "post_ln theory: L^0"},
                    {"slope": -0.5, "label": "pre_ln theory: L^-1/2"},
                ],
                "caption": "Theorem 1: Post-LN's last-layer gradient is flat in L, Pre-LN's "
                "falls as L^-1/2 (dotted reference slopes).",
            },
        ),
        notes="One batch of the built-in corpus (8 x 64 tokens at quick scale); W2 is the FFN's "
        "second matrix (mlp.down.weight); the loss is next-token cross-entropy.",
        protocol={
            "mirrors": "Xiong et al. measure ||dL/dW2|| of each layer's FFN at init for 6-layer "
            "Post-LN and Pre-LN Transformers (IWSLT14 De-En, Xavier init, sqrt(d)-scaled "
            "embeddings) and prove the last layer's gradient scales as L^0 (Post-LN) vs "
            "L^-1/2 (Pre-LN). We measure the same gradient on the same init at L = 6 and over "
            "L = 2..64.",
            "init": "Xavier-uniform matrices, embeddings N(0, 1/d) x sqrt(d), for both",
            "final_norm": "Pre-LN has a final LayerNorm, Post-LN none (as in the paper)",
            "width": "d = 64 (quick), 256 (full); the paper's d = 512",
            "metric": "Frobenius norm of dL/dW2 per layer (the paper's)",
        },
        departures=(
            *SHARED_DEPARTURES,
            ("d = 64 instead of 512", "CPU scale; the theorem's rates in L do not depend on d"),
            (
                "6 seeds of a single batch, not one trained-data batch",
                "the per-seed directions and intervals need independent draws",
            ),
        ),
        headline={"figure": 0, "check": 2},
        scale=scale,
    )


def output_change(scale: str = "quick") -> StudySpec:
    """Liu et al. 2020: Post-LN amplifies parameter changes, O(N) vs Pre-LN's O(log N)."""
    check_scale(scale)
    depths = [4, 8, 16, 32, 64] if scale == "quick" else [4, 8, 16, 32, 64, 128]
    first, last = depths[0], depths[-1]
    # O(N) predicts a growth of last/first from N = first to last, O(log N) ln(last)/ln(first);
    # a measured growth is read as the prediction it is closer to on a log scale.
    linear, logarithmic = last / first, math.log(last) / math.log(first)
    midpoint = round(math.sqrt(linear * logarithmic), 2)
    kinds = variants(
        topo("post_ln"),
        topo("pre_ln"),
        topo("admin"),
        topo("admin", "admin (profiled omega)", omega="profile"),
    )
    quantities: dict[str, dict] = {}
    for label in ("post_ln", "pre_ln", "admin"):
        for n in (first, last):
            quantities[f"change_{label}_{n}"] = {
                "of": "change",
                "where": where(label=label, model__n_layers=n),
            }
        quantities[f"growth_{label}"] = {"expr": f"change_{label}_{last} / change_{label}_{first}"}
    quantities["post_over_pre"] = {"expr": "growth_post_ln / growth_pre_ln"}
    thm = "Theorem 2 and Fig. 4 (output change vs depth N)"

    def growth_check(label: str, op: str, theory: str, reports: str) -> dict:
        return {
            "expr": f"growth_{label} {op} {midpoint}",
            "per_seed": True,
            "effect": f"growth_{label}",
            "unit": "x",
            "label": f"{label}: output change grows from N = {first} to {last} {theory} "
            f"(x{midpoint} = the log-midpoint of O(N)'s x{linear:g} and O(log N)'s "
            f"x{logarithmic:.2f})",
            "paper": {"reports": reports, "where": thm},
        }

    return study(
        name="output-change",
        title="Output change under a small weight perturbation",
        claim="Post-LN amplifies small parameter changes: the output change Var[F(W+dW) - F(W)] "
        "grows O(N) with depth, against O(log N) for Pre-LN; Admin behaves like Pre-LN at init.",
        source="Liu et al. 2020, Understanding the Difficulty of Training Transformers "
        "(arXiv:2004.08249)",
        parts=(
            Part(
                name="perturb",
                run="probe",
                base=probe_base(scale, ["output_change"], output_change={"eps": 0.01}),
                axes=(kinds, grid(model__n_layers=depths)),
                seeds=seeds(scale, quick=6, full=10),
            ),
        ),
        scalars={"change": {"probe": "output_change", "key": "hidden"}},
        quantities=quantities,
        checks=(
            growth_check("post_ln", ">", "like O(N)", "Post-LN's output change is O(N)"),
            growth_check("pre_ln", "<", "like O(log N)", "Pre-LN's output change is O(log N)"),
            growth_check(
                "admin", "<", "like O(log N)", "Admin's output change is O(log N), like Pre-LN"
            ),
        ),
        figures=(
            {
                "type": "scaling",
                "y": "change",
                "x": "model.n_layers",
                "series": "label",
                "logx": True,
                "logy": True,
                "title": "Output change vs depth N",
                "ylabel": "Var[h(W+dW) - h(W)] / Var[h(W)]",
                "slopes": [{"slope": 1.0, "label": "post_ln theory: O(N)"}],
                "caption": "Post-LN should follow the O(N) slope; Pre-LN and Admin should stay "
                "nearly flat (O(log N)).",
            },
        ),
        notes="Every matrix (embeddings included) gets dW ~ N(0, (0.01 std W)^2); the change "
        "of the last hidden state (after the final norm where there is one) as a variance "
        "ratio, averaged over 3 perturbations, on one batch of the built-in corpus. Admin: "
        "the library's closed-form omega (counted) and the profiled omega (shown).",
        protocol={
            "mirrors": "Liu et al. perturb the parameters of 6- to 18-layer Post-LN, Pre-LN and "
            "Admin Transformers (WMT14 En-De, Xavier init) at init and compare "
            "|F(x, W) - F(x, W*)|^2 of the final layer's output with depth; their Theorem 2 "
            "gives O(N) for Post-LN and O(log N) for Pre-LN and Admin.",
            "init": "Xavier-uniform matrices, embeddings N(0, 1/d) x sqrt(d); Admin's omega on top",
            "metric": "Var[h(W+dW) - h(W)] / Var[h(W)] of the last hidden state; the paper's "
            "F ends in a LayerNorm so Var[F] ~ 1 and the two agree",
            "depth": f"N = {', '.join(map(str, depths))} (the paper: 6, 12, 18)",
        },
        departures=(
            *SHARED_DEPARTURES,
            (
                "a random perturbation of 1% of each matrix's std instead of one Adam update",
                "the theorem holds for any small perturbation independent of W; a random one "
                "needs no training step",
            ),
            ("a decoder-only stack, not encoder-decoder", "the same per-layer recursion"),
        ),
        headline={"figure": 0, "check": 0},
        scale=scale,
    )


__all__ = ["PAPER_MODEL", "gradients_at_init", "output_change"]
