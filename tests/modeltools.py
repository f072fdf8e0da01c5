"""Shared test utilities for the model tests: tiny configs, weight noise, manual forward."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from resnorm import ModelConfig, build_model
from resnorm.nn.model import Transformer

TINY: dict[str, Any] = dict(vocab_size=37, d_model=24, n_heads=4, max_seq_len=32)


def tiny(topology: str = "pre_ln", **kw: Any) -> ModelConfig:
    return ModelConfig(**{**TINY, "n_layers": 2, "topology": topology, **kw})


def noisy(cfg: ModelConfig, seed: int = 0, scale: float = 0.1) -> Transformer:
    """The model of ``cfg`` with noise on every parameter, so no weight sits at a neutral value
    (norm gains 1, biases 0, scales 0) that would hide a wiring error."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


def tokens(cfg: ModelConfig, batch: int = 2, seq: int = 9, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (batch, seq), generator=g)


def run(model: Transformer, ids: Tensor) -> Tensor:
    """The last stack's hidden states; enc-dec models decode the same tokens."""
    dec = ids if model.cfg.kind == "encoder_decoder" else None
    return model.hidden(ids, decoder_input_ids=dec)


def branch(layer: Any, s: str, ctx: Any) -> Any:
    """F for sublayer ``s`` computed directly from its module (no topology involved)."""
    module = getattr(layer, s)
    return (lambda h: module(h)) if s == "mlp" else (lambda h: module(h, ctx))


def copy_weights(src: Transformer, dst: Transformer) -> None:
    """Load ``src``'s tensors into ``dst`` wherever the names match (others untouched)."""
    theirs = src.state_dict()
    mine = dst.state_dict()
    shared = {k: v for k, v in theirs.items() if k in mine}
    assert shared, "no shared parameters"
    dst.load_state_dict(shared, strict=False)
