"""The training objectives of the other model kinds (`resnorm.data.objectives`): BERT's masking
has its paper's rates and never touches padding, T5's span corruption loses nothing and follows
T5's span counts, and every objective's batches keep the loader's guarantees (a pure function
of (seed, step), 2 ranks x B/2 == 1 rank x B), from the built-in text and a `datasets` folder."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from resnorm.data import DataConfig, build_data
from resnorm.data.batch import batch_rows
from resnorm.data.objectives import (
    DECODER_START,
    FIRST_SENTINEL,
    MASK,
    corrupt_spans,
    mask_tokens,
    resolve,
    span_counts,
    vocab_size,
)
from resnorm.data.synthetic import IGNORE_INDEX
from resnorm.data.text import FILE_SEPARATOR
from resnorm.errors import ConfigError


def _within(count: int, n: int, p: float, sds: float = 5.0) -> bool:
    """Whether ``count`` successes of ``n`` Bernoulli(``p``) draws lie within ``sds`` binomial
    standard deviations of the mean."""
    return abs(count - n * p) <= sds * math.sqrt(n * p * (1 - p))


# --- masked LM -----------------------------------------------------------------------------


def _padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask) of 256 rows of 256 bytes, each row a random length then padding
    (id 0, mask 0)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (256, 256), generator=g)
    lengths = torch.randint(1, 257, (256,), generator=g)
    mask = (torch.arange(256)[None, :] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask


def test_mask_tokens_chooses_15_percent_of_the_real_positions_and_never_padding() -> None:
    ids, attention = _padded_batch()
    inputs, labels = mask_tokens(ids, torch.Generator().manual_seed(1), attention)
    chosen = labels != IGNORE_INDEX
    real = int(attention.sum())
    assert real < ids.numel() // 2 + ids.numel() // 4, "the batch has a lot of padding"
    assert _within(int(chosen.sum()), real, 0.15), (int(chosen.sum()), real)
    pad = attention == 0
    assert not chosen[pad].any(), "a padding position was chosen"
    assert torch.equal(inputs[pad], ids[pad]), "padding is left as it is"
    assert torch.equal(labels[chosen], ids[chosen]), "labels are the original tokens"
    assert torch.equal(inputs[~chosen], ids[~chosen]), "only chosen positions are corrupted"


def test_mask_tokens_chosen_positions_are_80_mask_10_random_10_unchanged() -> None:
    ids, attention = _padded_batch(seed=2)
    inputs, labels = mask_tokens(ids, torch.Generator().manual_seed(3), attention)
    chosen = labels != IGNORE_INDEX
    n = int(chosen.sum())
    got, orig = inputs[chosen], ids[chosen]
    masked = int((got == MASK).sum())
    # A random token is one of the 256 bytes, so 1 in 256 random draws is the original token.
    unchanged = int((got == orig).sum())
    swapped = int(((got != orig) & (got != MASK)).sum())
    assert masked + unchanged + swapped == n
    assert _within(masked, n, 0.8), (masked, n)
    assert _within(unchanged, n, 0.1 + 0.1 / 256), (unchanged, n)
    assert _within(swapped, n, 0.1 * 255 / 256), (swapped, n)
    assert int(got[got != MASK].max()) < 256, "random tokens are data tokens, never [MASK]"
    # The random tokens are uniform over the bytes: no byte takes much more than its share.
    counts = torch.bincount(got[(got != orig) & (got != MASK)], minlength=256)
    assert int(counts.max()) < 6 * max(swapped / 256, 1.0)


def test_mask_tokens_without_a_mask_chooses_every_position_alike_and_is_deterministic() -> None:
    ids = torch.randint(0, 256, (128, 128), generator=torch.Generator().manual_seed(0))
    a = mask_tokens(ids, torch.Generator().manual_seed(5))
    b = mask_tokens(ids, torch.Generator().manual_seed(5))
    c = mask_tokens(ids, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    chosen = a[1] != IGNORE_INDEX
    assert _within(int(chosen.sum()), ids.numel(), 0.15)
    # Every column is chosen at the same rate (no position is favoured).
    per_column = chosen.sum(0)
    assert all(_within(int(k), 128, 0.15, sds=5.5) for k in per_column)


# --- span corruption -------------------------------------------------------------------------


def _t5_counts(length: int) -> tuple[int, int]:
    """T5's ``random_spans_noise_mask`` counts, written out again (np.round is half-to-even,
    as Python's round)."""
    noise = round(length * 0.15)
    noise = min(max(noise, 1), length - 1)
    return noise, max(round(noise / 3.0), 1)


def _parse_targets(labels: list[int]) -> dict[int, list[int]]:
    """Sentinel -> the span after it in ``S0 span0 S1 span1 ... Sk``."""
    spans: dict[int, list[int]] = {}
    current = None
    for token in labels:
        if token >= FIRST_SENTINEL:
            current = token
            spans[current] = []
        else:
            assert current is not None, "the targets start with a sentinel"
            spans[current].append(token)
    return spans


def _reconstruct(inputs: list[int], labels: list[int]) -> list[int]:
    """The window, from the encoder input with each sentinel replaced by its span."""
    spans = _parse_targets(labels)
    out: list[int] = []
    for token in inputs:
        out += spans[token] if token >= FIRST_SENTINEL else [token]
    return out


@pytest.mark.parametrize("length", [2, 3, 7, 16, 20, 33, 64, 100, 128, 257])
def test_span_corruption_loses_nothing_and_counts_spans_as_t5(length: int) -> None:
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(0, 256, (16, length), generator=g)
    model_inputs, labels = corrupt_spans(ids, g)
    noise, spans = _t5_counts(length)
    assert span_counts(length) == (noise, spans)
    enc, dec = model_inputs["input_ids"], model_inputs["decoder_input_ids"]
    assert enc.shape == (16, length - noise + spans), "every row the same length"
    assert labels.shape == dec.shape == (16, noise + spans + 1)
    sentinels = list(range(FIRST_SENTINEL, FIRST_SENTINEL + spans))
    for b in range(16):
        row_in, row_out = enc[b].tolist(), labels[b].tolist()
        assert _reconstruct(row_in, row_out) == ids[b].tolist()
        assert [t for t in row_in if t >= FIRST_SENTINEL] == sentinels
        assert [t for t in row_out if t >= FIRST_SENTINEL] == [*sentinels, FIRST_SENTINEL + spans]
        assert row_in[0] < FIRST_SENTINEL, "a row starts with kept tokens (as T5's)"
        parsed = _parse_targets(row_out)
        assert all(parsed[s] for s in sentinels), "no empty noise span"
        assert sum(len(parsed[s]) for s in sentinels) == noise
        # Kept runs between sentinels are never empty either: no two sentinels touch.
        assert all(
            not (x >= FIRST_SENTINEL and y >= FIRST_SENTINEL) for x, y in itertools.pairwise(row_in)
        )
    assert torch.equal(dec[:, 0], torch.full((16,), DECODER_START))
    assert torch.equal(dec[:, 1:], labels[:, :-1]), "teacher forcing: labels shifted right"
    assert int(labels.max()) < vocab_size("span_corruption", length)


def test_span_corruption_places_spans_at_random_and_is_deterministic_per_generator() -> None:
    ids = torch.randint(0, 256, (64, 128), generator=torch.Generator().manual_seed(0))
    a = corrupt_spans(ids, torch.Generator().manual_seed(1))
    b = corrupt_spans(ids, torch.Generator().manual_seed(1))
    c = corrupt_spans(ids, torch.Generator().manual_seed(2))
    assert torch.equal(a[0]["input_ids"], b[0]["input_ids"]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0]["input_ids"], c[0]["input_ids"])
    # Where the first sentinel sits varies from row to row.
    first = (a[0]["input_ids"] == FIRST_SENTINEL).int().argmax(1)
    assert len(set(first.tolist())) > 10


def test_span_corruption_needs_two_tokens_a_window() -> None:
    with pytest.raises(ConfigError) as e:
        DataConfig(source="builtin", objective="span_corruption", seq_len=1)
    assert e.value.field == "data.seq_len"
    with pytest.raises(ValueError, match="at least 2"):
        corrupt_spans(torch.zeros(2, 1, dtype=torch.long), torch.Generator())


# --- every objective through the loader ------------------------------------------------------

#: One config per (objective, kind of data): the batches each run kind trains on.
CONFIGS = {
    "causal_lm": {"source": "builtin", "objective": "causal_lm"},
    "mlm": {"source": "builtin", "objective": "mlm"},
    "span_corruption": {"source": "builtin", "objective": "span_corruption"},
    "seq2seq-reverse": {"source": "reverse", "objective": "seq2seq"},
    "seq2seq-addition": {"source": "addition", "objective": "seq2seq"},
    "seq2seq-translate": {"source": "translate", "objective": "seq2seq"},
}


def _data(name: str, **kw: object) -> object:
    return build_data(DataConfig(**{**CONFIGS[name], "seq_len": 32, "batch_size": 8, **kw}))


def _tensors(batch: tuple[object, torch.Tensor]) -> dict[str, torch.Tensor]:
    inputs, targets = batch
    out = {"input_ids": inputs} if isinstance(inputs, torch.Tensor) else dict(inputs)  # type: ignore[call-overload]
    return {**out, "targets": targets}


def _same(a: tuple[object, torch.Tensor], b: tuple[object, torch.Tensor]) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_objective_batch_is_a_pure_function_of_seed_and_step(name: str) -> None:
    first = _data(name, seed=3)
    expected = [first.train_batch(step) for step in range(5)]  # type: ignore[attr-defined]
    resumed = _data(name, seed=3)
    for step in [4, 1, 0, 4, 2, 3]:
        assert _same(resumed.train_batch(step), expected[step])  # type: ignore[attr-defined]
    other = _data(name, seed=4)
    assert not _same(other.train_batch(0), expected[0])  # type: ignore[attr-defined]
    assert not _same(expected[0], expected[1])
    # Validation batches do not depend on the seed, and are the same on every call.
    assert _same(first.val_batches(2)[1], other.val_batches(3)[1])  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("world_size", [2, 4])
def test_every_objective_rank_slices_concatenate_to_the_global_batch(
    name: str, world_size: int
) -> None:
    data = _data(name)
    whole = _tensors(data.train_batch(6))  # type: ignore[attr-defined]
    parts = [_tensors(data.train_batch(6, r, world_size)) for r in range(world_size)]  # type: ignore[attr-defined]
    for key, tensor in whole.items():
        assert all(p[key].shape[0] == 8 // world_size for p in parts)
        assert torch.equal(torch.cat([p[key] for p in parts]), tensor), key
    if name == "seq2seq-addition":
        assert "attention_mask" in whole, "addition's prompts vary in length"


def test_batch_rows_slices_every_tensor_of_a_keyword_batch() -> None:
    inputs = {"input_ids": torch.arange(12).view(4, 3), "attention_mask": torch.ones(4, 3)}
    (sliced, targets) = batch_rows((inputs, torch.arange(4)), slice(1, 3))
    assert torch.equal(sliced["input_ids"], torch.arange(3, 9).view(2, 3))  # type: ignore[index]
    assert sliced["attention_mask"].shape == (2, 3)  # type: ignore[index]
    assert torch.equal(targets, torch.tensor([1, 2]))


def test_text_objectives_record_their_vocabulary_and_rates() -> None:
    mlm, span = _data("mlm"), _data("span_corruption")
    assert mlm.vocab_size == 257  # type: ignore[attr-defined]
    manifest = mlm.manifest()  # type: ignore[attr-defined]
    assert manifest["objective"] == "mlm" and manifest["mask_token"] == MASK
    assert (manifest["mask_probability"], manifest["mask_share"]) == (0.15, 0.8)
    noise, spans = _t5_counts(32)
    assert span.vocab_size == FIRST_SENTINEL + spans + 1  # type: ignore[attr-defined]
    assert span.manifest()["noise_tokens"] == noise  # type: ignore[attr-defined]


# --- the Hugging Face `datasets` source --------------------------------------------------------


def _hf_folder(tmp_path: Path) -> tuple[Path, bytes]:
    """A `datasets` folder of 30 rows, saved locally (no hub), and the bytes the loader makes."""
    import datasets

    rows = [f"row {i}: the quick brown fox {i * 7} jumps over é {i}" for i in range(30)]
    folder = tmp_path / "ds"
    datasets.Dataset.from_dict({"text": rows, "n": list(range(30))}).save_to_disk(str(folder))
    return folder, bytes([FILE_SEPARATOR]).join(r.encode() for r in rows)


@pytest.mark.parametrize("objective", ["causal_lm", "mlm", "span_corruption"])
def test_hf_source_serves_every_text_objective(tmp_path: Path, objective: str) -> None:
    cfg = DataConfig(source="hf", path=str(tmp_path / "ds"), seq_len=16, batch_size=4,
                     objective=objective)  # fmt: skip
    _, text = _hf_folder(tmp_path)  # `datasets` is a dev dependency: this runs in CI
    data = build_data(cfg)
    manifest = data.manifest()  # a causal run records none (its ids predate objectives)
    assert manifest["n_rows"] == 30 and manifest.get("objective", "causal_lm") == objective
    inputs, targets = data.train_batch(0)
    train_bytes = text[: data.n_train]  # type: ignore[attr-defined]
    for b in range(4):
        if objective == "causal_lm":
            assert isinstance(inputs, torch.Tensor)
            window = [*inputs[b].tolist(), int(targets[b, -1])]
            assert torch.equal(inputs[b, 1:], targets[b, :-1])
        elif objective == "mlm":
            assert isinstance(inputs, dict)
            row = inputs["input_ids"][b]
            window = torch.where(targets[b] == IGNORE_INDEX, row, targets[b]).tolist()
        else:
            assert isinstance(inputs, dict)
            window = _reconstruct(inputs["input_ids"][b].tolist(), targets[b].tolist())
        assert len(window) == 16 + (objective == "causal_lm")
        assert bytes(window) in train_bytes, "a window of the dataset's training split"
    if objective == "mlm":
        assert int((targets != IGNORE_INDEX).sum()) > 0
    assert _same(data.train_batch(3), build_data(cfg).train_batch(3))


# --- which objective a model kind trains with --------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "source", "objective"),
    [("decoder", "builtin", "causal_lm"), ("decoder", "reverse", "causal_lm"),
     ("encoder", "builtin", "mlm"), ("encoder", "hf", "mlm"),
     ("encoder_decoder", "reverse", "seq2seq"), ("encoder_decoder", "addition", "seq2seq"),
     ("encoder_decoder", "text", "span_corruption")],
)  # fmt: skip
def test_auto_objective_follows_the_model_kind_and_source(
    kind: str, source: str, objective: str
) -> None:
    assert resolve("auto", kind, source) == objective
    assert resolve("mlm", kind, source) == "mlm", "an explicit one is kept (checked elsewhere)"


@pytest.mark.parametrize(
    ("kind", "source", "fix"),
    [("encoder", "reverse", "builtin, text, hf"), ("encoder", "long_range", "builtin, text, hf"),
     ("encoder_decoder", "associative_recall", "copy, reverse")],
)  # fmt: skip
def test_a_kind_with_no_objective_for_the_source_names_data_source_and_the_fix(
    kind: str, source: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as e:
        resolve("auto", kind, source)
    assert e.value.field == "data.source"
    assert "data.objective" in str(e.value) and fix in str(e.value) and repr(source) in str(e.value)


@pytest.mark.parametrize("source", ["copy", "reverse", "sorting", "translate"])
def test_seq2seq_reference_loss_is_what_a_prompt_blind_decoder_scores(source: str) -> None:
    """The references count the closing SEP as free: a decoder that ignores the prompt but
    knows its position predicts answer tokens uniformly and the SEP at position L exactly, and
    scores exactly the uniform reference (the stuck test's yardstick)."""
    data = build_data(DataConfig(source=source, objective="seq2seq", seq_len=16, batch_size=8,
                                 params={"vocab_size": 12}))  # fmt: skip
    causal = build_data(DataConfig(source=source, seq_len=16, batch_size=8,
                                   params={"vocab_size": 12}))  # fmt: skip
    assert data.uniform_loss == pytest.approx(causal.uniform_loss * 8 / 9)
    assert data.unigram_loss == pytest.approx(causal.unigram_loss * 8 / 9)
    _, labels = data.val_batches(1)[0]
    logits = torch.full((8, 9, 12), -1e9)
    logits[:, :8, 2:] = 0.0  # uniform over the 10 data tokens
    logits[:, 8, 1] = 0.0  # SEP (id 1) at the end
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
    assert float(loss) == pytest.approx(data.uniform_loss, rel=1e-6)
    assert math.log(10) * 8 / 9 == pytest.approx(data.uniform_loss)
