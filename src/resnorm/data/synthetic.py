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
#: ``(model keyword inputs, labels)`` of a sequence-to-sequence batch.
Seq2SeqBatch = tuple[dict[str, torch.Tensor], torch.Tensor]


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

    @property
    def unigram_loss(self) -> float:
        """Loss (nats/token) of the best context-free predictor of answer tokens: their
        entropy, ln(V_eff) for every task whose answers are uniform."""
        return self.uniform_loss

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A batch (input_ids, targets), each (batch_size, seq_len), drawn from `generator`."""
        raise NotImplementedError

    def _split(self, s: torch.Tensor) -> Batch:
        """(B, T+1) stream -> (input_ids, targets) before masking."""
        assert s.shape[1] == self.seq_len + 1, f"stream length {s.shape[1]} != seq_len + 1"
        return s[:, :-1].contiguous(), s[:, 1:].clone()


TASKS: Registry[type[TaskParams]] = Registry("task")


@dataclass(frozen=True)
class Pairs:
    """The (source, target) sequences of a batch of a pair task, right-padded with PAD.

    Attributes:
        source: (B, S) prompt tokens, S the task's longest prompt.
        source_len: (B,) tokens of each prompt.
        target: (B, L) answer tokens, L the task's longest answer.
        target_len: (B,) tokens of each answer.
    """

    source: torch.Tensor
    source_len: torch.Tensor
    target: torch.Tensor
    target_len: torch.Tensor


@dataclass(frozen=True)
class _PromptAnswerTask(TaskParams):
    """A pair task: a prompt of data tokens and its transformation, the answer.

    A causal LM sees one stream ``prompt SEP answer PAD...`` (`sample`), supervised on the answer
    only (from the SEP position on). A sequence-to-sequence model reads the prompt in its encoder
    and the answer in its decoder (`sample_seq2seq`). `length` (prompt tokens) defaults to the
    longest that fits the causal stream: `seq_len // 2`.
    """

    length: int | None = None

    PAD: ClassVar[int] = 0
    SEP: ClassVar[int] = 1
    n_special: ClassVar[int] = 2
    #: Whether prompts and answers vary in length within a batch (then the encoder gets an
    #: attention mask).
    variable: ClassVar[bool] = False

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

    @property
    def max_source_len(self) -> int:
        return self.prompt_len

    @property
    def max_target_len(self) -> int:
        return self.prompt_len

    def answer(self, prompt: torch.Tensor) -> torch.Tensor:
        """The answer tokens for each (B, L) prompt."""
        raise NotImplementedError

    def pairs(self, batch_size: int, generator: torch.Generator) -> Pairs:
        """A batch of (prompt, answer) pairs drawn from `generator`."""
        L = self.prompt_len
        prompt = torch.randint(
            self.n_special, self.vocab_size, (batch_size, L), generator=generator
        )
        lengths = torch.full((batch_size,), L, dtype=torch.long)
        return Pairs(prompt, lengths, self.answer(prompt), lengths)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """The causal-LM batch: ``prompt SEP answer PAD...``, loss on the answer."""
        p = self.pairs(batch_size, generator)
        n, m = p.source_len[:, None], p.target_len[:, None]
        pos = torch.arange(self.seq_len + 1)[None, :]
        s = torch.full((batch_size, self.seq_len + 1), self.PAD, dtype=torch.long)
        src = torch.nn.functional.pad(p.source, (0, self.seq_len + 1 - p.source.shape[1]))
        s = torch.where(pos < n, src, s)
        s = torch.where(pos == n, self.SEP, s)
        k = (pos - n - 1).clamp(0, p.target.shape[1] - 1)  # index into the answer
        in_answer = (pos > n) & (pos <= n + m)
        s = torch.where(in_answer, p.target.gather(1, k.expand(batch_size, -1)), s)
        x, y = self._split(s)
        # The answer s[n+1 .. n+m] is targets n .. n+m-1 (predicted from SEP onwards).
        t = pos[:, :-1]
        y[(t < n) | (t >= n + m)] = IGNORE_INDEX
        return x, y

    def sample_seq2seq(self, batch_size: int, generator: torch.Generator) -> Seq2SeqBatch:
        """The sequence-to-sequence batch of the same pairs (the same draws as `sample`).

        The encoder reads the prompt; the decoder reads ``SEP answer`` (SEP starts it) and
        predicts ``answer SEP`` (SEP ends it, so a greedy decoder knows where to stop), with
        teacher forcing; positions past the end are `IGNORE_INDEX`. A causal decoder's real
        positions never see its right padding, so the decoder needs no padding mask; the
        encoder gets ``attention_mask`` when prompts vary in length.
        """
        p = self.pairs(batch_size, generator)
        B, L = batch_size, self.max_target_len
        m = p.target_len[:, None]
        pos = torch.arange(L + 1)[None, :]
        tgt = torch.nn.functional.pad(p.target, (0, L + 1 - p.target.shape[1]), value=self.PAD)
        labels = torch.where(pos < m, tgt, torch.full_like(tgt, IGNORE_INDEX))
        labels = torch.where(pos == m, self.SEP, labels)
        dec = torch.cat([torch.full((B, 1), self.SEP, dtype=torch.long), tgt[:, :L]], dim=1)
        dec = torch.where(pos <= m, dec, self.PAD)
        source = torch.nn.functional.pad(p.source, (0, self.max_source_len - p.source.shape[1]))
        inputs = {"input_ids": source, "decoder_input_ids": dec}
        if self.variable:
            keep = torch.arange(self.max_source_len)[None, :] < p.source_len[:, None]
            inputs["attention_mask"] = keep.long()
        return inputs, labels


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


@TASKS.register("translate")
@dataclass(frozen=True)
class TranslateParams(_PromptAnswerTask):
    """A deterministic "translation": every token through a fixed random mapping (the lexicon),
    then the order reversed within consecutive blocks of `window` tokens (local reordering):
    `a b c d e SEP B' A' D' C' E'` for window 2, with `X'` the mapping of `x`.

    The lexicon is a permutation of the data tokens drawn from `mapping_seed`, the same for
    every batch and seed of a run. Difficulty grows with `length`, `vocab_size` (lexicon size)
    and `window` (1: word-for-word; `length`: the reverse of the mapped prompt).
    """

    window: int = 3
    mapping_seed: int = 0

    name: ClassVar[str] = "translate"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, "window", 1)
        _check_int(self, "mapping_seed", 0)
        if self.mapping_seed >= 2**63:
            raise ConfigError(_name("mapping_seed"), f"got {self.mapping_seed}, must be < 2**63")

    def lexicon(self) -> torch.Tensor:
        """(vocab_size,) the token each token translates to (special tokens map to themselves)."""
        g = torch.Generator().manual_seed(self.mapping_seed)
        data = torch.randperm(self.n_answer_tokens, generator=g) + self.n_special
        return torch.cat([torch.arange(self.n_special), data])

    def answer(self, prompt: torch.Tensor) -> torch.Tensor:
        mapped = self.lexicon()[prompt]
        L, w = mapped.shape[1], self.window
        # Reverse inside blocks [0, w), [w, 2w), ...; the last block may be shorter.
        pos = torch.arange(L)
        start = pos // w * w
        end = torch.clamp(start + w, max=L)
        return mapped[:, start + end - 1 - pos]


@TASKS.register("addition")
@dataclass(frozen=True)
class AdditionParams(_PromptAnswerTask):
    """The sum of two numbers written as decimal digits, most significant first:
    `1 2 + 9 SEP 2 1` (12 + 9 = 21).

    Each operand has a number of digits drawn uniformly from 1 to `digits`, then a value
    uniform among the numbers with that many digits (0 counts as one digit), so prompts and
    answers vary in length: the causal stream pads after the answer, the encoder gets an
    attention mask. Tokens: PAD 0, SEP 1, PLUS 2, the digits 0-9 as 3-12 (ids from 13 up, when
    ``vocab_size`` > 13, are never used). `digits` defaults to the most that fit seq_len: the
    longest prompt (2 digits + 1) + SEP + the longest answer (digits + 1) <= seq_len + 1.
    """

    vocab_size: int = 13
    digits: int | None = None

    PLUS: ClassVar[int] = 2
    FIRST_DIGIT: ClassVar[int] = 3
    n_special: ClassVar[int] = 3
    variable: ClassVar[bool] = True
    name: ClassVar[str] = "addition"
    MAX_DIGITS: ClassVar[int] = 15  # operands drawn through float64 stay exact

    def __post_init__(self) -> None:
        TaskParams.__post_init__(self)
        _check_int(self, "vocab_size", 13, " (PAD, SEP, PLUS and the 10 digits)")
        if self.length is not None:
            raise ConfigError(
                _name("length"), "addition has no length; set data.params.digits instead"
            )
        if self.digits is None:
            object.__setattr__(self, "digits", max(1, min((self.seq_len - 2) // 3, 15)))
        _check_int(self, "digits", 1)
        d = self.n_digits
        if d > self.MAX_DIGITS:
            raise ConfigError(_name("digits"), f"got {d}, must be <= {self.MAX_DIGITS}")
        if 3 * d + 2 > self.seq_len:
            raise ConfigError(
                _name("digits"),
                f"got {d}; a prompt of 2 * {d} + 1 tokens, SEP and an answer of {d} + 1 need "
                f"seq_len >= {3 * d + 2}, have {self.seq_len}",
            )

    @property
    def n_digits(self) -> int:
        assert self.digits is not None, "digits is resolved in __post_init__"
        return self.digits

    @property
    def n_answer_tokens(self) -> int:
        return 10

    @property
    def unigram_loss(self) -> float:
        """The entropy of the answers' digits (below ln 10: a sum's leading digit is small more
        often), estimated on 8,192 sums drawn from a fixed seed."""
        p = self.pairs(8192, torch.Generator().manual_seed(0))
        digits = p.target[torch.arange(p.target.shape[1])[None, :] < p.target_len[:, None]]
        freq = torch.bincount(digits).double()
        freq = freq[freq > 0] / freq.sum()
        return float(-(freq * freq.log()).sum())

    @property
    def max_source_len(self) -> int:
        return 2 * self.n_digits + 1

    @property
    def max_target_len(self) -> int:
        return self.n_digits + 1

    def _operand(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        k = torch.randint(1, self.n_digits + 1, (batch_size,), generator=generator)
        low = torch.where(k > 1, 10 ** (k - 1), torch.zeros_like(k))
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
        return low + (u * (10**k - low).double()).long()

    def _digits(self, n: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, width) digit tokens of ``n``, most significant first, left-aligned and
        PAD-padded, and (B,) their count."""
        powers = 10 ** torch.arange(width - 1, -1, -1)  # 10^(width-1) .. 1
        digit = n[:, None] // powers % 10  # (B, width), leading zeros included
        count = torch.clamp((n[:, None] >= powers).sum(1), min=1)  # digits of n; 0 has one
        shift = width - count  # drop the leading zeros: row b starts at shift[b]
        idx = (torch.arange(width)[None, :] + shift[:, None]).clamp(max=width - 1)
        out = digit.gather(1, idx) + self.FIRST_DIGIT
        out = torch.where(torch.arange(width)[None, :] < count[:, None], out, self.PAD)
        return out, count

    def pairs(self, batch_size: int, generator: torch.Generator) -> Pairs:
        d = self.n_digits
        a, b = self._operand(batch_size, generator), self._operand(batch_size, generator)
        da, na = self._digits(a, d)
        db, nb = self._digits(b, d)
        S = self.max_source_len
        pos = torch.arange(S)[None, :]
        src = torch.full((batch_size, S), self.PAD, dtype=torch.long)
        src[:, :d] = da
        src = torch.where(pos == na[:, None], self.PLUS, src)
        k = (pos - na[:, None] - 1).clamp(0, d - 1)
        second = (pos > na[:, None]) & (pos <= (na + nb)[:, None])
        src = torch.where(second, db.gather(1, k), src)
        total, n_total = self._digits(a + b, d + 1)
        return Pairs(src, na + nb + 1, total, n_total)


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
