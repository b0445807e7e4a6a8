"""How long to wait before trying again: one policy for store writes, RPC calls and reconnections."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: wait uniform(0, min(cap, base * 2**attempt)) seconds."""

    base_s: float = 0.1
    cap_s: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        return random.uniform(0, min(self.cap_s, self.base_s * 2**attempt))  # noqa: S311 - jitter, not crypto
