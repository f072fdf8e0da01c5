"""Probes that watch one forward pass through hooks: the residual stream, the branches, the
attention distributions and the norms' inputs.

Hook points (see :mod:`resnorm.nn.model`):

* ``<stack>`` (forward pre-hook): its input is the embedding output that enters the stack;
* ``<stack>.layers.<i>.tap_<s>`` (identity): its input is the stream right after sublayer ``s``;
* ``<stack>.layers.<i>.<s>`` for ``s`` in attn / cross / mlp: its output is the branch ``F``;
* ``<stack>.layers.<i>.<s>.probs`` (identity): its input is the attention probabilities; a
  forward hook there switches the attention module to its eager path;
* ``<stack>.layers.<i>.norm_<s>`` (and ``post_norm_<s>``, ``attn.q_norm`` ...),
  ``<stack>.final_norm``, ``<stack>.embed_norm`` (forward pre-hooks): their inputs.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor, nn

from resnorm.diagnostics.base import (
    HookProbe,
    entropy,
    layer_modules,
    max_abs,
    rank_collapse,
    register,
    rms,
    stack_modules,
    token_cosine,
)


def _in_every_layer(
    model: nn.Module, pattern: str, probe: str
) -> Iterator[tuple[str, int, str, nn.Module]]:
    """``layer_modules(model, pattern)``, refusing loudly (AssertionError) a model where some
    layer has no module matching ``pattern``: the probe would silently measure nothing there."""
    found = list(layer_modules(model, pattern))
    layers = {(stack, i) for stack, i, _, _ in layer_modules(model, r"[^.]+")}
    missing = sorted(layers - {(stack, i) for stack, i, _, _ in found})
    assert layers and not missing, (
        f"probe {probe}: no module matching {pattern!r} in "
        f"{', '.join(f'{s}.layers.{i}' for s, i in missing[:3]) or 'the model (no layers)'}"
        " (did the hook points of resnorm.nn.model change?)"
    )
    return iter(found)


def _stacks(model: nn.Module, probe: str) -> list[tuple[str, str, nn.Module]]:
    """The model's stacks, refusing loudly a model where none is found by name."""
    found = list(stack_modules(model))
    assert found, f"probe {probe}: no encoder/decoder stack in the model"
    return found


class StreamProbe(HookProbe):
    """A statistic of the residual stream after each sublayer (key ``<stack>.<s>``) and of the
    stack's input, the embedding output (layer ``None``, key ``<stack>.embed``)."""

    def stat(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def register(self, model: nn.Module) -> None:
        stat = self.stat
        for stack, _, module in _stacks(model, self.name):
            self.on_input(module, None, f"{stack}.embed", stat)
        taps = list(_in_every_layer(model, r"tap_\w+", self.name))
        tapped = {(stack, i, rest[len("tap_") :]) for stack, i, rest, _ in taps}
        sublayers = {(stack, i, s) for stack, i, s, _ in layer_modules(model, r"attn|cross|mlp")}
        untapped = sorted(sublayers - tapped)
        assert not untapped, f"probe {self.name}: no tap after " + ", ".join(
            f"{stack}.layers.{i}.{s}" for stack, i, s in untapped[:3]
        )
        for stack, i, rest, module in taps:
            self.on_output(module, i, f"{stack}.{rest[len('tap_') :]}", stat, use_input=True)


@register
class StreamRMS(StreamProbe):
    """RMS of the residual stream after each sublayer, and of the embedding output."""

    name = "stream_rms"
    unit = "rms"

    def stat(self, x: Tensor) -> Tensor:
        return rms(x)


@register
class StreamMax(StreamProbe):
    """``max |x|`` of the residual stream after each sublayer, and of the embedding output."""

    name = "stream_max"
    unit = "abs"
    reduce = "max"

    def stat(self, x: Tensor) -> Tensor:
        return max_abs(x)


@register
class BranchRMS(HookProbe):
    """RMS of each sublayer's output ``F(.)`` (key ``<stack>.<s>``), before any scale or norm
    the topology applies to it."""

    name = "branch_rms"
    unit = "rms"

    def register(self, model: nn.Module) -> None:
        for stack, i, s, module in _in_every_layer(model, r"attn|cross|mlp", self.name):
            self.on_output(module, i, f"{stack}.{s}", rms)


class LayerOutputProbe(HookProbe):
    """A statistic of the stream after each whole layer (the input of ``tap_mlp``, the last
    sublayer's tap; key ``<stack>``) and of the embedding output (key ``<stack>.embed``)."""

    def stat(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def register(self, model: nn.Module) -> None:
        stat = self.stat
        for stack, _, module in _stacks(model, self.name):
            self.on_input(module, None, f"{stack}.embed", stat)
        for stack, i, _, module in _in_every_layer(model, r"tap_mlp", self.name):
            self.on_output(module, i, stack, stat, use_input=True)


@register
class RankCollapse(LayerOutputProbe):
    """``||X - mean_tokens(X)||_F / ||X||_F`` of the stream after each layer, per sequence and
    averaged over the batch; 0 = every token the same (Dong et al. 2021, arXiv:2103.03404)."""

    name = "rank_collapse"
    unit = "ratio"

    def stat(self, x: Tensor) -> Tensor:
        return rank_collapse(x)


@register
class TokenCosine(LayerOutputProbe):
    """Mean pairwise cosine similarity of the token representations after each layer, diagonal
    excluded (Noci et al. 2022, arXiv:2206.03126)."""

    name = "token_cosine"
    unit = "cosine"

    def stat(self, x: Tensor) -> Tensor:
        return token_cosine(x)


@register
class AttentionEntropy(HookProbe):
    """Mean entropy (nats) of the attention distributions of each attention module, averaged
    over batch, heads and queries (key ``<stack>.attn`` or ``<stack>.cross``).

    Uniform attention over T keys gives ``ln T``; causal uniform attention gives the mean of
    ``ln 1 .. ln T``. Attaching this probe makes attention take its eager path.
    """

    name = "attention_entropy"
    unit = "nats"

    def register(self, model: nn.Module) -> None:
        for stack, i, rest, module in _in_every_layer(model, r"(attn|cross)\.probs", self.name):
            # A forward hook (not a pre-hook): Attention.attend goes eager when it sees one.
            self.on_output(module, i, f"{stack}.{rest.split('.')[0]}", entropy, use_input=True)


@register
class NormInputScale(HookProbe):
    """RMS of the input of every norm module of the layers: any module whose own name contains
    ``norm`` (``norm_<s>``, ``post_norm_<s>``, ``attn.q_norm``, ``mlp.norm_mid``; key
    ``<stack>.<path>``), and of the stack's ``embed_norm`` / ``final_norm`` (layer ``None``)."""

    name = "norm_input_scale"
    unit = "rms"

    def register(self, model: nn.Module) -> None:
        for stack, i, rest, module in layer_modules(model, r"([\w.]+\.)?\w*norm\w*"):
            self.on_input(module, i, f"{stack}.{rest}", rms)
        for stack, rest, module in stack_modules(model, r"embed_norm|final_norm"):
            self.on_input(module, None, f"{stack}.{rest}", rms)
