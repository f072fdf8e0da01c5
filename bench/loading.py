"""Loading: peak memory over checkpoint size, and load time against ``transformers``.

One GPT-2-layout checkpoint with random weights is made locally (no download) and saved two
ways: as a Hugging Face folder (``save_pretrained``, safetensors) and as a resnorm export
(``save_model``). Each measurement runs in a fresh Python process, so its RSS holds only the
interpreter, the imports and that one load: the figure is the peak RSS during the load minus the
RSS just before it (after the imports), over the checkpoint file's size. The goal is <= 1.3: one
copy of the weights plus little working memory. Load time is wall time of the load call alone
(imports excluded, ``torch._dynamo`` included: see `worker`); the files are in the page cache
after the first round.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from bench.machine import IdleWaiter
from bench.runner import log
from bench.speed import Options

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.3
# GPT-2 small's widths and vocabulary at 8 layers: about 96M parameters, 390 MB in fp32.
CONFIG = {"n_embd": 768, "n_layer": 8, "n_head": 12, "n_positions": 1024, "vocab_size": 50257}
SUBJECTS = {
    "resnorm load_model (resnorm export)": "load_model",
    "resnorm from_hf (HF folder)": "from_hf",
    "transformers from_pretrained (HF folder)": "transformers",
}


def _status_bytes(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(kind: str, folder: str) -> dict[str, Any]:
    """One load and one forward pass in this (fresh) process: seconds and RSS (bytes).

    The peak is ``VmHWM`` after resetting it (``clear_refs``) just before the load: not
    ``ru_maxrss``, which a child inherits from the parent it was forked from. The forward pass
    (8 tokens) touches every weight, so a loader that maps the file and reads it lazily (as
    ``transformers`` does) is measured with its weights resident too.
    """
    import torch
    import torch._dynamo

    # ``transformers`` imports torch._dynamo on import; resnorm's first build on the meta
    # device imports it lazily (torch's meta init kernels are dynamo-wrapped), a one-time
    # ~1.5 s and ~80 MB per process. Imported here for every subject, so the figures below
    # compare the loads themselves on the same imports.
    if kind == "transformers":
        from transformers import GPT2LMHeadModel

        def load() -> Any:
            return GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32)
    elif kind == "from_hf":
        from resnorm.interop import from_hf

        def load() -> Any:
            return from_hf(folder)[0]
    else:
        from resnorm.load import load_model

        def load() -> Any:
            return load_model(folder)[0]

    ids = torch.arange(8).unsqueeze(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_bytes("VmRSS")
    start = time.perf_counter()
    model = load()
    seconds = time.perf_counter() - start
    peak_load = _status_bytes("VmHWM")
    with torch.no_grad():
        model(ids)
    first_forward = time.perf_counter() - start
    return {
        "seconds": seconds,
        "seconds_to_first_forward": first_forward,
        "rss_before": before,
        "peak_rss_load": peak_load,
        "peak_rss_forward": _status_bytes("VmHWM"),
        "params": sum(p.numel() for p in model.parameters()),
    }


def _make_checkpoints(tmp: Path) -> tuple[Path, Path]:
    """The HF folder and the resnorm export of one random GPT-2-layout model."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from resnorm.interop import from_hf
    from resnorm.load import save_model

    torch.manual_seed(0)
    hf_dir, export_dir = tmp / "hf", tmp / "export"
    GPT2LMHeadModel(GPT2Config(**CONFIG)).save_pretrained(hf_dir)
    save_model(from_hf(hf_dir)[0], export_dir)
    return hf_dir, export_dir


def _measure(kind: str, folder: Path) -> dict[str, Any]:
    """`worker` in a fresh interpreter; its JSON line."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.loading", kind, str(folder)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def loading(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """Peak RSS over checkpoint size and load time, per subject, median over fresh processes."""
    rounds = o.n(3, 1)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as name:
        hf_dir, export_dir = _make_checkpoints(Path(name))
        folders = {"load_model": export_dir, "from_hf": hf_dir, "transformers": hf_dir}
        sizes = {
            kind: sum(p.stat().st_size for p in folder.glob("*.safetensors"))
            for kind, folder in folders.items()
        }
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in folders}
        for i in range(rounds):  # interleaved, so a slow spell hits every subject alike
            for kind, folder in folders.items():
                waiter.wait()
                runs[kind].append(_measure(kind, folder))
                log(f"loading: round {i + 1}/{rounds} {kind} {runs[kind][-1]['seconds']:.2f} s")
    rows: dict[str, Any] = {}
    for label, kind in SUBJECTS.items():
        series, size = runs[kind], sizes[kind]
        rows[label] = {
            "checkpoint_bytes": size,
            "params": series[0]["params"],
            "peak_over_size": median((r["peak_rss_load"] - r["rss_before"]) / size for r in series),
            "peak_over_size_forward": median(
                (r["peak_rss_forward"] - r["rss_before"]) / size for r in series
            ),
            "seconds": median(r["seconds"] for r in series),
            "seconds_to_first_forward": median(r["seconds_to_first_forward"] for r in series),
            "runs": series,
            "n": len(series),
        }
    hf = rows["transformers from_pretrained (HF folder)"]
    hf_s, hf_first = hf["seconds"], hf["seconds_to_first_forward"]
    for row in rows.values():
        row["time_vs_transformers"] = row["seconds"] / hf_s
        row["first_forward_vs_transformers"] = row["seconds_to_first_forward"] / hf_first
    return {"config": CONFIG, "goal_peak_over_size": GOAL, "rounds": rounds, "subjects": rows}


def render_loading(d: dict[str, Any]) -> list[str]:
    """The report section (`bench.report`)."""
    from bench.report import table  # bench.report imports this module

    c, goal = d["config"], d["goal_peak_over_size"]
    rows = [
        [
            label,
            f"{r['checkpoint_bytes'] / 1e6:.0f} MB",
            f"{r['peak_over_size']:.2f}",
            f"{r['peak_over_size_forward']:.2f}"
            + ("" if r["peak_over_size_forward"] <= goal else " (**over goal**)"),
            f"{r['seconds']:.2f} ({r['time_vs_transformers']:.1f}x)",
            f"{r['seconds_to_first_forward']:.2f} ({r['first_forward_vs_transformers']:.1f}x)",
        ]
        for label, r in d["subjects"].items()
    ]
    head = [
        "load",
        "checkpoint",
        "peak RSS / size, load",
        "… + first forward",
        "load s (vs HF)",
        "to first forward s (vs HF)",
    ]
    return [
        "## Loading",
        "",
        f"A random GPT-2-layout checkpoint (d_model {c['n_embd']}, {c['n_layer']} layers, vocab "
        f"{c['vocab_size']}; fp32 safetensors), each load in a fresh process: peak RSS minus "
        f"the RSS just before the load, over the checkpoint's size (goal <= {goal}), at the end "
        "of the load call and after a first forward pass of 8 tokens (which touches every "
        "weight: `transformers` maps the file and reads it lazily, so its load alone holds "
        f"little), and wall times; medians of {d['rounds']} rounds, files in the page cache. "
        "`transformers` is `GPT2LMHeadModel.from_pretrained` of the same HF folder. Every "
        "process imports `torch._dynamo` before the load, as `transformers` does on import "
        "(resnorm's first meta build would import it: a one-time ~1.5 s and ~80 MB per "
        "process, not counted).",
        "",
        *table(head, rows),
        "",
    ]


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], sys.argv[2])))
