"""The CLI's one error handler (`resnorm.cli.main`): every subcommand's bad input is one line and
exit 2, an environment failure one line and exit 1, under torchrun from rank 0 only, and
``--debug`` shows the traceback instead (issue 12)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import torch

import resnorm.interop.export as export
from resnorm import ModelConfig, build_model
from resnorm.cli import main
from resnorm.load import save_model
from resnorm.train import cli as train_cli


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    cfg = ModelConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=2, max_seq_len=8)
    torch.manual_seed(0)
    return save_model(build_model(cfg), tmp_path / "model")


def _disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_environment_failure_in_any_command_is_one_line_and_exit_1(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(export, "save_file", _disk_full)
    assert main(["export", str(exported), "--hf", str(tmp_path / "hf")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("resnorm export: error: [Errno 28] No space left on device")
    assert "disk full or not writable?" in err and "resumes" not in err  # export does not resume


def _half_written(tensors: Any, path: str, **kwargs: Any) -> None:
    Path(path).write_bytes(b"the first bytes")  # the disk fills up part way through the file
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_export_leaves_no_partial_folder(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder export made is removed; an empty one it was given is left empty."""
    monkeypatch.setattr(export, "save_file", _half_written)
    assert main(["export", str(exported), "--hf", str(tmp_path / "new" / "hf")]) == 1
    assert not (tmp_path / "new" / "hf").exists()
    (tmp_path / "empty").mkdir()
    assert main(["export", str(exported), "--hf", str(tmp_path / "empty")]) == 1
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


def test_debug_shows_the_traceback_instead(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(export, "save_file", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        main(["--debug", "export", str(exported), "--hf", str(tmp_path / "hf")])
    with pytest.raises(ValueError, match=r"--hf: .* is not an empty folder"):
        main(["--debug", "export", str(exported), "--hf", str(exported)])


def test_bad_input_is_exit_2_and_only_rank_0_prints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    argv = ["train", "--no-progress", "--lab", str(tmp_path / "lab"), "-o", "train.steps=-1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("resnorm train: error: train.steps") and err.count("\n") == 1
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 2
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "lab").exists()


def test_the_train_module_entry_is_resnorm_train(tmp_path: Path, capsys: Any) -> None:
    # python -m resnorm.train.cli / torchrun -m resnorm.train.cli: same parser, same handler.
    argv = ["--no-progress", "--lab", str(tmp_path / "lab"), "-o", "train.steps=-1"]
    assert train_cli.main(argv) == 2
    via_module = capsys.readouterr().err
    assert main(["train", *argv]) == 2
    assert capsys.readouterr().err == via_module


@pytest.mark.parametrize(
    ("argv", "prog", "words"),
    [
        (["train", "-o", "-inf"], "resnorm train", "-o/--override: expected one argument"),
        (["runs", "list", "--no-such-flag"], "resnorm", "unrecognized arguments: --no-such-flag"),
        (["nosuch"], "resnorm", "invalid choice: 'nosuch'"),
        ([], "resnorm", "the following arguments are required: COMMAND"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2_not_a_system_exit(
    argv: list[str], prog: str, words: str, capsys: Any
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith(f"{prog}: error: ") and words in err and f"see {prog} --help" in err
