"""``resnorm sample``: text from a byte-level decoder; one-line errors for anything else (the
examples of an encoder-decoder run are tested in test_eval_kinds.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.modeltools import noisy, tiny

from resnorm.cli import main
from resnorm.load import save_model


def _export(tmp_path: Path, **kw: object) -> str:
    cfg = tiny(**{"vocab_size": 256, "max_seq_len": 64, **kw})  # type: ignore[arg-type]
    return str(save_model(noisy(cfg), tmp_path / "export"))


def test_sample_prints_the_prompt_and_n_bytes_and_is_seeded(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = _export(tmp_path)
    args = ["sample", run, "--prompt", "def ", "-n", "20", "--top-k", "50", "--seed", "1"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("def ")
    assert main(args) == 0
    assert capsys.readouterr().out == first
    assert main(["sample", run, "--prompt", "x", "-n", "5", "--temperature", "0"]) == 0


@pytest.mark.parametrize(
    "model, args, field",
    [
        (dict(vocab_size=37), [], "vocab_size 37"),
        (dict(kind="encoder"), [], "fills in masked tokens"),
        (dict(kind="encoder_decoder"), ["-n", "3"], "does not record the task"),
        ({}, ["-n", "100"], "max_seq_len = 64"),
        ({}, ["--top-p", "2"], "top_p"),
        ({}, ["--temperature", "-1"], "temperature"),
    ],
)
def test_sample_refuses_with_one_line_and_exit_2(
    model: dict[str, object],
    args: list[str],
    field: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    run = _export(tmp_path, **model)
    prompt = [] if model.get("kind") == "encoder_decoder" else ["--prompt", "hi"]
    assert main(["sample", run, *prompt, *args]) == 2
    err = capsys.readouterr().err
    assert field in err and len(err.strip().splitlines()) == 1


def test_sample_of_an_unknown_run_lists_the_lab(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["sample", "nope", "--lab", str(tmp_path / "lab")]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
