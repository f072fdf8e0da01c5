"""resnorm: residual and normalization topologies of transformers, as a library and a lab.

The public names are imported on first use, so ``import resnorm.store`` or the CLI's light
commands do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "resnorm.errors",
    "ModelConfig": "resnorm.nn.config",
    "Transformer": "resnorm.nn.model",
    "build_model": "resnorm.nn.model",
    "load_model": "resnorm.load",
    "NORMS": "resnorm.nn.norms",
    "TOPOLOGIES": "resnorm.nn.topologies",
    "from_hf": "resnorm.interop",
    "load_results": "resnorm.store",
    "RunConfig": "resnorm.config",
    "load_config": "resnorm.config",
    "train": "resnorm.train",
    "evaluate": "resnorm.evaluation",
    "run_study": "resnorm.lab",
}
__all__ = [
    "NORMS",
    "TOPOLOGIES",
    "ConfigError",
    "ModelConfig",
    "RunConfig",
    "Transformer",
    "build_model",
    "evaluate",
    "from_hf",
    "load_config",
    "load_model",
    "load_results",
    "run_study",
    "train",
]

if TYPE_CHECKING:
    from resnorm.config import RunConfig, load_config
    from resnorm.errors import ConfigError
    from resnorm.evaluation import evaluate
    from resnorm.interop import from_hf
    from resnorm.lab import run_study
    from resnorm.load import load_model
    from resnorm.nn.config import ModelConfig
    from resnorm.nn.model import Transformer, build_model
    from resnorm.nn.norms import NORMS
    from resnorm.nn.topologies import TOPOLOGIES
    from resnorm.store import load_results
    from resnorm.train import train


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'resnorm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
