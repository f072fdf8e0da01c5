"""Byte-level text corpora (vocab 256): a local file or folder, the built-in corpus, or a Hugging
Face `datasets` source.

Each loader returns a `Corpus`: the byte stream plus what a run records about it (the files, the
size and the sha256 of the stream). Files are concatenated in sorted order with one
`FILE_SEPARATOR` byte between them.

The built-in corpus needs no download: it is a fixed, sorted list of the Python standard library's
own source files (`BUILTIN_FILES`, ~1.4 MB), chosen to exist as plain files in every CPython from
3.10 on (no module that became a package, was removed, or is split off by distributions, such as
`re`, `pathlib`, `zipfile`, `string`, `tkinter`). Their contents differ between Python versions,
so the manifest records the Python version and the hash; compare hashes, not names.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnorm.errors import ConfigError, choice_error

FILE_SEPARATOR = 0x1C
"""Byte between concatenated files: ASCII "file separator", absent from ordinary text."""

VOCAB_SIZE = 256

BUILTIN_FILES: tuple[str, ...] = (
    "abc.py",
    "ast.py",
    "asyncio/events.py",
    "asyncio/locks.py",
    "asyncio/queues.py",
    "base64.py",
    "bisect.py",
    "calendar.py",
    "cmd.py",
    "collections/__init__.py",
    "colorsys.py",
    "concurrent/futures/_base.py",
    "concurrent/futures/thread.py",
    "configparser.py",
    "contextlib.py",
    "copy.py",
    "csv.py",
    "dataclasses.py",
    "dis.py",
    "email/feedparser.py",
    "email/message.py",
    "email/utils.py",
    "fnmatch.py",
    "fractions.py",
    "functools.py",
    "getopt.py",
    "gettext.py",
    "glob.py",
    "graphlib.py",
    "heapq.py",
    "hmac.py",
    "html/parser.py",
    "http/cookies.py",
    "json/__init__.py",
    "json/decoder.py",
    "json/encoder.py",
    "json/scanner.py",
    "linecache.py",
    "logging/config.py",
    "multiprocessing/queues.py",
    "numbers.py",
    "operator.py",
    "os.py",
    "pprint.py",
    "queue.py",
    "random.py",
    "reprlib.py",
    "sched.py",
    "selectors.py",
    "shlex.py",
    "shutil.py",
    "statistics.py",
    "tempfile.py",
    "textwrap.py",
    "threading.py",
    "timeit.py",
    "tokenize.py",
    "traceback.py",
    "types.py",
    "urllib/parse.py",
    "uuid.py",
    "warnings.py",
    "weakref.py",
)
"""Paths relative to `sysconfig.get_paths()["stdlib"]`, sorted."""


@dataclass(frozen=True)
class Corpus:
    """A byte stream and its provenance."""

    data: bytes
    source: str
    files: tuple[str, ...]
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """What a run records about its text: source, files, size, hash (JSON-ready)."""
        return {
            "source": self.source,
            "files": list(self.files),
            "n_files": len(self.files),
            "n_bytes": len(self.data),
            "sha256": self.sha256,
            **self.extra,
        }


def _join(parts: list[bytes]) -> tuple[bytes, str]:
    data = bytes([FILE_SEPARATOR]).join(parts)
    return data, hashlib.sha256(data).hexdigest()


def load_builtin() -> Corpus:
    """The built-in corpus: `BUILTIN_FILES` read from this Python's standard library."""
    root = Path(sysconfig.get_paths()["stdlib"])
    missing = [rel for rel in BUILTIN_FILES if not (root / rel).is_file()]
    if missing:
        raise ConfigError(
            "data.source",
            f"the built-in corpus needs {', '.join(missing)} from the Python standard library, "
            f"which this installation ({root}) lacks; use data.source = 'text' with data.path",
        )
    data, digest = _join([(root / rel).read_bytes() for rel in BUILTIN_FILES])
    extra = {"python": platform.python_version()}
    return Corpus(data, "builtin", BUILTIN_FILES, digest, extra)


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def load_text(path: str | os.PathLike[str], field_name: str = "data.path") -> Corpus:
    """Bytes of a file, or of every file under a folder (recursively, sorted by relative path,
    hidden files and folders such as `.git` skipped)."""
    root = Path(path)
    if root.is_file():
        data, digest = _join([root.read_bytes()])
        return Corpus(data, "text", (root.name,), digest, {"path": str(root)})
    if not root.is_dir():
        raise ConfigError(field_name, f"no such file or folder: {str(root)!r}")
    rels = sorted(
        (p.relative_to(root) for p in root.rglob("*") if p.is_file()),
        key=lambda rel: rel.as_posix(),
    )
    rels = [rel for rel in rels if not _is_hidden(rel)]
    if not rels:
        raise ConfigError(field_name, f"folder {str(root)!r} holds no (non-hidden) files")
    data, digest = _join([(root / rel).read_bytes() for rel in rels])
    files = tuple(rel.as_posix() for rel in rels)
    return Corpus(data, "text", files, digest, {"path": str(root)})


def load_hf(path: str, split: str = "train", text_column: str = "text") -> Corpus:
    """UTF-8 bytes of one text column of a Hugging Face dataset, rows joined by FILE_SEPARATOR.

    `path` is a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`, or a name
    `datasets.load_dataset` resolves (which may download). Needs `pip install datasets`.
    """
    try:
        import datasets  # optional dependency, imported only when asked for
    except ImportError:
        raise ConfigError(
            "data.source",
            "source 'hf' needs the Hugging Face datasets package: pip install datasets",
        ) from None
    if Path(path).is_dir():
        ds = datasets.load_from_disk(path)
    else:
        try:
            ds = datasets.load_dataset(path, split=split)
        except Exception as e:  # datasets raises several types for "not found"
            raise ConfigError("data.path", f"cannot load dataset {path!r}: {e}") from e
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise choice_error("data.params.split", split, list(ds))
        ds = ds[split]
    if text_column not in ds.column_names:
        raise choice_error("data.params.text_column", text_column, ds.column_names)
    data, digest = _join([str(t).encode("utf-8") for t in ds[text_column]])
    extra = {"path": path, "split": split, "text_column": text_column, "n_rows": len(ds)}
    return Corpus(data, "hf", (), digest, extra)
