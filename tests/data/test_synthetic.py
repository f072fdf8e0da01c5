"""Synthetic tasks: each target is the right answer, unsupervised positions are ignored, every
bad parameter is rejected with its field."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from resnorm.data.synthetic import (
    IGNORE_INDEX,
    TASKS,
    AdditionParams,
    AssociativeRecallParams,
    CopyParams,
    LongRangeParams,
    ReverseParams,
    SortingParams,
    TaskParams,
    TranslateParams,
)
from resnorm.errors import ConfigError

B = 64


def _sample(task: TaskParams, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return task.sample(B, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", TASKS.names())
def test_task_batches_are_long_tensors_of_shape_batch_by_seq_len(name: str) -> None:
    x, y = _sample(TASKS.get(name)(seq_len=40))
    assert x.dtype == y.dtype == torch.long
    assert x.shape == y.shape == (B, 40)


@pytest.mark.parametrize("name", TASKS.names())
def test_supervised_targets_are_the_next_token_of_the_input_stream(name: str) -> None:
    x, y = _sample(TASKS.get(name)(seq_len=40))
    t = (y[:, :-1] != IGNORE_INDEX).nonzero()
    assert len(t) > 0
    assert torch.equal(x[t[:, 0], t[:, 1] + 1], y[t[:, 0], t[:, 1]])


@pytest.mark.parametrize("name", TASKS.names())
def test_tokens_stay_inside_the_vocabulary(name: str) -> None:
    task = TASKS.get(name)(vocab_size=24, seq_len=40)
    x, y = _sample(task)
    assert int(x.min()) >= 0 and int(x.max()) < 24
    answers = y[y != IGNORE_INDEX]
    assert int(answers.min()) >= task.n_special and int(answers.max()) < 24


@pytest.mark.parametrize("name", TASKS.names())
def test_same_generator_seed_gives_identical_batches_and_another_seed_differs(name: str) -> None:
    task = TASKS.get(name)(seq_len=40)
    a, b, c = _sample(task, 1), _sample(task, 1), _sample(task, 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("name", [n for n in TASKS.names() if n != "addition"])
def test_uniform_loss_is_the_entropy_of_the_answer_tokens(name: str) -> None:
    """Answers are uniform over V_eff tokens, so ln(V_eff) is what a context-free model reaches."""
    task = TASKS.get(name)(vocab_size=12, seq_len=64)
    y = torch.cat([_sample(task, s)[1] for s in range(8)])
    answers = y[y != IGNORE_INDEX].tolist()
    counts = Counter(answers)
    assert len(counts) == task.n_answer_tokens
    entropy = -sum(c / len(answers) * math.log(c / len(answers)) for c in counts.values())
    assert task.uniform_loss == pytest.approx(math.log(task.n_answer_tokens))
    assert entropy == pytest.approx(task.uniform_loss, abs=0.02)


def test_copy_targets_are_the_prompt_and_only_the_answer_is_supervised() -> None:
    task = CopyParams(vocab_size=16, seq_len=20)
    x, y = _sample(task)
    L = 10
    assert (x[:, L] == CopyParams.SEP).all()
    assert torch.equal(y[:, L : 2 * L], x[:, :L])
    assert (y[:, :L] == IGNORE_INDEX).all()


def test_reverse_targets_are_the_reversed_prompt() -> None:
    x, y = _sample(ReverseParams(vocab_size=16, seq_len=20))
    assert torch.equal(y[:, 10:20], x[:, :10].flip(1))
    assert (y[:, :10] == IGNORE_INDEX).all()


def test_sorting_targets_are_the_prompt_sorted() -> None:
    x, y = _sample(SortingParams(vocab_size=16, seq_len=20))
    answer = y[:, 10:20]
    assert torch.equal(answer, x[:, :10].sort(dim=1).values)
    assert (answer[:, 1:] >= answer[:, :-1]).all()


def test_odd_seq_len_and_short_length_pad_the_tail_and_ignore_it() -> None:
    task = CopyParams(vocab_size=16, seq_len=21, length=6)
    x, y = _sample(task)
    assert torch.equal(y[:, 6:12], x[:, :6])
    assert (y[:, 12:] == IGNORE_INDEX).all()
    assert (x[:, 13:] == CopyParams.PAD).all()
    assert CopyParams(seq_len=21).length == 10


def test_associative_recall_answer_is_the_value_stored_for_the_query_key() -> None:
    task = AssociativeRecallParams(vocab_size=33, seq_len=40, n_pairs=8, n_queries=3)
    x, y = _sample(task)
    n_keys = 16
    for row_x, row_y in zip(x.tolist(), y.tolist(), strict=True):
        keys, values = row_x[0:16:2], row_x[1:16:2]
        assert len(set(keys)) == 8
        assert all(1 <= k <= n_keys for k in keys)
        assert all(n_keys < v < 33 for v in values)
        stored = dict(zip(keys, values, strict=True))
        supervised = [t for t, target in enumerate(row_y) if target != IGNORE_INDEX]
        assert supervised == [16, 18, 20]
        assert len({row_x[t] for t in supervised}) == 3  # distinct query keys
        for t in supervised:
            assert row_y[t] == stored[row_x[t]]


def test_associative_recall_fills_the_sequence_with_pairs_by_default() -> None:
    assert AssociativeRecallParams(vocab_size=33, seq_len=128).n_pairs == 16  # all keys
    assert AssociativeRecallParams(vocab_size=256, seq_len=20, n_queries=2).n_pairs == 8


@pytest.mark.parametrize(("distance", "n_queries"), [(1, 1), (3, 4), (7, 3), (30, 1), (2, 6)])
def test_long_range_target_is_the_token_distance_positions_back(
    distance: int, n_queries: int
) -> None:
    task = LongRangeParams(vocab_size=8, seq_len=32, distance=distance, n_queries=n_queries)
    x, y = _sample(task)
    rows, t = (y != IGNORE_INDEX).nonzero(as_tuple=True)
    assert torch.equal((y != IGNORE_INDEX).sum(1), torch.full((B,), n_queries))
    assert (x[rows, t] == LongRangeParams.QUERY).all()
    assert (y[y != IGNORE_INDEX] != LongRangeParams.QUERY).all()
    assert torch.equal(y[rows, t], x[rows, t - distance])
    assert ((x == LongRangeParams.QUERY).sum(1) == n_queries).all()  # markers only at queries


def test_long_range_query_position_varies_so_position_alone_cannot_answer() -> None:
    _, y = _sample(LongRangeParams(seq_len=64, distance=16))
    positions = (y != IGNORE_INDEX).nonzero()[:, 1]
    assert len(set(positions.tolist())) > 10


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: CopyParams(vocab_size=3), "data.params.vocab_size"),
        (lambda: CopyParams(vocab_size=True), "data.params.vocab_size"),
        (lambda: ReverseParams(seq_len=1), "data.seq_len"),
        (lambda: SortingParams(seq_len=0), "data.seq_len"),
        (lambda: CopyParams(seq_len=8, length=5), "data.params.length"),
        (lambda: CopyParams(length=0), "data.params.length"),
        (lambda: AssociativeRecallParams(vocab_size=4), "data.params.vocab_size"),
        (lambda: AssociativeRecallParams(vocab_size=9, n_pairs=5), "data.params.n_pairs"),
        (lambda: AssociativeRecallParams(n_pairs=2, n_queries=3), "data.params.n_queries"),
        (lambda: AssociativeRecallParams(n_queries=0), "data.params.n_queries"),
        (lambda: AssociativeRecallParams(seq_len=8, n_pairs=4), "data.seq_len"),
        (lambda: AssociativeRecallParams(seq_len=2), "data.seq_len"),
        (lambda: LongRangeParams(seq_len=16, distance=16), "data.seq_len"),
        (lambda: LongRangeParams(seq_len=16, distance=6, n_queries=3), "data.seq_len"),
        (lambda: LongRangeParams(distance=0), "data.params.distance"),
        (lambda: LongRangeParams(distance=2.5), "data.params.distance"),  # type: ignore[arg-type]
    ],
)
def test_bad_task_parameters_raise_config_error_naming_the_field(make, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        make()
    assert e.value.field == field
    assert str(e.value).startswith(field + ": ")


def test_long_range_accepts_the_tightest_valid_seq_len() -> None:
    task = LongRangeParams(seq_len=17, distance=6, n_queries=3)  # 6 + 5 * 2 + 1
    for seed in range(20):
        _, y = _sample(task, seed)
        assert ((y != IGNORE_INDEX).sum(1) == 3).all()


# --- pair tasks: translate, addition, and their sequence-to-sequence batches -----------------

PAIR_TASKS = ["copy", "reverse", "sorting", "translate", "addition"]


def _translate_by_hand(prompt: list[int], vocab_size: int, window: int, seed: int) -> list[int]:
    """The "translation" written out again: the lexicon is the permutation of the data tokens
    drawn from `seed`, then the order is reversed inside consecutive blocks of `window`."""
    perm = torch.randperm(vocab_size - 2, generator=torch.Generator().manual_seed(seed)).tolist()
    mapped = [perm[t - 2] + 2 for t in prompt]
    out: list[int] = []
    for start in range(0, len(mapped), window):
        out += mapped[start : start + window][::-1]
    return out


@pytest.mark.parametrize(("length", "window", "seed"), [(8, 3, 0), (9, 1, 5), (7, 7, 1), (6, 4, 2)])
def test_translate_answers_follow_the_lexicon_then_block_reversal(
    length: int, window: int, seed: int
) -> None:
    task = TranslateParams(vocab_size=20, seq_len=2 * length, length=length, window=window,
                           mapping_seed=seed)  # fmt: skip
    lexicon = task.lexicon().tolist()
    assert lexicon[:2] == [0, 1] and sorted(lexicon) == list(range(20)), "a permutation"
    p = task.pairs(B, torch.Generator().manual_seed(seed + 10))
    for prompt, answer in zip(p.source.tolist(), p.target.tolist(), strict=True):
        assert answer == _translate_by_hand(prompt, 20, window, seed)
    if window == 1:
        assert torch.equal(p.target, task.lexicon()[p.source]), "word for word"
    # The causal stream supervises the same answer after SEP.
    x, y = task.sample(B, torch.Generator().manual_seed(seed + 10))
    assert torch.equal(x[:, length], torch.full((B,), task.SEP))
    assert torch.equal(y[:, length : 2 * length], p.target)


def test_translate_lexicon_is_fixed_by_mapping_seed_alone() -> None:
    a, b = TranslateParams(vocab_size=40, seq_len=16), TranslateParams(vocab_size=40, seq_len=16)
    c = TranslateParams(vocab_size=40, seq_len=16, mapping_seed=1)
    assert torch.equal(a.lexicon(), b.lexicon()) and not torch.equal(a.lexicon(), c.lexicon())
    fixed = a.lexicon()[2:] == torch.arange(2, 40)
    assert int(fixed.sum()) < 10, "the lexicon moves most tokens"
    with pytest.raises(ConfigError) as e:
        TranslateParams(seq_len=16, window=0)
    assert e.value.field == "data.params.window"


def _number(tokens: list[int]) -> int:
    """The integer written by digit tokens (3-12), most significant first."""
    assert tokens and all(3 <= t <= 12 for t in tokens), tokens
    assert tokens[0] != 3 or len(tokens) == 1, f"a leading zero: {tokens}"
    return int("".join(str(t - 3) for t in tokens))


@pytest.mark.parametrize("digits", [1, 3, 6, 15])
def test_addition_answers_are_the_sum_of_the_two_operands(digits: int) -> None:
    task = AdditionParams(seq_len=3 * digits + 2, digits=digits)
    p = task.pairs(512, torch.Generator().manual_seed(digits))
    sizes = set()
    for src, n, tgt, m in zip(p.source.tolist(), p.source_len.tolist(), p.target.tolist(),
                              p.target_len.tolist(), strict=True):  # fmt: skip
        prompt, plus = src[:n], src[:n].index(task.PLUS)
        assert all(t == task.PAD for t in src[n:]) and all(t == task.PAD for t in tgt[m:])
        a, b = _number(prompt[:plus]), _number(prompt[plus + 1 :])
        assert _number(tgt[:m]) == a + b, (prompt, tgt)
        assert a < 10**digits and b < 10**digits
        sizes.add(plus)
    assert sizes == set(range(1, digits + 1)), "every operand length from 1 to digits"
    if digits > 1:
        assert len(set(p.source_len.tolist())) > 2 and len(set(p.target_len.tolist())) > 1


def test_addition_seq2seq_attention_mask_marks_exactly_the_prompt() -> None:
    task = AdditionParams(seq_len=20, digits=6)
    inputs, labels = task.sample_seq2seq(256, torch.Generator().manual_seed(0))
    p = task.pairs(256, torch.Generator().manual_seed(0))
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert ids.shape == mask.shape == (256, 13)
    assert torch.equal(mask.sum(1), p.source_len)
    assert torch.equal(mask.bool(), ids != task.PAD), "the prompt, and only it, is attended"
    assert torch.equal(mask, mask.sort(dim=1, descending=True).values), "a prefix of each row"
    for row, m, lab in zip(p.target.tolist(), p.target_len.tolist(), labels.tolist(), strict=True):
        assert lab[:m] == row[:m] and lab[m] == task.SEP
        assert all(t == IGNORE_INDEX for t in lab[m + 1 :])
    # The decoder reads SEP then the answer: the labels shifted right, padding past the end.
    dec = inputs["decoder_input_ids"]
    assert torch.equal(dec[:, 0], torch.full((256,), task.SEP))
    supervised = labels != IGNORE_INDEX
    assert torch.equal(dec[:, 1:][supervised[:, 1:]], labels[:, :-1][supervised[:, 1:]])


@pytest.mark.parametrize("name", PAIR_TASKS)
def test_seq2seq_batches_come_from_the_same_draws_as_the_causal_ones(name: str) -> None:
    task = TASKS.get(name, "data.source")(seq_len=24)
    x, y = task.sample(B, torch.Generator().manual_seed(11))
    inputs, labels = task.sample_seq2seq(B, torch.Generator().manual_seed(11))
    ids = inputs["input_ids"]
    enc_len = inputs["attention_mask"].sum(1) if "attention_mask" in inputs else None
    for b in range(B):
        n = int(enc_len[b]) if enc_len is not None else ids.shape[1]
        # Causal stream: prompt SEP answer; the SEP sits right after the same prompt.
        assert x[b, :n].tolist() == ids[b, :n].tolist(), "the same prompt"
        assert int(x[b, n]) == task.SEP
        answer = [t for t in y[b].tolist() if t != IGNORE_INDEX]
        assert labels[b].tolist()[: len(answer)] == answer, "the same answer"
        assert int(labels[b, len(answer)]) == task.SEP, "SEP ends the decoder's answer"
    other = task.sample_seq2seq(B, torch.Generator().manual_seed(12))[0]["input_ids"]
    assert not torch.equal(other, ids)
