"""The ``resnorm`` command: each subcommand is a thin call of one library function.

Bad input (a ConfigError) prints one line naming the field and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from resnorm.errors import ConfigError

Handler = Callable[[argparse.Namespace], int]


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


def _inspect(args: argparse.Namespace) -> int:
    from resnorm.diagnostics.inspect import format_table, inspect_comparison, inspect_model

    probes = tuple(args.probes.split(","))
    if args.config or args.override:
        from resnorm.config import load_config

        cfg = load_config(args.config, args.override).model
        records = inspect_model(
            cfg, batch_size=args.batch_size, seq_len=args.seq_len, seed=args.seed, probes=probes
        )
        print(format_table({f"{cfg.topology} L={cfg.n_layers}": records}))
        return 0
    print(
        inspect_comparison(
            tuple(args.topologies.split(",")),
            tuple(int(d) for d in args.depths.split(",")),
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            seed=args.seed,
            probes=probes,
        )
    )
    return 0


def _add_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE.toml", help="inspect this run config's model")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--topologies", default="post_ln,pre_ln", help="comparison: topologies")
    p.add_argument("--depths", default="6,12,24", help="comparison: depths")
    p.add_argument("--probes", default="grad_norm,stream_rms")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)


def _doctor(args: argparse.Namespace) -> int:
    from resnorm.doctor import doctor, format_doctor

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
    parser = argparse.ArgumentParser(
        prog="resnorm", description="Residual and normalization topologies of transformers."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("topologies", help="list every topology with its equation and source")
    p.add_argument("--markdown", action="store_true", help="as the README's Markdown table")
    p.set_defaults(handler=_topologies)
    sub.add_parser("norms", help="list every norm").set_defaults(handler=_norms)
    p = sub.add_parser("inspect", help="probes at initialization (default: post_ln vs pre_ln)")
    _add_inspect(p)
    p.set_defaults(handler=_inspect)
    p = sub.add_parser("doctor", help="this machine: CPU/GPU, BLAS, matmul peaks, precision")
    p.add_argument("--seconds", type=float, default=3.0, help="time spent measuring peaks")
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
    ("study", "resnorm.studies.cli", "built-in and user studies: list | run NAME | status"),
    ("report", "resnorm.studies.cli:Report", "write the HTML report of a lab folder"),
    ("demo", "resnorm.studies.cli:Demo", "the quick built-in studies and their report"),
]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as e:
        print(f"resnorm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
