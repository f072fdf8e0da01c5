"""Encoders and encoder-decoders get what a decoder run gets: diagnostics stored per stack (an
encoder-decoder's cross-attention its own sublayer), run pages in the report that show their
metrics, and ``resnorm train`` end to end, with one-line errors that name the field to fix."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from trainkit import KINDS, run_record, subprocess_env, tiny_config

from resnorm.cli import main
from resnorm.report.runfigures import layer_grids
from resnorm.store import Store
from resnorm.train import train

#: Evaluate and probe every other step, so the report has curves and heatmaps to draw.
OFTEN = ["train.steps=4", "train.eval_every=2", "train.probe_every=2"]
#: The sublayers of an encoder-decoder layer, as the store keys them.
SUBLAYERS = ("encoder.attn", "encoder.mlp", "decoder.attn", "decoder.cross", "decoder.mlp")


@pytest.fixture(scope="module")
def kinds_lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One lab holding a tiny encoder run (mlm on the built-in text) and a tiny encoder-decoder
    run (seq2seq on addition) with 2 encoder and 3 decoder layers; their run ids by kind."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lab = tmp_path_factory.mktemp("kinds") / "lab"
    try:
        ids = {
            kind: train(tiny_config(lab, [*OFTEN, *KINDS[kind], *extra]), progress=False).run_id
            for kind, extra in (
                ("encoder", []),
                ("encoder_decoder", ["model.n_decoder_layers=3"]),
            )
        }
    finally:
        torch.set_num_threads(threads)
    return lab, ids


def test_encoder_decoder_diagnostics_are_keyed_per_stack_with_cross_attention_apart(
    kinds_lab: tuple[Path, dict[str, str]],
) -> None:
    lab, ids = kinds_lab
    with Store(lab, readonly=True) as store:
        records = list(store.diagnostics(ids["encoder_decoder"]))
    assert records
    layers: dict[str, set[int]] = {}
    for d in records:
        if d.layer is not None and d.key is not None:
            layers.setdefault(d.key, set()).add(d.layer)
    enc, dec = {0, 1}, {0, 1, 2}  # 2 encoder layers, 3 decoder layers, numbered per stack
    for sub in ("attn", "mlp"):
        assert layers[f"encoder.{sub}"] == enc, sub
        assert layers[f"decoder.{sub}"] == dec, sub
    assert layers["decoder.cross"] == dec, "cross-attention is its own sublayer"
    assert "encoder.cross" not in layers, "the encoder has no cross-attention"
    assert {k for k in layers if k.startswith("decoder.cross.")} >= {
        "decoder.cross.q_proj.weight",
        "decoder.cross.k_proj.weight",
    }
    # Each sublayer of each stack has its own values at each probed step (not one shared row).
    branch = {(d.step, d.layer, d.key): d.value for d in records if d.probe == "branch_rms"}
    for step in (0, 2):
        for layer in (0, 1):
            values = [branch[(step, layer, key)] for key in SUBLAYERS]
            assert all(math.isfinite(v) and v > 0 for v in values)
            assert len(set(values)) == len(SUBLAYERS)
        assert (step, 2, "decoder.cross") in branch and (step, 2, "encoder.attn") not in branch
    with Store(lab, readonly=True) as store:
        encoder_keys = {d.key for d in store.diagnostics(ids["encoder"]) if d.layer is not None}
    assert encoder_keys and all(str(k).startswith("encoder") for k in encoder_keys)


def test_report_draws_one_heatmap_per_stack_of_an_encoder_decoder(
    kinds_lab: tuple[Path, dict[str, str]],
) -> None:
    lab, ids = kinds_lab
    with Store(lab, readonly=True) as store:
        grids = layer_grids(store, ids["encoder_decoder"])
        enc_only = layer_grids(store, ids["encoder"])
    key, steps, grid = grids["grad_norm encoder"]
    assert key == "encoder" and len(grid) == 2 and steps == [0, 2]
    key, steps, grid = grids["grad_norm decoder"]
    assert key == "decoder" and len(grid) == 3
    assert all(math.isfinite(v) for row in grid for v in row)
    assert "grad_norm" in enc_only and len(enc_only["grad_norm"][2]) == 2, "one stack: plain name"


def test_report_renders_encoder_and_encoder_decoder_run_pages_with_their_metrics(
    kinds_lab: tuple[Path, dict[str, str]],
) -> None:
    lab, ids = kinds_lab
    assert main(["report", "--lab", str(lab)]) == 0
    index = (lab / "report" / "index.html").read_text()
    for kind, run in ids.items():
        assert f'href="runs/{run}.html"' in index
        page = (lab / "report" / "runs" / f"{run}.html").read_text()
        assert page.count("data:image/png;base64,") == 2, "loss curves and per-layer heatmaps"
        with Store(lab, readonly=True) as store:
            summary = store.get_run(run).summary  # type: ignore[union-attr]
        assert "<td>val_accuracy</td>" in page and 0.0 <= summary["val_accuracy"] <= 1.0
        assert ("<td>val_exact_match</td>" in page) == (kind == "encoder_decoder")
    enc = (lab / "report" / "runs" / f"{ids['encoder']}.html").read_text()
    encdec = (lab / "report" / "runs" / f"{ids['encoder_decoder']}.html").read_text()
    assert "encoder, 2 layers, mlm" in enc
    assert "encoder_decoder, 2 + 3 layers, seq2seq" in encdec


# --- resnorm train, end to end ------------------------------------------------------------------

SMALL = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.max_seq_len=16",
         "data.seq_len=16", "data.batch_size=4", "train.steps=3", "train.eval_every=0",
         "train.eval_batches=1", "train.probe_every=0"]  # fmt: skip


def _resnorm_train(lab: Path, overrides: list[str]) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "resnorm", "train", "--lab", str(lab), "--no-progress"]
    for o in [*SMALL, *overrides]:
        args += ["-o", o]
    return subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("overrides", "metrics"),
    [(["model.kind=encoder", "model.vocab_size=257"], ["val_accuracy"]),
     (["model.kind=encoder_decoder", "data.source=reverse", "model.vocab_size=32"],
      ["val_accuracy", "val_exact_match"])],
    ids=["encoder", "encoder_decoder"],
)  # fmt: skip
def test_resnorm_train_trains_each_kind_in_a_subprocess(
    tmp_path: Path, overrides: list[str], metrics: list[str]
) -> None:
    done = _resnorm_train(tmp_path / "lab", overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    record = run_record(tmp_path / "lab")
    assert record.status in ("done", "stuck") and record.summary["step"] == 3
    assert record.run_id in done.stdout
    # The result line: the run, its status and step, then its final losses.
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith(f"run {record.run_id} ")]
    assert f"{record.status} at step 3" in line and "val_loss" in line, done.stdout
    assert f"{record.summary['val_loss']:.4g}"[:4] in line
    for name in metrics:
        assert math.isfinite(record.summary[name])
        assert f"{name} {record.summary[name]:.4f}" in line  # the objective's own metrics
    assert record.config["model"]["kind"] == overrides[0].split("=")[1]


@pytest.mark.parametrize(
    ("overrides", "field", "fix"),
    [(["model.kind=encoder"], "model.vocab_size", "model.vocab_size = 257"),
     (["model.kind=encoder_decoder"], "model.vocab_size", "model.vocab_size = 259"),
     (["data.objective=seq2seq"], "data.source", "reverse"),
     (["model.kind=encoder", "model.vocab_size=257", "data.source=reverse"], "data.source",
      "data.objective 'mlm'"),
     (["model.kind=encoder", "data.source=reverse", "data.objective=seq2seq"], "data.objective",
      "takes: mlm"),
     (["model.kind=encoder_decoder", "data.source=reverse", "model.vocab_size=16",
       "data.params.vocab_size=32"], "model.vocab_size", "vocabulary, 32: set")],
    ids=["encoder-vocab", "span-vocab", "seq2seq-on-text", "encoder-on-task", "wrong-objective",
         "task-vocab"],
)  # fmt: skip
def test_a_kind_that_does_not_fit_is_one_line_and_exit_2_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], field: str, fix: str
) -> None:
    argv = ["train", "--lab", str(tmp_path / "lab"), "--no-progress"]
    assert main([*argv, *(a for o in [*SMALL, *overrides] for a in ("-o", o))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert field in err[0] and fix in err[0], err[0]
    assert "Traceback" not in err[0]
    # Only the text objectives add tokens to the bytes; a task's vocabulary is its own.
    assert ("256 bytes" in err[0]) == ("257" in fix or "259" in fix), err[0]
