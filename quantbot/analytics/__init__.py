"""The flow's analytics: what it derives over feed time from valued trades, quotes and token facts.

(Skeleton: the state and its parts are being written; see `Analytics.observe`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from quantbot.models import PriceTick, Signal, ValuedActivity, WhaleTransaction
from quantbot.signals import WhaleFollower, evaluate
from quantbot.tokens import TokenFacts
from quantbot.whales import WhaleConfig, detect, largest_per_transaction


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    """The `[analytics]` settings, and the whale and strategy rules the analytics applies."""

    whales: WhaleConfig = field(default_factory=WhaleConfig)
    strategies: Sequence[WhaleFollower] = ()
    snapshot_interval_s: int = 300
    """Feed seconds between market snapshots and strategy metrics points (the schema's 5 min)."""
    window_s: int = 86_400
    """The rolling window of `price_change_24h`, `high_24h`, `low_24h`, `volume_24h`."""
    bucket_s: int = 300
    """The window's resolution: one bucket (open, high, low, close, volume) per token per this many seconds."""
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


@dataclass(frozen=True, slots=True)
class TokenDocument:
    """A `tokens` document, replaced whole by `_id` (the mint)."""

    mint: str
    document: dict[str, object] = field(hash=False)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """A `market_snapshots` document; its `_id` is the snapshot's feed time (ISO), so a replay rewrites it."""

    document: dict[str, object] = field(hash=False)


@dataclass(frozen=True, slots=True)
class WhaleUpdate:
    """A follow-up of a stored whale document: `$set` of `fields` (dotted paths), `related` appended once each."""

    signature: str
    fields: dict[str, object] = field(default_factory=dict, hash=False)
    related: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SignalUpdate:
    """A signal's new lifecycle state and what is known of its outcome.

    `status`: `active` (entered at `entry_price` after the execution delay), `closed` (`exit_reason`
    `take_profit`, `stop_loss` or `time_exit`, at `exit_price`) or `expired` (never entered: no price
    when its delay passed, or its expiry came first). `processed_at` is the feed time of the change.
    The moves are percent changes of the token's price from the signal's price, 1 h and 24 h after it.
    """

    signal: Signal
    status: str
    processed_at: int
    entry_price: float | None = None
    exit_price: float | None = None
    exit_reason: str | None = None
    pnl_percent: float | None = None
    actual_move_1h: float | None = None
    actual_move_24h: float | None = None
    success: bool | None = None


@dataclass(frozen=True, slots=True)
class StrategyMetrics:
    """A `trading_metrics` point of one strategy at feed time `at`."""

    strategy_id: str
    user_id: str | None
    at: int
    fields: dict[str, float | int] = field(hash=False)


@dataclass(frozen=True, slots=True)
class StrategyPerformance:
    """The strategy document's `performance` (`allTime`, `last30Days`) as of feed time `at`."""

    strategy_id: str
    at: int
    performance: dict[str, object] = field(hash=False)


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """The flow saw a token whose facts it lacks (or holds for longer than `token_refresh_s`): ask the chain."""

    mint: str


Output = (
    WhaleTransaction
    | Signal
    | WhaleUpdate
    | SignalUpdate
    | TokenDocument
    | MarketSnapshot
    | StrategyMetrics
    | StrategyPerformance
    | TokenRequest
)
"""What the analytics emits, in stream order."""

__all__ = [
    "Analytics",
    "AnalyticsConfig",
    "MarketSnapshot",
    "Output",
    "SignalUpdate",
    "StrategyMetrics",
    "StrategyPerformance",
    "TokenDocument",
    "TokenFacts",
    "TokenRequest",
    "WhaleUpdate",
]


@dataclass
class Analytics:
    """(Stub until the state lands: whales and signals only, as the flow derived them before.)"""

    def observe_trade(
        self, signature: str, valued: tuple[ValuedActivity, ...], config: AnalyticsConfig
    ) -> tuple[tuple[ValuedActivity, ...], list[Output]]:
        """The trade's activities (ticks with their stats) and what it set off."""
        found = [w for v in valued if (w := detect(v, config.whales)) is not None]
        out: list[Output] = []
        for whale in largest_per_transaction(found):
            out.append(whale)
            out.extend(s for strategy in config.strategies if (s := evaluate(strategy, whale)) is not None)
        return valued, out

    def observe_quote(self, tick: PriceTick, config: AnalyticsConfig) -> tuple[PriceTick, list[Output]]:
        """A feed quote's tick (with its stats) and what it set off."""
        return tick, []

    def observe_facts(self, facts: TokenFacts, config: AnalyticsConfig) -> list[Output]:
        """A token's facts; what they set off."""
        return []
