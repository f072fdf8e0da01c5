"""Probe records, the probe interfaces, the ``PROBES`` registry, and model parts found by name.

Probes never import the model: they find its parts through the stable module names documented
in :mod:`resnorm.nn.model` (``decoder.layers.3.attn``, ``encoder.layers.0.tap_mlp``, ...) and
attach to them with hooks. A prefix such as DDP's ``module.`` or ``torch.compile``'s
``_orig_mod.`` is allowed in front of those names.

Record keys say where a value was measured and always start with the stack's role, so that
encoder-decoder models are unambiguous: ``decoder.attn`` (layer i's attention sublayer),
``encoder.mlp.down.weight`` (one tensor of layer i), ``decoder`` (all of layer i),
``decoder.embed`` (the stack's input, layer ``None``), ``""`` (the whole model, layer ``None``).
Within one probe's output ``(layer, key)`` is unique, as the results store requires.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from resnorm.registry import Registry

#: A batch: ``(inputs, targets)``; inputs are ``input_ids`` or a mapping of model keyword
#: arguments (``input_ids``, ``decoder_input_ids``, ``attention_mask``, ...); targets (B, T) use
#: -100 for positions without a loss.
Batch = tuple[Tensor | Mapping[str, Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

_WRAPPERS = re.compile(r"^(?:(?:module|_orig_mod)\.)+")
_IN_LAYER = re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.(.+)$")
_IN_STACK = re.compile(r"^(encoder|decoder)\.(.+)$")


@dataclass(frozen=True)
class Record:
    """One probe measurement.

    Attributes:
        probe: the probe's registered name.
        layer: 0-based layer index within its stack, or ``None`` for a value that belongs to no
            layer (embedding, global).
        key: where it was measured, starting with the stack role (see the module docstring).
        value: the number.
        unit: its unit (``"l2"``, ``"rms"``, ``"nats"``, ``"ratio"``, ...).
    """

    probe: str
    layer: int | None
    key: str
    value: float
    unit: str


def clean_name(name: str) -> str:
    """``name`` without wrapper prefixes (``module.`` of DDP, ``_orig_mod.`` of torch.compile)."""
    return _WRAPPERS.sub("", name)


def split_name(name: str) -> tuple[str, int, str] | None:
    """``(stack, layer, rest)`` of a name ``<stack>.layers.<i>.<rest>``, else ``None``."""
    m = _IN_LAYER.match(clean_name(name))
    return (m.group(1), int(m.group(2)), m.group(3)) if m else None


def layer_modules(model: nn.Module, pattern: str) -> Iterator[tuple[str, int, str, nn.Module]]:
    """``(stack, layer, rest, module)`` for each module ``<stack>.layers.<i>.<rest>`` whose
    ``rest`` matches the regular expression ``pattern`` in full."""
    regex = re.compile(pattern)
    for name, module in model.named_modules():
        where = split_name(name)
        if where is not None and regex.fullmatch(where[2]):
            yield where[0], where[1], where[2], module


def stack_modules(model: nn.Module, pattern: str = "") -> Iterator[tuple[str, str, nn.Module]]:
    """``(stack, rest, module)`` for stack-level modules ``<stack>.<rest>`` (not inside a layer)
    whose ``rest`` matches ``pattern``; with ``pattern`` empty, the stacks themselves (rest "")."""
    regex = re.compile(pattern)
    for name, module in model.named_modules():
        name = clean_name(name)
        if not pattern:
            if name in ("encoder", "decoder"):
                yield name, "", module
            continue
        m = _IN_STACK.match(name)
        if m and not m.group(2).startswith("layers") and regex.fullmatch(m.group(2)):
            yield m.group(1), m.group(2), module


# --- statistics on tensors (also usable directly, e.g. by studies) ----------------------------
def stat_dtype(x: Tensor) -> torch.dtype:
    """The dtype statistics of ``x`` are computed in: float64 for a float64 tensor (a float64
    model keeps its precision, e.g. for reference tests), float32 for anything else (never
    reduce in bf16/fp16)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def upcast(x: Tensor) -> Tensor:
    """``x`` in :func:`stat_dtype` (``x`` itself, no copy, when it already is)."""
    return x.to(stat_dtype(x))


def rms(x: Tensor) -> Tensor:
    """Root mean square over all elements (one reduction, no temporary copy of x)."""
    return torch.linalg.vector_norm(x, dtype=stat_dtype(x)) / math.sqrt(x.numel())


def max_abs(x: Tensor) -> Tensor:
    """``max |x|`` over all elements (exact in x's dtype, so no upcast copy of x)."""
    return upcast(x.abs().amax())


def variance(x: Tensor) -> Tensor:
    """Population variance over all elements: ``mean((x - mean(x))^2)``."""
    return torch.var(upcast(x), correction=0)


def rank_collapse(x: Tensor) -> Tensor:
    """``||X - mean_tokens(X)||_F / ||X||_F`` per sequence of x (B, T, D), mean over the batch.

    0 when every token is the same vector (rank-1 collapse, Dong et al. 2021, arXiv:2103.03404).
    """
    x = upcast(x)
    residual = x - x.mean(dim=-2, keepdim=True)
    per_seq = residual.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(1e-30)
    return per_seq.mean()


def token_cosine(x: Tensor) -> Tensor:
    """Mean pairwise cosine similarity between the tokens of each sequence of x (B, T, D), the
    diagonal excluded, mean over the batch (Noci et al. 2022, arXiv:2206.03126).

    Uses ``sum_{i != j} u_i . u_j = ||sum_i u_i||^2 - sum_i ||u_i||^2`` with unit tokens ``u``,
    which costs O(T D) instead of O(T^2 D). Needs T >= 2.
    """
    u = F.normalize(upcast(x), dim=-1, eps=1e-30)
    t = u.shape[-2]
    assert t >= 2, "token cosine needs at least two tokens"
    off_diagonal = u.sum(dim=-2).square().sum(-1) - u.square().sum(dim=(-2, -1))  # (B,)
    return (off_diagonal / (t * (t - 1))).mean()


def entropy(probs: Tensor) -> Tensor:
    """Mean entropy (nats) of the distributions along the last dim of probs (B, H, Tq, Tk);
    ``0 log 0 = 0``, so masked keys (and fully masked rows) contribute nothing."""
    p = upcast(probs)
    plogp = torch.where(p > 0, p * p.clamp_min(1e-30).log(), torch.zeros_like(p))
    return -plogp.sum(-1).mean()


# --- probe interfaces ---------------------------------------------------------------------------
class Probe:
    """A named measurement with a unit. Subclasses are one of four kinds:

    * ``forward``: hooks observe a forward pass (:class:`HookProbe`);
    * ``grad``: reads parameter gradients after a backward pass (``records(model)``);
    * ``update``: ``snapshot(model)`` before an optimizer step, ``records(model)`` after;
    * ``pass``: runs its own forward passes on a batch (``measure(model, batch, loss_fn)``).
    """

    name: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    kind: ClassVar[Literal["forward", "grad", "update", "pass"]] = "forward"

    def record(self, layer: int | None, key: str, value: float) -> Record:
        return Record(self.name, layer, key, float(value), self.unit)


class HookProbe(Probe):
    """A probe that attaches hooks for one or more forward passes, then reports.

    ``attach(model)`` registers the hooks, ``detach()`` removes every one of them, ``collect()``
    returns the records of what was seen since the last ``attach`` and clears it. A value seen
    several times (several forward passes, e.g. gradient accumulation) is averaged, or maxed
    when ``reduce == "max"``. Statistics stay on the device until ``collect`` (one sync).
    ``seconds`` accumulates the wall time spent inside the hooks (on a GPU: launching them).
    """

    kind = "forward"
    reduce: ClassVar[Literal["mean", "max"]] = "mean"

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []
        self._seen: dict[tuple[int | None, str], list[Tensor]] = defaultdict(list)
        self.seconds = 0.0

    def attach(self, model: nn.Module) -> None:
        """Register this probe's hooks on ``model`` (forgetting anything seen before)."""
        self.detach()
        self._seen.clear()
        self.register(model)

    def register(self, model: nn.Module) -> None:
        """Subclasses: register hooks through :meth:`on_input` / :meth:`on_output`."""
        raise NotImplementedError

    def detach(self) -> None:
        """Remove every hook this probe registered."""
        while self._handles:
            self._handles.pop().remove()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def add(self, layer: int | None, key: str, value: Tensor) -> None:
        self._seen[(layer, key)].append(value.detach())

    def on_input(
        self, module: nn.Module, layer: int | None, key: str, stat: Callable[[Tensor], Tensor]
    ) -> None:
        """Record ``stat`` of the first positional input of ``module`` (forward pre-hook)."""

        def hook(_: nn.Module, args: tuple[Any, ...]) -> None:
            start = time.perf_counter()
            with torch.no_grad():
                self.add(layer, key, stat(args[0]))
            self.seconds += time.perf_counter() - start

        self._handles.append(module.register_forward_pre_hook(hook))

    def on_output(
        self,
        module: nn.Module,
        layer: int | None,
        key: str,
        stat: Callable[[Tensor], Tensor],
        use_input: bool = False,
    ) -> None:
        """Record ``stat`` of the output (or first input) of ``module`` (forward hook)."""

        def hook(_: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            start = time.perf_counter()
            with torch.no_grad():
                self.add(layer, key, stat(args[0] if use_input else output))
            self.seconds += time.perf_counter() - start

        self._handles.append(module.register_forward_hook(hook))

    def collect(self) -> list[Record]:
        """The records of what the hooks saw; clears them."""
        if not self._seen:
            return []
        reduce = torch.amax if self.reduce == "max" else torch.mean
        # torch.stack promotes: float64 where a float64 model's statistics are float64.
        values = torch.stack([reduce(upcast(torch.stack(v))) for v in self._seen.values()])
        out = [
            self.record(lk[0], lk[1], v) for lk, v in zip(self._seen, values.tolist(), strict=True)
        ]
        self._seen.clear()
        return out


class GradProbe(Probe):
    """A probe that reads the parameters' gradients after a backward pass."""

    kind = "grad"

    def records(self, model: nn.Module) -> list[Record]:
        raise NotImplementedError


class UpdateProbe(Probe):
    """A probe of one optimizer step: ``snapshot(model)`` before it, ``records(model)`` after."""

    kind = "update"

    def __init__(self) -> None:
        self.before: dict[str, Tensor] = {}

    def snapshot(self, model: nn.Module) -> None:
        """Copy the parameters as they are before the optimizer step."""
        with torch.no_grad():
            self.before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def restore(self, model: nn.Module) -> None:
        """Put the snapshot back into the parameters (bit-exact)."""
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(self.before[n])

    def clear(self) -> None:
        """Drop the snapshot (it holds a copy of every parameter)."""
        self.before = {}

    def records(self, model: nn.Module) -> list[Record]:
        raise NotImplementedError


class PassProbe(Probe):
    """A probe that runs its own forward passes on a batch."""

    kind = "pass"

    def measure(
        self,
        model: nn.Module,
        inputs: Tensor | Mapping[str, Tensor],
        targets: Tensor,
        loss_fn: LossFn,
    ) -> list[Record]:
        raise NotImplementedError


PROBES: Registry[type[Probe]] = Registry("probe")


def register(cls: type[Probe]) -> type[Probe]:
    """Class decorator: add a probe to ``PROBES`` under ``cls.name``."""
    assert cls.name and cls.unit, f"{cls.__name__} lacks a name or a unit"
    return PROBES.register(cls.name)(cls)


def make_probes(probes: Sequence[str | Probe]) -> list[Probe]:
    """Probe instances from registered names (a ConfigError lists the valid ones) or instances."""
    return [p if isinstance(p, Probe) else PROBES.get(p, "diagnostics.probes")() for p in probes]


# --- grouping per layer / sublayer --------------------------------------------------------------
def grouped_squares(
    names: Sequence[str], squares: Sequence[float]
) -> dict[tuple[int | None, str], float]:
    """Sums of squared norms over groups of named tensors, keyed ``(layer, key)``.

    For a tensor ``<stack>.layers.<i>.<sub>.<rest>``: the layer (``(i, stack)``), the sublayer
    (``(i, "stack.sub")``) and the tensor itself (``(i, "stack.sub.rest")``, only when it is not
    the sublayer); any other tensor under its own name (layer ``None``); the model ``(None, "")``.
    """
    sums: dict[tuple[int | None, str], float] = {(None, ""): 0.0}
    for name, sq in zip(names, squares, strict=True):
        sums[(None, "")] += sq
        where = split_name(name)
        if where is None:
            keys: list[tuple[int | None, str]] = [(None, clean_name(name))]
        else:
            stack, i, rest = where
            keys = [(i, stack), (i, f"{stack}.{rest.split('.')[0]}")]
            if "." in rest:
                keys.append((i, f"{stack}.{rest}"))
        for k in keys:
            sums[k] = sums.get(k, 0.0) + sq
    return sums


def norms(tensors: Sequence[Tensor]) -> Tensor:
    """The L2 norm of each tensor, stacked: one batched ``torch._foreach_norm``, no sync; in
    float64 when a tensor is float64, else in float32."""
    wide = any(t.dtype == torch.float64 for t in tensors)
    dtype = torch.float64 if wide else torch.float32
    return torch.stack(list(torch._foreach_norm(list(tensors), 2, dtype=dtype)))


def squared_norms(tensors: Sequence[Tensor]) -> list[float]:
    """``||t||^2`` of each tensor (:func:`norms`), read in one sync."""
    if not tensors:
        return []
    return norms([t.detach() for t in tensors]).square().tolist()  # type: ignore[no-any-return]


# --- running the model on a batch ---------------------------------------------------------------
def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean token cross-entropy (nats) of logits (B, T, V) against targets (B, T), -100 ignored;
    in fp32 (fp64 for fp64 logits)."""
    return F.cross_entropy(upcast(logits.flatten(0, -2)), targets.flatten(), ignore_index=-100)


def model_output(
    model: nn.Module, inputs: Tensor | Mapping[str, Tensor], output: str = "logits"
) -> Tensor:
    """``model(inputs)`` (logits) or ``model.hidden(inputs)`` (``output="hidden"``); a mapping of
    inputs is passed as keyword arguments (encoder-decoder models)."""
    fn = model if output == "logits" else getattr(model, output)
    return fn(**inputs) if isinstance(inputs, Mapping) else fn(inputs)  # type: ignore[no-any-return]
