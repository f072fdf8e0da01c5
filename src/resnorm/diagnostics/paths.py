"""``skip_paths``: the rank-collapse residual through one encoder's layers wired four ways.

Dong et al. 2021 (Attention is not all you need, arXiv:2103.03404) show that a stack of pure
self-attention layers loses rank doubly exponentially with depth, and that skip connections (and,
less, MLPs) counter it. `skip_paths` builds one bidirectional encoder (resnorm's own modules,
its init scheme, seeded), feeds it X ~ N(0, 1) directly (no embedding) and follows the
rank-collapse residual ``r_l = ||X_l - mean_tokens(X_l)|| / ||X_l||`` through the same layers
wired four ways (`PATHS`):

* ``attention_only``: ``X <- Attn(X)``;
* ``attention_skip``: ``X <- X + Attn(X)``;
* ``attention_mlp_ln``: ``X <- MLP(N(Attn(N(X))))`` (the ``no_residual`` topology);
* ``pre_ln``: ``X <- X + F(N(X))`` per sublayer (the full Pre-LN layer).

Computed in float64 so that values far below float32's resolution are measured, not rounded.
It is not a resnorm model run, so the lab runs it as a registered measurement
(`resnorm.diagnostics.measures.MEASURES`, run kind ``skip_paths``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from resnorm.diagnostics.base import Record
from resnorm.errors import choice_error

PATHS = ("attention_only", "attention_skip", "attention_mlp_ln", "pre_ln")


@dataclass(frozen=True)
class SkipPathsConfig:
    """One path of the ``skip`` study at init.

    Attributes:
        path: one of `PATHS`.
        n_layers, d_model, n_heads: the encoder.
        seq_len, batch_size: the shape of X.
        init: the model's init scheme (``xavier``, ``normal``, ...).
        init_std: the std of the ``normal`` init (Dong et al.'s BERT models: N(0, 0.02) at
            d = 768; width-matched: 0.02 sqrt(768 / d)).
        seed: seeds the weights and X.
    """

    path: str = "attention_only"
    n_layers: int = 32
    d_model: int = 64
    n_heads: int = 4
    seq_len: int = 32
    batch_size: int = 4
    init: str = "xavier"
    init_std: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise choice_error("path", self.path, PATHS)


def _rank_collapse(x: Tensor) -> float:
    """``||X - mean_tokens(X)|| / ||X||`` per sequence, mean over the batch, in x's precision
    (`resnorm.diagnostics.rank_collapse` computes in float32)."""
    residual = x - x.mean(dim=-2, keepdim=True)
    return float((residual.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).mean())


def skip_paths(cfg: SkipPathsConfig) -> tuple[list[Record], dict[str, float]]:
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
        init_std=cfg.init_std,
        positional="none",
        max_seq_len=cfg.seq_len,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(model_cfg).double().eval()
        x = torch.randn(cfg.batch_size, cfg.seq_len, cfg.d_model, dtype=torch.float64)
    stack, ctx = model.encoder, Context(causal=False)
    assert stack is not None, "an encoder model has an encoder stack"
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
