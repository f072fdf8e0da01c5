"""AdamW with decay on matrices only, and the learning-rate schedule (warmup, then decay).

Weight decay: a parameter is decayed when it is a matrix (``ndim >= 2``) used as a linear map.
Vectors and scalars (norm gains and biases, projection biases, topology scales such as
LayerScale's or ReZero's) are not: decaying them pulls gains toward 0, which is not a
regularizer. Embedding tables (``nn.Embedding`` weights, hence also a tied output head) are not
decayed either, unless ``train.decay_embeddings``: a row is only updated when its token occurs,
but decay shrinks every row every step (the choice of minGPT and OLMo 2; nanoGPT decays them).

The step runs AdamW's fused kernel (one kernel over all tensors) where torch has one for the
parameters' device: about 3x faster than the ``foreach`` implementation on a CPU (``make bench``,
section ``optimizer``). The trainer computes the gradient norm once per step and uses it for
the logged value, the monitor and clipping (`clip_grads_`).

The schedule is a pure function of the step, so a resumed run needs no scheduler state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from resnorm.config import TrainConfig


def embedding_parameters(model: nn.Module) -> set[int]:
    """``id`` of every embedding table's weight (tied heads share it)."""
    return {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Two AdamW groups, ``decay`` and ``no_decay``, each with its parameter names (``names``).

    Parameters come in ``named_parameters()`` order (tied weights once), so the optimizer's
    state indices are stable across runs and checkpoints.
    """
    embeddings = embedding_parameters(model)
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_embedding = id(p) in embeddings
        if p.ndim >= 2 and (cfg.decay_embeddings or not is_embedding):
            decay.append((name, p))
        else:
            no_decay.append((name, p))
    return [
        {
            "params": [p for _, p in decay],
            "names": [n for n, _ in decay],
            "weight_decay": cfg.weight_decay,
        },
        {
            "params": [p for _, p in no_decay],
            "names": [n for n, _ in no_decay],
            "weight_decay": 0.0,
        },
    ]


#: Device types with a fused AdamW kernel (torch >= 2.4 has CPU and CUDA ones).
FUSED_DEVICES = ("cpu", "cuda")


def fusable(params: Sequence[Tensor]) -> bool:
    """Whether AdamW's fused kernel takes ``params``: floating point, on a device that has one."""
    return all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups` at the schedule's step-0 learning rate; fused when `fusable`,
    else ``foreach``. The two differ by rounding only (the same update, another kernel)."""
    groups = [g for g in param_groups(model, cfg) if g["params"]]
    params = [p for g in groups for p in g["params"]]
    impl = {"fused": True} if fusable(params) else {"foreach": True}
    return torch.optim.AdamW(
        groups,
        lr=lr_at(0, cfg),
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        **impl,
    )


@torch.no_grad()
def clip_grads_(params: Sequence[Tensor], max_norm: float, norm: Tensor) -> None:
    """Scale the gradients by ``min(1, max_norm / (norm + 1e-6))``, ``norm`` being their
    `~resnorm.diagnostics.gradients.total_grad_norm` (the rule of
    ``torch.nn.utils.clip_grad_norm_``, without computing the norm again)."""
    grads = [p.grad for p in params if p.grad is not None]
    if grads and math.isfinite(max_norm):
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(grads, coef.to(grads[0].device))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (0-based) as a fraction of ``cfg.lr``.

    * warmup, ``step < W``: ``(step + 1) / W`` (the first step already moves the weights);
    * then, with ``p = (step - W) / (S - W - 1)`` clamped to [0, 1] (1 at the last step) and
      ``m = min_lr_ratio``: cosine ``m + (1 - m) (1 + cos(pi p)) / 2``, linear
      ``1 - (1 - m) p``, constant ``1``.
    """
    warmup, steps, m = cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    p = min(1.0, max(0.0, (step - warmup) / max(1, steps - warmup - 1)))
    if cfg.schedule == "cosine":
        return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * p))
    assert cfg.schedule == "linear", f"unknown schedule {cfg.schedule!r}"
    return 1.0 - (1.0 - m) * p


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step ``step``."""
    return cfg.lr * lr_factor(step, cfg)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
