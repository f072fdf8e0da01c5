"""Synthetic sequence tasks, generated on the fly and deterministic per `torch.Generator`.

Each task is a frozen dataclass of its parameters (validated on construction) with
`sample(batch_size, generator) -> (input_ids, targets)`, both LongTensors of shape (B, T). The
pair comes from one token stream `s` of length T + 1: `input_ids = s[:, :-1]`, `targets =
s[:, 1:]`, so `targets[:, t]` is the next token after `input_ids[:, t]`. Positions that carry no
supervision (prompts, keys, padding) hold `IGNORE_INDEX` (-100, what `F.cross_entropy` skips), so
the loss measures only the task.

Token ids: the special tokens of a task take the lowest ids, the data tokens the rest.
`uniform_loss = ln(V_eff)` where V_eff is the number of tokens an answer can be. Every task draws
its answers uniformly (sorting outputs the same multiset as its prompt), so this is also the loss
of a model that learned only which tokens answers are made of: a run that ends there is "stuck".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from resnorm.errors import ConfigError
from resnorm.registry import Registry

IGNORE_INDEX = -100
"""Target value of unsupervised positions (the default `ignore_index` of `F.cross_entropy`)."""

Batch = tuple[torch.Tensor, torch.Tensor]


def _name(attr: str) -> str:
    """The dotted config field of a task parameter: `seq_len` belongs to `data`, the rest to
    `data.params`."""
    return "data.seq_len" if attr == "seq_len" else f"data.params.{attr}"


def _check_int(obj: object, attr: str, minimum: int, why: str = "") -> None:
    value = getattr(obj, attr)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(_name(attr), f"got {value!r}, expected an integer")
    if value < minimum:
        raise ConfigError(_name(attr), f"got {value}, must be >= {minimum}{why}")


@dataclass(frozen=True)
class TaskParams:
    """Parameters every task shares. Subclasses add their own and implement `sample`."""

    vocab_size: int = 32
    seq_len: int = 128

    name: ClassVar[str] = ""
    n_special: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _check_int(self, "seq_len", 1)
        _check_int(
            self, "vocab_size", self.n_special + 2, f" ({self.n_special} special + 2 data tokens)"
        )

    @property
    def n_answer_tokens(self) -> int:
        """V_eff: how many distinct tokens an answer can be."""
        return self.vocab_size - self.n_special

    @property
    def uniform_loss(self) -> float:
        """Loss (nats/token) of the uniform predictor over answer tokens: ln(V_eff)."""
        return math.log(self.n_answer_tokens)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A batch (input_ids, targets), each (batch_size, seq_len), drawn from `generator`."""
        raise NotImplementedError

    def _split(self, s: torch.Tensor) -> Batch:
        """(B, T+1) stream -> (input_ids, targets) before masking."""
        assert s.shape[1] == self.seq_len + 1, f"stream length {s.shape[1]} != seq_len + 1"
        return s[:, :-1].contiguous(), s[:, 1:].clone()


TASKS: Registry[type[TaskParams]] = Registry("task")


@dataclass(frozen=True)
class _PromptAnswerTask(TaskParams):
    """`prompt SEP answer PAD...`: a prompt of `length` data tokens, then its transformation.

    Only the answer is supervised (from the SEP position on). `length` defaults to the longest that
    fits: `seq_len // 2`.
    """

    length: int | None = None

    PAD: ClassVar[int] = 0
    SEP: ClassVar[int] = 1
    n_special: ClassVar[int] = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len < 2:
            raise ConfigError(_name("seq_len"), f"got {self.seq_len}; {self.name} needs >= 2")
        if self.length is None:
            object.__setattr__(self, "length", self.seq_len // 2)
        _check_int(self, "length", 1)
        if 2 * self.prompt_len > self.seq_len:
            raise ConfigError(
                _name("length"),
                f"got {self.length}; prompt + SEP + answer needs 2 * length + 1 <= seq_len + 1 "
                f"= {self.seq_len + 1}, so length <= {self.seq_len // 2}",
            )

    @property
    def prompt_len(self) -> int:
        assert self.length is not None, "length is resolved in __post_init__"
        return self.length

    def answer(self, prompt: torch.Tensor) -> torch.Tensor:
        """The answer tokens for each (B, L) prompt."""
        raise NotImplementedError

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        L = self.prompt_len
        prompt = torch.randint(
            self.n_special, self.vocab_size, (batch_size, L), generator=generator
        )
        s = torch.full((batch_size, self.seq_len + 1), self.PAD, dtype=torch.long)
        s[:, :L] = prompt
        s[:, L] = self.SEP
        s[:, L + 1 : 2 * L + 1] = self.answer(prompt)
        x, y = self._split(s)
        # s[L+1 : 2L+1] is the answer, i.e. targets L .. 2L-1 (predicted from SEP onwards).
        y[:, :L] = IGNORE_INDEX
        y[:, 2 * L :] = IGNORE_INDEX
        return x, y


@TASKS.register("copy")
@dataclass(frozen=True)
class CopyParams(_PromptAnswerTask):
    """Reproduce the prompt after SEP: `a b c SEP a b c`."""

    name: ClassVar[str] = "copy"

    def answer(self, prompt: torch.Tensor) -> torch.Tensor:
        return prompt


@TASKS.register("reverse")
@dataclass(frozen=True)
class ReverseParams(_PromptAnswerTask):
    """Reproduce the prompt reversed after SEP: `a b c SEP c b a`."""

    name: ClassVar[str] = "reverse"

    def answer(self, prompt: torch.Tensor) -> torch.Tensor:
        return prompt.flip(1)


@TASKS.register("sorting")
@dataclass(frozen=True)
class SortingParams(_PromptAnswerTask):
    """Output the prompt's tokens in ascending id order after SEP: `c a b SEP a b c`."""

    name: ClassVar[str] = "sorting"

    def answer(self, prompt: torch.Tensor) -> torch.Tensor:
        return prompt.sort(dim=1).values


@TASKS.register("associative_recall")
@dataclass(frozen=True)
class AssociativeRecallParams(TaskParams):
    """`k1 v1 k2 v2 ... kK vK q1 a1 ... qQ aQ PAD...`: recall the value stored for each query key.

    Keys are distinct within a sequence and drawn from the lower half of the non-special ids,
    values (with repetition) from the upper half; queries are distinct stored keys. Only the answers
    `a_i` are supervised (multi-query associative recall, as in Zoology, Arora et al. 2023).
    `n_pairs` defaults to the most that fit.
    """

    n_pairs: int | None = None
    n_queries: int = 1

    PAD: ClassVar[int] = 0
    n_special: ClassVar[int] = 1
    name: ClassVar[str] = "associative_recall"

    def __post_init__(self) -> None:
        _check_int(self, "seq_len", 1)
        _check_int(self, "vocab_size", 5, " (1 special + 2 key + 2 value tokens)")
        _check_int(self, "n_queries", 1)
        if self.n_pairs is None:
            fit = (self.seq_len + 1 - 2 * self.n_queries) // 2
            # At least one pair, so a seq_len too short for any is reported as seq_len's fault.
            object.__setattr__(self, "n_pairs", max(1, min(self.n_keys, fit)))
        _check_int(self, "n_pairs", 1)
        pairs, queries = self.pairs, self.n_queries
        if pairs > self.n_keys:
            raise ConfigError(
                _name("n_pairs"),
                f"got {pairs}, but vocab_size {self.vocab_size} has only {self.n_keys} key tokens "
                f"(keys are distinct); raise vocab_size to >= {2 * pairs + 1} or lower n_pairs",
            )
        if queries > pairs:
            raise ConfigError(
                _name("n_queries"),
                f"got {queries}, must be <= n_pairs = {pairs} (queries are distinct keys)",
            )
        need = 2 * pairs + 2 * queries - 1
        if self.seq_len < need:
            raise ConfigError(
                _name("seq_len"),
                f"got {self.seq_len}; {pairs} pairs and {queries} queries need seq_len >= {need}",
            )

    @property
    def n_keys(self) -> int:
        return (self.vocab_size - self.n_special) // 2

    @property
    def pairs(self) -> int:
        assert self.n_pairs is not None, "n_pairs is resolved in __post_init__"
        return self.n_pairs

    @property
    def n_answer_tokens(self) -> int:
        return self.vocab_size - self.n_special - self.n_keys

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        B, K, Q = batch_size, self.pairs, self.n_queries
        first_value = self.n_special + self.n_keys
        # Distinct keys per row: the first K of a random permutation of the key ids.
        keys = torch.rand(B, self.n_keys, generator=generator).argsort(dim=1)[:, :K]
        keys = keys + self.n_special
        values = torch.randint(first_value, self.vocab_size, (B, K), generator=generator)
        which = torch.rand(B, K, generator=generator).argsort(dim=1)[:, :Q]  # distinct pairs
        q_keys, q_values = keys.gather(1, which), values.gather(1, which)

        s = torch.full((B, self.seq_len + 1), self.PAD, dtype=torch.long)
        s[:, 0 : 2 * K : 2], s[:, 1 : 2 * K : 2] = keys, values
        s[:, 2 * K : 2 * K + 2 * Q : 2], s[:, 2 * K + 1 : 2 * K + 2 * Q : 2] = q_keys, q_values
        x, _ = self._split(s)
        y = torch.full_like(x, IGNORE_INDEX)
        y[:, 2 * K : 2 * K + 2 * Q : 2] = q_values  # at each query key, predict its value
        return x, y


@TASKS.register("long_range")
@dataclass(frozen=True)
class LongRangeParams(TaskParams):
    """Random tokens with QUERY markers; after a QUERY at position t, reproduce the token at
    position t - `distance`.

    The answer follows the marker in the stream, so `targets[t] = input_ids[t - distance]` at each
    marker and nothing else is supervised. Markers sit at random positions (so absolute position
    does not give the answer away), never adjacent and never `distance` apart (so the token to
    recall is always a data token). `distance` defaults to seq_len // 2.
    """

    distance: int | None = None
    n_queries: int = 1

    QUERY: ClassVar[int] = 0
    n_special: ClassVar[int] = 1
    name: ClassVar[str] = "long_range"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distance is None:
            object.__setattr__(self, "distance", self.seq_len // 2)
        _check_int(self, "distance", 1)
        _check_int(self, "n_queries", 1)
        # Greedy placement excludes <= 5 candidate positions per marker (p-1, p, p+1, p±distance),
        # so n markers always fit among seq_len - distance candidates when this holds.
        need = self.lag + 5 * (self.n_queries - 1) + 1
        if self.seq_len < need:
            raise ConfigError(
                _name("seq_len"),
                f"got {self.seq_len}; distance {self.lag} with {self.n_queries} queries "
                f"needs seq_len >= {need}",
            )

    @property
    def lag(self) -> int:
        assert self.distance is not None, "distance is resolved in __post_init__"
        return self.distance

    def _place(self, candidates: list[int]) -> list[int]:
        """The first `n_queries` candidates that keep markers apart, sorted."""
        d, chosen = self.lag, list[int]()
        for p in candidates:
            if all(abs(p - q) >= 2 and abs(p - q) != d for q in chosen):
                chosen.append(p)
                if len(chosen) == self.n_queries:
                    break
        assert len(chosen) == self.n_queries, "placement bound in __post_init__ is wrong"
        return sorted(chosen)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        B, T, d = batch_size, self.seq_len, self.lag
        s = torch.randint(self.n_special, self.vocab_size, (B, T + 1), generator=generator)
        # Marker positions t in [d, T-1], each row's candidates in random order.
        candidates = torch.rand(B, T - d, generator=generator).argsort(dim=1) + d
        pos = torch.tensor([self._place(row) for row in candidates.tolist()], dtype=torch.long)
        rows = torch.arange(B)
        s[rows[:, None], pos] = self.QUERY
        for j in range(self.n_queries):  # in order: a source may be an earlier marker's answer
            s[rows, pos[:, j] + 1] = s[rows, pos[:, j] - d]
        x, _ = self._split(s)
        y = torch.full_like(x, IGNORE_INDEX)
        y[rows[:, None], pos] = s[rows[:, None], pos + 1]
        return x, y
