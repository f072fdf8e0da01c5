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
    from resnorm.nn.model import Layer, Transformer

InitScheme = Callable[["Transformer"], None]
INITS: Registry[InitScheme] = Registry("init")

#: What a sublayer class (Attention, MLP and their subclasses) declares about its linears.
ROLES = ("READS", "WRITES", "SCORES")


def stream_linears(layer: Layer, *roles: str) -> list[tuple[str, nn.Linear]]:
    """``(name, linear)`` (``name`` like ``attn.o_proj``) for each linear of ``layer``'s
    sublayers that the sublayer's class declares in one of ``roles``, in declaration order.

    ``READS``: the linears whose input is the residual stream; ``WRITES``: those whose output is
    added to it; ``SCORES``: the reads that only form attention scores. The declarations are a
    contract checked here, loudly (AssertionError), so that an init never skips a matrix
    silently: a sublayer must declare ``READS`` and ``WRITES``, each declared name must be an
    ``nn.Linear`` (or ``None`` if listed in ``OPTIONAL``, like an ungated MLP's ``gate``), and
    every linear the sublayer holds must be declared.
    """
    assert roles and set(roles) <= set(ROLES), f"roles {roles}: expected some of {ROLES}"
    found = []
    for s in layer.sublayers:
        sub = getattr(layer, s, None)
        assert isinstance(sub, nn.Module), f"layer {layer.index} has no sublayer module {s!r}"
        kind = type(sub).__name__
        declared = {role: tuple(getattr(sub, role, None) or ()) for role in ROLES}
        io = declared["READS"] + declared["WRITES"]
        assert declared["READS"] and declared["WRITES"], (
            f"{kind} (sublayer {s!r}) declares no READS/WRITES: the inits cannot find its linears"
        )
        assert set(declared["SCORES"]) <= set(declared["READS"]), f"{kind}: SCORES not in READS"
        optional = tuple(getattr(sub, "OPTIONAL", ()))
        for name in io:
            module = getattr(sub, name, None)
            assert isinstance(module, nn.Linear) or (module is None and name in optional), (
                f"{kind} (sublayer {s!r}) declares {name!r} in READS/WRITES, but its {name!r} "
                f"is {type(module).__name__}, not an nn.Linear"
            )
        undeclared = [n for n, m in sub.named_modules() if isinstance(m, nn.Linear) and n not in io]
        assert not undeclared, (
            f"{kind} (sublayer {s!r}) holds linears {undeclared} that it does not declare in "
            "READS or WRITES: declare them, or the inits would skip them"
        )
        for role in roles:
            for name in declared[role]:
                module = getattr(sub, name)
                if module is not None:
                    found.append((f"{s}.{name}", module))
    return found


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
            writes = stream_linears(layer, "WRITES")
            found += [(layer.index + 1, depth, linear) for _, linear in writes]
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
