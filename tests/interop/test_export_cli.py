"""`resnorm export RUN --lab LAB --hf DIR` on trained runs: a GPT-2-compatible run becomes a
folder `transformers` loads with the run's logits; a DeepNorm run a resnorm folder and a line
saying why; bad input one line and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as hf

from resnorm.cli import main
from resnorm.config import load_config
from resnorm.load import load_model
from resnorm.train import train

TOML = """\
name = "tiny"

[model]
vocab_size = 16
d_model = 16
n_layers = 2
n_heads = 2
max_seq_len = 16
attn_bias = true
mlp_bias = true

[data]
source = "copy"
seq_len = 16
batch_size = 4
params = { vocab_size = 16 }

[train]
steps = 3
warmup_steps = 1
lr = 1e-2
log_every = 1
eval_every = 3
eval_batches = 1
probe_every = 3
checkpoint_every = 3
"""


def trained(tmp_path: Path, topology: str) -> tuple[Path, str]:
    """A finished tiny run of ``topology`` in a fresh lab: (lab, run id)."""
    lab = tmp_path / "lab"
    config = tmp_path / "tiny.toml"
    config.write_text(TOML)
    cfg = load_config(config, [f'lab="{lab}"', f'model.topology="{topology}"'])
    result = train(cfg, progress=False)
    assert result.status in ("done", "stuck")  # finished, weights checkpointed
    return lab, result.run_id


def test_export_of_a_pre_ln_run_loads_in_transformers_with_its_logits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab, run_id = trained(tmp_path, "pre_ln")
    out = tmp_path / "hf"
    assert main(["export", run_id, "--lab", str(lab), "--hf", str(out)]) == 0
    assert "as GPT2LMHeadModel" in capsys.readouterr().out
    model, _ = load_model(run_id, lab)
    loaded = hf.AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    ids = torch.randint(0, 16, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
    # A folder that holds files is refused in one line (a run folder works as well as its id).
    capsys.readouterr()
    code = main(["export", str(lab / "runs" / run_id), "--hf", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--hf: " in err and "not an empty" in err


def test_export_of_a_deepnorm_run_writes_a_resnorm_folder_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab, run_id = trained(tmp_path, "deepnorm")
    out = tmp_path / "export"
    assert main(["export", run_id, "--lab", str(lab), "--hf", str(out)]) == 0
    said = capsys.readouterr().out
    assert "Hugging Face cannot load it: model.topology" in said
    assert "model.topology" in (out / "README.txt").read_text()
    _, cfg = load_model(out)
    assert cfg.topology == "deepnorm"


def test_export_of_an_unknown_run_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", "nope", "--lab", str(tmp_path), "--hf", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nope" in err
    assert not (tmp_path / "out").exists()
