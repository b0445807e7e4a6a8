"""Whether a source is making progress: what readiness (`/readyz`) calls a stale source.

A source is *stale* when it has been reading for `stale_after_s` without an item and has not finished.
Before it opens it is not reading yet (not ready either); once finished (a replay read to its end) it
is never stale. A source notes its progress here once per batch, not per item, so the cost is nil.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SourceActivity:
    """When a source opened, when it last emitted an item, and whether it has finished.

    Written by the source's partition on the dataflow's thread, read by the readiness check on another:
    each note is one attribute assignment, atomic in Python.

    Args:
        name: the source, as readiness names it (`replay`, later the live sources).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._last: float | None = None
        self._finished = False

    def opened(self) -> None:
        """The source started reading: staleness counts from now."""
        self._last = self._clock()

    def progressed(self) -> None:
        """The source emitted an item (or a batch of them)."""
        self._last = self._clock()

    def finished(self) -> None:
        """The source has nothing more to read (a replay at the end of its recordings)."""
        self._finished = True

    def problem(self, stale_after_s: float) -> str | None:
        """Why the source is not ready, or None: not reading yet, or no item for more than `stale_after_s`."""
        if self._finished:
            return None
        if self._last is None:
            return f"source {self.name}: not reading yet"
        idle = self._clock() - self._last
        if idle > stale_after_s:
            return f"source {self.name}: no item for {idle:.1f} s (stale after {stale_after_s:g} s)"
        return None
