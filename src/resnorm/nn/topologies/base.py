"""The `Topology` interface: how a stack wires its sublayers, norms and residual connections.

A topology is a plain object (no parameters of its own) made once per stack. It

* declares the modules it needs on each layer (``setup_layer``: ``norm_attn``, ``scale_mlp``, ...)
  and on the stack (``setup_stack``), so state-dict keys say what they are;
* may supply its own attention or feed-forward module (``make_attention``, ``make_mlp``) when the
  paper changes the sublayer's inside (NormFormer, HybridNorm, nGPT, value residual);
* implements the per-sublayer rule ``sublayer(layer, s, x, f)``, which reads like the paper's
  equation with ``f`` the sublayer's branch function, and, where state crosses sublayers or
  layers, ``layer`` or ``trunk``;
* owns its initialization (``init_``), applied on top of the model's init scheme, and a hook run
  after each optimizer step (``after_step``; nGPT's renormalization).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from resnorm.nn.attention import Attention
from resnorm.nn.config import ModelConfig
from resnorm.nn.context import Context
from resnorm.nn.mlp import MLP
from resnorm.nn.norms import build_norm
from resnorm.registry import Registry
from resnorm.typed import from_mapping

if TYPE_CHECKING:
    from resnorm.nn.model import Layer, Stack, Transformer

Branch = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class NoParams:
    """This topology takes no parameters."""


@dataclass(frozen=True)
class StackSpec:
    """Where a stack sits in the model, which some topologies' constants depend on.

    Attributes:
        role: ``encoder`` or ``decoder``.
        kind: the model's kind.
        n_layers: layers in this stack.
        n_encoder_layers, n_decoder_layers: both stacks' depths (0 when absent).
        cross: the layers have a cross-attention sublayer.
        causal: self-attention is causal.
    """

    role: str
    kind: str
    n_layers: int
    n_encoder_layers: int
    n_decoder_layers: int
    cross: bool
    causal: bool

    @property
    def sublayers(self) -> tuple[str, ...]:
        return ("attn", "cross", "mlp") if self.cross else ("attn", "mlp")


class Topology:
    """Base class of every registered residual/normalization topology."""

    name: ClassVar[str] = ""
    equation: ClassVar[str] = ""  # one line, shown by `resnorm topologies`
    source: ClassVar[str] = ""
    family: ClassVar[str] = "placement"
    Params: ClassVar[type] = NoParams
    final_norm: bool = True  # a norm after the last layer (Pre-LN family)
    embed_norm: bool = False  # a norm on the embedding output (Peri-LN)

    def __init__(self, cfg: ModelConfig, spec: StackSpec) -> None:
        self.cfg, self.spec = cfg, spec
        self.params: Any = self.parse_params(cfg)

    @classmethod
    def parse_params(cls, cfg: ModelConfig) -> Any:
        """The typed parameters of ``cfg.topology_params``; a ConfigError names a bad key."""
        params: Any = from_mapping(cls.Params, cfg.topology_params, "model.topology_params")
        cls.check(params, cfg)
        return params

    @classmethod
    def check(cls, params: Any, cfg: ModelConfig) -> None:
        """Reject impossible combinations at config time (raise ConfigError)."""

    # --- construction -----------------------------------------------------------------------
    def norm(self, dim: int | None = None) -> nn.Module:
        """A fresh instance of the configured norm."""
        cfg = self.cfg
        return build_norm(cfg.norm, dim or cfg.d_model, cfg.norm_eps, cfg.norm_bias)

    def make_attention(self, layer_index: int, *, cross: bool, local: bool) -> Attention:
        return Attention(self.cfg, cross=cross, local=local)

    def make_mlp(self, layer_index: int) -> nn.Module:
        return MLP(self.cfg)

    def setup_layer(self, layer: Layer) -> None:
        """Add this topology's per-layer modules (norms, scales) to ``layer``."""

    def setup_stack(self, stack: Stack) -> None:
        """Add this topology's stack-level modules to ``stack``."""

    # --- forward ----------------------------------------------------------------------------
    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        """The residual rule around sublayer ``s`` of ``layer``: the new stream from ``x``."""
        raise NotImplementedError(f"{type(self).__name__} defines no per-sublayer rule")

    def layer(self, layer: Layer, x: Tensor, ctx: Context) -> Tensor:
        """One layer: each sublayer's rule in turn; ``layer.tap(s)`` sees the stream after it."""
        for s in layer.sublayers:
            x = layer.tap(s)(self.sublayer(layer, s, x, layer.branch(s, ctx)))
        return x

    def trunk(self, stack: Stack, x: Tensor, ctx: Context) -> Tensor:
        """All layers of the stack, from the (normalized) embeddings to before the final norm."""
        for layer in stack.layers:
            x = self.layer(layer, x, ctx)
        return x

    def scale_logits(self, stack: Stack, logits: Tensor) -> Tensor:
        """Output logits of a model whose last stack is ``stack`` (nGPT scales them)."""
        return logits

    # --- init and training ------------------------------------------------------------------
    def init_(self, stack: Stack) -> None:
        """The topology's own initialization, applied after the model's init scheme."""

    def init_shared_(self, model: Transformer, stack: Stack) -> None:
        """Init of model-level tensors (embeddings, head) this topology prescribes; runs after
        every stack's ``init_``."""

    def after_step(self, stack: Stack) -> None:
        """Called by the trainer after every optimizer step."""

    def after_step_shared(self, model: Transformer, stack: Stack) -> None:
        """Post-step hook for model-level tensors (nGPT renormalizes the embeddings and head);
        runs after every stack's ``after_step``."""


TOPOLOGIES: Registry[type[Topology]] = Registry("topology")


def register(cls: type[Topology]) -> type[Topology]:
    """Class decorator: add a topology to the registry under ``cls.name``."""
    assert cls.name and cls.equation and cls.source, f"{cls.__name__} lacks name/equation/source"
    return TOPOLOGIES.register(cls.name)(cls)
