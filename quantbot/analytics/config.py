"""The analytics' settings: the `[analytics]` keys, and the whale and strategy rules the analytics applies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from quantbot.signals import WhaleFollower
from quantbot.whales import WhaleConfig


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    """The `[analytics]` settings, and the whale and strategy rules the analytics applies.

    Settings are given with every item (never kept in the state), so a changed key takes effect at the next start.
    """

    whales: WhaleConfig = field(default_factory=WhaleConfig)
    strategies: Sequence[WhaleFollower] = ()
    snapshot_interval_s: int = 300
    """Feed seconds between market snapshots and strategy metrics points (the schema's 5 min)."""
    window_s: int = 86_400
    """The rolling window of `price_change_24h`, `high_24h`, `low_24h`, `volume_24h`."""
    bucket_s: int = 300
    """The window's resolution: one bucket (high, low, close, volume) per token per this many seconds."""
    max_tokens: int = 20_000
    """Tokens with a window at most; the least recently traded is forgotten first."""
    follow_up_s: int = 10_800
    """`significance.priceMoveAfter3h`: the whale's move this long after it."""
    related_window_s: int = 86_400
    """`relatedTransactions`: the same wallet's other whales within this long before or after."""
    influence_full_move_pct: float = 10.0
    """`historicalInfluence` reaches 10 when the wallet's past whales were followed by this move on average."""
    max_wallets: int = 100_000
    """Wallets whose whale history is kept at most; the least recently active is forgotten first."""
    max_pending: int = 100_000
    """Pending timers (whale follow-ups, open signals) at most; beyond it the oldest is settled early."""
    top_movers: int = 10
    mover_min_volume_usd: float = 10_000.0
    """A token needs this much 24 h volume to be a top mover."""
    token_refresh_s: int = 86_400
    """Feed seconds after which a token's facts are asked for again (live flow)."""
    performance_window_days: int = 30
    """`performance.last30Days`."""
    max_pools: int = 50_000
    """Pools (their latest reserves and 24 h volume) kept at most; the least recently traded is forgotten first."""
    repeats_max: int = 10_000
    """Transactions remembered to recognise a repeat (a duplicated line, a transaction delivered twice): repeats
    come close together, and 10^4 is a minute and a half of mainnet's ~110 DEX transactions a second."""
    token_document_every_s: int = 3_600
    """A traded token's document (its exchanges' liquidity and 24 h volume) is rewritten at the snapshot boundaries
    that are multiples of this, not at every one: an hour-old pool figure is fresh enough for a reference
    document, and a busy market changes hundreds of documents every five minutes. A multiple of
    `snapshot_interval_s`. (A token's document is written at once when its facts arrive.)"""

    def __post_init__(self) -> None:
        positive = {
            "snapshot_interval_s": self.snapshot_interval_s,
            "window_s": self.window_s,
            "bucket_s": self.bucket_s,
            "max_tokens": self.max_tokens,
            "follow_up_s": self.follow_up_s,
            "max_wallets": self.max_wallets,
            "max_pending": self.max_pending,
            "performance_window_days": self.performance_window_days,
            "max_pools": self.max_pools,
            "token_document_every_s": self.token_document_every_s,
            "repeats_max": self.repeats_max,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"analytics `{name}` must be positive, got {value}")
        if self.window_s % self.bucket_s:
            raise ValueError(
                f"analytics `window_s` ({self.window_s}) must be a multiple of `bucket_s` ({self.bucket_s})"
            )
        if self.token_document_every_s % self.snapshot_interval_s:
            raise ValueError(
                f"analytics `token_document_every_s` ({self.token_document_every_s}) must be a multiple of "
                f"`snapshot_interval_s` ({self.snapshot_interval_s})"
            )
        if self.influence_full_move_pct <= 0:
            raise ValueError(
                f"analytics `influence_full_move_pct` must be positive, got {self.influence_full_move_pct}"
            )
