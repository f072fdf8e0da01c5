"""The ``resnorm`` command: a table of subcommand name -> one library function, and one error
handler (`main`) for all of them.

Bad input (a ConfigError) prints one line naming the field and exits with status 2; a damaged
store (a StoreError) prints one line naming the file, and an environment failure (disk full, a
read-only lab: OSError, sqlite3.Error) one line saying what to do, both with status 1. Under
``torchrun`` only rank 0 prints. ``resnorm --debug COMMAND`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from resnorm.errors import ConfigError
from resnorm.store.integrity import StoreError

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A command line argparse refuses (an unknown flag, a flag without its value)."""

    def __init__(self, prog: str, message: str) -> None:
        self.prog = prog
        super().__init__(message)


class Parser(argparse.ArgumentParser):
    """argparse, raising its usage errors to `main`'s handler instead of exiting from inside
    (subcommand parsers are of the same class)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def _topologies(args: argparse.Namespace) -> int:
    from resnorm.catalog import text_table, topologies_markdown, topology_rows

    if args.markdown:
        print(topologies_markdown())
    else:
        print(text_table(("name", "family", "per sublayer", "source"), topology_rows()))
    return 0


def _norms(args: argparse.Namespace) -> int:
    from resnorm.catalog import norm_rows, text_table

    print(text_table(("name", "y =", "source"), norm_rows()))
    return 0


INSPECT_HELP = """\
Probes at initialization on a seeded random batch, one table per topology x depth.

The model of every cell is the small default shape (d_model 64, 4 heads, vocab 256), or the
[model] table of --config, with each -o model.KEY=VALUE applied on top. The comparison's axes
are --topologies and --depths; when not given they are post_ln,pre_ln and 6,12,24, unless the
config or an -o sets model.topology or model.n_layers, which then fixes that axis (so
-o model.topology=deepnorm compares DeepNorm at depths 6, 12 and 24, and -o model.d_model=128
runs the default comparison at width 128)."""


def _items(flag: str, text: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise ConfigError(flag, f"{text!r} has an empty entry; expected a comma-separated list")
    return items


def _inspect(args: argparse.Namespace) -> int:
    from resnorm.config import apply_override, read_toml
    from resnorm.diagnostics.inspect import SMALL, inspect_comparison
    from resnorm.nn.config import ModelConfig
    from resnorm.typed import check_depth

    tree = read_toml(args.config) if args.config else {"model": dict(SMALL)}
    for override in args.override:
        if not override.startswith("model."):
            raise ConfigError("override", f"{override!r}: inspect builds a model; set model.KEY")
        apply_override(tree, override)
    check_depth(tree, "override")
    given = tree.get("model", {})
    if not isinstance(given, dict):
        raise ConfigError("model", f"got {given!r}, expected a table ([model])")
    fields = ModelConfig.from_dict(given).to_dict()
    fixed = set(given) if args.config is None else {"topology", "n_layers"}
    topology, depth = fields.pop("topology"), fields.pop("n_layers")
    if args.topologies:
        topologies = _items("--topologies", args.topologies)
    else:
        topologies = [topology] if "topology" in fixed else ["post_ln", "pre_ln"]
    if args.depths:
        items = _items("--depths", args.depths)
        if not all(d.isdigit() and len(d) < 10 for d in items):
            raise ConfigError("--depths", f"{args.depths!r}: expected integers, e.g. 6,12,24")
        depths = [int(d) for d in items]
    else:
        depths = [depth] if "n_layers" in fixed else [6, 12, 24]
    probes = _items("--probes", args.probes)
    shape = {"batch_size": args.batch_size, "seq_len": args.seq_len, "seed": args.seed}
    print(inspect_comparison(topologies, depths, probes=probes, **shape, **fields))
    return 0


def _add_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE.toml", help="the model: this config's [model]")
    p.add_argument("-o", "--override", action="append", default=[], metavar="model.KEY=VALUE")
    p.add_argument("--topologies", help="comparison: topologies (default: post_ln,pre_ln)")
    p.add_argument("--depths", help="comparison: depths (default: 6,12,24)")
    p.add_argument(
        "--probes", default="grad_norm,stream_rms", help="probe names (a wrong one lists all)"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64, help="at most model.max_seq_len")
    p.add_argument("--seed", type=int, default=0)


def _doctor(args: argparse.Namespace) -> int:
    from resnorm.doctor import doctor, format_doctor, format_store

    if args.lab is not None:
        from resnorm.store.integrity import store_health

        health = store_health(args.lab)
        print(format_store(health))
        return 1 if health["state"] == "damaged" else 0
    print(format_doctor(doctor(seconds=args.seconds)))
    return 0


def _delegate(target: str) -> tuple[Callable[[argparse.ArgumentParser], None], Handler]:
    """A subcommand implemented by ``add_arguments`` / ``run`` of ``module`` or ``module:obj``."""
    module, _, attr = target.partition(":")

    def owner() -> object:
        found = importlib.import_module(module)
        return getattr(found, attr) if attr else found

    def add(p: argparse.ArgumentParser) -> None:
        owner().add_arguments(p)  # type: ignore[attr-defined]

    def run(args: argparse.Namespace) -> int:
        return int(owner().run(args))  # type: ignore[attr-defined]

    return add, run


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="resnorm", description="Residual and normalization topologies of transformers."
    )
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show its traceback (not one line)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("topologies", help="list every topology with its equation and source")
    p.add_argument("--markdown", action="store_true", help="as the README's Markdown table")
    p.set_defaults(handler=_topologies)
    sub.add_parser("norms", help="list every norm").set_defaults(handler=_norms)
    p = sub.add_parser(
        "inspect",
        help="probes at initialization (default: post_ln vs pre_ln)",
        description=INSPECT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_inspect(p)
    p.set_defaults(handler=_inspect)
    p = sub.add_parser("doctor", help="this machine: CPU/GPU, BLAS, matmul peaks, precision")
    p.add_argument(
        "--seconds", type=float, default=3.0, help="time spent measuring peaks (0 < s <= 60)"
    )
    p.add_argument("--lab", help="instead: the state of this lab's store (ok, damaged, version)")
    p.set_defaults(handler=_doctor)
    for name, module, help_ in SUBCOMMANDS:
        add, run = _delegate(module)
        p = sub.add_parser(name, help=help_, description=help_)
        add(p)
        p.set_defaults(handler=run)
    return parser


# Subcommands that live with the library function they call.
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("train", "resnorm.train.cli", "train one run (resumes an interrupted one)"),
    ("sample", "resnorm.generate", "text from a byte-level decoder; examples of a seq2seq run"),
    ("eval", "resnorm.evaluation", "a run's held-out metrics for its objective"),
    ("runs", "resnorm.runs", "the runs of a lab: list | show RUN"),
    ("export", "resnorm.interop.cli", "a run as a Hugging Face folder (--hf DIR)"),
    ("study", "resnorm.studies.cli", "built-in and user studies: list | run NAME | status"),
    ("report", "resnorm.studies.cli:Report", "write the HTML report of a lab folder"),
    ("demo", "resnorm.studies.cli:Demo", "the quick built-in studies and their report"),
]


def _check_lab_paths(args: argparse.Namespace) -> None:
    """Refuse a lab path that cannot be a lab folder (a file, a database file name, a place
    where no folder can be made) before any command starts work (issue 12, item 6)."""
    from resnorm.store.labpath import check_lab

    if isinstance(getattr(args, "lab", None), str):
        check_lab(args.lab, "--lab")
    for override in getattr(args, "override", None) or ():
        key, sep, value = str(override).partition("=")
        if sep and key.strip() == "lab":
            check_lab(value.strip().strip("'\""), "lab")


# What to do after an environment failure, for the commands that resume where they stopped.
RESUMES = {"train": "it resumes from the last checkpoint"}


def environment_message(exc: BaseException, command: str) -> str:
    """One line for an environment failure (a started run is already marked ``failed``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, sqlite3.Error):
        text = f"the lab's store: {text}"
    again = "run the same command again" + (f": {RESUMES[command]}" if command in RESUMES else "")
    return f"{text} (disk full or not writable?); free space or fix permissions, then {again}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``resnorm ARGV``: the one place where errors become one line and an exit status."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:  # one line (argparse would print the whole usage, then exit)
        print(f"{e.prog}: error: {e} (see {e.prog} --help)", file=sys.stderr)
        return 2
    try:
        _check_lab_paths(args)
        return int(args.handler(args))
    except (ConfigError, StoreError, OSError, sqlite3.Error) as e:
        if args.debug:
            raise
        if isinstance(e, ConfigError | StoreError):
            line, status = str(e), 2 if isinstance(e, ConfigError) else 1
        else:  # the environment, not the input
            line, status = environment_message(e, args.command), 1
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
            print(f"{_prog(args)}: error: {line}", file=sys.stderr)
        return status
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training's own handler
        if args.command in INTERRUPTIBLE:
            print(f"\n{_prog(args)}: interrupted; {INTERRUPTIBLE[args.command]}", file=sys.stderr)
        return 130


#: Commands a Ctrl-C interrupts with nothing lost, and what to do next.
INTERRUPTIBLE = {
    "study": "run the same command again to resume",
    "demo": "run the same command again to resume",
    "report": "run the same command again",
}


def _prog(args: argparse.Namespace) -> str:
    """``resnorm COMMAND [VERB]``: how the user called it (``resnorm study run``)."""
    verb = getattr(args, "verb", None)
    return f"resnorm {args.command}" + (f" {verb}" if verb else "")
