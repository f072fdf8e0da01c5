"""`resnorm eval` / `resnorm sample` for every model kind: masked-LM encoders and span-corruption
encoder-decoders on held-out text, encoder-decoders on held-out task sequences (greedy decoding
with the cache); every number checked against an independent computation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from resnorm import evaluate
from resnorm.cli import main
from resnorm.config import load_config
from resnorm.data import IGNORE_INDEX, build_data, stream_seed
from resnorm.data.objectives import corrupt_spans, mask_tokens
from resnorm.errors import ConfigError
from resnorm.evaluation import MASK_SEED
from resnorm.load import load_model
from resnorm.store import Store
from resnorm.train import TrainResult, train
from resnorm.train.loop import evaluate as teacher_forced
from textkit import train_text, write_text

#: A tiny encoder-decoder on 1-digit addition: ~5% exact match after 80 steps, so both right and
#: wrong answers occur (and answers of 1 and 2 digits).
PAIR_RUN = [
    "model.kind=encoder_decoder", "model.d_model=16", "model.n_layers=1", "model.n_heads=2",
    "model.max_seq_len=8", "data.source=addition", "data.seq_len=6", "data.params.digits=1",
    "data.batch_size=16", "train.steps=80", "train.lr=2e-2", "train.warmup_steps=5",
    "train.eval_every=0", "train.probe_every=0", "train.eval_batches=2", "train.device=cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    lab = tmp_path_factory.mktemp("pairs") / "lab"
    result = train(load_config(overrides=[*PAIR_RUN, f'lab="{lab}"']), progress=False)
    assert result.status == "done"
    return result


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A masked-LM encoder and a span-corruption encoder-decoder on the same text, and 301
    held-out bytes (the last window is short)."""
    tmp = tmp_path_factory.mktemp("kinds")
    runs = {
        "mlm": train_text(tmp, ["model.kind=encoder", "model.vocab_size=257"]).run_id,
        "span_corruption": train_text(
            tmp, ["model.kind=encoder_decoder", "model.vocab_size=259"]
        ).run_id,
    }
    (tmp / "held.txt").write_bytes(write_text(tmp / "words.txt", 200, seed=1).read_bytes()[:301])
    return tmp, runs


def _pairs(run: TrainResult, n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Held-out sequences 0..n-1 as eval defines them: sequence i from stream ("eval", i)."""
    task = run.config.data.source_params()
    rows = [
        task.sample_seq2seq(1, torch.Generator().manual_seed(stream_seed("eval", i)))
        for i in range(n)
    ]
    inputs = {k: torch.cat([r[0][k] for r in rows]) for k in rows[0][0]}
    return inputs, torch.cat([r[1] for r in rows])


def _greedy_rows(model: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> list[bool]:
    """Per sequence: does uncached greedy decoding, one row at a time, give answer + SEP?"""
    out = []
    for i in range(labels.shape[0]):
        target = labels[i][labels[i] != IGNORE_INDEX]
        mask = inputs.get("attention_mask")
        src = inputs["input_ids"][i : i + 1]
        if mask is not None:
            src = src[:, : int(mask[i].sum())]
        got = model.generate(src, len(target), temperature=0, start_token=1, use_cache=False)
        out.append(torch.equal(got[0, 1:], target))
    return out


def test_greedy_exact_match_is_teacher_forced_exact_match_sequence_by_sequence(
    pair_run: TrainResult,
) -> None:
    """What the training loop's val_exact_match relies on: greedy decoding (cached, batched,
    stopping at SEP) gets a sequence right exactly when every teacher-forced argmax is right."""
    model = pair_run.model
    inputs, labels = _pairs(pair_run, 300)
    with torch.no_grad():
        logits = model(**inputs)
    supervised = labels != IGNORE_INDEX
    forced = (((logits.argmax(-1) == labels) | ~supervised).all(dim=1)).tolist()
    out = model.generate(
        inputs["input_ids"], labels.shape[1], temperature=0,
        attention_mask=inputs["attention_mask"], start_token=1, end_token=1,
    )  # fmt: skip
    width = labels.shape[1]
    out = F.pad(out[:, 1:], (0, width + 1 - out.shape[1]))
    greedy = ((out == labels) | ~supervised).all(dim=1).tolist()
    assert greedy == forced
    assert 0 < sum(greedy) < 300  # both kinds of sequence occur
    assert greedy[:60] == _greedy_rows(model, {k: v[:60] for k, v in inputs.items()}, labels[:60])
    agg = teacher_forced(model, [(inputs, labels)], torch.device("cpu"), exact_match=True)
    assert agg["val_exact_match"] == pytest.approx(sum(greedy) / 300, abs=1e-12)


def _direct(model: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """The seq2seq metrics one sequence at a time: its source without padding (no mask),
    uncached greedy decoding, and the teacher-forced pass in float64 sums."""
    exact = hits = correct = tokens = 0
    loss = 0.0
    for i in range(labels.shape[0]):
        target = labels[i][labels[i] != IGNORE_INDEX]
        mask = inputs.get("attention_mask")
        src = inputs["input_ids"][i : i + 1]
        if mask is not None:
            src = src[:, : int(mask[i].sum())]
        got = model.generate(src, len(target), temperature=0, start_token=1, end_token=1,
                             use_cache=False)[0, 1:]  # fmt: skip
        got = F.pad(got, (0, len(target) - len(got)))
        exact += int(torch.equal(got, target))
        hits += int((got == target).sum())
        dec = torch.cat([torch.tensor([1]), target[:-1]])[None]  # SEP answer
        with torch.no_grad():
            logits = model(src, decoder_input_ids=dec)[0]
        loss += float(F.cross_entropy(logits.double(), target, reduction="sum"))
        correct += int((logits.argmax(-1) == target).sum())
        tokens += len(target)
    n = labels.shape[0]
    return {"exact_match": exact / n, "token_accuracy": hits / tokens, "loss": loss / tokens,
            "teacher_forced_accuracy": correct / tokens, "sequences": float(n),
            "tokens": float(tokens)}  # fmt: skip


@pytest.fixture(scope="module")
def padded_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """2-digit addition: sources of 3 to 5 tokens, so the encoder pads."""
    lab = tmp_path_factory.mktemp("padded") / "lab"
    overrides = [*PAIR_RUN, "data.params.digits=2", "data.seq_len=8"]
    return train(load_config(overrides=[*overrides, f'lab="{lab}"']), progress=False)


@pytest.mark.parametrize("which", ["pair_run", "padded_run"])
def test_task_eval_equals_an_independent_computation(
    which: str, request: pytest.FixtureRequest
) -> None:
    run: TrainResult = request.getfixturevalue(which)
    n = 120
    result = evaluate(run.run_id, sequences=n, lab=run.lab, store=False, progress=False)
    inputs, labels = _pairs(run, n)
    direct = _direct(run.model, inputs, labels)
    assert result.name == "addition" and result.objective == "seq2seq"
    assert result.metrics == pytest.approx(direct, rel=1e-5)
    assert {k: result.metrics[k] for k in ("exact_match", "token_accuracy", "tokens")} == {
        k: direct[k] for k in ("exact_match", "token_accuracy", "tokens")
    }  # counts: exactly
    if which == "pair_run":
        assert 0 < result.exact_match < result.token_accuracy < 1
    else:
        lengths = inputs["attention_mask"].sum(dim=1)
        assert lengths.min() < lengths.max()  # padding was exercised
        assert 0 < result.token_accuracy < 1
    # The same n sequences whatever the batch size (the loss up to float32 summation order).
    again = evaluate(run.run_id, sequences=n, lab=run.lab, batch_size=7, store=False,
                     progress=False)  # fmt: skip
    assert again.metrics == pytest.approx(result.metrics, rel=1e-6)


def test_held_out_sequences_are_none_of_the_training_or_validation_draws(
    pair_run: TrainResult,
) -> None:
    """The eval stream is its own: its sequences differ from the first training and validation
    batches' draws as a whole (the same prompt may recur by chance in a 100-prompt task)."""
    data = build_data(pair_run.config.data)
    inputs, _ = _pairs(pair_run, 16)
    assert not torch.equal(inputs["input_ids"], data.train_batch(0)[0]["input_ids"])
    assert not torch.equal(inputs["input_ids"], data.val_batches(1)[0][0]["input_ids"])


def test_cli_prints_one_line_and_stores_the_metrics(
    pair_run: TrainResult, capsys: pytest.CaptureFixture[str]
) -> None:
    lab, rid = str(pair_run.lab), pair_run.run_id
    assert main(["eval", rid[:6], "--lab", lab, "--sequences", "50", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "50 held-out sequences" in out and "exact match" in out
    with Store(lab, readonly=True) as store:
        rows = {m.name: (m.step, m.value) for m in store.metrics(rid) if "eval/" in m.name}
        events = store.events(rid, "eval")
    keys = ("exact_match", "token_accuracy", "loss", "teacher_forced_accuracy", "sequences",
            "tokens")  # fmt: skip
    assert set(rows) == {f"eval/addition/{k}" for k in keys}
    assert {step for step, _ in rows.values()} == {80}
    direct = evaluate(rid, sequences=50, lab=lab, store=False, progress=False)
    assert rows["eval/addition/exact_match"][1] == direct.exact_match
    assert events[-1].data["task"] == "addition" and events[-1].data["sequences"] == 50


def test_sample_shows_held_out_examples_marked_right_or_wrong(
    pair_run: TrainResult, capsys: pytest.CaptureFixture[str]
) -> None:
    lab, rid = str(pair_run.lab), pair_run.run_id
    assert main(["sample", rid, "--lab", lab, "--examples", "40"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 41
    inputs, labels = _pairs(pair_run, 40)
    exact = _greedy_rows(pair_run.model, inputs, labels)
    assert lines[0].endswith(f"greedy: {sum(exact)} exact")
    for line, right, src in zip(lines[1:], exact, inputs["input_ids"], strict=True):
        assert line.startswith("✓" if right else "✗")
        a, b = int(src[0]) - 3, int(src[2]) - 3  # digits are tokens 3..12; "a+b"
        assert f"{a}+{b}" in line and f"expected {a + b}  got " in line
    assert main(["sample", rid, "--lab", lab, "-n", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    for args, words in [
        (["--prompt", "x"], "--prompt"),
        (["--temperature", "0.5"], "--temperature"),
        (["--examples", "0"], "--examples"),
        (["-n", "2", "--examples", "3"], "disagrees"),
    ]:
        assert main(["sample", rid, "--lab", lab, *args]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], *words: str) -> None:
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"resnorm {argv[0]}: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def test_wrong_turns_are_one_line_errors(
    pair_run: TrainResult,
    text_runs: tuple[Path, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp, runs = text_runs
    lab, held = str(tmp / "lab"), str(tmp / "held.txt")
    pair = ["--lab", str(pair_run.lab)]
    _fails(capsys, ["eval", pair_run.run_id, *pair, "--data", held], "--data", "addition", "drop")
    _fails(capsys, ["eval", pair_run.run_id, *pair, "--sequences", "0"], "--sequences", ">= 1")
    _fails(capsys, ["eval", runs["mlm"], "--lab", lab], "--data", "masked LM")
    _fails(capsys, ["eval", runs["mlm"], "--lab", lab, "--data", held, "--sequences", "5"],
           "--sequences", "use --data")  # fmt: skip
    two = tmp / "two.txt"
    two.write_bytes(b"ab")  # MASK_SEED's first two draws are 0.4963 and 0.7682 > 0.15
    _fails(capsys, ["eval", runs["mlm"], "--lab", lab, "--data", str(two)], "chose none")
    _fails(capsys, ["sample", runs["mlm"], "--lab", lab], "fills in masked tokens", "resnorm eval")
    _fails(capsys, ["sample", runs["span_corruption"], "--lab", lab], "span", "resnorm eval")


def test_a_decoder_trained_on_a_task_is_pointed_to_its_own_metrics(tmp_path: Path) -> None:
    overrides = [o for o in PAIR_RUN if not o.startswith("model.kind")]
    cfg = load_config(overrides=[*overrides, "train.steps=2", f'lab="{tmp_path / "lab"}"'])
    train(cfg, progress=False)
    with pytest.raises(ConfigError, match="val_exact_match") as e:
        evaluate(cfg.run_id, lab=cfg.lab, progress=False)
    assert "held-out task sequences" in str(e.value)


def _mlm_direct(tmp: Path, run_id: str, data: bytes) -> tuple[float, float, int]:
    """Masked-LM loss and accuracy by hand: the text masked once by a MASK_SEED generator,
    then one forward pass per 16-byte window."""
    model, _ = load_model(run_id, lab=tmp / "lab")
    ids = torch.tensor(list(data))[None]
    masked, labels = mask_tokens(ids, torch.Generator().manual_seed(MASK_SEED))
    losses, hits = [], 0
    with torch.no_grad():
        for start in range(0, ids.shape[1], 16):
            x, y = masked[:, start : start + 16], labels[0, start : start + 16]
            logits = model(x)[0]
            keep = y != IGNORE_INDEX
            losses.append(F.cross_entropy(logits[keep], y[keep], reduction="none"))
            hits += int((logits[keep].argmax(-1) == y[keep]).sum())
    all_losses = torch.cat(losses).double()
    return float(all_losses.mean()), hits / len(all_losses), len(all_losses)


def test_mlm_eval_equals_a_direct_computation_and_repeats(
    text_runs: tuple[Path, dict[str, str]],
) -> None:
    tmp, runs = text_runs
    held = tmp / "held.txt"
    result = evaluate(runs["mlm"], data=held, lab=tmp / "lab", store=False, progress=False)
    loss, accuracy, tokens = _mlm_direct(tmp, runs["mlm"], held.read_bytes())
    assert result.objective == "mlm" and result.tokens == tokens
    assert 301 * 0.05 < tokens < 301 * 0.3  # BERT's 15% of the bytes, give or take
    assert result.loss == pytest.approx(loss, rel=1e-5)
    assert result.accuracy == pytest.approx(accuracy, abs=1e-12)
    again = evaluate(runs["mlm"], data=held, lab=tmp / "lab", batch_size=3, store=False,
                     progress=False)  # fmt: skip
    assert again.metrics == pytest.approx(result.metrics, rel=1e-6)
    assert "masked LM" in result.line() and "accuracy" in result.line()


def test_span_corruption_eval_equals_a_direct_computation(
    text_runs: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, runs = text_runs
    held = tmp / "held.txt"
    rid = runs["span_corruption"]
    assert main(["eval", rid, "--lab", str(tmp / "lab"), "--data", str(held), "--no-progress"]) == 0
    assert "span corruption" in capsys.readouterr().out
    model, _ = load_model(rid, lab=tmp / "lab")
    g = torch.Generator().manual_seed(MASK_SEED)
    data = torch.tensor(list(held.read_bytes()))
    losses, hits = [], 0
    with torch.no_grad():
        for start in range(0, len(data), 16):  # 18 full windows and one of 13 bytes
            inputs, labels = corrupt_spans(data[None, start : start + 16], g)
            logits = model(**inputs)[0]
            losses.append(F.cross_entropy(logits, labels[0], reduction="none"))
            hits += int((logits.argmax(-1) == labels[0]).sum())
    all_losses = torch.cat(losses).double()
    with Store(tmp / "lab", readonly=True) as store:
        rows = {m.name: m.value for m in store.metrics(rid) if "eval/held.txt/" in m.name}
    assert set(rows) == {"eval/held.txt/loss", "eval/held.txt/accuracy", "eval/held.txt/tokens"}
    assert rows["eval/held.txt/tokens"] == len(all_losses)
    assert rows["eval/held.txt/loss"] == pytest.approx(float(all_losses.mean()), rel=1e-5)
    assert rows["eval/held.txt/accuracy"] == pytest.approx(hits / len(all_losses), abs=1e-12)
