"""The partition of a refused resume, shared by every source that refuses one."""

from __future__ import annotations

from typing import Generic, NoReturn, TypeVar

from bytewax.inputs import StatefulSourcePartition

X = TypeVar("X")
S = TypeVar("S")


class RefusedPartition(StatefulSourcePartition[X, S | None], Generic[X, S]):
    """Emits nothing and keeps the snapshot it was given: a refused resume changes no state.

    A source that cannot resume a snapshot (another recording, another range, other programs) builds this
    instead of its partition and notes the reason for its caller, who raises it once the engine stopped.
    """

    def __init__(self, resume: S | None) -> None:
        self._resume = resume

    def next_batch(self) -> NoReturn:
        """Nothing: the partition ends at once."""
        raise StopIteration

    def snapshot(self) -> S | None:
        """The snapshot it was given, unchanged."""
        return self._resume
