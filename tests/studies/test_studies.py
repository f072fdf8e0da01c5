"""The built-in studies: each resolves at both scales, round-trips as data, and measures what
it says (checked on small cases against direct computations)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch

from resnorm.diagnostics.paths import SkipPathsConfig, skip_paths
from resnorm.lab import plan, study_from_dict
from resnorm.lab.tasks import BatchConfig, ProbeConfig, probe_at_init, resolve
from resnorm.nn.config import ModelConfig
from resnorm.nn.context import Context
from resnorm.nn.model import build_model
from resnorm.studies import STUDIES, demo_studies, get_study

NAMES = STUDIES.names()


def test_the_twelve_built_in_studies() -> None:
    assert NAMES == [
        "skip",
        "gradients-at-init",
        "output-change",
        "token-alignment",
        "init-scaling",
        "depth",
        "warmup",
        "curse-of-depth",
        "no-norm",
        "peri",
        "depth-seq2seq",
        "warmup-mlm",
    ]


def test_depth_seq2seq_trains_encoder_decoders_on_translate_with_their_own_constants() -> None:
    """Every run is an N-N encoder-decoder on the translate task (seq2seq objective); the
    DeepNorm runs get DeepNet's encoder-decoder alpha and beta, not the decoder-only ones."""
    from resnorm.config import RunConfig

    runs = plan(get_study("depth-seq2seq"), "lab")
    assert len(runs) == 4 * 2 * 3
    for r in runs:
        cfg = RunConfig.from_dict(r.config)
        assert cfg.model.kind == "encoder_decoder" and cfg.data.source == "translate"
        assert cfg.data.objective == "seq2seq"
    deep = next(
        r
        for r in runs
        if r.config["model"]["topology"] == "deepnorm" and r.config["model"]["n_layers"] == 24
    )
    model = build_model(RunConfig.from_dict(deep.config).model)
    n = m = 24  # DeepNet Table 1, encoder-decoder: encoder 0.81 (N^4 M)^(1/16), decoder (3M)^(1/4)
    assert model.encoder.topology.alpha == pytest.approx(0.81 * (n**4 * m) ** (1 / 16))
    assert model.encoder.topology.beta == pytest.approx(0.87 * (n**4 * m) ** (-1 / 16))
    assert model.decoder.topology.alpha == pytest.approx((3 * m) ** (1 / 4))
    assert model.decoder.topology.beta == pytest.approx((12 * m) ** (-1 / 4))


def test_warmup_mlm_trains_masked_lm_encoders_as_the_decoder_warmup_study_trains_decoders() -> None:
    from resnorm.config import RunConfig

    mlm, dec = plan(get_study("warmup-mlm"), "lab"), plan(get_study("warmup"), "lab")
    assert len(mlm) == len(dec) == 18
    for a, b in zip(mlm, dec, strict=True):
        cfg = RunConfig.from_dict(a.config)
        assert cfg.model.kind == "encoder" and cfg.data.objective == "mlm"
        assert cfg.model.vocab_size == 257  # the bytes and [MASK]
        assert a.config["train"] == b.config["train"]  # the same schedule, lr and seeds
        same = {k: v for k, v in a.config["model"].items() if k not in ("kind", "vocab_size")}
        assert same == {
            k: v for k, v in b.config["model"].items() if k not in ("kind", "vocab_size")
        }


@pytest.mark.parametrize("name", NAMES)
def test_each_study_resolves_at_both_scales_and_round_trips_as_data(name: str, tmp_path) -> None:
    for scale in ("quick", "full"):
        spec = get_study(name, scale)
        runs = plan(spec, tmp_path)
        assert runs and spec.checks and spec.figures and spec.claim and spec.source
        again = study_from_dict(spec.to_dict())
        assert [r.run_id for r in plan(again, tmp_path)] == [r.run_id for r in runs]
        if scale == "quick":  # quick runs train at most 600 steps of a d_model-64 model
            for r in runs:
                if r.run == "train":
                    assert r.config["train"]["steps"] <= 600 and r.config["model"]["d_model"] == 64


def test_the_demo_is_skip_gradients_output_change_and_the_decisive_depth_cell() -> None:
    demo = demo_studies()
    assert [s.name for s in demo] == ["skip", "gradients-at-init", "output-change", "depth"]
    depth = plan(demo[-1], "lab")
    assert len(depth) == 6 and {r.config["model"]["n_layers"] for r in depth} == {18}
    assert {r.config["model"]["topology"] for r in depth} == {"post_ln", "deepnorm"}


def test_every_demo_check_can_be_decided_by_the_seeds_it_runs() -> None:
    for spec in demo_studies():
        planned = {p.name: len(p.seeds) for p in spec.parts}
        for c in spec.checks:
            if c.per_seed:
                assert min(planned.values()) >= max(c.min_seeds, c.min_pass), (spec.name, c.label)


@pytest.mark.parametrize("name", NAMES)
def test_each_study_states_its_protocol_and_the_paper_beside_each_check(name: str) -> None:
    for scale in ("quick", "full"):
        spec = get_study(name, scale)
        assert spec.protocol.get("mirrors") and spec.departures
        assert "arXiv:" in spec.source or "ICML" in spec.source or "GPT-2" in spec.source
        for c in spec.checks:
            assert c.paper is not None and c.paper.reports and c.paper.where, c.label
            assert c.label
        assert 0 <= spec.headline.get("figure", 0) < len(spec.figures)
        compared = [c for c in spec.checks if c.per_seed]
        for c in compared:  # a comparison over seeds needs at least 3 of them
            assert all(len(p.seeds) >= 3 for p in spec.parts), (name, c.label)


@pytest.mark.parametrize("name", NAMES)
def test_topologies_compared_in_one_study_share_one_init_and_embedding_scale(name: str) -> None:
    """A topology's own init applies on top (DeepNorm, T-Fixup, Admin); the scheme is shared."""
    spec = get_study(name)
    for part in spec.parts:
        runs = plan(_one_part(spec, part.name), "lab")
        models = [r.config.get("model") for r in runs if r.config.get("model")]
        if not models:
            continue
        inits = {(m["init"], m["init_std"], m["embed_scale"]) for m in models}
        varied = {k for a in part.axes for k in (a.values or {})} | {
            k for a in part.axes for p in a.points for k in p
        }
        if "model.init" not in varied:  # init-scaling compares two inits: that is its claim
            assert len(inits) == 1, (name, part.name, inits)


def _one_part(spec: Any, name: str) -> Any:
    return dataclasses.replace(spec, parts=tuple(p for p in spec.parts if p.name == name))


def test_skip_paths_follow_the_real_attention_modules_in_float64() -> None:
    """The measurement against the same seeded model with attention applied by hand."""
    cfg = SkipPathsConfig(
        path="attention_only", n_layers=3, d_model=16, n_heads=2, seq_len=8, batch_size=2, seed=3
    )
    records, _ = skip_paths(cfg)
    # the reference: the same seeded model and input, attention applied by hand
    torch.manual_seed(3)
    model = build_model(
        ModelConfig(
            kind="encoder",
            d_model=16,
            n_layers=3,
            n_heads=2,
            init="xavier",
            positional="none",
            max_seq_len=8,
        )
    )
    model = model.double().eval()
    x = torch.randn(2, 8, 16, dtype=torch.float64)
    expected = []
    with torch.no_grad():
        for layer in model.encoder.layers:
            x = layer.attn(x, Context(causal=False))
            r = (x - x.mean(1, keepdim=True)).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
            expected.append(float(r.mean()))
    got = [r.value for r in records if r.layer is not None]
    assert got == pytest.approx(expected, rel=1e-12)
    assert got[0] > got[1] > got[2]  # attention alone contracts toward one token


def test_probe_runs_are_seeded_and_their_ids_hash_the_resolved_config() -> None:
    model = ModelConfig(vocab_size=32, d_model=16, n_heads=2, n_layers=2, max_seq_len=16)
    cfg = ProbeConfig(model=model, batch=BatchConfig(size=2, seq_len=8), probes=("grad_norm",))
    a, b = probe_at_init(cfg)[0], probe_at_init(cfg)[0]
    assert [r.value for r in a] == [r.value for r in b]
    other = probe_at_init(ProbeConfig(model=model, batch=cfg.batch, probes=cfg.probes, seed=1))[0]
    assert [r.value for r in other] != [r.value for r in a]
    tree = {"model": {"vocab_size": 32, "d_model": 16, "n_heads": 2, "max_seq_len": 16}}
    same = {"model": {**tree["model"], "n_layers": 4}}  # 4 is the default: the same run
    assert resolve("probe", tree, "lab")[0] == resolve("probe", same, "lab")[0]
    assert math.isfinite(a[0].value)


def test_study_list_gives_each_study_an_expected_time_on_this_machine(
    capsys: pytest.CaptureFixture,
) -> None:
    from resnorm.cli import main

    assert main(["study", "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("expected time ~") == len(NAMES) and out.count("on this machine (") >= 10
    assert "estimates" in out.splitlines()[-1]
