"""Each probe against a hand computation on a tiny model; hooks cleaned up; the training Monitor."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch
from torch import Tensor, nn

from resnorm.diagnostics import (
    PROBES,
    Monitor,
    Record,
    cross_entropy,
    random_batch,
    rank_collapse,
    run_at_init,
    token_cosine,
)
from resnorm.diagnostics.forward import StreamRMS
from resnorm.diagnostics.perturb import OutputChange
from resnorm.errors import ConfigError
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import Transformer, build_model

KINDS = ("decoder", "encoder", "encoder_decoder")


def tiny(kind: str = "decoder", topology: str = "pre_ln", **fields: object) -> ModelConfig:
    shape = {"vocab_size": 32, "d_model": 16, "n_layers": 2, "n_heads": 2, "max_seq_len": 16}
    return ModelConfig(kind=kind, topology=topology, **{**shape, **fields})  # type: ignore[arg-type]


def setup(cfg: ModelConfig, seed: int = 0) -> tuple[Transformer, tuple]:
    torch.manual_seed(seed)
    return build_model(cfg), random_batch(cfg, batch_size=2, seq_len=8, seed=seed)


def by_key(records: list[Record], probe: str) -> dict[tuple[int | None, str], float]:
    return {(r.layer, r.key): r.value for r in records if r.probe == probe}


def hook_count(model: nn.Module) -> int:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, k)) for m in model.modules() for k in kinds)


def rms(x: Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


@torch.no_grad()
def manual_pass(model: Transformer, ids: Tensor, drop: int | None = None) -> dict[str, object]:
    """The decoder forward written out through the topology's own rule: the stream after every
    sublayer, every branch output, every norm input; layer ``drop`` with its branches zeroed."""
    stack, topo = model.decoder, model.decoder.topology
    ctx = model.context(ids, True, None)
    x = model.embed(ids)
    streams, branches, norm_inputs = {None: x}, {}, {}
    for layer in stack.layers:
        for s in layer.sublayers:
            f = layer.branch(s, ctx)

            def branch(h: Tensor, f=f, key=(layer.index, s)) -> Tensor:
                out = f(h)
                branches[key] = out
                return torch.zeros_like(out) if key[0] == drop else out

            norm_inputs[(layer.index, s)] = x  # pre_ln normalizes the stream entering s
            x = topo.sublayer(layer, s, x, branch)
            streams[(layer.index, s)] = x
    norm_inputs["final"] = x
    logits = model.lm_head(stack.final_norm(x) if stack.final_norm is not None else x)
    return {"streams": streams, "branches": branches, "norms": norm_inputs, "logits": logits}


# --- forward probes --------------------------------------------------------------------------
@pytest.mark.parametrize("topology", ["pre_ln", "post_ln"])
def test_stream_rms_and_max_equal_the_stream_recomputed_through_the_topology(topology):
    model, (ids, targets) = setup(tiny(topology=topology))
    records = run_at_init(model, (ids, targets), ["stream_rms", "stream_max"])
    streams = manual_pass(model, ids)["streams"]
    got_rms, got_max = by_key(records, "stream_rms"), by_key(records, "stream_max")
    assert got_rms[(None, "decoder.embed")] == pytest.approx(rms(streams[None]), rel=1e-5)
    for (i, s), x in ((k, v) for k, v in streams.items() if k is not None):
        assert got_rms[(i, f"decoder.{s}")] == pytest.approx(rms(x), rel=1e-5)
        assert got_max[(i, f"decoder.{s}")] == pytest.approx(float(x.abs().max()), rel=1e-6)
    assert len(got_rms) == 1 + 2 * 2


def test_branch_rms_equals_rms_of_each_sublayer_output():
    model, (ids, targets) = setup(tiny())
    got = by_key(run_at_init(model, (ids, targets), ["branch_rms"]), "branch_rms")
    branches = manual_pass(model, ids)["branches"]
    assert set(got) == {(i, f"decoder.{s}") for i, s in branches}
    for (i, s), out in branches.items():
        assert got[(i, f"decoder.{s}")] == pytest.approx(rms(out), rel=1e-5)


def test_norm_input_scale_equals_rms_of_what_each_pre_ln_norm_reads():
    model, (ids, targets) = setup(tiny())
    got = by_key(run_at_init(model, (ids, targets), ["norm_input_scale"]), "norm_input_scale")
    norms = manual_pass(model, ids)["norms"]
    assert got[(None, "decoder.final_norm")] == pytest.approx(rms(norms["final"]), rel=1e-5)
    for (i, s), x in ((k, v) for k, v in norms.items() if k != "final"):
        assert got[(i, f"decoder.norm_{s}")] == pytest.approx(rms(x), rel=1e-5)
    assert len(got) == 2 * 2 + 1


def test_norm_input_scale_also_reads_norms_nested_in_a_sublayer_like_qk_norm():
    model, (ids, targets) = setup(tiny(qk_norm="head"))
    got = by_key(run_at_init(model, (ids, targets), ["norm_input_scale"]), "norm_input_scale")
    x = manual_pass(model, ids)["norms"][(0, "attn")]
    layer = model.decoder.layers[0]
    with torch.no_grad():
        q = layer.attn.q_proj(layer.norm_attn(x))  # q_norm reads q split into heads: same RMS
    assert got[(0, "decoder.attn.q_norm")] == pytest.approx(rms(q), rel=1e-5)
    assert (1, "decoder.attn.k_norm") in got


def test_rank_collapse_is_zero_for_identical_tokens_and_known_for_two_basis_tokens():
    same = torch.randn(3, 1, 8).expand(3, 5, 8)
    assert float(rank_collapse(same)) == pytest.approx(0.0, abs=1e-6)
    two = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # mean (.5, .5): residual 1, ||X|| sqrt 2
    assert float(rank_collapse(two)) == pytest.approx(1 / math.sqrt(2))
    opposite = torch.tensor([[[1.0, 2.0], [-1.0, -2.0]]])  # mean 0: nothing collapsed
    assert float(rank_collapse(opposite)) == pytest.approx(1.0)


def test_token_cosine_is_zero_for_orthogonal_one_for_identical_and_matches_pairwise_loop():
    assert float(token_cosine(torch.eye(6)[None, :4])) == pytest.approx(0.0, abs=1e-7)
    assert float(token_cosine(torch.randn(2, 1, 5).expand(2, 4, 5))) == pytest.approx(1.0)
    x = torch.randn(3, 5, 7)
    loop = []
    for b in range(3):
        pairs = [
            float(torch.cosine_similarity(x[b, i], x[b, j], dim=0))
            for i in range(5)
            for j in range(5)
            if i != j
        ]
        loop.append(sum(pairs) / len(pairs))
    assert float(token_cosine(x)) == pytest.approx(sum(loop) / 3, rel=1e-5)


def test_rank_collapse_and_token_cosine_probes_read_the_stream_after_each_layer():
    model, (ids, targets) = setup(tiny(topology="post_ln"))
    records = run_at_init(model, (ids, targets), ["rank_collapse", "token_cosine"])
    streams = manual_pass(model, ids)["streams"]
    for probe, fn in (("rank_collapse", rank_collapse), ("token_cosine", token_cosine)):
        got = by_key(records, probe)
        assert got[(None, "decoder.embed")] == pytest.approx(float(fn(streams[None])), rel=1e-5)
        for i in range(2):
            assert got[(i, "decoder")] == pytest.approx(float(fn(streams[(i, "mlp")])), rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_attention_entropy_of_uniform_attention_is_log_of_visible_keys(kind):
    model, _ = setup(tiny(kind))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.zero_()  # scores 0: uniform over every key the mask lets through
    t_src, t_dec = 6, 8
    src = torch.randint(0, 32, (2, t_src))
    dec = torch.randint(0, 32, (2, t_dec))
    if kind == "encoder_decoder":
        batch = ({"input_ids": src, "decoder_input_ids": dec}, dec)
    else:
        batch = (dec, dec)
    got = by_key(run_at_init(model, batch, ["attention_entropy"]), "attention_entropy")
    causal = sum(math.log(t) for t in range(1, t_dec + 1)) / t_dec
    expected = {
        "decoder": {(i, "decoder.attn"): causal for i in range(2)},
        "encoder": {(i, "encoder.attn"): math.log(t_dec) for i in range(2)},
        "encoder_decoder": {
            **{(i, "encoder.attn"): math.log(t_src) for i in range(2)},
            **{(i, "decoder.attn"): causal for i in range(2)},
            **{(i, "decoder.cross"): math.log(t_src) for i in range(2)},
        },
    }[kind]
    assert got == pytest.approx(expected, rel=1e-5)


# --- gradients and updates -------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_grad_norm_matches_p_grad_norm_summed_in_a_loop(kind):
    model, batch = setup(tiny(kind))
    got = by_key(run_at_init(model, batch, ["grad_norm"]), "grad_norm")
    assert all(p.grad is None for p in model.parameters()), "run_at_init clears gradients"
    inputs, targets = batch
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    cross_entropy(out, targets).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    def norm(prefix: str) -> float:
        return math.sqrt(
            sum(float(g.norm()) ** 2 for n, g in grads.items() if n.startswith(prefix))
        )

    assert got[(None, "")] == pytest.approx(norm(""), rel=1e-5)
    stacks = {"decoder": ["decoder"], "encoder": ["encoder"]}.get(kind, ["encoder", "decoder"])
    for stack in stacks:
        for i in range(2):
            base = f"{stack}.layers.{i}."
            assert got[(i, stack)] == pytest.approx(norm(base), rel=1e-5)
            assert got[(i, f"{stack}.attn")] == pytest.approx(norm(base + "attn."), rel=1e-5)
            assert got[(i, f"{stack}.mlp")] == pytest.approx(norm(base + "mlp."), rel=1e-5)
            w2 = float(grads[base + "mlp.down.weight"].norm())
            assert got[(i, f"{stack}.mlp.down.weight")] == pytest.approx(w2, rel=1e-5)
    if kind == "encoder_decoder":
        cross = norm("decoder.layers.1.cross.")
        assert got[(1, "decoder.cross")] == pytest.approx(cross, rel=1e-5)
    assert got[(None, "embed.tok.weight")] == pytest.approx(norm("embed.tok.weight"), rel=1e-5)


def test_update_ratio_matches_delta_over_weight_of_a_manual_sgd_step():
    model, (ids, targets) = setup(tiny())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    probe = PROBES.get("update_ratio")()
    probe.snapshot(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    cross_entropy(model(ids), targets).backward()
    optimizer.step()
    got = by_key(probe.records(model), "update_ratio")
    after = dict(model.named_parameters())

    def ratio(prefix: str) -> float:
        names = [n for n in before if n.startswith(prefix)]
        dw = sum(float((after[n].detach() - before[n]).norm()) ** 2 for n in names)
        return math.sqrt(dw / sum(float(before[n].norm()) ** 2 for n in names))

    assert got[(None, "")] == pytest.approx(ratio(""), rel=1e-5)
    for i in range(2):
        assert got[(i, "decoder")] == pytest.approx(ratio(f"decoder.layers.{i}."), rel=1e-5)
        down = f"decoder.layers.{i}.mlp.down.weight"
        assert got[(i, "decoder.mlp.down.weight")] == pytest.approx(ratio(down), rel=1e-5)
        assert got[(i, "decoder.attn")] == pytest.approx(ratio(f"decoder.layers.{i}.attn."))


def test_run_at_init_update_ratio_is_one_adam_step_and_leaves_weights_bit_exact():
    model, batch = setup(tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = by_key(run_at_init(model, batch, ["update_ratio"]), "update_ratio")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # Adam's first step moves each weight by lr * g / (|g| + eps), ~ lr where g != 0.
    w2 = model.decoder.layers[1].mlp.down.weight
    expected = 1e-3 * math.sqrt(w2.numel()) / float(w2.detach().norm())
    assert got[(1, "decoder.mlp.down.weight")] == pytest.approx(expected, rel=1e-2)


# --- probes with their own passes ------------------------------------------------------------
def test_output_change_is_zero_at_eps_zero_and_restores_weights_bit_exactly():
    model, batch = setup(tiny(topology="post_ln"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    zero = run_at_init(model, batch, [OutputChange(eps=0.0)])
    assert zero == [Record("output_change", None, "hidden", 0.0, "ratio")]
    small = by_key(run_at_init(model, batch, [OutputChange(eps=0.01)]), "output_change")
    assert small[(None, "hidden")] > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def variance_ratio(out: Tensor, base: Tensor) -> float:
    diff, base = (out - base).double(), base.double()
    return float((diff - diff.mean()).square().mean() / (base - base.mean()).square().mean())


@pytest.mark.parametrize("output", ["hidden", "logits"])
def test_output_change_is_the_variance_ratio_under_the_documented_noise_and_quadratic_in_eps(
    output,
):
    model, (ids, targets) = setup(tiny())
    model.eval()

    def measure(eps: float) -> float:
        probe = OutputChange(eps=eps, samples=2, output=output)
        return probe.measure(model, ids, targets, cross_entropy)[0].value

    run = model.hidden if output == "hidden" else model
    base = run(ids).detach()
    manual = []
    for k in range(2):
        # The documented draw: one generator seeded k, N(0, 1) per matrix in parameter order.
        gen = torch.Generator().manual_seed(k)
        perturbed = build_model(model.cfg)
        perturbed.load_state_dict(model.state_dict())
        with torch.no_grad():
            for p in perturbed.parameters():
                if p.dim() >= 2:
                    p.add_(torch.randn(p.shape, generator=gen) * 0.01 * p.std())
            out = perturbed.hidden(ids) if output == "hidden" else perturbed(ids)
            manual.append(variance_ratio(out, base))
    assert measure(0.01) == pytest.approx(sum(manual) / 2, rel=1e-4)
    # A variance of a change linear in eps: x4 for twice the eps (a norm ratio would give x2).
    assert measure(0.002) / measure(0.001) == pytest.approx(4.0, rel=2e-2)


def test_output_change_restores_weights_when_the_model_raises_mid_perturbation():
    model, (ids, targets) = setup(tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = {"n": 0}

    def fail_second(module: nn.Module, args: object, out: Tensor) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")

    handle = model.decoder.register_forward_hook(fail_second)
    with pytest.raises(RuntimeError, match="boom"):
        OutputChange().measure(model, ids, targets, cross_entropy)
    handle.remove()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_layer_drop_equals_loss_increase_with_that_layers_branches_zeroed_by_hand():
    model, (ids, targets) = setup(tiny(n_layers=3))
    got = by_key(run_at_init(model, (ids, targets), ["layer_drop"]), "layer_drop")
    base = float(cross_entropy(manual_pass(model, ids)["logits"], targets))
    for i in range(3):
        dropped = float(cross_entropy(manual_pass(model, ids, drop=i)["logits"], targets))
        assert got[(i, "decoder")] == pytest.approx(dropped - base, rel=1e-4, abs=1e-6)


# --- run_at_init contract --------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_every_probe_runs_on_every_kind_and_leaves_no_hook(kind):
    model, batch = setup(tiny(kind, topology="post_ln"))
    records = run_at_init(model, batch, PROBES.names())
    assert hook_count(model) == 0
    assert {r.probe for r in records} == set(PROBES.names())
    undefined = [r for r in records if not math.isfinite(r.value)]
    # ||dW|| / ||W|| is NaN exactly where W = 0: the norms' biases at init.
    assert undefined, "post_ln's norm biases start at 0"
    assert all(r.probe == "update_ratio" and r.key.endswith("bias") for r in undefined)
    assert all(".norm_" in r.key or r.key.startswith("decoder.final") for r in undefined)
    for probe in PROBES.names():
        keys = [(r.layer, r.key) for r in records if r.probe == probe]
        assert len(keys) == len(set(keys)), f"{probe}: (layer, key) must be unique for the store"
    stacks = {r.key.split(".")[0] for r in records if r.layer is not None}
    assert stacks == {"decoder": {"decoder"}, "encoder": {"encoder"}}.get(
        kind, {"encoder", "decoder"}
    )
    assert model.training, "training flag restored"


@pytest.mark.parametrize("topology", ["pre_ln", "post_ln"])
def test_every_probe_runs_on_a_float64_model_and_agrees_with_float32(topology):
    # init_std 0.2: dropping a layer changes the loss by far more than fp32's rounding.
    model, batch = setup(tiny(topology=topology, init_std=0.2))
    wide = copy.deepcopy(model).double()

    def adam(params):  # lr 1e-2: dW well above fp32's rounding of W (norm gains W = 1)
        return torch.optim.Adam(params, lr=1e-2)

    narrow_records = run_at_init(model, batch, PROBES.names(), optimizer_fn=adam)
    wide_records = run_at_init(wide, batch, PROBES.names(), optimizer_fn=adam)
    assert {r.probe for r in wide_records} == set(PROBES.names())
    narrow = {(r.probe, r.layer, r.key): r.value for r in narrow_records}
    for r in wide_records:
        where = (r.probe, r.layer, r.key)
        if r.probe == "update_ratio" and r.key.endswith("bias"):
            continue  # ||dW|| / ||W|| is NaN where W = 0 (norm biases at init), in both dtypes
        assert math.isfinite(r.value), where
        assert r.value == pytest.approx(narrow[where], rel=1e-4), where


def test_run_at_init_removes_hooks_and_restores_mode_when_the_loss_raises():
    model, batch = setup(tiny())
    model.eval()

    def bad_loss(logits: Tensor, targets: Tensor) -> Tensor:
        raise RuntimeError("bad loss")

    with pytest.raises(RuntimeError, match="bad loss"):
        run_at_init(model, batch, PROBES.names(), loss_fn=bad_loss)
    assert hook_count(model) == 0
    assert not model.training


def test_unknown_probe_name_is_a_config_error_listing_the_probes():
    model, batch = setup(tiny())
    with pytest.raises(ConfigError, match="stream_rms"):
        run_at_init(model, batch, ["stream_rsm"])


# --- Monitor inside a training loop ----------------------------------------------------------
def test_monitor_hooks_only_probe_steps_and_reports_global_grad_norm_every_step():
    model, (ids, targets) = setup(tiny())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = Monitor(model, ["grad_norm", "stream_rms", "update_ratio"], every=2)
    per_step = []
    for step in range(3):
        monitor.before_step(step)
        assert (hook_count(model) > 0) == (step % 2 == 0)
        optimizer.zero_grad()
        cross_entropy(model(ids), targets).backward()
        monitor.after_backward(step)
        assert hook_count(model) == 0
        total = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9))
        optimizer.step()
        records = monitor.after_step(step)
        glob = [r for r in records if r.probe == "grad_norm" and r.key == "" and r.layer is None]
        assert len(glob) == 1 and glob[0].value == pytest.approx(total, rel=1e-5)
        per_step.append({r.probe for r in records})
    assert per_step == [{"grad_norm", "stream_rms", "update_ratio"}, {"grad_norm"}, per_step[0]]


def test_monitor_takes_the_norm_the_caller_computed_on_steps_without_probes():
    model, (ids, targets) = setup(tiny())
    monitor = Monitor(model, ["grad_norm", "stream_rms"], every=2)
    for step, given in ((1, 3.25), (1, None), (2, 3.25)):
        model.zero_grad()
        monitor.before_step(step)
        cross_entropy(model(ids), targets).backward()
        monitor.after_backward(step, grad_norm=None if given is None else torch.tensor(given))
        glob = [r.value for r in monitor.after_step(step) if r.key == "" and r.layer is None]
        measured = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9))
        # A step without probes reports what it was given; a probe step its own grouped sum.
        expected = given if given is not None and step % 2 else measured
        assert glob == [pytest.approx(expected, rel=1e-5)]


def test_monitor_seconds_counts_its_hooks_and_calls_on_probe_steps_only():
    class SlowStreamRMS(StreamRMS):
        def stat(self, x: Tensor) -> Tensor:
            time.sleep(0.01)
            return super().stat(x)

    model, (ids, targets) = setup(tiny(n_layers=2))
    probe = SlowStreamRMS()
    monitor = Monitor(model, [probe, "grad_norm"], every=2)
    assert monitor.seconds == 0.0
    elapsed = {}
    for step in (0, 1):
        start, before = time.perf_counter(), monitor.seconds
        monitor.before_step(step)
        cross_entropy(model(ids), targets).backward()
        monitor.after_backward(step)
        monitor.after_step(step)
        elapsed[step] = (monitor.seconds - before, time.perf_counter() - start)
    # 2 layers x 2 sublayer taps + the embedding output = 5 hook calls of >= 10 ms each.
    assert probe.seconds >= 0.05 and elapsed[0][0] >= probe.seconds
    assert elapsed[0][0] <= elapsed[0][1]  # inside the diagnostics is part of the step
    assert elapsed[1][0] < 0.01  # no hooks on other steps: the global grad norm only


def test_monitor_grad_norms_equal_run_at_init_on_the_same_weights_and_batch():
    model, batch = setup(tiny())
    reference = by_key(run_at_init(model, batch, ["grad_norm", "stream_rms"]), "grad_norm")
    monitor = Monitor(model, ["grad_norm", "stream_rms"], every=1)
    monitor.before_step(0)
    cross_entropy(model(batch[0]), batch[1]).backward()
    monitor.after_backward(0)
    records = monitor.after_step(0)
    assert by_key(records, "grad_norm") == pytest.approx(reference, rel=1e-6)
    assert len([r for r in records if r.probe == "grad_norm" and r.key == ""]) == 1


def test_monitor_rejects_probes_that_need_their_own_passes():
    model, _ = setup(tiny())
    with pytest.raises(ConfigError, match="layer_drop"):
        Monitor(model, ["grad_norm", "layer_drop"])
