"""Issue 12's command-line reproducers (items 8 and 14): ``resnorm doctor`` and ``resnorm inspect``
refuse bad flags with one line naming the flag, exit status 2 and no traceback; inspect shows
every probe it is asked for, and ``-o`` keeps the comparison."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from resnorm.cli import main
from resnorm.memory import MEMORY_ENV

TINY = ["-o", "model.d_model=16", "-o", "model.n_heads=2", "--seq-len", "8", "--batch-size", "2"]


def refused(argv: list[str], field: str, capsys: pytest.CaptureFixture[str]) -> str:
    start = time.perf_counter()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert time.perf_counter() - start < 5, "refused only after doing the work"
    assert not captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert f"error: {field}:" in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def in_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every command runs in an empty folder, which must stay empty."""
    monkeypatch.chdir(tmp_path)
    yield
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("seconds", ["nan", "-1", "0", "inf", "61"])
def test_doctor_seconds_must_be_finite_in_0_to_60(
    seconds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "(0, 60]" in refused(["doctor", "--seconds", seconds], "seconds", capsys)


@pytest.mark.parametrize(
    "argv, field, words",
    [
        (["--depths", "abc"], "--depths", "expected integers"),
        (["--depths", "6,,12"], "--depths", "empty entry"),
        (["--depths", "0"], "model.n_layers", "[1, 10000]"),
        (["--batch-size", "0"], "batch_size", "[1, 65536]"),
        (["--seq-len", "0"], "seq_len", "max_seq_len = 256"),
        (["--seq-len", "100000"], "seq_len", "max_seq_len = 256"),
        (["--seed", "-1"], "seed", "got -1"),
        (["--probes", "rank_colapse"], "probes", "Did you mean 'rank_collapse'"),
        (["-o", "train.lr=1"], "override", "set model.KEY"),
        (["--topologies", "pre_ln,preln"], "model.topology", "Did you mean 'pre_ln'"),
    ],
)
def test_inspect_bad_flag_is_one_line_naming_it(
    argv: list[str], field: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert words in refused(["inspect", *argv], field, capsys)


def test_inspect_refuses_a_batch_the_memory_cannot_hold_with_the_estimate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MEMORY_ENV, "1")
    line = refused(["inspect", "--batch-size", "4096", "--seq-len", "256"], "batch_size", capsys)
    assert "needs at least" in line and "1 GiB" in line


def test_inspect_shows_every_probe_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    probes = "rank_collapse,token_cosine,output_change"
    assert (
        main(["inspect", "--depths", "2", "--topologies", "pre_ln", "--probes", probes, *TINY]) == 0
    )
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("layer"))
    assert header.split() == ["layer", "rank_collapse", "token_cosine"]
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+[01]\s", line)]
    assert len(rows) == 2 and all(float(v) == float(v) for row in rows for v in row[1:])
    assert re.search(r"pre_ln L=2: output_change hidden = \d", out)


@pytest.mark.parametrize(
    "argv, cells",
    [
        ([], ["post_ln L=1", "post_ln L=2", "pre_ln L=1", "pre_ln L=2"]),
        (["-o", "model.topology=deepnorm"], ["deepnorm L=1", "deepnorm L=2"]),
    ],
)
def test_inspect_overrides_apply_to_every_cell_of_the_comparison(
    argv: list[str], cells: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--depths", "1,2", *argv, *TINY]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"^(\S+ L=\d) · decoder$", out, re.M) == cells
    assert main(["inspect", "-o", "model.n_layers=2", *TINY]) == 0  # fixes the depth axis
    out = capsys.readouterr().out
    assert re.findall(r"^(\S+ L=\d) · decoder$", out, re.M) == ["post_ln L=2", "pre_ln L=2"]
