"""`resnorm.evaluate` / `resnorm eval`: held-out loss, bits per byte and perplexity of a run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from resnorm import evaluate
from resnorm.cli import main
from resnorm.config import RunConfig
from resnorm.errors import ConfigError
from resnorm.nn.model import build_model
from resnorm.store import Store
from resnorm.train import load_weights, train
from resnorm.train.checkpoint import model_tensors
from textkit import text_config, train_text, write_text


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A trained tiny text run and a held-out file of 301 bytes (so the last window is short)."""
    tmp = tmp_path_factory.mktemp("eval")
    result = train_text(tmp)
    held = tmp / "held.txt"
    held.write_bytes(write_text(tmp / "words.txt", 200, seed=1).read_bytes()[:301])
    return tmp, result.run_id


def _direct_loss(tmp: Path, run_id: str, data: bytes) -> float:
    """The mean next-byte cross-entropy computed by hand: one pass per 16-byte window."""
    cfg = text_config(tmp)
    model = build_model(cfg.model).eval()
    weights = load_weights(tmp / "lab", run_id)
    with torch.no_grad():
        for name, t in model_tensors(model).items():
            t.copy_(weights[name])
        tokens = torch.tensor(list(data))
        losses = []
        for start in range(0, len(tokens) - 1, 16):
            x, y = tokens[start : start + 16], tokens[start + 1 : start + 17]
            x = x[: len(y)]
            logits = model(x[None])[0]
            losses.append(torch.nn.functional.cross_entropy(logits, y, reduction="none"))
        return float(torch.cat(losses).double().mean())


def test_loss_equals_a_direct_computation_and_bpb_is_loss_over_ln2(run: tuple[Path, str]) -> None:
    tmp, run_id = run
    held = tmp / "held.txt"
    result = evaluate(run_id, data=held, lab=tmp / "lab", store=False, progress=False)
    assert result.tokens == 300  # every byte but the first, once
    assert result.loss == pytest.approx(_direct_loss(tmp, run_id, held.read_bytes()), rel=1e-5)
    assert result.bits_per_byte == pytest.approx(result.loss / math.log(2), rel=1e-12)
    assert result.perplexity == pytest.approx(math.exp(result.loss), rel=1e-12)


def test_cli_prints_the_numbers_and_stores_them_at_the_final_step(
    run: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, run_id = run
    lab = tmp / "lab"
    argv = ["eval", run_id[:6], "--lab", str(lab), "--data", str(tmp / "held.txt")]
    assert main([*argv, "--name", "held", "--batch-size", "3"]) == 0
    out, err = capsys.readouterr()
    assert "bits/byte" in out and "perplexity" in out and "nats/token" in out
    assert "eval " in err  # the progress bar, on stderr
    with Store(lab, readonly=True) as store:
        rows = {m.name: (m.step, m.value) for m in store.metrics(run_id) if "eval/" in m.name}
        events = store.events(run_id, "eval")
    assert set(rows) == {
        f"eval/held/{k}" for k in ("loss", "bits_per_byte", "perplexity", "tokens")
    }
    assert {step for step, _ in rows.values()} == {3}
    direct = evaluate(run_id, data=tmp / "held.txt", lab=lab, store=False, progress=False)
    assert rows["eval/held/loss"][1] == pytest.approx(direct.loss, rel=1e-6)  # batching is moot
    assert len(events) == 1 and events[0].data["n_bytes"] == 301


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], *words: str) -> None:
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert err.startswith("resnorm eval: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def test_missing_and_empty_files_are_one_line_errors(
    run: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, run_id = run
    lab = str(tmp / "lab")
    _fails(
        capsys, ["eval", run_id, "--lab", lab, "--data", str(tmp / "nope.txt")], "--data", "no such"
    )
    (tmp / "empty.txt").write_bytes(b"")
    _fails(capsys, ["eval", run_id, "--lab", lab, "--data", str(tmp / "empty.txt")], "0 bytes")
    _fails(capsys, ["eval", "ffff", "--lab", lab, "--data", str(tmp / "held.txt")], "no run")


def test_a_run_on_a_synthetic_task_is_refused(tmp_path: Path) -> None:
    tree = text_config(tmp_path).to_dict()
    tree["data"] = {"source": "copy", "seq_len": 16, "batch_size": 4, "params": {"vocab_size": 16}}
    tree["model"]["vocab_size"] = 16
    cfg = RunConfig.from_dict(tree)
    train(cfg, progress=False)
    with pytest.raises(ConfigError, match="synthetic 'copy' task, not byte-level"):
        evaluate(cfg.run_id, data=tmp_path / "train.txt", lab=cfg.lab, progress=False)


def test_a_folder_is_read_as_training_reads_one(run: tuple[Path, str]) -> None:
    """Every non-hidden file, sorted, joined by the separator byte: one byte more than the two."""
    tmp, run_id = run
    folder = tmp / "held"
    folder.mkdir()
    (folder / "b.txt").write_bytes(b"the dog ate")
    (folder / "a.txt").write_bytes(b"the cat sat")
    (folder / ".hidden").write_bytes(b"never read")
    result = evaluate(run_id, data=folder, lab=tmp / "lab", store=False, progress=False)
    assert result.name == "held" and result.data["files"] == ["a.txt", "b.txt"]
    assert result.tokens == 11 + 1 + 11 - 1
