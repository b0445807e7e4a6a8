"""Strategies paper-followed: each closed signal is a trade of its position size; their figures as points and documents.

A trade's **return** is its signal's `pnl_percent / 100`; its **P&L** is that return times its position size
(`quantbot.analytics.lifecycle.position_size_usd`). Trades count when they close (expired signals never
traded). The figures, all over per-trade returns with no annualisation:

- `pnl_absolute`: the sum of the closed trades' P&L, USD (realised: open positions are in `exposure_usd`);
- `pnl_percent`: `100 * pnl_absolute / the sum of the closed trades' sizes` (0 before any trade);
- `win_count`: closed trades with a positive P&L; `loss_count`: the others (a flat trade is no win);
- `active_positions`, `exposure_usd`: the strategy's active signals and the sum of their sizes at entry;
- `max_drawdown`: percent, the largest fall from a running peak of the curve that compounds the returns in
  closing order (starting at 1, each trade multiplying it by `1 + return`, floored at 0: a trade losing more
  than its stake wipes the curve out); 0 before any loss;
- `sharpe_ratio`: the mean return over the returns' sample standard deviation; undefined (absent from the
  point and the document) with fewer than `MIN_RATIO_TRADES` trades or no spread;
- `sortino_ratio`: the mean return over the downside deviation `sqrt(mean(min(return, 0)^2))`; undefined
  with fewer than `MIN_RATIO_TRADES` trades or no losing trade.

`performance` (the strategy document's) per window: `tradesTotal`, `winRate` (wins / trades, 0 before any
trade), `profitPercent` (as `pnl_percent`), `sharpeRatio` (absent when undefined). `allTime` is every trade the
flow saw close; `last30Days` those that closed on the last `performance_window_days` UTC days of feed time,
today included (daily aggregates, so it is exact at day resolution and costs a month of small records).
"""

from __future__ import annotations

import math
from collections import OrderedDict

from quantbot.analytics.slotted import Slotted
from quantbot.units import SECONDS_PER_DAY

MIN_RATIO_TRADES = 3
"""Trades a Sharpe or Sortino ratio needs: over two nearly equal returns the deviation is close to 0 and
the ratio a meaningless thousand (two stop-losses of -12.09 % and -12.11 % give -1,000)."""
RATIO_DIGITS = 4
PERCENT_DIGITS = 4
USD_DIGITS = 2


class Returns(Slotted):
    """Running aggregates of per-trade returns (Welford's mean and squared deviations, mergeable).

    Attributes:
        trades, wins: how many closed, how many with a positive P&L.
        mean, m2: the returns' mean and sum of squared deviations from it.
        downside: the sum of `min(return, 0)^2`.
        pnl_usd, size_usd: the sums of the trades' P&L and sizes.
    """

    __slots__ = ("downside", "m2", "mean", "pnl_usd", "size_usd", "trades", "wins")

    def __init__(self) -> None:
        self.trades = 0
        self.wins = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.downside = 0.0
        self.pnl_usd = 0.0
        self.size_usd = 0.0

    def add(self, ret: float, size_usd: float) -> None:
        """Count a closed trade of return `ret` (a fraction) and `size_usd`."""
        self.trades += 1
        if ret > 0:
            self.wins += 1
        delta = ret - self.mean
        self.mean += delta / self.trades
        self.m2 += delta * (ret - self.mean)
        if ret < 0:
            self.downside += ret * ret
        self.pnl_usd += ret * size_usd
        self.size_usd += size_usd

    def merge(self, other: Returns) -> None:
        """Add another set of trades (Chan et al.'s pairwise update of mean and squared deviations)."""
        if not other.trades:
            return
        total = self.trades + other.trades
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.trades * other.trades / total
        self.mean += delta * other.trades / total
        self.trades = total
        self.wins += other.wins
        self.downside += other.downside
        self.pnl_usd += other.pnl_usd
        self.size_usd += other.size_usd

    @property
    def profit_percent(self) -> float:
        """`100 * P&L / sizes`; 0 before any trade."""
        return 100.0 * self.pnl_usd / self.size_usd if self.size_usd > 0 else 0.0

    @property
    def sharpe(self) -> float | None:
        """Mean return over the sample standard deviation; None with fewer than `MIN_RATIO_TRADES` or no spread."""
        if self.trades < MIN_RATIO_TRADES or self.m2 <= 0:
            return None
        return self.mean / math.sqrt(self.m2 / (self.trades - 1))

    @property
    def sortino(self) -> float | None:
        """Mean return over the downside deviation; None with fewer than `MIN_RATIO_TRADES` or no losing one."""
        if self.trades < MIN_RATIO_TRADES or self.downside <= 0:
            return None
        return self.mean / math.sqrt(self.downside / self.trades)

    def performance(self) -> dict[str, object]:
        """The document's window: `tradesTotal`, `winRate`, `profitPercent`, and `sharpeRatio` where defined."""
        window: dict[str, object] = {
            "tradesTotal": self.trades,
            "winRate": round(self.wins / self.trades, RATIO_DIGITS) if self.trades else 0.0,
            "profitPercent": round(self.profit_percent, PERCENT_DIGITS),
        }
        sharpe = self.sharpe
        if sharpe is not None:
            window["sharpeRatio"] = round(sharpe, RATIO_DIGITS)
        return window


class StrategyBook(Slotted):
    """One strategy's paper account.

    Attributes:
        all_time: every closed trade.
        days: per UTC day of feed time (its start), that day's closed trades; the last
            `performance_window_days` kept.
        equity, peak, max_drawdown: the compounded curve, its running peak, the largest fall (percent).
        active: the active signals' ids and position sizes, in entry order.
    """

    __slots__ = ("active", "all_time", "days", "equity", "max_drawdown", "peak")

    def __init__(self) -> None:
        self.all_time = Returns()
        self.days: OrderedDict[int, Returns] = OrderedDict()
        self.equity = 1.0
        self.peak = 1.0
        self.max_drawdown = 0.0
        self.active: dict[str, float] = {}

    def enter(self, signal_id: str, size_usd: float) -> None:
        """A signal became active."""
        self.active[signal_id] = size_usd

    def leave(self, signal_id: str) -> None:
        """A signal is no longer active (closed, or forgotten)."""
        self.active.pop(signal_id, None)

    def close(self, signal_id: str, at: int, pnl_percent: float, size_usd: float, window_days: int) -> None:
        """A trade closed at feed time `at` with `pnl_percent` on `size_usd`."""
        self.leave(signal_id)
        ret = pnl_percent / 100.0
        self.all_time.add(ret, size_usd)
        day = at - at % SECONDS_PER_DAY
        returns = self.days.get(day)
        if returns is None:
            returns = self.days[day] = Returns()
            self._forget_days(day, window_days)
        returns.add(ret, size_usd)
        self.equity = max(0.0, self.equity * (1.0 + ret))
        self.peak = max(self.peak, self.equity)
        drawdown = (self.peak - self.equity) / self.peak * 100.0
        self.max_drawdown = max(self.max_drawdown, drawdown)

    def _forget_days(self, today: int, window_days: int) -> None:
        oldest = today - (window_days - 1) * SECONDS_PER_DAY
        for day in [d for d in self.days if d < oldest]:
            del self.days[day]

    def recent(self, at: int, window_days: int) -> Returns:
        """The trades that closed on the last `window_days` UTC days up to feed time `at`."""
        today = at - at % SECONDS_PER_DAY
        self._forget_days(today, window_days)
        merged = Returns()
        for day in sorted(self.days):
            if day <= today:
                merged.merge(self.days[day])
        return merged

    def metrics(self) -> dict[str, float | int]:
        """The `trading_metrics` point's fields (module docstring); undefined ratios are absent."""
        returns = self.all_time
        fields: dict[str, float | int] = {
            "pnl_percent": round(returns.profit_percent, PERCENT_DIGITS),
            "pnl_absolute": round(returns.pnl_usd, USD_DIGITS),
            "win_count": returns.wins,
            "loss_count": returns.trades - returns.wins,
            "active_positions": len(self.active),
            "exposure_usd": round(sum(self.active.values()), USD_DIGITS),
            "max_drawdown": round(self.max_drawdown, PERCENT_DIGITS),
        }
        sharpe, sortino = returns.sharpe, returns.sortino
        if sharpe is not None:
            fields["sharpe_ratio"] = round(sharpe, RATIO_DIGITS)
        if sortino is not None:
            fields["sortino_ratio"] = round(sortino, RATIO_DIGITS)
        return fields

    def performance(self, at: int, window_days: int) -> dict[str, object]:
        """The strategy document's `performance`: `allTime` and `last30Days`."""
        return {"allTime": self.all_time.performance(), "last30Days": self.recent(at, window_days).performance()}
