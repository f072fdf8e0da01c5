"""`load_model`: run folders, run ids and exported folders give back the same model, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.modeltools import noisy, tiny, tokens
from tests.train.trainkit import tiny_config

from resnorm import TOPOLOGIES, ConfigError, load_model
from resnorm.load import save_model
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import Transformer
from resnorm.train import checkpoint as ckpt_io
from resnorm.train import train


def _save_run(lab: Path, run_id: str, model: Transformer) -> Path:
    """``model`` written by the trainer's checkpoint writer, as run ``run_id`` of ``lab``."""
    tensors = {f"model.{k}": v.detach().clone() for k, v in ckpt_io.model_tensors(model).items()}
    meta = {"run_id": run_id, "config": {"model": model.cfg.to_dict()}}
    ckpt_io.save(ckpt_io.checkpoint_dir(lab, run_id), 2, tensors, meta)
    return lab / "runs" / run_id


def _same_logits(a: Transformer, b: Transformer, cfg: ModelConfig) -> None:
    ids = tokens(cfg, seq=7)
    dec = ids if cfg.kind == "encoder_decoder" else None
    with torch.no_grad():
        assert torch.equal(a(ids, decoder_input_ids=dec), b(ids, decoder_input_ids=dec))


@pytest.mark.parametrize("topology", TOPOLOGIES.names())
def test_load_round_trip_gives_the_same_logits_for_every_topology(
    topology: str, tmp_path: Path
) -> None:
    cfg = tiny(topology, positional="rope", tie_embeddings=True)
    model = noisy(cfg)
    run = _save_run(tmp_path / "lab", "abc123", model)
    for source, lab in ((run, "unused"), ("abc123", tmp_path / "lab"), ("abc", tmp_path / "lab")):
        loaded, loaded_cfg = load_model(source, lab=lab)
        assert loaded_cfg == cfg and not loaded.training
        _same_logits(model, loaded, cfg)
    exported, export_cfg = load_model(save_model(model, tmp_path / "export"))
    assert export_cfg == cfg
    _same_logits(model, exported, cfg)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("kind", ["encoder", "encoder_decoder"])
def test_load_keeps_or_unties_the_head_and_serves_every_kind(
    tie: bool, kind: str, tmp_path: Path
) -> None:
    cfg = tiny(kind=kind, tie_embeddings=tie)
    model = noisy(cfg)
    loaded, _ = load_model(save_model(model, tmp_path / "export"))
    assert (loaded.lm_head.weight is loaded.embed.tok.weight) == tie
    _same_logits(model, loaded, cfg)


def test_load_builds_on_meta_and_computes_no_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = noisy(tiny("hyper_connections", positional="rope"))
    folder = save_model(model, tmp_path / "export")

    def no_init(*args: object) -> None:
        raise AssertionError("load_model computed a random init")

    monkeypatch.setattr("resnorm.nn.model.init_model", no_init)
    loaded, cfg = load_model(folder)
    _same_logits(model, loaded, cfg)
    assert all(not t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])


def test_a_trained_run_loads_by_id_and_generates(tmp_path: Path) -> None:
    result = train(tiny_config(tmp_path / "lab", ["train.steps=2"]), progress=False)
    model, cfg = load_model(result.run_id, lab=tmp_path / "lab")
    weights = ckpt_io.load_weights(tmp_path / "lab", result.run_id)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    out = model.generate(torch.zeros(1, 2, dtype=torch.long), 5, temperature=0)
    assert out.shape == (1, 7) and int(out.max()) < cfg.vocab_size


def test_an_unknown_run_id_is_an_error_listing_the_runs(tmp_path: Path) -> None:
    _save_run(tmp_path / "lab", "abc123", noisy(tiny()))
    with pytest.raises(ConfigError, match=r"no run 'zzz' .*runs there: abc123"):
        load_model("zzz", lab=tmp_path / "lab")
    with pytest.raises(ConfigError, match="runs there: none"):
        load_model("zzz", lab=tmp_path / "empty")


def test_weights_of_another_shape_are_an_error(tmp_path: Path) -> None:
    folder = save_model(noisy(tiny()), tmp_path / "export")
    (folder / "resnorm.json").write_text(tiny(d_model=32).to_json())
    with pytest.raises(ConfigError, match="weights"):
        load_model(folder)
