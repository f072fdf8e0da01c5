"""`evaluate(run, ...)`: a trained run's held-out metrics for its objective, stored with it.

What a run is measured on depends on what it learned (``data.objective``):

============================  ==========================  ====================================
run                           held-out data               metrics (``eval/<name>/...``)
============================  ==========================  ====================================
decoder on text (causal_lm)   ``data``: a file or folder  ``loss``, ``bits_per_byte``,
                                                          ``perplexity``, ``tokens``
encoder (mlm)                 ``data``                    ``loss``, ``accuracy``, ``tokens``
encoder-decoder on text       ``data``                    ``loss``, ``accuracy``, ``tokens``
(span_corruption)
encoder-decoder on a pair     ``sequences`` fresh ones    ``exact_match``, ``token_accuracy``,
task (seq2seq)                of the run's task           ``loss``, ``teacher_forced_accuracy``,
                                                          ``sequences``, ``tokens``
============================  ==========================  ====================================

Text goes through the training pipeline's reader (`resnorm.data.load_text`: a file, or every
non-hidden file of a folder joined by the file separator byte) and is cut into consecutive
windows of the run's ``data.seq_len``. A causal LM predicts every byte but the first exactly
once, from the bytes before it in its window: the loss is nats per byte, bits per byte is
loss / ln 2 and perplexity is e^loss. A masked LM sees the text masked as in training (BERT's
15%, `resnorm.data.objectives.mask_tokens`) by a generator seeded with `MASK_SEED`, once over
the whole text, so the same bytes are masked in the same way on every evaluation whatever the
batch size; loss and accuracy are over the masked positions. Span corruption corrupts each
window in turn (`corrupt_spans`) from a generator seeded with `MASK_SEED` too; loss and accuracy
are teacher-forced over the decoder's targets (sentinels and spans).

A sequence-to-sequence run is evaluated on its own task: held-out sequence ``i`` is drawn from
a generator seeded by ``stream_seed("eval", i)`` (`EVAL_STREAM`), a stream disjoint from the
training batches' (``"train", seed, step``) and the validation batches' (``"val", index``), so
the first N are the same for every N and batch size. The decoder starts from SEP and decodes
greedily with the KV cache (`Transformer.generate`) until it emits SEP or has made as many
tokens as the longest answer plus the end token. ``exact_match``: share of sequences whose whole
answer and end token are generated; ``token_accuracy``: share of those target positions (answer
tokens and the end token) where the greedy output holds the target; ``loss`` and
``teacher_forced_accuracy``: the teacher-forced cross-entropy and argmax accuracy over the same
positions, as the training loop's ``val_loss`` and ``val_accuracy``.

The numbers are stored as metrics of the run at its final step, named ``eval/<name>/<metric>``
(``<name>`` defaults to the file or folder name, or the task's name), plus an ``eval`` event
describing the data (the text's path, size and sha256; the task, its parameters and the number
of sequences), so `resnorm runs show` and the store's readers see them beside the training
curves. Evaluating again under the same name replaces the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from resnorm.errors import ConfigError

#: Data sources whose tokens are bytes (synthetic tasks have their own vocabularies).
BYTE_SOURCES = ("builtin", "text", "hf")
#: Seeds the masking (mlm) and the span corruption (span_corruption) of evaluated text.
MASK_SEED = 0
#: Held-out task sequence ``i`` is drawn from ``torch.Generator().manual_seed(stream_seed(
#: EVAL_STREAM, i))``; training uses ("train", seed, step), validation ("val", batch).
EVAL_STREAM = "eval"
DEFAULT_SEQUENCES = 1000
#: Windows (text) or sequences (tasks) per forward pass when no batch size is given.
DEFAULT_BATCH = {"text": 8, "sequences": 100}
OBJECTIVE_NAMES = {
    "causal_lm": "causal LM",
    "mlm": "masked LM",
    "span_corruption": "span corruption",
    "seq2seq": "greedy decoding",
}


@dataclass(frozen=True)
class EvalResult:
    """What `evaluate` measured.

    Attributes:
        run_id: the run evaluated.
        name: the name its rows are stored under (``eval/<name>/...``).
        step: the step of the weights evaluated (a finished run's final step), where the
            rows are stored.
        objective: the run's objective (``causal_lm``, ``mlm``, ``span_corruption``,
            ``seq2seq``), which decides the metrics.
        metrics: every number stored, by metric name (see the module's table); the
            properties below read them.
        data: the text's manifest (path, files, bytes, sha256), or the task's (name,
            parameters, sequences, seed stream).
    """

    run_id: str
    name: str
    step: int
    objective: str
    metrics: dict[str, float]
    data: dict[str, Any]

    @property
    def loss(self) -> float:
        """Mean cross-entropy, nats per predicted token (teacher-forced for seq2seq)."""
        return self.metrics["loss"]

    @property
    def tokens(self) -> int:
        """Predicted tokens: every byte but the first (causal LM), the masked ones (mlm), the
        decoder targets (span corruption, seq2seq)."""
        return int(self.metrics["tokens"])

    @property
    def bits_per_byte(self) -> float:
        """``loss / ln 2`` (causal LM only)."""
        return self.metrics["bits_per_byte"]

    @property
    def perplexity(self) -> float:
        """``exp(loss)`` (causal LM only)."""
        return self.metrics["perplexity"]

    @property
    def accuracy(self) -> float:
        """Share of predicted tokens whose argmax is the target (mlm, span corruption)."""
        return self.metrics["accuracy"]

    @property
    def exact_match(self) -> float:
        """Share of sequences decoded exactly, end token included (seq2seq)."""
        return self.metrics["exact_match"]

    @property
    def token_accuracy(self) -> float:
        """Share of target positions the greedy output holds (seq2seq)."""
        return self.metrics["token_accuracy"]

    def line(self) -> str:
        m, head = self.metrics, f"run {self.run_id} on {self.name}"
        if self.objective == "causal_lm":
            return (
                f"{head} ({self.tokens} tokens): loss {self.loss:.4f} nats/token, "
                f"{self.bits_per_byte:.4f} bits/byte, perplexity {self.perplexity:.3f}"
            )
        if self.objective == "seq2seq":
            return (
                f"{head} ({int(m['sequences'])} held-out sequences, greedy): exact match "
                f"{self.exact_match:.4f}, token accuracy {self.token_accuracy:.4f}, "
                f"teacher-forced loss {self.loss:.4f} nats/token"
            )
        what = "masked" if self.objective == "mlm" else "target"
        return (
            f"{head} ({OBJECTIVE_NAMES[self.objective]}, {self.tokens} {what} tokens): loss "
            f"{self.loss:.4f} nats/token, accuracy {self.accuracy:.4f}"
        )


def windows(stream: torch.Tensor, seq_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(input, target)`` windows of ``seq_len`` covering ``stream[1:]`` once, in order; the
    last one is shorter when ``len(stream) - 1`` is not a multiple of ``seq_len``."""
    out = []
    for start in range(0, len(stream) - 1, seq_len):
        chunk = stream[start : start + seq_len + 1].long()
        out.append((chunk[:-1], chunk[1:]))
    return out


def _model(run_id: str, lab: str | Path, device: torch.device) -> tuple[Any, int]:
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


def _positive(flag: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(flag, f"got {value!r}, expected an integer >= 1")
    return value


# A piece of evaluated data: (model keyword inputs, targets), IGNORE_INDEX where unsupervised.
Piece = tuple[dict[str, Tensor], Tensor]


def _groups(pieces: list[Piece], batch_size: int) -> Iterator[Piece]:
    """``pieces`` stacked ``batch_size`` at a time, pieces of another shape (a short last
    window) in batches of their own."""

    def shapes(piece: Piece) -> tuple[tuple[int, ...], ...]:
        return (*(tuple(v.shape) for v in piece[0].values()), tuple(piece[1].shape))

    for i in range(0, len(pieces), batch_size):
        group = pieces[i : i + batch_size]
        for key in sorted({shapes(p) for p in group}):
            same = [p for p in group if shapes(p) == key]
            inputs = {k: torch.stack([x[k] for x, _ in same]) for k in same[0][0]}
            yield inputs, torch.stack([y for _, y in same])


def text_pieces(stream: Tensor, seq_len: int, objective: str) -> list[Piece]:
    """The evaluated windows of a byte ``stream`` for ``objective`` (see the module doc)."""
    from resnorm.data import objectives

    if objective == "causal_lm":
        return [({"input_ids": x}, y) for x, y in windows(stream, seq_len)]
    ids = stream.long()
    generator = torch.Generator().manual_seed(MASK_SEED)
    if objective == "mlm":
        masked, labels = objectives.mask_tokens(ids[None], generator)
        return [
            ({"input_ids": masked[0, i : i + seq_len]}, labels[0, i : i + seq_len])
            for i in range(0, len(ids), seq_len)
        ]
    assert objective == "span_corruption", f"no text evaluation for {objective!r}"
    out = []
    for i in range(0, len(ids), seq_len):
        window = ids[i : i + seq_len]
        if len(window) < 2:  # one byte has no span to corrupt and a byte to keep
            continue
        inputs, labels = objectives.corrupt_spans(window[None], generator)
        out.append(({k: v[0] for k, v in inputs.items()}, labels[0]))
    return out


def task_pieces(task: Any, n: int) -> list[Piece]:
    """Held-out sequences 0..n-1 of a pair task, each from its own `EVAL_STREAM` generator."""
    from resnorm.data import stream_seed

    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(stream_seed(EVAL_STREAM, i))
        inputs, labels = task.sample_seq2seq(1, g)
        out.append(({k: v[0] for k, v in inputs.items()}, labels[0]))
    return out


class _Sums:
    """Running sums of the metrics over batches."""

    def __init__(self) -> None:
        self.loss = torch.zeros((), dtype=torch.float64)
        self.tokens = self.correct = self.rows = self.exact = self.generated = 0

    def teacher_forced(self, logits: Tensor, y: Tensor) -> None:
        from resnorm.data import IGNORE_INDEX
        from resnorm.train.loop import token_loss_sum

        supervised = y != IGNORE_INDEX
        self.loss += token_loss_sum(logits, y).double().cpu()
        self.tokens += int(supervised.sum())
        self.correct += int(((logits.argmax(dim=-1) == y) & supervised).sum())

    def greedy(self, out: Tensor, y: Tensor) -> None:
        """``out``: the decoded tokens after the start token, compared with targets ``y``."""
        from resnorm.data import IGNORE_INDEX

        supervised = y != IGNORE_INDEX
        width = y.shape[1]
        out = torch.nn.functional.pad(out[:, :width], (0, width - min(out.shape[1], width)))
        hit = (out == y) & supervised
        self.generated += int(hit.sum())
        self.exact += int((hit == supervised).all(dim=1).sum())
        self.rows += y.shape[0]


@torch.no_grad()
def evaluate(
    run: str,
    *,
    data: str | Path | None = None,
    sequences: int | None = None,
    lab: str | Path = "lab",
    name: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    store: bool = True,
    progress: bool = True,
) -> EvalResult:
    """The held-out metrics of ``run`` for its objective (see the module's table).

    Args:
        run: the run id (or a unique prefix) in ``lab``.
        data: held-out text, a file or a folder (read as training reads ``data.path``), for a
            run trained on text; None for a run trained on a pair task.
        sequences: held-out sequences of a pair-task run (default `DEFAULT_SEQUENCES`).
        lab: the lab folder holding the run.
        name: the name the rows are stored under; default: the file or folder name, or the
            task's name.
        batch_size: windows or sequences per forward pass (default `DEFAULT_BATCH`).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        store: write the rows and the event to the run's store.
        progress: a progress bar on stderr.

    Raises:
        ConfigError: no such run, lab or text; the text is empty or too short for the
            objective; ``data`` missing for a text run or given for a task run;
            ``sequences`` given for a text run; a decoder trained on a task (its task metrics
            are the run's own ``val_*``); a run without a checkpoint.
    """
    from resnorm.config import RunConfig
    from resnorm.data import IGNORE_INDEX, load_text
    from resnorm.runs import find_run, open_lab
    from resnorm.store import Store

    if batch_size is not None:
        _positive("--batch-size", batch_size)
    if sequences is not None:
        _positive("--sequences", sequences)
    with open_lab(lab) as reader:
        record = find_run(reader, run)
    cfg = RunConfig.from_dict({k: v for k, v in record.config.items() if k != "lab"})
    source, kind, rid = cfg.data.source, cfg.model.kind, record.run_id
    objective = cfg.data.objective if cfg.data.objective != "auto" else "causal_lm"
    on_text = source in BYTE_SOURCES
    if not on_text and objective != "seq2seq":
        raise ConfigError(
            "run",
            f"run {rid} was trained on the synthetic {source!r} task, not byte-level text, "
            f"and is a {kind}: its task metrics are the run's own val_loss, val_accuracy and "
            f"val_exact_match (resnorm runs show {rid}); resnorm eval measures runs on "
            f"held-out text (--data) and encoder-decoders on held-out task sequences",
        )
    if on_text and data is None:
        raise ConfigError(
            "--data",
            f"run {rid} was trained on byte-level text ({OBJECTIVE_NAMES[objective]}): give "
            f"held-out text with --data FILE_OR_FOLDER",
        )
    if on_text and sequences is not None:
        raise ConfigError(
            "--sequences",
            f"counts held-out task sequences; run {rid} was trained on text: use --data",
        )
    if not on_text and data is not None:
        raise ConfigError(
            "--data",
            f"run {rid} was trained on the {source!r} task: it is evaluated on fresh held-out "
            f"sequences of that task, not on text; drop --data (--sequences N sets how many)",
        )
    decode: Callable[[Any, dict[str, Tensor]], Tensor] | None = None
    if on_text:
        assert data is not None
        corpus = load_text(data, "--data")
        if len(corpus.data) < 2:
            raise ConfigError(
                "--data", f"{str(data)!r} holds {len(corpus.data)} bytes: nothing to predict"
            )
        stream = torch.frombuffer(bytearray(corpus.data), dtype=torch.uint8)
        pieces = text_pieces(stream, cfg.data.seq_len, objective)
        if not any(bool((y != IGNORE_INDEX).any()) for _, y in pieces):
            raise ConfigError(
                "--data",
                f"{str(data)!r} ({len(corpus.data)} bytes): the masking chose none of its "
                f"bytes (15% on average): give more text",
            )
        label = name or Path(data).name or str(data)
        manifest = corpus.manifest()
        unit = "window"
    else:
        task = cfg.data.source_params()
        n = sequences if sequences is not None else DEFAULT_SEQUENCES
        pieces = task_pieces(task, n)
        label = name or source
        manifest = {
            "task": source,
            "params": dataclasses.asdict(task),
            "sequences": n,
            "seed_stream": f"stream_seed({EVAL_STREAM!r}, i)",
        }
        unit = "seq"
        decode = _decoder(task)
    model, step = _model(rid, lab, _device(device))
    dev = next(model.parameters()).device
    size = batch_size or DEFAULT_BATCH["text" if on_text else "sequences"]
    sums = _Sums()
    bar = tqdm(total=len(pieces), disable=not progress, desc=f"eval {rid}", unit=unit)
    try:
        for inputs, y in _groups(pieces, size):
            inputs, y = {k: v.to(dev) for k, v in inputs.items()}, y.to(dev)
            sums.teacher_forced(model(**inputs), y)
            if decode is not None:
                sums.greedy(decode(model, inputs), y)
            bar.update(y.shape[0])
    finally:
        bar.close()
    metrics = _metrics(objective, sums)
    result = EvalResult(rid, label, step, objective, metrics, manifest)
    if store:
        with Store(lab) as writer:
            writer.log_metrics(rid, step, {f"eval/{label}/{k}": v for k, v in metrics.items()})
            event = {k: v for k, v in manifest.items() if k != "files"}
            writer.log_event(rid, "eval", result.line(), step=step, data=event)
    return result


def _decoder(task: Any) -> Callable[[Any, dict[str, Tensor]], Tensor]:
    """Greedy decoding of a pair task's batch: the tokens after the start token (SEP)."""
    steps = task.max_target_len + 1  # the longest answer and its end token

    def decode(model: Any, inputs: dict[str, Tensor]) -> Tensor:
        out = model.generate(
            inputs["input_ids"], steps, temperature=0, attention_mask=inputs.get("attention_mask"),
            start_token=task.SEP, end_token=task.SEP, pad_token=task.PAD,
        )  # fmt: skip
        return out[:, 1:]  # type: ignore[no-any-return]

    return decode


def _metrics(objective: str, s: _Sums) -> dict[str, float]:
    loss = float(s.loss) / s.tokens
    if objective == "causal_lm":
        return {"loss": loss, "bits_per_byte": loss / math.log(2),
                "perplexity": math.exp(loss), "tokens": float(s.tokens)}  # fmt: skip
    accuracy = s.correct / s.tokens
    if objective == "seq2seq":
        return {
            "exact_match": s.exact / s.rows,
            "token_accuracy": s.generated / s.tokens,
            "loss": loss,
            "teacher_forced_accuracy": accuracy,
            "sequences": float(s.rows),
            "tokens": float(s.tokens),
        }
    return {"loss": loss, "accuracy": accuracy, "tokens": float(s.tokens)}


# --- `resnorm eval` ------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``resnorm eval``."""
    parser.add_argument("run", metavar="RUN", help="run id (or a unique prefix)")
    parser.add_argument("--lab", default="lab", metavar="DIR", help="lab folder (default: lab)")
    parser.add_argument(
        "--data", metavar="FILE_OR_FOLDER", help="held-out text (runs trained on text)"
    )
    parser.add_argument(
        "--sequences",
        type=int,
        metavar="N",
        help=f"held-out sequences of an encoder-decoder's task (default {DEFAULT_SEQUENCES})",
    )
    parser.add_argument(
        "--name", help="store the rows as eval/NAME/... (default: file or task name)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help=f"windows ({DEFAULT_BATCH['text']}) or sequences ({DEFAULT_BATCH['sequences']}) "
        "per forward pass",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--no-store", action="store_true", help="print only; store nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``resnorm eval``: one line of numbers on stdout."""
    result = evaluate(
        args.run, data=args.data, sequences=args.sequences, lab=args.lab, name=args.name,
        batch_size=args.batch_size, device=args.device, store=not args.no_store,
        progress=not args.no_progress,
    )  # fmt: skip
    print(result.line())
    return 0
