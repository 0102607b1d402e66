"""One small typed registry of named things (metrics, model kinds, families, recipes, paper protocols).

Every registry in the project registers by name, refuses a name twice and, asked for an unknown name, raises a
``ValueError`` that lists the valid ones; this class is that behaviour, written once. Torch-free, so both the
service and ``training/`` use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    """An entry that carries its own name."""

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Named entries in registration order.

    Args:
        what: What an entry is, in messages ("metric" → "unknown metric 'x'; valid metrics: a, b").
        plural: The plural of ``what`` (default: ``what`` + "s").
        allowed: The only names it accepts (a ``Literal``'s arguments), or None for any.
    """

    def __init__(self, what: str, plural: str | None = None, allowed: tuple[str, ...] | None = None) -> None:
        self.what = what
        self.plural = plural or f"{what}s"
        self.allowed = allowed
        self._entries: dict[str, T] = {}

    def add(self, entry: T) -> T:
        """Register ``entry`` under its name and return it.

        Raises:
            ValueError: The name is taken, or not one of ``allowed``.
        """
        name = entry.name
        if self.allowed is not None and name not in self.allowed:
            raise ValueError(f"{self.what} {name!r} is not one of {self.allowed}: add it to the Literal too")
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry called ``name``.

        Raises:
            ValueError: Unknown name (the message lists the valid ones).
        """
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.what} {name!r}; valid {self.plural}: {', '.join(self._entries)}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def values(self) -> list[T]:
        """Registered entries, in registration order."""
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
