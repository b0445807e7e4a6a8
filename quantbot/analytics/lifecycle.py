"""A signal's lifecycle, paper-followed: pending, active, then closed (or expired), and what it turned out to be.

- `pending` from its creation until `metadata.execute_after` (its strategy's execution delay);
- then `active`, entered at the token's price of that moment (`entry_price`); or `expired` when the token has
  no price then, or the signal's expiry is not later than its entry (nothing to hold);
- then `closed` when a later price of the token (a trade's or a feed quote's) reaches the take-profit or the
  stop-loss level, direction-aware (a `buy` takes profit at or above its level, a `sell` at or below), exiting
  at that price; or at `expires_at` (the strategy's time exit) at the token's price then. The levels are the
  signal's own (`take_profit`, `stop_loss`, set from the whale's price); a signal without them (no price at
  the whale) takes them from its strategy's percentages around the entry price.
- `pnl_percent`: `100 * (exit / entry - 1)` for a buy, the opposite for a sell; `success`: closed with a
  positive P&L (None until closed, and for an expired signal, which never traded).
- `actual_move_1h`, `actual_move_24h`: the token's price change from the signal's price, percent, 1 h and
  24 h after the signal (whatever its status then); None without a signal price or a price then.

Each `SignalUpdate` carries the whole picture (status and every outcome known), so the last one written is
the truth whatever was lost before it; `processed_at` is the feed time of the latest status change.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantbot.analytics.outputs import SignalUpdate
from quantbot.models import Signal
from quantbot.signals import WhaleFollower
from quantbot.units import SECONDS_PER_DAY, SECONDS_PER_HOUR

PENDING, ACTIVE, CLOSED, EXPIRED = "pending", "active", "closed", "expired"
TAKE_PROFIT, STOP_LOSS, TIME_EXIT = "take_profit", "stop_loss", "time_exit"
SETTLED_EARLY = "settled_early"
"""The exit reason of an active signal closed before its time because `max_pending` was reached."""
MOVE_1H_S = SECONDS_PER_HOUR
MOVE_24H_S = SECONDS_PER_DAY
DEFAULT_POSITION_USD = 1_000.0
"""A paper position's size when neither the signal (`position_size_usd`, from `followSizePercentage`) nor its
strategy (`maxPositionSizeUsd`) sizes it: a round $1,000, one tenth of the schema's example maximum."""


def position_size_usd(signal: Signal, strategy: WhaleFollower | None) -> float:
    """The paper position of `signal`: its follow size, else its strategy's maximum, else `DEFAULT_POSITION_USD`."""
    sized = signal.metadata.get("position_size_usd")
    if isinstance(sized, int | float) and not isinstance(sized, bool) and sized > 0:
        return float(sized)
    if strategy is not None and strategy.max_position_usd is not None and strategy.max_position_usd > 0:
        return strategy.max_position_usd
    return DEFAULT_POSITION_USD


def execute_after(signal: Signal) -> int:
    """When the signal is entered: its `metadata.execute_after`, else its creation."""
    at = signal.metadata.get("execute_after")
    return at if isinstance(at, int) and not isinstance(at, bool) else signal.created_at


@dataclass(slots=True)
class SignalRecord:
    """A signal being paper-followed, and its outcome so far.

    Attributes:
        signal: the signal as emitted.
        size_usd: its paper position (`position_size_usd`).
        status: `pending`, `active`, `closed` or `expired`.
        changed_at: feed time of the latest status change (the creation while pending).
        entry_price, exit_price, exit_reason, pnl_percent, move_1h, move_24h: the outcome so far.
        take_profit, stop_loss: the levels in force once active.
        last_price: the token's latest price seen while active (the exit price if the token is forgotten).
        done_1h, done_24h: whether the 1 h and 24 h moves were taken (or could not be).
        due: the feed time of the record's next timer; None when nothing is left to wait for.
    """

    signal: Signal
    size_usd: float
    status: str = PENDING
    changed_at: int = 0
    entry_price: float | None = None
    exit_price: float | None = None
    exit_reason: str | None = None
    pnl_percent: float | None = None
    move_1h: float | None = None
    move_24h: float | None = None
    take_profit: float | None = None
    stop_loss: float | None = None
    last_price: float | None = None
    done_1h: bool = False
    done_24h: bool = False
    due: int | None = None

    def __post_init__(self) -> None:
        self.changed_at = self.signal.created_at
        if not self.signal.price:  # no reference for the moves
            self.done_1h = self.done_24h = True
        self.due = self.next_due()

    @property
    def final(self) -> bool:
        """Whether the status will not change any more."""
        return self.status in (CLOSED, EXPIRED)

    def next_due(self) -> int | None:
        """The feed time of the next thing to happen by the clock; None when nothing will."""
        signal = self.signal
        dues: list[int] = []
        if self.status == PENDING:
            dues.append(execute_after(signal))
        elif self.status == ACTIVE:
            dues.append(signal.expires_at)
        if not self.done_1h:
            dues.append(signal.created_at + MOVE_1H_S)
        if not self.done_24h:
            dues.append(signal.created_at + MOVE_24H_S)
        return min(dues) if dues else None

    def fire(self, at: int, price: float | None, strategy: WhaleFollower | None) -> bool:
        """Do what fell due by feed time `at`, with the token's price then; returns whether a trade closed."""
        signal = self.signal
        closed = False
        if self.status == PENDING and execute_after(signal) <= at:
            self.activate(execute_after(signal), price, strategy)
        if self.status == ACTIVE and signal.expires_at <= at:
            self.close(signal.expires_at, price if price is not None else self.last_price, TIME_EXIT)
            closed = True
        reference = signal.price if signal.price else None  # a zero price is no reference for a move
        if not self.done_1h and signal.created_at + MOVE_1H_S <= at:
            self.done_1h = True
            if reference is not None and price is not None:
                self.move_1h = (price / reference - 1.0) * 100.0
        if not self.done_24h and signal.created_at + MOVE_24H_S <= at:
            self.done_24h = True
            if reference is not None and price is not None:
                self.move_24h = (price / reference - 1.0) * 100.0
        self.due = self.next_due()
        return closed

    def activate(self, at: int, price: float | None, strategy: WhaleFollower | None) -> None:
        """Enter at `price`; expire instead without a price or with nothing to hold."""
        signal = self.signal
        self.changed_at = at
        if price is None or price <= 0 or signal.expires_at <= at:
            self.status = EXPIRED
            return
        self.status = ACTIVE
        self.entry_price = self.last_price = price
        self.take_profit, self.stop_loss = signal.take_profit, signal.stop_loss
        if strategy is not None:
            sign = 1.0 if signal.direction == "buy" else -1.0
            if self.take_profit is None and strategy.take_profit_pct is not None:
                self.take_profit = price * (1 + sign * strategy.take_profit_pct / 100)
            if self.stop_loss is None and strategy.stop_loss_pct is not None:
                self.stop_loss = price * (1 - sign * strategy.stop_loss_pct / 100)

    def crossing(self, price: float) -> str | None:
        """The exit a price reaches (take profit or stop loss), direction-aware; None if neither."""
        if self.signal.direction == "buy":
            if self.stop_loss is not None and price <= self.stop_loss:
                return STOP_LOSS
            if self.take_profit is not None and price >= self.take_profit:
                return TAKE_PROFIT
            return None
        if self.stop_loss is not None and price >= self.stop_loss:
            return STOP_LOSS
        if self.take_profit is not None and price <= self.take_profit:
            return TAKE_PROFIT
        return None

    def close(self, at: int, price: float | None, reason: str) -> None:
        """Exit at `price` (the entry price when none is known: no P&L invented)."""
        entry = self.entry_price
        exit_price = price if price is not None and price > 0 else entry
        self.status = CLOSED
        self.changed_at = at
        self.exit_reason = reason
        self.exit_price = exit_price
        if entry is not None and exit_price is not None:
            sign = 1.0 if self.signal.direction == "buy" else -1.0
            self.pnl_percent = sign * (exit_price / entry - 1.0) * 100.0
        self.due = self.next_due()

    def update(self) -> SignalUpdate:
        """The whole picture as a `SignalUpdate`."""
        return SignalUpdate(
            signal=self.signal,
            status=self.status,
            processed_at=self.changed_at,
            entry_price=self.entry_price,
            exit_price=self.exit_price,
            exit_reason=self.exit_reason,
            pnl_percent=self.pnl_percent,
            actual_move_1h=self.move_1h,
            actual_move_24h=self.move_24h,
            success=(self.pnl_percent is not None and self.pnl_percent > 0) if self.status == CLOSED else None,
        )
