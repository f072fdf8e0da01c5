"""The ``resnorm`` command: registry listings, the README's table, and bad input -> exit 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from resnorm import NORMS, TOPOLOGIES
from resnorm.catalog import topologies_markdown
from resnorm.cli import main

ROOT = Path(__file__).resolve().parents[1]
ISSUE_NAMES = [
    "post_ln",
    "pre_ln",
    "sandwich_ln",
    "peri_ln",
    "res_post_ln",
    "normformer",
    "deepnorm",
    "admin",
    "b2t",
    "mix_ln",
    "lns",
    "hybrid_norm",
    "rezero",
    "layerscale",
    "tfixup",
    "no_norm",
    "no_residual",
    "resi_dual",
    "hyper_connections",
    "value_residual",
    "denseformer",
    "ngpt",
]


def test_topologies_lists_every_registered_name_with_equation(
    capsys: pytest.CaptureFixture,
) -> None:
    assert main(["topologies"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines()[2:]}
    assert listed == set(TOPOLOGIES.names())
    assert set(ISSUE_NAMES) <= listed
    assert "x <- N(x + F(x))" in out and "arXiv:2203.00555" in out


def test_norms_lists_every_norm(capsys: pytest.CaptureFixture) -> None:
    assert main(["norms"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]}
    assert listed == set(NORMS.names())


def test_readme_topology_table_equals_the_registry() -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- topologies:start -->\n(.*?)\n<!-- topologies:end -->", readme, re.S)
    assert found, "README lacks the topology table markers"
    assert found.group(1) == topologies_markdown(), "regenerate: resnorm topologies --markdown"


def test_inspect_single_config_prints_per_layer_table(capsys: pytest.CaptureFixture) -> None:
    argv = ["inspect", "-o", "model.topology=deepnorm", "-o", "model.n_layers=3"]
    argv += ["-o", "model.d_model=32", "--seq-len", "16", "--batch-size", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "deepnorm L=3" in out
    assert len([ln for ln in out.splitlines() if re.match(r"\s+[0-2]\s", ln)]) == 3


@pytest.mark.parametrize(
    "override, field",
    [
        ("model.topology=prenorm", "model.topology"),
        ("model.norm=layer_norm", "model.norm"),
        ("model.d_model=30", "model.d_model"),
        ("model.n_layers=0", "model.n_layers"),
        ("model.topology_params.alpah=2", "model.topology_params.alpah"),
    ],
)
def test_bad_input_exits_2_naming_the_field(override: str, field: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnorm",
            "inspect",
            "-o",
            "model.topology=deepnorm",
            "-o",
            override,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert field in proc.stderr and "Traceback" not in proc.stderr
