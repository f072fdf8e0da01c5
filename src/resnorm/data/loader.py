"""Deterministic, resumable batching: `DataConfig` -> `build_data` -> `Data`.

A training batch is a pure function of (config, step): `train_batch(step)` seeds a fresh
`torch.Generator` from a hash of (seed, step), so resuming at step s needs no replay and gives
exactly the batches an uninterrupted run sees, in any call order. Data-parallel ranks take
contiguous slices of that same global batch, so 2 ranks x B/2 rows == 1 rank x B rows exactly.

Validation batches do not depend on the seed, so eval losses of different seeds are measured on
the same data: text takes consecutive windows of the validation split (the last `val_fraction` of
the byte stream, never overlapping the training split); synthetic tasks draw from a generator
seeded by the batch index alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from resnorm.data import objectives
from resnorm.data.batch import Batch, batch_rows
from resnorm.data.synthetic import TASKS, TaskParams, _PromptAnswerTask
from resnorm.data.text import VOCAB_SIZE, Corpus, load_builtin, load_hf, load_text
from resnorm.errors import ConfigError, choice_error
from resnorm.typed import describe_int, from_mapping

TEXT_SOURCES = ("builtin", "text", "hf")
SOURCES = (*TEXT_SOURCES, *TASKS.names())
#: Inclusive bounds of the integer fields: sizes far above any real batch (whether a batch fits
#: this machine is `resnorm.config.check_fits`'s to say), seeds in torch's generator range.
BOUNDS = {"seq_len": (1, 2**24), "batch_size": (1, 2**24), "seed": (0, 2**63 - 1)}


@dataclass(frozen=True)
class _NoParams:
    """`data.params` of the builtin and text sources: none."""


@dataclass(frozen=True)
class HFParams:
    """`data.params` of the `hf` source."""

    split: str = "train"
    text_column: str = "text"


@dataclass(frozen=True)
class DataConfig:
    """What a run trains and evaluates on.

    Attributes:
        source: "builtin" (stdlib sources), "text" (file or folder at `path`), "hf" (a
            `datasets` folder or name at `path`), or a synthetic task: "copy", "reverse",
            "associative_recall", "sorting", "long_range".
        path: the file, folder or dataset for "text" and "hf"; None otherwise.
        seq_len: tokens per sequence (T).
        batch_size: sequences per global batch (B), split across data-parallel ranks.
        seed: seeds the training batches (validation batches do not depend on it).
        params: a task's parameters (see `resnorm.data.synthetic`, e.g. vocab_size, distance);
            for "hf": split, text_column; none for "builtin" and "text".
        val_fraction: share of the byte stream (its end) held out for validation.
        objective: what the model learns to predict (`resnorm.data.objectives`): ``auto``
            (picked by the model kind and source), ``causal_lm``, ``mlm``, ``seq2seq`` or
            ``span_corruption``. A run's stored config holds the resolved one, and leaves it
            out when it is ``causal_lm`` (so decoder runs keep the ids they had before).
    """

    source: str = "builtin"
    path: str | None = None
    seq_len: int = 128
    batch_size: int = 32
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
    objective: str = "auto"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise choice_error("data.source", self.source, SOURCES)
        objectives.check(self.objective, self.source)
        for name, (minimum, maximum) in BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"data.{name}", f"got {value!r}, expected an integer")
            if not minimum <= value <= maximum:
                shown = "2**63 - 1" if name == "seed" else maximum
                raise ConfigError(
                    f"data.{name}", f"got {describe_int(value)}, must be in [{minimum}, {shown}]"
                )
        if self.objective == "span_corruption" and self.seq_len < 2:
            raise ConfigError(
                "data.seq_len",
                f"got {self.seq_len}; span corruption replaces a span of a window by a sentinel "
                "and keeps at least one token, so it needs seq_len >= 2",
            )
        v = self.val_fraction
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
            raise ConfigError("data.val_fraction", f"got {v!r}, expected a number in (0, 1)")
        if isinstance(self.path, os.PathLike):
            object.__setattr__(self, "path", os.fspath(self.path))
        needs_path = self.source in ("text", "hf")
        if needs_path and not self.path:
            raise ConfigError("data.path", f"source {self.source!r} reads from a path; set one")
        if not needs_path and self.path is not None:
            raise ConfigError("data.path", f"source {self.source!r} reads no path; remove it")
        if isinstance(self.path, str) and "\0" in self.path:
            raise ConfigError("data.path", f"{self.path!r} contains a NUL byte, which no path has")
        if not isinstance(self.params, dict):
            raise ConfigError("data.params", f"got {self.params!r}, expected a table")
        self.source_params()  # validates params against the source

    def source_params(self) -> Any:
        """The typed parameters of `source`: a `TaskParams`, `HFParams` or `_NoParams`."""
        if self.source in TASKS:
            if "seq_len" in self.params:
                raise ConfigError("data.params.seq_len", "set data.seq_len instead")
            cls = TASKS.get(self.source, "data.source")
            return from_mapping(cls, {**self.params, "seq_len": self.seq_len}, "data.params")
        if self.source == "hf":
            return from_mapping(HFParams, self.params, "data.params")
        return from_mapping(_NoParams, self.params, "data.params")


def stream_seed(*parts: object) -> int:
    """A 63-bit seed from a hash of `parts`: independent streams per (purpose, seed, step)."""
    key = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(*parts))


def _check_index(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class Data:
    """Batches for one run. Subclasses implement `_train_sample`, `_val_batch` and `_describe`.

    Attributes:
        cfg: the config it was built from.
        vocab_size: tokens the model must embed.
        uniform_loss: nats/token of the uniform predictor over possible targets, ln(V_eff).
        unigram_loss: nats/token of the best context-free predictor (the entropy of the training
            targets' token distribution); a run that ends near it learned nothing contextual.
    """

    def __init__(self, cfg: DataConfig, vocab_size: int, uniform_loss: float, unigram_loss: float):
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.uniform_loss = uniform_loss
        self.unigram_loss = unigram_loss

    def train_batch(self, step: int, rank: int = 0, world_size: int = 1) -> Batch:
        """(input_ids, targets) of training step `step` for data-parallel `rank`: its contiguous
        (batch_size / world_size, seq_len) slice of the step's global batch."""
        _check_index("step", step)
        _check_index("world_size", world_size, 1)
        if _check_index("rank", rank) >= world_size:
            raise ValueError(f"rank must be < world_size = {world_size}, got {rank}")
        B = self.cfg.batch_size
        if B % world_size:
            raise ConfigError(
                "data.batch_size", f"{B} does not split evenly across {world_size} ranks"
            )
        batch = self._train_sample(_generator("train", self.cfg.seed, step), B)
        return batch_rows(batch, slice(rank * B // world_size, (rank + 1) * B // world_size))

    def val_batches(self, n: int) -> list[Batch]:
        """The first `n` validation batches, each (batch_size, seq_len); the same on every call,
        for every seed, and batch i does not depend on n."""
        return [self._val_batch(i) for i in range(_check_index("n", n))]

    def manifest(self) -> dict[str, Any]:
        """What the run records about its data (JSON-ready)."""
        return {
            "source": self.cfg.source,
            "seq_len": self.cfg.seq_len,
            "batch_size": self.cfg.batch_size,
            "seed": self.cfg.seed,
            "vocab_size": self.vocab_size,
            "uniform_loss": self.uniform_loss,
            "unigram_loss": self.unigram_loss,
            "torch": torch.__version__,  # the generators' streams are torch's
            **self._describe(),
            # A causal run records none: its manifest predates objectives.
            **(
                objectives.describe(self.objective, self.cfg.seq_len)
                if self.objective != "causal_lm"
                else {}
            ),
        }

    @property
    def objective(self) -> str:
        """The concrete objective (``auto`` means a decoder's: ``causal_lm``)."""
        return objectives.resolve(self.cfg.objective, "decoder", self.cfg.source)

    def _train_sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        raise NotImplementedError

    def _val_batch(self, index: int) -> Batch:
        raise NotImplementedError

    def _describe(self) -> dict[str, Any]:
        raise NotImplementedError


class TaskData(Data):
    """A synthetic task: every batch freshly generated."""

    def __init__(self, cfg: DataConfig, task: TaskParams) -> None:
        uniform, unigram = task.uniform_loss, task.unigram_loss
        fixed = isinstance(task, _PromptAnswerTask) and not task.variable
        if cfg.objective == "seq2seq" and fixed:
            assert isinstance(task, _PromptAnswerTask), "fixed implies a pair task"
            # The decoder also predicts the SEP closing each answer, at a place its position
            # gives away when every answer has L tokens: a model that learned nothing from the
            # prompt pays the reference on L of the L + 1 targets only. Without this a run that
            # learned just the SEP would not count as stuck.
            share = task.max_target_len / (task.max_target_len + 1)
            uniform, unigram = uniform * share, unigram * share
        super().__init__(cfg, task.vocab_size, uniform, unigram)
        self.task = task
        self._sample: Callable[[int, torch.Generator], Batch]
        if self.objective == "seq2seq":
            assert isinstance(task, _PromptAnswerTask), "DataConfig checks seq2seq's source"
            self._sample = task.sample_seq2seq
        else:
            self._sample = task.sample

    def _train_sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        return self._sample(batch_size, generator)

    def _val_batch(self, index: int) -> Batch:
        return self._sample(self.cfg.batch_size, _generator("val", index))

    def _describe(self) -> dict[str, Any]:
        return {"params": dataclasses.asdict(self.task)}


class TextData(Data):
    """Random windows of a byte stream: training from its head, validation from its tail."""

    def __init__(self, cfg: DataConfig, corpus: Corpus) -> None:
        n, T = len(corpus.data), cfg.seq_len
        self.n_val = int(n * cfg.val_fraction)
        self.n_train = n - self.n_val
        if min(self.n_train, self.n_val) < T + 1:
            raise _split_error(cfg, n, self.n_train, self.n_val)
        self.corpus = corpus
        self.stream = torch.frombuffer(bytearray(corpus.data), dtype=torch.uint8)
        counts = torch.bincount(self.stream[1 : self.n_train], minlength=VOCAB_SIZE).double()
        p = counts[counts > 0] / counts.sum()
        unigram = float(-(p * p.log()).sum())
        objective = objectives.resolve(cfg.objective, "decoder", cfg.source)
        vocab = objectives.vocab_size(objective, T)
        super().__init__(cfg, vocab, math.log(VOCAB_SIZE), unigram)
        # A causal window holds T inputs and the byte after them; the others T bytes.
        self.span = T + 1 if objective == "causal_lm" else T

    def _windows(self, starts: torch.Tensor, generator: torch.Generator) -> Batch:
        idx = starts[:, None] + torch.arange(self.span)  # (B, span)
        w = self.stream[idx].long()
        if self.objective == "mlm":
            masked, labels = objectives.mask_tokens(w, generator)
            return {"input_ids": masked}, labels
        if self.objective == "span_corruption":
            return objectives.corrupt_spans(w, generator)
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()

    def _train_sample(self, generator: torch.Generator, batch_size: int) -> Batch:
        last = self.n_train - self.span  # windows end inside the training split
        starts = torch.randint(0, last + 1, (batch_size,), generator=generator)
        return self._windows(starts, generator)

    def _val_batch(self, index: int) -> Batch:
        B, span = self.cfg.batch_size, self.span
        # Consecutive windows; past the end of the split they wrap with a shifted phase.
        k = torch.arange(index * B, (index + 1) * B)
        starts = self.n_train + (k * span) % (self.n_val - span + 1)
        return self._windows(starts, _generator("val-objective", index))

    def _describe(self) -> dict[str, Any]:
        n = len(self.corpus.data)
        return {
            **self.corpus.manifest(),
            "val_fraction": self.cfg.val_fraction,
            "train_bytes": [0, self.n_train],
            "val_bytes": [self.n_train, n],
        }


def _split_error(cfg: DataConfig, n: int, n_train: int, n_val: int) -> ConfigError:
    """Why the text does not split into a training and a validation window of seq_len + 1 bytes
    each: the field to change, and the values that would work."""
    span, where = cfg.seq_len + 1, f"the {cfg.source} text has {n} bytes"
    if n < 2 * span:
        return ConfigError(
            "data.seq_len",
            f"{where}, too few for a training split and a validation split of seq_len + 1 = "
            f"{span} bytes each: use more text or seq_len <= {n // 2 - 1}",
        )
    # int(n v) >= span  <=>  v >= span / n;  n - int(n v) >= span  <=>  v < (n - span + 1) / n
    low = math.ceil(span / n * 1e6) / 1e6
    high = math.floor((n - span + 1) / n * 1e6 - 1) / 1e6  # strictly below the bound
    return ConfigError(
        "data.val_fraction",
        f"{where}; val_fraction = {cfg.val_fraction} leaves a training split of {n_train} "
        f"bytes and a validation split of {n_val}, and each needs seq_len + 1 = {span}: with "
        f"this text and "
        f"seq_len = {cfg.seq_len}, val_fraction must be between {low:g} and {high:g}",
    )


def build_data(cfg: DataConfig) -> Data:
    """The `Data` for `cfg`: loads (text) or prepares (tasks) everything batches need."""
    params = cfg.source_params()
    if isinstance(params, TaskParams):
        return TaskData(cfg, params)
    if cfg.source == "builtin":
        return TextData(cfg, load_builtin())
    assert cfg.path is not None, "DataConfig requires a path for text and hf"
    if cfg.source == "text":
        return TextData(cfg, load_text(cfg.path))
    assert isinstance(params, HFParams), f"unhandled source {cfg.source!r}"
    return TextData(cfg, load_hf(cfg.path, params.split, params.text_column))
