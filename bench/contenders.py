"""The reference workload and the models that race on it: resnorm, the baseline, x-transformers,
Hugging Face GPT-2.

Reference config: decoder, vocab 256, d_model 256, 4 heads, 6 layers, MLP 4x GELU (exact), learned
positions, tied head, context 256, batch 16, AdamW, pre_ln, fp32, no dropout. Each contender
is configured to compute the same function (up to the biases each library hard-wires: GPT-2's
Conv1D layers always have them); a step is forward, fp32 cross-entropy, backward, AdamW step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.baseline import BaselineConfig, BaselineGPT
from resnorm.config import TrainConfig
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import build_model
from resnorm.train.optim import build_optimizer


@dataclass(frozen=True)
class Workload:
    """Shape of one benchmark: the model and the batch."""

    vocab_size: int = 256
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 6
    seq_len: int = 256
    batch_size: int = 16
    topology: str = "pre_ln"

    def replace(self, **changes: Any) -> Workload:
        return replace(self, **changes)

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def matmul_params(self) -> int:
        """N_matmul: weights of every matrix product (q, k, v, o, up, down, the tied head)."""
        d = self.d_model
        return self.n_layers * 12 * d * d + self.vocab_size * d

    @property
    def flops_per_token(self) -> int:
        """Training FLOPs per token: 6 N_matmul + 12 L d T (PaLM appendix B; no causal saving)."""
        return 6 * self.matmul_params + 12 * self.n_layers * self.d_model * self.seq_len

    @property
    def flops_per_step(self) -> int:
        return self.flops_per_token * self.tokens

    def model_config(self, **changes: Any) -> ModelConfig:
        return ModelConfig(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            max_seq_len=self.seq_len,
            topology=self.topology,
            **changes,
        )


REFERENCE = Workload()


class Trainee:
    """A model, its optimizer and a step function; ``step(x, y)`` returns the loss."""

    def __init__(
        self, model: nn.Module, logits: Callable[[Tensor], Tensor] | None = None, bf16: bool = False
    ) -> None:
        self.model = model.train()
        self.logits = logits or model
        self.bf16 = bf16
        # AdamW as resnorm's trainer builds it (decay on matrices, its implementation choice),
        # for every contender alike.
        self.optimizer = build_optimizer(model, TrainConfig(lr=3e-4, warmup_steps=0))
        self.after_step: Callable[[], Any] = getattr(model, "after_step", lambda: None)

    def autocast(self) -> Any:
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        with self.autocast():
            logits = self.logits(x)
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())

    def step(self, x: Tensor, y: Tensor) -> float:
        loss = self.loss(x, y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.after_step()
        return float(loss.detach())


def resnorm_model(w: Workload, **changes: Any) -> nn.Module:
    return build_model(w.model_config(**changes))


def baseline_model(w: Workload) -> nn.Module:
    assert w.topology == "pre_ln", "the baseline is pre_ln only"
    cfg = BaselineConfig(w.vocab_size, w.d_model, w.n_heads, w.n_layers, w.seq_len)
    return BaselineGPT(cfg)


def xtransformers_model(w: Workload) -> nn.Module:
    from x_transformers import Decoder, TransformerWrapper

    return TransformerWrapper(  # type: ignore[no-any-return]
        num_tokens=w.vocab_size,
        max_seq_len=w.seq_len,
        tie_embedding=True,
        attn_layers=Decoder(
            dim=w.d_model,
            depth=w.n_layers,
            heads=w.n_heads,
            attn_dim_head=w.d_model // w.n_heads,
            attn_flash=True,
            ff_mult=4,
            ff_no_bias=True,
        ),
    )


def hf_gpt2_model(w: Workload) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    transformers.logging.set_verbosity_error()
    cfg = GPT2Config(
        vocab_size=w.vocab_size,
        n_positions=w.seq_len,
        n_embd=w.d_model,
        n_layer=w.n_layers,
        n_head=w.n_heads,
        activation_function="gelu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        use_cache=False,
    )
    cfg._attn_implementation = "sdpa"
    model = GPT2LMHeadModel(cfg)
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    return model, lambda x: model(x, use_cache=False).logits


def versions() -> dict[str, str]:
    """Versions of the contending libraries."""
    out = {"torch": str(torch.__version__)}
    for name in ("x_transformers", "transformers"):
        try:
            from importlib.metadata import version

            out[name] = version(name.replace("_", "-"))
        except Exception:  # a missing contender is reported, not fatal
            out[name] = "not installed"
    return out


CONTENDERS = ("resnorm", "baseline", "x-transformers", "hf-gpt2")
_MODULES = {"x-transformers": "x_transformers", "hf-gpt2": "transformers"}


def available(name: str) -> bool:
    """Whether contender ``name``'s library is installed (``pip install -e '.[bench]'``)."""
    import importlib.util

    module = _MODULES.get(name)
    return module is None or importlib.util.find_spec(module) is not None


def build_trainee(name: str, w: Workload, bf16: bool = False, seed: int = 0) -> Trainee:
    """Contender ``name`` on workload ``w``, initialized from ``seed``."""
    torch.manual_seed(seed)
    if name == "resnorm":
        return Trainee(resnorm_model(w), bf16=bf16)
    if name == "baseline":
        return Trainee(baseline_model(w), bf16=bf16)
    if name == "x-transformers":
        return Trainee(xtransformers_model(w), bf16=bf16)
    if name == "hf-gpt2":
        model, logits = hf_gpt2_model(w)
        return Trainee(model, logits, bf16=bf16)
    raise ValueError(f"unknown contender {name!r}; choose from {', '.join(CONTENDERS)}")


class Batches:
    """Fixed random token batches (the same for every contender), cycled."""

    def __init__(self, w: Workload, n: int = 4, seed: int = 1234) -> None:
        g = torch.Generator().manual_seed(seed)
        data = torch.randint(0, w.vocab_size, (n, w.batch_size, w.seq_len + 1), generator=g)
        self.batches = [(b[:, :-1].contiguous(), b[:, 1:].contiguous()) for b in data]
        self.i = 0

    def next(self) -> tuple[Tensor, Tensor]:
        self.i += 1
        return self.batches[self.i % len(self.batches)]
