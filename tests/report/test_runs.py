"""The report of training runs: a page per run (loss curves, per-layer diagnostics over
training, status, precision, events), the runs on the index, and a comparison page overlaying
the chosen runs' loss curves beside the config fields that differ; a lab of runs alone gets a
report."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from reportkit import browse, console

import resnorm.report.runfigures as runfigures
from resnorm.cli import main
from resnorm.report.runfigures import layer_grids
from resnorm.store import Store
from textkit import train_text

#: A tiny run that evaluates and probes at every step, so each curve and heatmap has points.
EVERY_STEP = ["train.steps=4", "train.eval_every=1", "train.probe_every=1"]


@pytest.fixture(scope="module")
def runs_lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A lab holding two training runs of different topologies and no study."""
    tmp = tmp_path_factory.mktemp("runs-report")
    a = train_text(tmp, [*EVERY_STEP, 'model.topology="post_ln"']).run_id
    b = train_text(tmp, [*EVERY_STEP, 'model.topology="pre_ln"']).run_id
    return tmp / "lab", [a, b]


def _images(html: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]+)"', html)


def test_a_lab_of_training_runs_alone_gets_run_pages_and_a_comparison_page(
    runs_lab: tuple[Path, list[str]],
) -> None:
    lab, (a, b) = runs_lab
    assert not (lab / "studies").exists()
    assert main(["report", "--lab", str(lab)]) == 0
    index = (lab / "report" / "index.html").read_text()
    for run in (a, b):
        assert f'href="runs/{run}.html"' in index
        page = (lab / "report" / "runs" / f"{run}.html").read_text()
        images = _images(page)
        assert len(images) == 2, "loss curves and per-layer heatmaps"
        assert all(src.startswith("data:image/png;base64,") for src in images)
        for text in ("precision: <b>fp32</b>", "Train loss", "Per-layer diagnostics", "Events"):
            assert text in page, text
    compare = (lab / "report" / "compare.html").read_text()
    assert len(_images(compare)) == 1
    assert f'href="runs/{a}.html">post_ln<' in compare
    assert f'href="runs/{b}.html">pre_ln<' in compare
    assert "<code>model.topology</code>" in compare
    assert "<code>model.d_model</code>" not in compare, "only the fields that differ"


def test_the_comparison_figure_draws_train_and_validation_curves_of_each_run(
    runs_lab: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    lab, ids = runs_lab
    drawn: list[Any] = []
    monkeypatch.setattr(runfigures, "png", lambda fig, dpi: drawn.append(fig) or b"")
    with Store(lab, readonly=True) as store:
        records = [store.get_run(i) for i in ids]
        runfigures.compare_figure(store, records, {ids[0]: "post_ln", ids[1]: "pre_ln"})
    train, val = drawn[0].axes
    for ax in (train, val):
        assert [line.get_label() for line in ax.lines] == ["post_ln", "pre_ln"]
        colors = {line.get_color() for line in ax.lines}
        assert len(colors) == 2, "one colour per topology"
    assert len(val.lines[0].get_xdata()) == 5, "a validation loss at steps 0-4"


def test_per_layer_diagnostics_are_a_layers_by_steps_grid_per_probe(
    runs_lab: tuple[Path, list[str]],
) -> None:
    lab, (a, _) = runs_lab
    with Store(lab, readonly=True) as store:
        grids = layer_grids(store, a)
    assert {"grad_norm", "stream_rms"} <= set(grids)
    key, steps, grid = grids["grad_norm"]
    assert key.count(".") == 0 and len(grid) == 2, "the whole layer, 2 layers"
    assert len(steps) >= 2 and all(len(row) == len(steps) for row in grid)


def test_runs_chooses_the_compared_runs_by_unique_prefix(
    runs_lab: tuple[Path, list[str]],
) -> None:
    lab, (a, b) = runs_lab
    assert main(["report", "--lab", str(lab), "--runs", a[:6]]) == 0
    compare = (lab / "report" / "compare.html").read_text()
    assert f"runs/{a}.html" in compare and f"runs/{b}.html" not in compare
    assert (lab / "report" / "runs" / f"{b}.html").exists(), "every run keeps its page"


def test_an_unknown_run_in_runs_is_one_line_and_exit_2(
    runs_lab: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, (a, _) = runs_lab
    assert main(["report", "--lab", str(lab), "--runs", f"{a},nosuchrun"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--runs" in err[0] and "nosuchrun" in err[0]


def test_run_and_comparison_pages_render_in_headless_chromium(
    runs_lab: tuple[Path, list[str]],
) -> None:
    lab, (a, _) = runs_lab
    assert main(["report", "--lab", str(lab)]) == 0
    for page, n in ((f"runs/{a}.html", 2), ("compare.html", 1), ("index.html", 0)):
        dom = browse(lab / "report" / page, "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert f'data-figures="rendered {n}/{n}"' in dom.stdout, page
        assert console(dom.stderr) == [], console(dom.stderr)


def test_a_lab_with_studies_keeps_its_study_pages_and_lists_its_training_runs(
    lab: Path, tmp_path: Path
) -> None:
    both = tmp_path / "lab"
    shutil.copytree(lab, both, ignore=shutil.ignore_patterns("report"))
    run = train_text(tmp_path, EVERY_STEP).run_id  # writes to tmp_path / "lab"
    assert main(["report", "--lab", str(both)]) == 0
    index = (both / "report" / "index.html").read_text()
    assert 'href="tiny.html"' in index and f'href="runs/{run}.html"' in index
    assert "Training runs (1)" in index, "a study's runs are on its page, not listed as trained"
    assert len(_images((both / "report" / "tiny.html").read_text())) == 5
    assert (both / "report" / "runs" / f"{run}.html").exists()
