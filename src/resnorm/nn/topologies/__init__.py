"""Every registered residual/normalization topology (``resnorm topologies`` lists them)."""

from resnorm.nn.topologies.base import TOPOLOGIES, StackSpec, Topology, register

__all__ = ["TOPOLOGIES", "StackSpec", "Topology", "register"]


def _load() -> None:
    # The families import `resnorm.nn.model`, which imports this package: load them last.
    from resnorm.nn.topologies import placement  # noqa: F401
    from resnorm.nn.topologies import hyper, streams  # noqa: F401
    from resnorm.nn.topologies import scaled  # noqa: F401
    from resnorm.nn.topologies import inner  # noqa: F401
    from resnorm.nn.topologies import ngpt  # noqa: F401


_load()
