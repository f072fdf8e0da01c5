"""`evaluate(run, data=...)`: a trained byte-level run's loss on held-out text, stored with it.

The text goes through the training pipeline's reader (`resnorm.data.load_text`: a file, or every
non-hidden file of a folder joined by the file separator byte), and is cut into consecutive
windows of the run's ``data.seq_len``: every byte but the first is predicted exactly once, from
the bytes before it in its window. So the loss is nats per byte, bits per byte is loss / ln 2 and
perplexity is e^loss.

The numbers are stored as metrics of the run at its final step, named
``eval/<name>/loss``, ``eval/<name>/bits_per_byte``, ``eval/<name>/perplexity`` and
``eval/<name>/tokens`` (``<name>`` defaults to the file or folder name), plus an ``eval`` event
holding the text's path, size and sha256, so `resnorm runs show` and the store's readers see them
beside the training curves. Evaluating again under the same name replaces the rows.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from resnorm.errors import ConfigError

#: Data sources whose tokens are bytes (synthetic tasks have their own vocabularies).
BYTE_SOURCES = ("builtin", "text", "hf")


@dataclass(frozen=True)
class EvalResult:
    """What `evaluate` measured.

    Attributes:
        run_id: the run evaluated.
        name: the name its rows are stored under (``eval/<name>/...``).
        step: the step of the weights evaluated (a finished run's final step), where the
            rows are stored.
        loss: mean cross-entropy, nats per token (= per byte).
        bits_per_byte: ``loss / ln 2``.
        perplexity: ``exp(loss)``.
        tokens: predicted tokens.
        data: the text's manifest (path, files, bytes, sha256).
    """

    run_id: str
    name: str
    step: int
    loss: float
    bits_per_byte: float
    perplexity: float
    tokens: int
    data: dict[str, Any]

    def line(self) -> str:
        return (
            f"run {self.run_id} on {self.name} ({self.tokens} tokens): loss {self.loss:.4f} "
            f"nats/token, {self.bits_per_byte:.4f} bits/byte, perplexity {self.perplexity:.3f}"
        )


def windows(stream: torch.Tensor, seq_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(input, target)`` windows of ``seq_len`` covering ``stream[1:]`` once, in order; the
    last one is shorter when ``len(stream) - 1`` is not a multiple of ``seq_len``."""
    out = []
    for start in range(0, len(stream) - 1, seq_len):
        chunk = stream[start : start + seq_len + 1].long()
        out.append((chunk[:-1], chunk[1:]))
    return out


def _model(run_id: str, lab: str | Path, device: torch.device) -> tuple[torch.nn.Module, int]:
    """The run's newest weights (a finished run's final ones) in eval mode, and their step."""
    from resnorm.load import load_model
    from resnorm.train.checkpoint import checkpoint_dir

    folder = checkpoint_dir(lab, run_id)
    steps = sorted(folder.glob("step-*.json")) if folder.is_dir() else []  # zero-padded steps
    if not steps:
        raise ConfigError("run", f"run {run_id} has no checkpoint in {folder}")
    model, _ = load_model(folder.parent, lab, device)
    return model, int(steps[-1].stem.removeprefix("step-"))


def _device(device: str) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError("--device", f"got {device!r}, expected auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "cuda: no CUDA device is available here")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


@torch.no_grad()
def evaluate(
    run: str,
    *,
    data: str | Path,
    lab: str | Path = "lab",
    name: str | None = None,
    batch_size: int = 8,
    device: str = "auto",
    store: bool = True,
    progress: bool = True,
) -> EvalResult:
    """Loss, bits per byte and perplexity of a byte-level run on the text at ``data``.

    Args:
        run: the run id (or a unique prefix) in ``lab``.
        data: a text file or a folder of them (read as training reads ``data.path``).
        lab: the lab folder holding the run.
        name: the name the rows are stored under; default: the file or folder name.
        batch_size: windows per forward pass.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        store: write the rows and the event to the run's store.
        progress: a progress bar on stderr.

    Raises:
        ConfigError: no such run, lab or text; the text is empty; the run is not byte-level or
            has no checkpoint.
    """
    from resnorm.config import RunConfig
    from resnorm.data import load_text
    from resnorm.runs import find_run, open_lab
    from resnorm.store import Store
    from resnorm.train.loop import token_loss_sum

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("--batch-size", f"got {batch_size!r}, expected an integer >= 1")
    with open_lab(lab) as reader:
        record = find_run(reader, run)
    cfg = RunConfig.from_dict({k: v for k, v in record.config.items() if k != "lab"})
    if cfg.data.source not in BYTE_SOURCES:
        raise ConfigError(
            "run",
            f"run {record.run_id} was trained on the synthetic {cfg.data.source!r} task, not "
            f"byte-level text: bits per byte of text mean nothing for it",
        )
    corpus = load_text(data, "--data")
    if len(corpus.data) < 2:
        raise ConfigError(
            "--data", f"{str(data)!r} holds {len(corpus.data)} bytes: nothing to predict"
        )
    model, step = _model(record.run_id, lab, _device(device))
    dev = next(model.parameters()).device
    stream = torch.frombuffer(bytearray(corpus.data), dtype=torch.uint8)
    pieces = windows(stream, cfg.data.seq_len)
    total, count = torch.zeros((), dtype=torch.float64), 0
    bar = tqdm(total=len(pieces), disable=not progress, desc=f"eval {record.run_id}", unit="window")
    try:
        for i in range(0, len(pieces), batch_size):
            group = pieces[i : i + batch_size]
            for length in sorted({len(x) for x, _ in group}):  # the short last window alone
                x = torch.stack([p[0] for p in group if len(p[0]) == length]).to(dev)
                y = torch.stack([p[1] for p in group if len(p[1]) == length]).to(dev)
                total += token_loss_sum(model(x), y).double().cpu()
                count += y.numel()
            bar.update(len(group))
    finally:
        bar.close()
    loss = float(total) / count
    label = name or Path(data).name or str(data)
    result = EvalResult(
        record.run_id, label, step, loss, loss / math.log(2), math.exp(loss), count,
        corpus.manifest(),
    )  # fmt: skip
    if store:
        with Store(lab) as writer:
            values = {"loss": loss, "bits_per_byte": result.bits_per_byte,
                      "perplexity": result.perplexity, "tokens": float(count)}  # fmt: skip
            writer.log_metrics(
                record.run_id, step, {f"eval/{label}/{k}": v for k, v in values.items()}
            )
            manifest = {k: v for k, v in corpus.manifest().items() if k != "files"}
            writer.log_event(record.run_id, "eval", result.line(), step=step, data=manifest)
    return result


# --- `resnorm eval` ------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``resnorm eval``."""
    parser.add_argument("run", metavar="RUN", help="run id (or a unique prefix)")
    parser.add_argument("--lab", default="lab", metavar="DIR", help="lab folder (default: lab)")
    parser.add_argument("--data", required=True, metavar="FILE_OR_FOLDER", help="held-out text")
    parser.add_argument("--name", help="store the rows as eval/NAME/... (default: file name)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--no-store", action="store_true", help="print only; store nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``resnorm eval``: one line of numbers on stdout."""
    result = evaluate(
        args.run, data=args.data, lab=args.lab, name=args.name, batch_size=args.batch_size,
        device=args.device, store=not args.no_store, progress=not args.no_progress,
    )  # fmt: skip
    print(result.line())
    return 0
