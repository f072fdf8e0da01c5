"""Every registered probe, and ``run_at_init``: one batch through the model with the probes on.

=====================  =======  ==========================================================
probe                  kind     what
=====================  =======  ==========================================================
``grad_norm``          grad     gradient L2 norms: global, per layer / sublayer / tensor
``stream_rms``         forward  RMS of the residual stream after each sublayer + embedding
``stream_max``         forward  max abs of the residual stream after each sublayer
``branch_rms``         forward  RMS of each sublayer output F(.)
``update_ratio``       update   ||dW|| / ||W|| of one optimizer step
``rank_collapse``      forward  ||X - mean_tokens X|| / ||X|| after each layer
``token_cosine``       forward  mean pairwise token cosine after each layer
``output_change``      pass     relative output change under a 1% weight perturbation
``layer_drop``         pass     loss increase with one layer's branches zeroed
``attention_entropy``  forward  mean attention entropy (nats) per attention module
``norm_input_scale``   forward  RMS of each norm's input
=====================  =======  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from resnorm.diagnostics import forward, gradients, perturb
from resnorm.diagnostics.base import (
    PROBES,
    Batch,
    GradProbe,
    HookProbe,
    LossFn,
    PassProbe,
    Probe,
    Record,
    UpdateProbe,
    cross_entropy,
    make_probes,
    model_output,
)

__all__ = ["PROBES", "forward", "gradients", "perturb", "run_at_init"]

OptimizerFn = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def _adam(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


def run_at_init(
    model: nn.Module,
    batch: Batch,
    probes: Sequence[str | Probe] = ("grad_norm", "stream_rms"),
    loss_fn: LossFn = cross_entropy,
    optimizer_fn: OptimizerFn = _adam,
) -> list[Record]:
    """Run ``probes`` on one batch: one forward pass with the hook probes attached, a backward
    pass if a probe needs gradients, then each probe that runs its own passes.

    The model runs in eval mode (dropout off, so measurements are deterministic) and is left as
    it was found: training flag restored, gradients cleared (``grad = None``), weights unchanged
    (``update_ratio`` steps a throwaway ``optimizer_fn(params)``, default Adam lr 1e-3, and puts
    the weights back). Every hook is removed, also when a probe or the model raises. Works on a
    trained model as well ("at init" is the typical use).

    Args:
        model: a resnorm ``Transformer`` (or anything with its module names).
        batch: ``(inputs, targets)``; inputs are ``input_ids`` (B, T) or a mapping of model
            keyword arguments (``encoder_decoder``: ``input_ids``, ``decoder_input_ids``);
            targets (B, T) with -100 ignored.
        probes: registered names (``PROBES.names()``) or configured probe instances.
        loss_fn: ``loss_fn(logits, targets) -> scalar``; default token cross-entropy.
        optimizer_fn: builds the optimizer whose single step ``update_ratio`` measures.

    Returns:
        The records of every probe, in the order the probes were given.
    """
    inputs, targets = batch
    instances = make_probes(probes)
    hooked = [p for p in instances if isinstance(p, HookProbe)]
    needs_grad = any(p.kind in ("grad", "update") for p in instances)
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    results: dict[int, list[Record]] = {}
    try:
        for h in hooked:
            h.attach(model)
        with torch.set_grad_enabled(needs_grad):
            loss = loss_fn(model_output(model, inputs), targets)
        for h in hooked:
            h.detach()
            results[id(h)] = h.collect()
        if needs_grad:
            loss.backward()
        for p in instances:
            if isinstance(p, GradProbe):
                results[id(p)] = p.records(model)
            elif isinstance(p, UpdateProbe):
                results[id(p)] = _one_step(p, model, optimizer_fn)
            elif isinstance(p, PassProbe):
                results[id(p)] = p.measure(model, inputs, targets, loss_fn)
            else:
                assert isinstance(p, HookProbe), f"probe {p.name!r} of unknown kind {p.kind!r}"
    finally:
        for h in hooked:
            h.detach()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return [r for p in instances for r in results.get(id(p), [])]


def _one_step(probe: UpdateProbe, model: nn.Module, optimizer_fn: OptimizerFn) -> list[Record]:
    """One step of a throwaway optimizer on the current gradients; the weights are restored."""
    probe.snapshot(model)
    try:
        optimizer_fn([p for p in model.parameters() if p.requires_grad]).step()
        return probe.records(model)
    finally:
        probe.restore(model)
        probe.clear()
