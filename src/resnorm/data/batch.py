"""A batch is ``(inputs, targets)``, whatever the model kind.

``inputs`` is the decoder's ``input_ids`` tensor (B, T) for a causal LM, or a mapping of the
model's keyword arguments (``input_ids``, ``attention_mask``, ``decoder_input_ids``, ...) for
the other objectives, exactly what `Transformer.forward` takes. ``targets`` (B, T') holds the
token each output position must predict, `IGNORE_INDEX` where there is no loss. Every tensor of
a batch has the batch dimension first, so a batch slices by rows (data-parallel ranks) and
chunks (gradient accumulation) tensor by tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

Inputs = Tensor | Mapping[str, Tensor]
Batch = tuple[Inputs, Tensor]


def _map(inputs: Inputs, fn: Any) -> Inputs:
    if isinstance(inputs, Tensor):
        return fn(inputs)  # type: ignore[no-any-return]
    return {k: fn(v) for k, v in inputs.items()}


def batch_rows(batch: Batch, rows: slice) -> Batch:
    """Rows ``rows`` of every tensor of ``batch``."""
    inputs, targets = batch
    return _map(inputs, lambda t: t[rows]), targets[rows]


def batch_chunks(batch: Batch, n: int) -> list[Batch]:
    """``batch`` split into ``n`` consecutive row blocks (``Tensor.chunk`` of every tensor)."""
    inputs, targets = batch
    ys = targets.chunk(n)
    if isinstance(inputs, Tensor):
        return list(zip(inputs.chunk(n), ys, strict=True))
    parts = {k: v.chunk(n) for k, v in inputs.items()}
    return [({k: p[i] for k, p in parts.items()}, y) for i, y in enumerate(ys)]


def batch_to(batch: Batch, device: torch.device) -> Batch:
    """``batch`` on ``device``."""
    inputs, targets = batch
    return _map(inputs, lambda t: t.to(device)), targets.to(device)


def call_model(model: Any, inputs: Inputs) -> Tensor:
    """``model(input_ids)`` or ``model(**inputs)``: the logits."""
    if isinstance(inputs, Tensor):
        return model(inputs)  # type: ignore[no-any-return]
    return model(**inputs)  # type: ignore[no-any-return]


def input_ids(inputs: Inputs) -> Tensor:
    """The (B, T) token ids the model reads first (the encoder's, for an encoder-decoder)."""
    return inputs if isinstance(inputs, Tensor) else inputs["input_ids"]
