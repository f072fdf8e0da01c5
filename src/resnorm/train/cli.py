"""`resnorm train`: one run from a TOML config and dotted overrides.

Usage::

    resnorm train --config tiny.toml -o model.n_layers=24 -o train.lr=3e-4 [--lab DIR]
    resnorm train --from RUN -o train.steps=500 [--lab DIR]   # a new run from RUN's final state
    torchrun --nproc_per_node 2 -m resnorm train --config tiny.toml     # DDP, gloo on CPU

Running the same command again resumes an interrupted run and reports a finished one. Its
checkpoint is validated in full first: a damaged newest checkpoint is moved aside
(``damaged-step-*``, never deleted) and the run resumes from the previous good one, with a
warning and a ``checkpoint_damaged`` event; with no good one left the command refuses (exit 2)
and changes nothing, since starting over would replace the run's logged rows.
Exit status: 0 when the run ends ``done``, ``stuck`` or ``diverged`` (a diverged run is a
result, not an error); 130 when interrupted (SIGINT/SIGTERM: a checkpoint was written; run
the command again to resume); 2 for bad input (the message names the field; nothing written);
1 for an environment failure (disk full, read-only lab: one line, the run marked ``failed``
where the store can still be written, no temporary file left) or anything else.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

PROG = "resnorm train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``resnorm train`` (knobs belong in the config, not here)."""
    parser.add_argument("--config", "-c", metavar="FILE.toml", help="run config (TOML)")
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a config field, e.g. -o model.n_layers=24 -o train.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--lab", metavar="DIR", help="lab folder (default: the config's `lab`)")
    parser.add_argument(
        "--from",
        dest="parent",
        metavar="RUN",
        help="start a new run from this finished run's weights and optimizer state (its config, "
        "or --config's, with the overrides)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def run(args: argparse.Namespace) -> int:
    """Run ``resnorm train`` with parsed ``args``; returns the exit status."""
    from resnorm.config import load_config
    from resnorm.store.labpath import check_lab
    from resnorm.train.lineage import child_config
    from resnorm.train.loop import INTERRUPTED_EXIT, train

    # Errors propagate to the CLI's one handler (resnorm.cli.main): a ConfigError is exit 2,
    # an environment failure (disk full, read-only lab) exit 1, each one line from rank 0.
    if getattr(args, "parent", None):
        lab = args.lab or (load_config(args.config).lab if args.config else "lab")
        check_lab(lab, "--lab" if args.lab else "lab")  # the parent is read from it
        cfg = child_config(args.parent, lab, args.override, args.config)
    else:
        cfg = load_config(args.config, args.override)
    if args.lab:
        cfg = cfg.replace(lab=args.lab)
    # The lab, wherever it came from (--lab, -o lab=, the TOML's `lab`), and this run's
    # folders in it, before the store is opened or anything is written.
    check_lab(cfg.lab, "--lab" if args.lab else "lab", run_ids=[cfg.run_id])
    result = train(cfg, progress=not args.no_progress)
    if _is_main():
        where = f"{result.lab}/runs/{result.run_id}"
        if result.skipped:
            print(f"run {result.run_id} is already {result.status}; nothing to do ({where})")
        else:
            # Accuracy for the objectives whose loss alone says little (masked positions,
            # answers); exact match wherever the data has answers (the synthetic tasks).
            names = ["loss", "val_loss", "val_exact_match"]
            if cfg.data.objective != "causal_lm":
                names.insert(2, "val_accuracy")
            shown = {k: result.metrics[k] for k in names if k in result.metrics}
            numbers = ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
            print(f"run {result.run_id} {result.status} at step {result.step}: {numbers} ({where})")
        if result.detail:
            print(f"  {result.detail}")
    return INTERRUPTED_EXIT if result.status == "interrupted" else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m resnorm.train.cli ...``: exactly ``resnorm train ...`` (the same parser and
    the CLI's one error handler; what ``torchrun -m resnorm.train.cli`` runs)."""
    from resnorm.cli import main as cli_main  # the entry point only: the CLI sits above train

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
