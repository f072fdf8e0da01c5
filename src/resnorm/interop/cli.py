"""`resnorm export RUN [--lab LAB] --hf DIR`: a trained run as a Hugging Face folder (or, when no
Hugging Face architecture computes it, a resnorm folder and the reason). See `export.to_hf`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", metavar="RUN", help="a run id (or its start) in --lab, or a run folder"
    )
    parser.add_argument("--lab", metavar="DIR", default="lab", help="lab folder (default: lab)")
    parser.add_argument(
        "--hf", metavar="DIR", required=True, help="the folder to write (new or empty)"
    )


def run(args: argparse.Namespace) -> int:
    from resnorm.interop.export import check_out_dir, to_hf
    from resnorm.load import load_model

    check_out_dir(Path(args.hf), "--hf")  # before the weights are read
    model, cfg = load_model(args.run, args.lab)
    print(to_hf(model, cfg, args.hf).summary())
    return 0
