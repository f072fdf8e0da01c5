"""Gradient and perturbation studies at initialization, without training:
``gradients-at-init`` (Xiong et al. 2020) and ``output-change`` (Liu et al. 2020).

Both measure under Xavier init, the init of the papers, and show resnorm's default N(0, 0.02)
beside it as an informational contrast that does not count towards the verdict: at that scale
the branches are tiny next to the stream, which changes these pictures, and the report says how.
"""

from __future__ import annotations

from resnorm.lab.spec import Part, StudySpec, grid
from resnorm.studies.common import (
    INITS,
    PAPER_INIT,
    check_scale,
    probe_base,
    seeds,
    topo,
    variants,
    where,
)

W2 = "decoder.mlp.down.weight"


def gradients_at_init(scale: str = "quick") -> StudySpec:
    """Xiong et al. 2020: Post-LN's gradients near the output are large at init, Pre-LN's not."""
    check_scale(scale)
    depths = (
        [2, 4, 6, 8, 12, 16, 24, 32, 64]
        if scale == "quick"
        else [2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96]
    )
    return StudySpec(
        name="gradients-at-init",
        title="Gradients at init: Post-LN vs Pre-LN",
        claim="At init, Post-LN has large gradients near the output and Pre-LN does not; the "
        "last layer's gradient is independent of depth for Post-LN and shrinks as L^-1/2 for "
        "Pre-LN.",
        source="Xiong et al. 2020, On Layer Normalization in the Transformer Architecture "
        "(arXiv:2002.04745)",
        parts=(
            Part(
                name="grads",
                run="probe",
                base=probe_base(scale, ["grad_norm"]),
                axes=(
                    grid(
                        model__topology=["post_ln", "pre_ln"],
                        model__n_layers=depths,
                        model__init=list(INITS),
                    ),
                ),
                seeds=seeds(scale),
            ),
        ),
        scalars={
            "w2_first": {"probe": "grad_norm", "key": W2, "layer": "first"},
            "w2_last": {"probe": "grad_norm", "key": W2, "layer": "last"},
            "last_over_first": {"expr": "w2_last / w2_first"},
        },
        quantities=_grad_quantities(PAPER_INIT, "") | _grad_quantities("normal", "_normal"),
        checks=(
            {"expr": "ratio_post_min > 1", "label": "post_ln: last/first > 1 at L >= 12"},
            {"expr": "ratio_pre_max < 1", "label": "pre_ln: last/first < 1 at L >= 12"},
            {"expr": "post_over_pre >= 2.5", "label": "last-layer post/pre >= 2.5 at L >= 12"},
            {"expr": "slope_pre < -0.15", "label": "pre_ln last-layer slope in L < -0.15"},
            {"expr": "slope_post - slope_pre > 0.4", "label": "slopes differ by > 0.4"},
            {
                "expr": "ratio_post_min_normal > 1 and ratio_pre_max_normal < 1 and "
                "post_over_pre_normal >= 2.5",
                "informational": True,
                "label": "the ordering at resnorm's default init N(0, 0.02)",
            },
        ),
        figures=(
            {
                "type": "layers",
                "probe": "grad_norm",
                "key": W2,
                "where": where(model__n_layers=[6, 12, 24]),
                "series": "model.topology",
                "panels": ["model.init", "model.n_layers"],
                "logy": True,
                "title": "||dL/dW2|| per layer at init",
                "ylabel": "gradient norm of W2",
            },
            {
                "type": "scaling",
                "y": "w2_last",
                "x": "model.n_layers",
                "series": ["model.topology", "model.init"],
                "logx": True,
                "logy": True,
                "title": "Last layer's ||dL/dW2|| vs depth",
                "ylabel": "gradient norm",
            },
        ),
        notes="One batch of the built-in corpus; W2 is the FFN's second matrix "
        "(mlp.down.weight). The criterion is evaluated under Xavier init (the paper's); under "
        "N(0, 0.02) Pre-LN's stream is tiny (RMS ~0.03) and its final norm amplifies gradients.",
        scale=scale,
    )


def _grad_quantities(init: str, suffix: str) -> dict[str, dict]:
    deep = [12, 16, 24, 32, 48, 64, 96]
    post = where(model__topology="post_ln", model__init=init)
    pre = where(model__topology="pre_ln", model__init=init)
    q: dict[str, dict] = {
        f"ratio_post_min{suffix}": {
            "of": "last_over_first",
            "agg": "min",
            "where": {**post, "model.n_layers": deep},
        },
        f"ratio_pre_max{suffix}": {
            "of": "last_over_first",
            "agg": "max",
            "where": {**pre, "model.n_layers": deep},
        },
        f"last_post_12{suffix}": {"of": "w2_last", "where": {**post, "model.n_layers": 12}},
        f"last_pre_12{suffix}": {"of": "w2_last", "where": {**pre, "model.n_layers": 12}},
        f"last_post_24{suffix}": {"of": "w2_last", "where": {**post, "model.n_layers": 24}},
        f"last_pre_24{suffix}": {"of": "w2_last", "where": {**pre, "model.n_layers": 24}},
        f"post_over_pre{suffix}": {
            "expr": f"min(last_post_12{suffix} / last_pre_12{suffix}, "
            f"last_post_24{suffix} / last_pre_24{suffix})"
        },
        f"slope_post{suffix}": {"slope": "w2_last", "x": "model.n_layers", "where": post},
        f"slope_pre{suffix}": {"slope": "w2_last", "x": "model.n_layers", "where": pre},
    }
    return q


def output_change(scale: str = "quick") -> StudySpec:
    """Liu et al. 2020: Post-LN amplifies parameter changes, O(N) vs Pre-LN's O(log N)."""
    check_scale(scale)
    depths = [4, 8, 16, 32, 64] if scale == "quick" else [4, 8, 16, 32, 64, 128]
    kinds = variants(
        topo("post_ln"),
        topo("pre_ln"),
        topo("admin"),
        topo("admin", "admin (profiled omega)", omega="profile"),
    )
    params = {"output_change": {"eps": 0.01, "samples": 3}}
    last = depths[-1]

    quantities: dict[str, dict] = {}
    for init in INITS:
        for label in ("post_ln", "pre_ln", "admin"):
            for n in (4, last):
                quantities[f"change_{label}_{init}_{n}"] = {
                    "of": "change",
                    "where": where(label=label, model__init=init, model__n_layers=n),
                }
            quantities[f"growth_{label}_{init}"] = {
                "expr": f"change_{label}_{init}_{last} / change_{label}_{init}_4"
            }
        quantities[f"admin_vs_pre_{init}"] = {"expr": f"growth_admin_{init} / growth_pre_ln_{init}"}
    x = PAPER_INIT
    return StudySpec(
        name="output-change",
        title="Output change under a 1% weight perturbation",
        claim="Post-LN amplifies small parameter changes: the output change grows O(N) with "
        "depth, against O(log N) for Pre-LN; Admin behaves like Pre-LN at init.",
        source="Liu et al. 2020, Understanding the Difficulty of Training Transformers "
        "(arXiv:2004.08249)",
        parts=(
            Part(
                name="perturb",
                run="probe",
                base=probe_base(scale, ["output_change"], **params),
                axes=(kinds, grid(model__n_layers=depths, model__init=list(INITS))),
                seeds=seeds(scale),
            ),
        ),
        scalars={"change": {"probe": "output_change", "key": "logits"}},
        quantities=quantities,
        checks=(
            {
                "expr": f"growth_post_ln_{x} >= 8",
                "label": f"post_ln grows >= x8 from N=4 to {last}",
            },
            {"expr": f"growth_pre_ln_{x} <= 4", "label": f"pre_ln grows <= x4 from N=4 to {last}"},
            {
                "expr": f"admin_vs_pre_{x} >= 0.5 and admin_vs_pre_{x} <= 2",
                "label": "admin's growth within 2x of pre_ln's",
            },
            {
                "expr": "growth_post_ln_normal >= 8 and growth_pre_ln_normal <= 4",
                "informational": True,
                "label": "the same at resnorm's default init N(0, 0.02)",
            },
        ),
        figures=(
            {
                "type": "scaling",
                "y": "change",
                "x": "model.n_layers",
                "series": "label",
                "panels": "model.init",
                "logx": True,
                "logy": True,
                "title": "Relative output change vs depth",
                "ylabel": "||f(W+dW) - f(W)|| / ||f(W)||",
            },
        ),
        notes="Every matrix (embeddings included) gets dW ~ N(0, (0.01 std W)^2); the relative "
        "change of the logits is averaged over 3 perturbations, on one batch of the built-in "
        "corpus. Admin: the library's closed-form omega (counted) and the profiled omega (shown).",
        scale=scale,
    )
