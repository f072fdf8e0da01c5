"""Init schemes that cut across topologies: `normal`, `xavier`, `gpt2`, `depth_scaled`.

A scheme sets every linear and embedding matrix (biases to 0); norms and topology scalars keep
their own defaults. The topology's ``init_`` runs afterwards (DeepNorm's beta, T-Fixup, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

from resnorm.registry import Registry

if TYPE_CHECKING:
    from resnorm.nn.model import Transformer

InitScheme = Callable[["Transformer"], None]
INITS: Registry[InitScheme] = Registry("init")

# Residual output projections: the matrices whose output is added to the stream.
RESIDUAL_OUT = ("attn.o_proj", "cross.o_proj", "mlp.down")


def _linears_then_embeddings(model: Transformer, linear: Callable[[nn.Linear], object]) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            linear(module)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    # Embeddings last, so a tied head takes the embedding's init.
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=model.cfg.init_std)


def residual_projections(model: Transformer) -> list[tuple[int, int, nn.Linear]]:
    """``(l, L, linear)`` for each residual output projection: 1-based layer, stack depth."""
    found = []
    for stack in model.stacks():
        depth = len(stack.layers)
        for layer in stack.layers:
            for name, module in layer.named_modules():
                if name in RESIDUAL_OUT:
                    found.append((layer.index + 1, depth, module))
    return found


@INITS.register("normal")
def normal_init(model: Transformer) -> None:
    """Every matrix ~ N(0, init_std^2) (BERT, GPT-2 without its residual scaling)."""
    std = model.cfg.init_std
    _linears_then_embeddings(model, lambda m: nn.init.normal_(m.weight, std=std))


@INITS.register("xavier")
def xavier_init(model: Transformer) -> None:
    """Xavier-uniform matrices, embeddings N(0, 1/d) (Vaswani et al. 2017; DeepNet's base)."""
    _linears_then_embeddings(model, lambda m: nn.init.xavier_uniform_(m.weight))
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=model.cfg.d_model**-0.5)


@INITS.register("gpt2")
def gpt2_init(model: Transformer) -> None:
    """`normal`, with residual output projections at std / sqrt(2L) (Radford et al. 2019)."""
    normal_init(model)
    for _, depth, linear in residual_projections(model):
        nn.init.normal_(linear.weight, std=model.cfg.init_std / math.sqrt(2 * depth))


@INITS.register("depth_scaled")
def depth_scaled_init(model: Transformer) -> None:
    """`normal`, with layer l's residual output projections at std / sqrt(2l) (OLMo)."""
    normal_init(model)
    for index, _, linear in residual_projections(model):
        nn.init.normal_(linear.weight, std=model.cfg.init_std / math.sqrt(2 * index))


def init_model(model: Transformer) -> None:
    """The model's init scheme, then each stack's topology init."""
    INITS.get(model.cfg.init, "model.init")(model)
    for stack in model.stacks():
        stack.topology.init_(stack)
    for stack in model.stacks():
        stack.topology.init_shared_(model, stack)
