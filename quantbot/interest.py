"""The tokens that matter now, for the feeds that poll: recently whaled, and held by strategies.

Jupiter's poller asks prices for the tokens no live feed covers; which tokens those are changes as the flow
runs. `TokenInterest` is the set the poller reads at the start of each round: the configured tokens
(`[feeds] jupiter_tokens`), the tokens strategies hold (a signal pending or active: until its
`SignalUpdate` closes or expires it), and the tokens whales traded within `whale_keep_s` (the non-quote
legs of each whale). Tokens a live feed covers are left out; at most `max_tokens` are polled (configured
first, then held, then the most recently whaled), so the poll round stays bounded.

This is the running process's own view, fed from the flow's outputs as they happen: it uses the wall
clock (it decides what to ask, never what is stored), lives in memory, and after a restart fills again from
the configured tokens and new whales. In a cluster, the poller sees the interest of its own process.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from quantbot.analytics import SignalUpdate
from quantbot.models import Signal, WhaleTransaction
from quantbot.signals import QUOTE_MINTS

OPEN_STATUSES = frozenset({"pending", "active"})
"""A signal in these states is a position a strategy holds (or is about to)."""


class TokenInterest:
    """A thread-safe, bounded set of tokens worth polling (see the module docstring).

    Args:
        configured: tokens always polled, in order.
        covered: tokens a live feed prices already: never polled.
        whale_keep_s: how long a whaled token stays of interest after its last whale; 0 turns whales off.
        max_tokens: tokens returned at most.
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(
        self,
        configured: Iterable[str],
        covered: Iterable[str] = (),
        whale_keep_s: float = 86_400.0,
        max_tokens: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self._covered = frozenset(covered)
        self._configured = tuple(t for t in dict.fromkeys(configured) if t not in self._covered)
        self._whale_keep_s = whale_keep_s
        self._max_tokens = max_tokens
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}
        """signal id -> token, for open signals."""
        self._whaled: OrderedDict[str, float] = OrderedDict()
        """token -> when its last whale was seen, oldest first."""

    def observe(self, item: object) -> None:
        """Take one of the flow's outputs: a whale's tokens, a signal opening, a signal update closing one."""
        with self._lock:
            if isinstance(item, WhaleTransaction):
                if self._whale_keep_s <= 0:
                    return
                now = self._clock()
                activity = item.valued.activity
                for leg in (activity.input, activity.output):
                    if leg is not None and leg.mint not in QUOTE_MINTS and leg.mint not in self._covered:
                        self._whaled[leg.mint] = now
                        self._whaled.move_to_end(leg.mint)
                while len(self._whaled) > self._max_tokens:
                    self._whaled.popitem(last=False)
            elif isinstance(item, Signal):
                if item.token_address not in self._covered:
                    self._held[item.signal_id] = item.token_address
            elif isinstance(item, SignalUpdate) and item.status not in OPEN_STATUSES:
                self._held.pop(item.signal.signal_id, None)

    def tokens(self) -> tuple[str, ...]:
        """The tokens to poll now: configured, then held, then the most recently whaled; at most `max_tokens`."""
        with self._lock:
            cutoff = self._clock() - self._whale_keep_s
            while self._whaled and next(iter(self._whaled.values())) < cutoff:
                self._whaled.popitem(last=False)
            ordered = dict.fromkeys(self._configured)
            ordered.update(dict.fromkeys(sorted(set(self._held.values()))))
            ordered.update(dict.fromkeys(reversed(self._whaled)))
            return tuple(ordered)[: self._max_tokens]
