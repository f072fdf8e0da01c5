"""Dependencies: what the report imports is installed with the package; an optional feature
whose extra is missing says which extra to install before any work starts."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from resnorm.cli import main
from resnorm.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)


def _top_level_imports(path: Path) -> set[str]:
    """Modules ``path`` imports at module level (not inside a function)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_what_the_report_imports_is_a_core_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in project["dependencies"]}
    needed = set()
    for path in (ROOT / "src/resnorm/report").glob("*.py"):
        needed |= _top_level_imports(path) - STDLIB - {"resnorm", "__future__"}
    assert needed, "the scan found no third-party import: it is broken"
    assert needed <= core, f"the report imports {sorted(needed - core)}, not core dependencies"
    assert "report" in project["optional-dependencies"]  # resnorm[report] still installs


def test_ray_executor_without_ray_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from resnorm.lab.executors import make_executor

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(ConfigError, match=r"resnorm\[ray\]"):
        make_executor("ray")
    lab = tmp_path / "lab"
    argv = ["study", "run", "skip", "--lab", str(lab), "--executor", "ray", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "resnorm[ray]" in err and len(err.splitlines()) == 1
    assert not lab.exists(), "nothing is written before the missing extra is reported"


def test_tensorboard_sink_without_tensorboard_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    argv = ["train", "--lab", str(tmp_path / "lab"), "--no-progress"]
    assert main([*argv, "-o", 'train.log=["tensorboard"]', "-o", "train.steps=1"]) == 2
    err = capsys.readouterr().err
    assert "resnorm[tensorboard]" in err and len(err.splitlines()) == 1


def test_load_results_as_frame_without_pandas_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from resnorm.store import load_results

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ConfigError, match=r"as_frame: .*resnorm\[report\]"):
        load_results(tmp_path, as_frame=True)
    assert not list(tmp_path.iterdir()), "nothing is written before the missing extra is named"
