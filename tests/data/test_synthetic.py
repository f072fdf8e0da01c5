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
    AssociativeRecallParams,
    CopyParams,
    LongRangeParams,
    ReverseParams,
    SortingParams,
    TaskParams,
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
