"""The installed package works without the repository (issue 12).

The wheel is built from a copy of the sources, installed with ``--no-deps`` into a fresh venv that
sees only the core dependencies' distributions (linked from this environment, so no download:
torch, numpy, matplotlib, ... and what they require, but not the checkout, pandas, Ray,
transformers or TensorBoard), and run from a folder outside the checkout: ``resnorm demo --help``,
a quick study that writes its report, and the optional features, which name their extra before
any work.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What the extras install: absent from the fresh venv.
EXTRAS = ("pandas", "ray", "transformers", "tensorboard")


def _requirement_names(dist: metadata.Distribution) -> list[str]:
    """The distributions ``dist`` requires unconditionally (no extra, marker true here)."""
    from packaging.requirements import Requirement

    names = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        names.append(req.name)
    return names


def _core_closure() -> list[metadata.Distribution]:
    """The installed distributions resnorm's core dependencies pull in, transitively."""
    seen: dict[str, metadata.Distribution] = {}
    todo = _requirement_names(metadata.distribution("resnorm"))
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        todo += _requirement_names(dist)
    return list(seen.values())


def _link_distributions(dists: list[metadata.Distribution], into: Path) -> None:
    """Symlink each distribution's top-level files (packages, modules, .dist-info) into ``into``."""
    into.mkdir()
    for dist in dists:
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        base = Path(str(dist.locate_file("")))
        for top in tops:
            if top != "__pycache__" and not (into / top).exists():
                (into / top).symlink_to(base / top)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel and the core dependencies only; returns its bin/."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: the build writes build/ and *.egg-info beside the sources
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels = tmp / "dist"
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels)]
    subprocess.run([*build, str(source)], check=True, timeout=120)
    (wheel,) = wheels.glob("resnorm-*.whl")

    env_dir = tmp / "fresh"
    venv.create(env_dir, with_pip=False, system_site_packages=False)
    python = env_dir / "bin" / "python"
    install = [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, timeout=120)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = tmp / "deps"
    _link_distributions(_core_closure(), deps)
    (Path(purelib) / "resnorm-core-deps.pth").write_text(f"{deps}\n")
    return env_dir / "bin"


def _run(bin_dir: Path, cwd: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_fresh_venv_sees_the_wheel_and_no_extra(fresh: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib.util as u, resnorm; print(resnorm.__file__); "
        f"print([m for m in {EXTRAS!r} if u.find_spec(m)])"
    )
    out = _run(fresh, tmp_path, str(fresh / "python"), "-c", probe)
    assert out.returncode == 0, out.stderr
    where, found = out.stdout.splitlines()
    assert str(fresh.parent) in where and str(ROOT) not in where, where
    assert found == "[]", f"extras visible in the fresh venv: {found}"


def test_demo_help_and_a_quick_study_from_outside_the_checkout(fresh: Path, tmp_path: Path) -> None:
    out = _run(fresh, tmp_path, str(fresh / "resnorm"), "demo", "--help")
    assert out.returncode == 0 and "usage: resnorm demo" in out.stdout, out.stderr
    lab = tmp_path / "lab"
    argv = ("study", "run", "init-scaling", "--lab", str(lab), "--no-progress")
    out = _run(fresh, tmp_path, str(fresh / "resnorm"), *argv, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    page = lab / "report" / "index.html"
    assert page.is_file() and "init-scaling" in page.read_text()
    figures = list((lab / "report").rglob("*.png")) + list((lab / "report").rglob("*.svg"))
    assert figures, "the report drew no figure (matplotlib is a core dependency)"


def test_a_missing_extra_is_named_before_any_work(fresh: Path, tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    argv = ("study", "run", "skip", "--lab", str(lab), "--executor", "ray", "--no-progress")
    out = _run(fresh, tmp_path, str(fresh / "resnorm"), *argv)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "resnorm[ray]" in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    assert not lab.exists(), "nothing is written before the missing extra is reported"
    sink = ("train", "--lab", str(lab), "--no-progress", "-o", 'train.log=["tensorboard"]')
    out = _run(fresh, tmp_path, str(fresh / "resnorm"), *sink)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "resnorm[tensorboard]" in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    assert not lab.exists()
    probe = (
        "from resnorm.errors import ConfigError\n"
        "from resnorm.store import load_results\n"
        "try:\n"
        f"    load_results({str(lab)!r}, as_frame=True)\n"
        "except ConfigError as e:\n"
        "    print(e)\n"
    )
    out = _run(fresh, tmp_path, str(fresh / "python"), "-c", probe)
    assert out.returncode == 0, out.stderr
    assert "resnorm[report]" in out.stdout, out.stdout
    assert not lab.exists()
