"""Batching: a training batch is a pure function of (seed, step), ranks slice one global batch,
validation batches are fixed and (for text) disjoint from training, and every bad config value
raises an error naming its field."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from resnorm.data import IGNORE_INDEX, SOURCES, DataConfig, build_data
from resnorm.data.synthetic import TASKS
from resnorm.errors import ConfigError

SMALL = {"seq_len": 32, "batch_size": 8}
LOCAL_SOURCES = ["builtin", *TASKS.names()]


def _cfg(source: str, **kw: object) -> DataConfig:
    return DataConfig(source=source, **{**SMALL, **kw})  # type: ignore[arg-type]


def _equal(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    """1000 bytes: 900 random lowercase letters then 100 random uppercase ones, so with
    val_fraction 0.1 every byte says which split it came from."""
    rng = random.Random(0)
    lower = bytes(rng.randrange(ord("a"), ord("z") + 1) for _ in range(900))
    upper = bytes(rng.randrange(ord("A"), ord("Z") + 1) for _ in range(100))
    path = tmp_path / "corpus.txt"
    path.write_bytes(lower + upper)
    return path


@pytest.mark.parametrize("source", LOCAL_SOURCES)
def test_same_seed_gives_identical_batches_and_different_seed_different(source: str) -> None:
    a, b = build_data(_cfg(source, seed=3)), build_data(_cfg(source, seed=3))
    other = build_data(_cfg(source, seed=4))
    for step in range(3):
        assert _equal(a.train_batch(step), b.train_batch(step))
        assert not torch.equal(a.train_batch(step)[0], other.train_batch(step)[0])
    assert not torch.equal(a.train_batch(0)[0], a.train_batch(1)[0])


@pytest.mark.parametrize("source", LOCAL_SOURCES)
def test_train_batch_is_a_pure_function_of_step_in_any_call_order(source: str) -> None:
    """Resuming at step s needs no replay: a fresh object asked out of order gives the same."""
    in_order = build_data(_cfg(source))
    expected = [in_order.train_batch(step) for step in range(6)]
    resumed = build_data(_cfg(source))
    for step in [5, 2, 0, 5, 3, 1, 4]:
        assert _equal(resumed.train_batch(step), expected[step])


@pytest.mark.parametrize("source", ["builtin", "associative_recall", "long_range"])
@pytest.mark.parametrize("world_size", [2, 4, 8])
def test_rank_slices_concatenate_to_the_global_batch(source: str, world_size: int) -> None:
    data = build_data(_cfg(source))
    x, y = data.train_batch(7)
    parts = [data.train_batch(7, rank, world_size) for rank in range(world_size)]
    assert all(p[0].shape == (8 // world_size, 32) for p in parts)
    assert torch.equal(torch.cat([p[0] for p in parts]), x)
    assert torch.equal(torch.cat([p[1] for p in parts]), y)


def test_batch_size_not_divisible_by_world_size_raises_naming_data_batch_size() -> None:
    data = build_data(_cfg("copy", batch_size=6))
    with pytest.raises(ConfigError, match="ranks") as e:
        data.train_batch(0, rank=0, world_size=4)
    assert e.value.field == "data.batch_size"


@pytest.mark.parametrize(
    ("step", "rank", "world_size"), [(-1, 0, 1), (0, 2, 2), (0, -1, 2), (0, 0, 0), (1.0, 0, 1)]
)
def test_bad_step_rank_or_world_size_raise_value_error(
    step: int, rank: int, world_size: int
) -> None:
    with pytest.raises(ValueError):
        build_data(_cfg("copy")).train_batch(step, rank, world_size)


@pytest.mark.parametrize("source", LOCAL_SOURCES)
def test_val_batches_are_fixed_across_calls_seeds_and_n(source: str) -> None:
    a, b = build_data(_cfg(source, seed=1)), build_data(_cfg(source, seed=2))
    first, again, other_seed = a.val_batches(3), a.val_batches(5), b.val_batches(3)
    assert len(first) == 3 and len(again) == 5
    for i in range(3):
        assert _equal(first[i], again[i]) and _equal(first[i], other_seed[i])
    assert not torch.equal(first[0][0], first[1][0])
    assert not any(torch.equal(v[0], a.train_batch(s)[0]) for v in first for s in range(3))


def test_text_train_and_val_windows_come_from_disjoint_byte_ranges(text_file: Path) -> None:
    data = build_data(DataConfig(source="text", path=str(text_file), seq_len=16, batch_size=8))
    m = data.manifest()
    assert m["train_bytes"] == [0, 900] and m["val_bytes"] == [900, 1000]
    stream = text_file.read_bytes()
    train_part, val_part = stream[:900], stream[900:]
    for step in range(50):
        x, y = data.train_batch(step)
        assert all(ord("a") <= b <= ord("z") for b in torch.cat([x, y]).flatten().tolist())
        window = bytes(x[0].tolist() + y[0, -1:].tolist())
        assert window in train_part and torch.equal(x[:, 1:], y[:, :-1])
    for x, y in data.val_batches(4):
        assert all(ord("A") <= b <= ord("Z") for b in torch.cat([x, y]).flatten().tolist())
        assert bytes(x[0].tolist() + y[0, -1:].tolist()) in val_part


def test_text_val_batches_are_consecutive_windows_of_the_val_split(text_file: Path) -> None:
    cfg = DataConfig(source="text", path=str(text_file), seq_len=9, batch_size=5)
    (x, y), _ = build_data(cfg).val_batches(2)
    val_part = text_file.read_bytes()[900:]
    windows = torch.cat([x, y[:, -1:]], dim=1)  # (5, 10)
    assert bytes(windows.flatten().tolist()) == val_part[:50]


def test_text_train_windows_cover_the_training_split(text_file: Path) -> None:
    data = build_data(DataConfig(source="text", path=str(text_file), seq_len=16, batch_size=32))
    seen = torch.zeros(1000, dtype=torch.bool)
    for step in range(40):
        x, _ = data.train_batch(step)
        for row in x.tolist():
            start = text_file.read_bytes()[:900].find(bytes(row))
            seen[start : start + 16] = True
    assert seen[:880].float().mean() > 0.95 and not seen[900:].any()


def test_text_too_short_for_its_splits_names_the_field_to_change(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"x" * 300)
    with pytest.raises(ConfigError, match="validation split") as e:
        build_data(DataConfig(source="text", path=str(path), seq_len=64))
    assert e.value.field == "data.val_fraction"
    build_data(DataConfig(source="text", path=str(path), seq_len=64, val_fraction=0.25))
    with pytest.raises(ConfigError, match="training split") as e:
        build_data(DataConfig(source="text", path=str(path), seq_len=280))
    assert e.value.field == "data.seq_len"


def test_manifest_records_source_params_hash_and_sizes_as_json() -> None:
    task = build_data(_cfg("copy", params={"vocab_size": 20}))
    m = task.manifest()
    assert m["params"] == {"vocab_size": 20, "seq_len": 32, "length": 16}
    assert m["vocab_size"] == 20 and m["uniform_loss"] == pytest.approx(math.log(18))
    text = build_data(_cfg("builtin")).manifest()
    assert len(text["sha256"]) == 64 and text["n_bytes"] == text["val_bytes"][1]
    assert text["vocab_size"] == 256 and text["uniform_loss"] == pytest.approx(math.log(256))
    assert json.loads(json.dumps(m)) == m and json.loads(json.dumps(text)) == text


def test_builtin_unigram_loss_lies_between_zero_and_uniform() -> None:
    data = build_data(_cfg("builtin"))
    assert 2.5 < data.unigram_loss < data.uniform_loss


def test_task_targets_ignore_unsupervised_positions_through_the_loader() -> None:
    x, y = build_data(_cfg("copy")).train_batch(0)
    assert (y[:, :16] == IGNORE_INDEX).all() and torch.equal(y[:, 16:], x[:, :16])


def test_unknown_source_suggests_the_closest_valid_choice() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'copy'") as e:
        DataConfig(source="cpy")
    assert e.value.field == "data.source"
    assert all(s in str(e.value) for s in SOURCES)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"seq_len": 0}, "data.seq_len"),
        ({"seq_len": "128"}, "data.seq_len"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"seed": -1}, "data.seed"),
        ({"seed": 1.5}, "data.seed"),
        ({"val_fraction": 1.0}, "data.val_fraction"),
        ({"val_fraction": 0}, "data.val_fraction"),
        ({"source": "text"}, "data.path"),
        ({"source": "hf"}, "data.path"),
        ({"source": "copy", "path": "x.txt"}, "data.path"),
        ({"source": "builtin", "params": {"x": 1}}, "data.params.x"),
        ({"source": "copy", "params": {"vocab_sise": 8}}, "data.params.vocab_sise"),
        ({"source": "copy", "params": {"seq_len": 8}}, "data.params.seq_len"),
        ({"source": "copy", "params": {"vocab_size": 2}}, "data.params.vocab_size"),
        ({"source": "long_range", "params": {"distance": "4"}}, "data.params.distance"),
        ({"source": "long_range", "seq_len": 8, "params": {"distance": 8}}, "data.seq_len"),
        ({"source": "hf", "path": "d", "params": {"column": "t"}}, "data.params.column"),
        ({"params": [1]}, "data.params"),
    ],
)
def test_bad_config_values_raise_config_error_naming_their_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as e:
        DataConfig(**kwargs)  # type: ignore[arg-type]
    assert e.value.field == field
