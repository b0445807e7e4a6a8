"""The base of the analytics' small mutable records: slots for memory, their state for pickling and equality."""

from __future__ import annotations

from typing import Any


class Slotted:
    """A mutable record with `__slots__` that pickles as the tuple of its slots' values (no names: compact in a
    recovery snapshot) and compares equal to another of its class holding equal values."""

    __slots__: tuple[str, ...] = ()

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Slotted) and type(other) is type(self) and self.__getstate__() == other.__getstate__()

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable
