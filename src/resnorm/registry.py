"""A tiny generic registry: named components, lookup with "did you mean", listing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from resnorm.errors import choice_error

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to components (classes or functions) of one kind.

    >>> norms = Registry("norm")
    >>> @norms.register("identity")
    ... class Identity: ...
    >>> norms.get("identity") is Identity
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            assert name not in self._items, f"{self.kind} {name!r} registered twice"
            self._items[name] = item
            return item

        return add

    def get(self, name: str, field: str | None = None) -> T:
        """The component called `name`; a ConfigError naming `field` lists the choices if absent."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise choice_error(field or self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())
