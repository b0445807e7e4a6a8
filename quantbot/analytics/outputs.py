"""What the analytics emits: documents, follow-ups and points for the sinks, in stream order."""

from __future__ import annotations

from dataclasses import dataclass, field

from quantbot.models import Signal, WhaleTransaction


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
    `take_profit`, `stop_loss` or `time_exit`, at `exit_price`; `settled_early` when `max_pending` signals
    were waiting) or `expired` (never entered: no price when its delay passed, or its expiry came first).
    `processed_at` is the feed time of the latest status change. Every update is the whole picture: the
    status and every outcome known so far (`quantbot.analytics.lifecycle`).
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
