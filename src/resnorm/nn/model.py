"""The transformer: embeddings, one or two stacks of layers wired by a topology, and a head.

Module names are stable, since diagnostics and checkpoints key on them::

    embed.tok, embed.pos                              token / learned position tables
    decoder.layers.3.attn, .cross, .mlp               sublayers (encoder.* likewise)
    decoder.layers.3.norm_attn, ...                   whatever the topology declares
    decoder.layers.3.tap_attn, ...                    identity hook points: the stream after it
    decoder.final_norm, decoder.embed_norm            when the topology has them
    lm_head
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from resnorm.errors import ConfigError
from resnorm.nn.cache import KVCache
from resnorm.nn.config import ModelConfig
from resnorm.nn.context import Context
from resnorm.nn.init import init_model
from resnorm.nn.positional import Rotary
from resnorm.nn.topologies import TOPOLOGIES, StackSpec, Topology


class Tap(nn.Identity):
    """Hook point: its input is the residual stream right after one sublayer's update."""


class Layer(nn.Module):
    """One layer: self-attention, cross-attention (decoder of an encoder-decoder), feed-forward,
    plus the norms and scales its topology declares."""

    def __init__(self, cfg: ModelConfig, spec: StackSpec, index: int, topology: Topology):
        super().__init__()
        self.index, self.sublayers = index, spec.sublayers
        local = cfg.sliding_window is not None and index % cfg.sliding_window_pattern == 0
        self.attn = topology.make_attention(index, cross=False, local=local)
        if spec.cross:
            self.cross = topology.make_attention(index, cross=True, local=False)
        self.mlp = topology.make_mlp(index)
        self.drop = nn.Dropout(cfg.dropout)
        for s in self.sublayers:
            self.add_module(f"tap_{s}", Tap())
        topology.setup_layer(self)

    def branch(self, s: str, ctx: Context) -> Callable[[Tensor], Tensor]:
        """``F``: sublayer ``s`` as a function of its input, with residual dropout."""
        module = getattr(self, s)
        if s == "mlp":
            return lambda h: self.drop(module(h))
        return lambda h: self.drop(module(h, ctx))

    def tap(self, s: str) -> nn.Module:
        return getattr(self, f"tap_{s}")  # type: ignore[no-any-return]

    def norm(self, s: str) -> nn.Module:
        """The topology's norm called ``norm_{s}`` (a convention most topologies follow)."""
        return getattr(self, f"norm_{s}")  # type: ignore[no-any-return]


class Stack(nn.Module):
    """The layers of an encoder or decoder, with the embedding norm and final norm if any."""

    def __init__(self, cfg: ModelConfig, spec: StackSpec) -> None:
        super().__init__()
        self.spec = spec
        self.topology = TOPOLOGIES.get(cfg.topology, "model.topology")(cfg, spec)
        wants_embed_norm = (
            cfg.embed_norm if cfg.embed_norm is not None else self.topology.embed_norm
        )
        self.embed_norm = self.topology.norm() if wants_embed_norm else None
        layers = (Layer(cfg, spec, i, self.topology) for i in range(spec.n_layers))
        self.layers: Sequence[Layer] = nn.ModuleList(layers)  # type: ignore[assignment]
        self.final_norm = self.topology.norm() if self.topology.final_norm else None
        self.topology.setup_stack(self)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.topology.trunk(self, x, ctx)
        return self.final_norm(x) if self.final_norm is not None else x


class Embeddings(nn.Module):
    """Token embeddings (times sqrt(d) if ``embed_scale``) plus learned positions, or RoPE."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.max_seq_len = cfg.max_seq_len
        self.scale = math.sqrt(cfg.d_model) if cfg.embed_scale else None
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = (
            nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.positional == "learned" else None
        )
        self.rotary = (
            Rotary(cfg.head_dim_, cfg.max_seq_len, cfg.rope_theta)
            if cfg.positional == "rope"
            else None
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, ids: Tensor, offset: int = 0) -> Tensor:
        """Embeddings of ``ids`` at positions ``offset``.. (``offset`` > 0: cached decoding)."""
        t = ids.shape[1]
        if offset + t > self.max_seq_len and self.pos is not None:
            raise ConfigError(
                "input_ids",
                f"sequence length {offset + t} exceeds model.max_seq_len={self.max_seq_len}",
            )
        x = self.tok(ids)
        if self.scale is not None:
            x = x * torch.tensor(self.scale, dtype=x.dtype)
        if self.pos is not None:
            x = x + self.pos(torch.arange(offset, offset + t, device=ids.device))
        return self.drop(x)  # type: ignore[no-any-return]


class Transformer(nn.Module):
    """A decoder, encoder or encoder-decoder whose residual topology is ``cfg.topology``.

    ``forward`` returns logits (B, T, vocab); ``hidden`` the last stack's output before the head;
    ``generate`` continues a decoder's token ids, or decodes an encoder-decoder's output for a
    source (with a KV cache).
    ``init=False`` skips the init scheme (the loader fills every tensor from a checkpoint).
    """

    def __init__(self, cfg: ModelConfig, *, init: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        n_enc = cfg.n_layers if cfg.kind != "decoder" else 0
        n_dec = {"decoder": cfg.n_layers, "encoder": 0}.get(
            cfg.kind, cfg.n_decoder_layers or cfg.n_layers
        )

        def spec(role: str, n: int, cross: bool, causal: bool) -> StackSpec:
            return StackSpec(role, cfg.kind, n, n_enc, n_dec, cross, causal)

        self.embed = Embeddings(cfg)
        if n_enc:
            self.encoder = Stack(cfg, spec("encoder", n_enc, cross=False, causal=False))
        if n_dec:
            cross = cfg.kind == "encoder_decoder"
            self.decoder = Stack(cfg, spec("decoder", n_dec, cross=cross, causal=True))
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.tok.weight
        if init:
            init_model(self)

    @property
    def output_stack(self) -> Stack:
        return self.encoder if self.cfg.kind == "encoder" else self.decoder

    def stacks(self) -> Iterator[Stack]:
        for role in ("encoder", "decoder"):
            if hasattr(self, role):
                yield getattr(self, role)

    def context(
        self, ids: Tensor, causal: bool, padding: Tensor | None, cache: KVCache | None = None
    ) -> Context:
        """Masks and rotary angles for one stack's self-attention over ``ids``.

        With a ``cache`` holding ``offset`` earlier positions, ``ids`` sit at positions
        ``offset``.. and attend to the cached keys too (the masks are (T, offset + T)).
        """
        t, device = ids.shape[1], ids.device
        offset = cache.length if cache is not None else 0
        assert not (offset and padding is not None), "cached decoding takes no padding mask"
        keep = padding.bool()[:, None, None, :] if padding is not None else None  # (B, 1, 1, T)
        mask = keep
        q_pos = torch.arange(offset, offset + t, device=device)
        k_pos = torch.arange(offset + t, device=device)
        if causal and keep is not None:
            mask = keep & (q_pos[:, None] >= k_pos[None, :])
        elif causal and offset and t > 1:
            # SDPA's is_causal aligns the mask top-left, wrong when T < S: spell it out.
            mask = (q_pos[:, None] >= k_pos[None, :])[None, None]
        # One new query after the cached ones may attend to every key: no mask at all.
        ctx = Context(mask=_attend_somewhere(mask), causal=causal and not (offset and t == 1))
        ctx.cache = cache
        if self.cfg.sliding_window is not None:
            distance = q_pos[:, None] - k_pos[None, :]
            near = (distance >= 0) if causal else torch.ones_like(distance, dtype=torch.bool)
            near = near & (distance.abs() < self.cfg.sliding_window)
            ctx.local_mask = near[None, None] if keep is None else _attend_somewhere(near & keep)
        if self.embed.rotary is not None:
            ctx.rope = self.embed.rotary(t, offset)
        return ctx

    def hidden(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        decoder_input_ids: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        *,
        cache: KVCache | None = None,
    ) -> Tensor:
        """The last stack's output (B, T, d_model) before the head.

        Args:
            input_ids: (B, T) tokens of the decoder (``decoder``), the encoder (``encoder``,
                ``encoder_decoder``).
            attention_mask: (B, T) 1 for real tokens, 0 for padding, over ``input_ids``.
            decoder_input_ids: (B, T') decoder tokens of an ``encoder_decoder`` model.
            decoder_attention_mask: (B, T') padding mask over ``decoder_input_ids``.
            cache: the causal stack's KV cache (a decoder's, or an encoder-decoder's decoder):
                the decoder tokens follow the positions it holds, which it then extends by
                their number (see `resnorm.nn.generate`). An encoder-decoder's cache also
                keeps the encoder output of its first forward: later forwards reuse it and do
                not run the encoder (``input_ids`` is not read again; ``attention_mask`` still
                masks the memory).
        """
        kind = self.cfg.kind
        if cache is not None and kind == "encoder":
            raise ConfigError(
                "model.kind", "a KV cache serves a causal stack; an encoder model has none"
            )
        if kind == "decoder":
            offset = cache.length if cache is not None else 0
            ctx = self.context(input_ids, True, attention_mask, cache)
            h: Tensor = self.decoder(self.embed(input_ids, offset), ctx)
            if cache is not None:
                cache.advance(input_ids.shape[1])
            return h
        if cache is not None and cache.memory is not None:
            memory = cache.memory
        else:
            memory = self.encoder(
                self.embed(input_ids), self.context(input_ids, False, attention_mask)
            )
            if cache is not None:
                cache.memory = memory
        if kind == "encoder":
            return memory
        if decoder_input_ids is None:
            raise ConfigError("decoder_input_ids", "an encoder_decoder model needs decoder inputs")
        offset = cache.length if cache is not None else 0
        ctx = self.context(decoder_input_ids, True, decoder_attention_mask, cache)
        ctx.memory = memory
        if attention_mask is not None:
            ctx.memory_mask = attention_mask.bool()[:, None, None, :]
        h = self.decoder(self.embed(decoder_input_ids, offset), ctx)
        if cache is not None:
            cache.advance(decoder_input_ids.shape[1])
        return h

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        decoder_input_ids: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        *,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Logits (B, T, vocab_size) over the last stack's positions."""
        h = self.hidden(
            input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, cache=cache
        )
        logits = self.output_stack.topology.scale_logits(self.output_stack, self.lm_head(h))
        if self.cfg.logit_softcap is not None:
            logits = self.cfg.logit_softcap * torch.tanh(logits / self.cfg.logit_softcap)
        return logits  # type: ignore[no-any-return]

    def generate(
        self,
        ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        *,
        use_cache: bool = True,
        attention_mask: Tensor | None = None,
        start_token: int | None = None,
        end_token: int | None = None,
        pad_token: int = 0,
    ) -> Tensor:
        """New tokens after ``ids`` (B, T), sampled with a KV cache; see `nn.generate`.

        A decoder continues the prompt ``ids``: (B, T + max_new_tokens). An encoder-decoder
        encodes the source ``ids`` once (``attention_mask`` over it) and decodes from
        ``start_token`` (required), stopping a row at ``end_token``: (B, 1 + n), the start
        token then n <= ``max_new_tokens`` tokens (``pad_token`` after a row's end token).
        """
        from resnorm.nn.generate import generate, generate_seq2seq

        if self.cfg.kind == "encoder_decoder":
            if start_token is None:
                raise ConfigError(
                    "start_token", "an encoder_decoder model decodes from a start token; give one"
                )
            return generate_seq2seq(
                self, ids, max_new_tokens, temperature, top_k, top_p, generator,
                attention_mask=attention_mask, start_token=start_token, end_token=end_token,
                pad_token=pad_token, use_cache=use_cache,
            )  # fmt: skip
        given = {"attention_mask": attention_mask, "start_token": start_token,
                 "end_token": end_token}  # fmt: skip
        for name, value in given.items():
            if value is not None:
                raise ConfigError(
                    name,
                    f"is an encoder_decoder argument; a {self.cfg.kind!r} model continues its "
                    f"prompt",
                )
        return generate(
            self, ids, max_new_tokens, temperature, top_k, top_p, generator, use_cache=use_cache
        )

    def after_step(self) -> None:
        """Run each topology's post-optimizer-step hook (nGPT renormalizes its matrices)."""
        for stack in self.stacks():
            stack.topology.after_step(stack)
        for stack in self.stacks():
            stack.topology.after_step_shared(self, stack)


def _attend_somewhere(mask: Tensor | None) -> Tensor | None:
    """Let a query that may attend to nothing (a padded one) attend to everything instead.

    A fully masked row is NaN after the softmax, and NaN times a zero attention weight is still
    NaN, so it would reach real tokens through later layers. The row's own output is padding,
    which no real token reads.
    """
    if mask is None:
        return None
    return mask | ~mask.any(dim=-1, keepdim=True)


def build_model(cfg: ModelConfig) -> Transformer:
    """The model that ``cfg`` describes, initialized by its init scheme and topology."""
    return Transformer(cfg)
