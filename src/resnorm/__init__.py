"""resnorm: residual and normalization topologies of transformers, as a library and a lab."""

from resnorm.errors import ConfigError
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import Transformer, build_model
from resnorm.nn.norms import NORMS
from resnorm.nn.topologies import TOPOLOGIES

__all__ = ["NORMS", "TOPOLOGIES", "ConfigError", "ModelConfig", "Transformer", "build_model"]
__version__ = "0.1.0"
