"""Data for training runs: synthetic tasks, byte-level text corpora, deterministic batching.

`build_data(DataConfig(...))` gives a `Data` whose `train_batch(step, rank, world_size)` is a
pure function of (config, step), so runs resume without replay and data-parallel ranks split one
global batch.
"""

from __future__ import annotations

from resnorm.data.loader import (
    SOURCES,
    Data,
    DataConfig,
    HFParams,
    TaskData,
    TextData,
    build_data,
    stream_seed,
)
from resnorm.data.synthetic import (
    IGNORE_INDEX,
    TASKS,
    AssociativeRecallParams,
    CopyParams,
    LongRangeParams,
    ReverseParams,
    SortingParams,
    TaskParams,
)
from resnorm.data.text import (
    BUILTIN_FILES,
    FILE_SEPARATOR,
    Corpus,
    load_builtin,
    load_hf,
    load_text,
)

__all__ = [
    "BUILTIN_FILES",
    "FILE_SEPARATOR",
    "IGNORE_INDEX",
    "SOURCES",
    "TASKS",
    "AssociativeRecallParams",
    "CopyParams",
    "Corpus",
    "Data",
    "DataConfig",
    "HFParams",
    "LongRangeParams",
    "ReverseParams",
    "SortingParams",
    "TaskData",
    "TaskParams",
    "TextData",
    "build_data",
    "load_builtin",
    "load_hf",
    "load_text",
    "stream_seed",
]
