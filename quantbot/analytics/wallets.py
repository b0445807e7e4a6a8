"""Whale wallets' histories: their recent whales (`relatedTransactions`) and how the market moved after them.

- **Related transactions**: a whale lists the same wallet's earlier whales of at most `related_window_s`
  before it; each of those earlier whales is then updated to list the new one (so both directions are
  covered, each by the later whale's arrival). A wallet keeps at most `MAX_RELATED` recent whales.
- **Follow-up**: `follow_up_s` after a whale, the followed token's move since the whale (percent, from the
  whale's price of it to its latest price then) is its `significance.priceMoveAfter3h`, and joins the
  wallet's record in the whale's direction (a buy followed by a rise, a sell followed by a fall, count positive).
- **Historical influence** (0-10, one decimal): `10 * clamp(mean directional move / influence_full_move_pct,
  0, 1)` over the wallet's completed follow-ups; absent while it has none. A wallet whose whales the market
  followed by `influence_full_move_pct` on average scores 10; one the market moved against scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantbot.analytics.slotted import Slotted

MAX_RELATED = 32
"""A wallet's recent whales kept at most (the newest): a busy wallet's `relatedTransactions` stays readable."""
INFLUENCE_SCALE = 10.0
"""`historicalInfluence` runs from 0 to this (the schema's example: 8.5)."""
INFLUENCE_DIGITS = 1


class WalletHistory(Slotted):
    """One wallet's whales within the related window and the record of its completed follow-ups.

    Attributes:
        recent: (feed time, signature) of its latest whales, oldest first, at most `MAX_RELATED`.
        followed: completed follow-ups.
        move_sum: the sum of their moves in the whales' directions, percent.
    """

    __slots__ = ("followed", "move_sum", "recent")

    def __init__(self) -> None:
        self.recent: list[tuple[int, str]] = []
        self.followed = 0
        self.move_sum = 0.0

    def related(self, at: int, signature: str, window_s: int) -> list[str]:
        """The signatures of this wallet's other whales within `window_s` of `at`, oldest first."""
        return [sig for when, sig in self.recent if abs(at - when) <= window_s and sig != signature]

    def remember(self, at: int, signature: str, window_s: int) -> None:
        """Add a whale; forget those more than `window_s` older than the newest, and beyond `MAX_RELATED`."""
        recent = [(when, sig) for when, sig in self.recent if sig != signature]
        recent.append((at, signature))
        recent.sort()
        newest = recent[-1][0]
        self.recent = [item for item in recent if newest - item[0] <= window_s][-MAX_RELATED:]

    def record(self, directional_move_pct: float) -> None:
        """Add a completed follow-up: the move after a whale, in the whale's direction."""
        self.followed += 1
        self.move_sum += directional_move_pct

    def influence(self, full_move_pct: float) -> float | None:
        """`historicalInfluence`: 0-10 from the completed follow-ups (module docstring); None without any."""
        if not self.followed:
            return None
        share = self.move_sum / self.followed / full_move_pct
        return round(INFLUENCE_SCALE * min(1.0, max(0.0, share)), INFLUENCE_DIGITS)


@dataclass(slots=True)
class FollowUp:
    """A whale waiting for its follow-up.

    Attributes:
        signature: the whale's transaction (its document's `_id`).
        due: feed time of the follow-up (the whale's time plus `follow_up_s`).
        wallet: the whale's wallet.
        token: the followed token (the side that is not a quote asset).
        direction: +1 when the whale bought the token, -1 when it sold it.
        price: the token's USD price at the whale.
        created: the whale's feed time (the order in which follow-ups are settled early).
    """

    signature: str
    due: int
    wallet: str
    token: str
    direction: int
    price: float
    created: int


def move_pct(then: float, now: float) -> float:
    """The percent change from `then` to `now`."""
    return (now / then - 1.0) * 100.0
