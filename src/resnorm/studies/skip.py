"""The ``skip`` study: rank collapse without skip connections (Dong et al. 2021), and its
measurement, ``skip_paths``, which is not a resnorm model.

Dong et al. 2021 (Attention is not all you need, arXiv:2103.03404) show that a stack of pure
self-attention layers loses rank doubly exponentially with depth, and that skip connections (and,
less, MLPs) counter it. ``skip_paths`` builds one bidirectional encoder (resnorm's own modules,
its init scheme, seeded), feeds it X ~ N(0, 1) directly (no embedding) and follows the
rank-collapse residual ``r_l = ||X_l - mean_tokens(X_l)|| / ||X_l||`` through the same layers
wired four ways:

* ``attention_only``: ``X <- Attn(X)``;
* ``attention_skip``: ``X <- X + Attn(X)``;
* ``attention_mlp_ln``: ``X <- MLP(N(Attn(N(X))))`` (the ``no_residual`` topology);
* ``pre_ln``: ``X <- X + F(N(X))`` per sublayer (the full Pre-LN layer).

Computed in float64 so that values far below float32's resolution are measured, not rounded.
The study adds a training part: ``no_residual`` against ``pre_ln``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnorm.diagnostics import Record
from resnorm.errors import choice_error
from resnorm.lab.spec import Part, StudySpec, grid
from resnorm.lab.tasks import MEASURES, Measure
from resnorm.studies.common import INITS, PAPER_INIT, check_scale, seeds, train_base, where

PATHS = ("attention_only", "attention_skip", "attention_mlp_ln", "pre_ln")


@dataclass(frozen=True)
class SkipPathsConfig:
    """One path of the ``skip`` study at init.

    Attributes:
        path: one of `PATHS`.
        n_layers, d_model, n_heads: the encoder.
        seq_len, batch_size: the shape of X.
        init: the model's init scheme (``xavier``, ``normal``, ...).
        seed: seeds the weights and X.
    """

    path: str = "attention_only"
    n_layers: int = 32
    d_model: int = 64
    n_heads: int = 4
    seq_len: int = 32
    batch_size: int = 4
    init: str = "xavier"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise choice_error("path", self.path, PATHS)


def _rank_collapse(x: Any) -> float:
    """``||X - mean_tokens(X)|| / ||X||`` per sequence, mean over the batch, in x's precision
    (`resnorm.diagnostics.rank_collapse` computes in float32)."""
    residual = x - x.mean(dim=-2, keepdim=True)
    return float((residual.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).mean())


def skip_paths(cfg: SkipPathsConfig) -> tuple[list[Any], dict[str, float]]:
    """``r_l`` after each layer (records ``rank_collapse``, key ``encoder``) and of X itself
    (layer ``None``, key ``encoder.embed``)."""
    import torch

    from resnorm.nn.config import ModelConfig
    from resnorm.nn.context import Context
    from resnorm.nn.model import build_model

    topology = "no_residual" if cfg.path == "attention_mlp_ln" else "pre_ln"
    model_cfg = ModelConfig(
        kind="encoder",
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        topology=topology,
        init=cfg.init,
        positional="none",
        max_seq_len=cfg.seq_len,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(model_cfg).double().eval()
        x = torch.randn(cfg.batch_size, cfg.seq_len, cfg.d_model, dtype=torch.float64)
    stack, ctx = model.encoder, Context(causal=False)
    records = [Record("rank_collapse", None, "encoder.embed", _rank_collapse(x), "ratio")]
    with torch.no_grad():
        for layer in stack.layers:
            if cfg.path == "attention_only":
                x = layer.attn(x, ctx)
            elif cfg.path == "attention_skip":
                x = x + layer.attn(x, ctx)
            else:
                x = stack.topology.layer(layer, x, ctx)
            r = _rank_collapse(x)
            records.append(Record("rank_collapse", layer.index, "encoder", r, "ratio"))
    return records, {"r_last": records[-1].value}


MEASURES.register("skip_paths")(Measure(SkipPathsConfig, skip_paths))


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
                path=["attention_only", "attention_skip", "attention_mlp_ln", "pre_ln"],
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
