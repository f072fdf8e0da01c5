"""Byte-level text sources: the built-in corpus is fixed and hashed, files and folders are read
in sorted order, missing inputs name their field, and the optional `datasets` source either works
or says how to install it."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from resnorm.data import BUILTIN_FILES, FILE_SEPARATOR, DataConfig, build_data
from resnorm.data.text import load_builtin, load_text
from resnorm.errors import ConfigError

SEP = bytes([FILE_SEPARATOR])


def test_builtin_file_list_is_fixed_sorted_and_unique() -> None:
    assert list(BUILTIN_FILES) == sorted(set(BUILTIN_FILES))
    assert 40 <= len(BUILTIN_FILES) <= 80
    assert all(p.endswith(".py") and not p.startswith("/") for p in BUILTIN_FILES)


def test_builtin_corpus_manifest_is_stable_across_loads_and_sized_one_to_two_mb() -> None:
    a, b = load_builtin(), load_builtin()
    assert a.data == b.data
    assert a.manifest() == b.manifest()
    m = a.manifest()
    assert m["sha256"] == hashlib.sha256(a.data).hexdigest()
    assert 1_000_000 <= m["n_bytes"] <= 2_000_000
    assert m["files"] == list(BUILTIN_FILES) and m["n_files"] == len(BUILTIN_FILES)
    assert m["source"] == "builtin" and m["python"]


def test_builtin_corpus_is_the_listed_files_joined_by_the_separator() -> None:
    corpus = load_builtin()
    parts = corpus.data.split(SEP)
    assert len(parts) == len(BUILTIN_FILES)  # no stdlib source contains the separator byte
    assert b"def " in parts[BUILTIN_FILES.index("json/decoder.py")]
    assert b"class OrderedDict" in parts[BUILTIN_FILES.index("collections/__init__.py")]


def test_text_file_source_reads_exactly_the_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    path.write_bytes(b"hello \xff world\n")
    corpus = load_text(path)
    assert corpus.data == b"hello \xff world\n"
    assert corpus.files == ("book.txt",)
    assert corpus.sha256 == hashlib.sha256(corpus.data).hexdigest()


def test_text_folder_source_concatenates_sorted_files_with_the_separator(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "b.txt").write_bytes(b"BBB")
    (tmp_path / "a.txt").write_bytes(b"AAA")
    (tmp_path / "sub" / "c.txt").write_bytes(b"CCC")
    (tmp_path / ".hidden").write_bytes(b"no")
    (tmp_path / ".git" / "HEAD").write_bytes(b"no")
    corpus = load_text(tmp_path)
    assert corpus.files == ("a.txt", "b.txt", "sub/c.txt")
    assert corpus.data == SEP.join([b"AAA", b"BBB", b"CCC"])
    assert corpus.manifest()["n_bytes"] == 11


def test_missing_text_path_raises_config_error_naming_data_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="no such file or folder") as e:
        build_data(DataConfig(source="text", path=str(missing)))
    assert e.value.field == "data.path"
    assert str(missing) in str(e.value)


def test_empty_folder_raises_config_error_naming_data_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no \\(non-hidden\\) files") as e:
        load_text(tmp_path)
    assert e.value.field == "data.path"


def test_hf_source_without_the_datasets_package_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # what `import datasets` sees without it
    cfg = DataConfig(source="hf", path=str(tmp_path / "ds"), seq_len=8, batch_size=2)
    with pytest.raises(ConfigError, match="pip install datasets") as e:
        build_data(cfg)
    assert e.value.field == "data.source"


def test_hf_source_reads_a_local_dataset(tmp_path: Path) -> None:
    """`datasets` is a dev dependency: this runs in CI, on a folder saved locally (no hub)."""
    import datasets

    folder = tmp_path / "ds"
    cfg = DataConfig(source="hf", path=str(folder), seq_len=8, batch_size=2)

    rows = [f"row {i}: " + "é" * 40 for i in range(10)]
    datasets.Dataset.from_dict({"text": rows, "n": list(range(10))}).save_to_disk(str(folder))
    data = build_data(cfg)
    assert data.vocab_size == 256
    assert data.manifest()["n_bytes"] == len(SEP.join(r.encode() for r in rows))
    assert data.manifest()["n_rows"] == 10
    x, _ = data.train_batch(0)
    assert x.shape == (2, 8)
    with pytest.raises(ConfigError) as bad:
        build_data(DataConfig(source="hf", path=str(folder), params={"text_column": "txt"}))
    assert bad.value.field == "data.params.text_column"
