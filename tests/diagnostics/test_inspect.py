"""`inspect_model`, the comparison table, and Xiong et al.'s gradient claim at init."""

from __future__ import annotations

import pytest
import torch

from resnorm.diagnostics import (
    Record,
    format_table,
    grad_ratio,
    inspect_comparison,
    inspect_model,
    random_batch,
)
from resnorm.diagnostics.inspect import compare
from resnorm.nn.config import ModelConfig

TINY = {"vocab_size": 32, "d_model": 16, "n_heads": 2, "n_layers": 2, "max_seq_len": 16}


def test_inspect_model_is_deterministic_per_seed_and_differs_across_seeds():
    cfg = ModelConfig(**TINY)  # type: ignore[arg-type]
    a = inspect_model(cfg, batch_size=2, seq_len=8, seed=1)
    assert a == inspect_model(cfg, batch_size=2, seq_len=8, seed=1)
    assert a != inspect_model(cfg, batch_size=2, seq_len=8, seed=2)


def test_inspect_model_leaves_the_callers_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    inspect_model(ModelConfig(**TINY), batch_size=2, seq_len=8)  # type: ignore[arg-type]
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kind", ["decoder", "encoder", "encoder_decoder"])
def test_random_batch_has_next_token_targets_for_every_kind(kind):
    cfg = ModelConfig(kind=kind, **TINY)  # type: ignore[arg-type]
    inputs, targets = random_batch(cfg, batch_size=2, seq_len=8, seed=0)
    tokens = inputs["decoder_input_ids"] if kind == "encoder_decoder" else inputs
    assert tokens.shape == targets.shape == (2, 8)
    assert torch.equal(tokens[:, 1:], targets[:, :-1])
    records = inspect_model(cfg, batch_size=2, seq_len=8)
    assert {r.probe for r in records} == {"grad_norm", "stream_rms"}


def test_grad_ratio_is_last_layer_over_first_layer_of_w2():
    records = [
        Record("grad_norm", i, "decoder.mlp.down.weight", v, "l2")
        for i, v in enumerate([2.0, 5.0, 3.0])
    ] + [Record("grad_norm", 0, "decoder.mlp", 100.0, "l2")]
    assert grad_ratio(records) == pytest.approx(1.5)
    assert grad_ratio(records, "decoder.mlp") == pytest.approx(1.0)


def test_format_table_has_a_row_per_layer_and_a_summary_line_per_config():
    cfg = ModelConfig(**{**TINY, "n_layers": 3})  # type: ignore[arg-type]
    records = inspect_model(cfg, batch_size=2, seq_len=8)
    text = format_table({"a": records, "b": records})
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("layer"))
    assert header.split() == ["layer", "|grad", "W2|", "|grad", "attn|", "|grad", "mlp|",
                              "stream", "rms"]  # fmt: skip
    rows = [line for line in lines if line.strip()[:1].isdigit()]
    assert len(rows) == 2 * 3
    w2 = {r.layer: r.value for r in records if r.key == "decoder.mlp.down.weight"}
    assert f"{w2[2]:.3e}" in rows[2]
    assert lines[-2].startswith("a: W2 grad last/first = ")
    assert lines[-1] == lines[-2].replace("a:", "b:", 1)


def test_inspect_comparison_prints_each_topology_and_depth():
    shape = {k: v for k, v in TINY.items() if k != "n_layers"}
    text = inspect_comparison(("post_ln", "pre_ln"), (2, 3), batch_size=2, seq_len=8, **shape)
    for name in ("post_ln L=2", "post_ln L=3", "pre_ln L=2", "pre_ln L=3"):
        assert f"{name} · decoder" in text
        assert f"{name}: W2 grad last/first = " in text


def test_xiong_w2_grad_ratio_at_depth_12_pre_ln_decays_while_post_ln_does_not():
    """Xiong et al. 2020 (arXiv:2002.04745): at init the W2 gradient norm grows towards the
    output in Post-LN (last/first > 1) and shrinks in Pre-LN (< 1).

    Measured at the demo's shape (d 64, 4 heads, vocab 256, batch 8 x 64 random tokens, init
    normal 0.02), depth 12, seeds 0-4: pre_ln 0.360, 0.390, 0.356, 0.335, 0.382 (reproduced);
    post_ln 1.024, 0.968, 0.995, 0.980, 1.003: flat, so "post_ln > 1" holds at seed 0 only by
    noise and is not asserted; post/pre 2.84, 2.48, 2.80, 2.93, 2.63 (the gradients-at-init
    study's ">= 2.5" fails at seed 1). Asserted: what holds on every seed.
    """
    for seed in range(3):
        records = compare(("post_ln", "pre_ln"), (12,), seed=seed)
        post, pre = grad_ratio(records["post_ln L=12"]), grad_ratio(records["pre_ln L=12"])
        assert pre < 1.0, f"seed {seed}: pre_ln last/first {pre:.3f}"
        assert post > pre, f"seed {seed}: post_ln {post:.3f} vs pre_ln {pre:.3f}"
        assert 0.9 < post < 1.1, f"seed {seed}: post_ln last/first {post:.3f} (measured ~1)"
