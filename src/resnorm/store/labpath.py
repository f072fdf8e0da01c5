"""Whether a path can be a lab folder, checked at the boundary (before anything is written).

A lab is a folder: its store is ``<lab>/resnorm.sqlite``, beside ``runs/``, ``studies/``,
``work/`` and ``report/``. A path that is a file, that names a database file, whose nearest
existing parent is a file or cannot hold a new folder (``/proc/x``), or whose lab subfolders
are files, is refused with one :class:`~resnorm.errors.ConfigError` naming it, instead of a
``NotADirectoryError`` traceback after the store was created in the wrong place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from resnorm.errors import ConfigError
from resnorm.store.schema import DB_NAME, DB_SUFFIXES

#: The folders a lab keeps beside its store.
SUBFOLDERS = ("runs", "studies", "work", "report")


def check_lab(path: str | Path, field: str = "lab", run_ids: Iterable[str] = ()) -> Path:
    """Validate ``path`` as a lab folder without creating it; returns it as a `Path`.

    Args:
        path: The lab folder, existing or to be created.
        field: The name shown in the error (``--lab``, ``lab``).
        run_ids: Runs about to be written: their folders (``runs/<id>``, ``work/<id>``) must
            not be files.

    Raises:
        ConfigError: If it cannot be a lab folder (the message says why and what to give).
    """
    text = os.fspath(path)
    if not text or "\x00" in text:
        raise ConfigError(field, f"{text!r} is not a usable folder name")
    lab = Path(text).expanduser()
    if lab.exists() and not lab.is_dir():
        raise ConfigError(
            field,
            f"{lab} is a file, not a lab folder; give a folder (its store is <lab>/{DB_NAME})",
        )
    if not lab.exists():
        if lab.suffix.lower() in DB_SUFFIXES:
            raise ConfigError(
                field,
                f"{lab} names a database file; a lab is a folder (its store is "
                f"<lab>/{DB_NAME}): give a folder such as {lab.with_suffix('')}",
            )
        _check_creatable(lab, field)
        return lab
    subs = [*SUBFOLDERS, *(f"{top}/{run_id}" for run_id in run_ids for top in ("runs", "work"))]
    for name in subs:
        sub = lab / name
        if sub.exists() and not sub.is_dir():
            raise ConfigError(
                field, f"{sub} is a file where the lab keeps a folder; move it aside and run again"
            )
    return lab


def _check_creatable(lab: Path, field: str) -> None:
    """Refuse ``lab`` if its nearest existing parent is not a folder that can hold a new one."""
    parent = lab.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(field, f"cannot create the lab folder {lab}: {parent} is a file")
    try:  # the only sure test (permissions, read-only or pseudo file systems): try, leave nothing
        os.rmdir(tempfile.mkdtemp(prefix=".resnorm-probe-", dir=parent))
    except OSError as exc:
        raise ConfigError(
            field, f"cannot create the lab folder {lab} in {parent} ({exc.strerror})"
        ) from None
