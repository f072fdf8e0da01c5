"""Data for training runs: synthetic tasks, byte-level text corpora, deterministic batching.

`build_data(DataConfig(...))` gives a `Data` whose `train_batch(step, rank, world_size)` is a
pure function of (config, step), so runs resume without replay and data-parallel ranks split one
global batch.
"""

from __future__ import annotations

from resnorm.data.batch import Batch, batch_chunks, batch_rows, batch_to, call_model
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
from resnorm.data.objectives import KIND_OBJECTIVES, OBJECTIVES, PAIR_TASKS
from resnorm.data.synthetic import (
    IGNORE_INDEX,
    TASKS,
    AdditionParams,
    AssociativeRecallParams,
    CopyParams,
    LongRangeParams,
    ReverseParams,
    SortingParams,
    TaskParams,
    TranslateParams,
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
    "KIND_OBJECTIVES",
    "OBJECTIVES",
    "PAIR_TASKS",
    "SOURCES",
    "TASKS",
    "AdditionParams",
    "AssociativeRecallParams",
    "Batch",
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
    "TranslateParams",
    "batch_chunks",
    "batch_rows",
    "batch_to",
    "build_data",
    "call_model",
    "load_builtin",
    "load_hf",
    "load_text",
    "stream_seed",
]
