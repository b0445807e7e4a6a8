"""The flow's analytics: what it derives over feed time from valued trades, quotes and token facts.

`Analytics` (`quantbot.analytics.state`) is the state the valuation step keeps beside the prices: fed each
valued transaction (`observe_trade`), feed quote (`observe_quote`) and token facts (`observe_facts`) in stream
order, it returns the ticks with their 24 h statistics and what fell due: market snapshots, token documents,
whale transactions and their follow-ups, signals and their outcomes, strategies' figures. Pure: no Bytewax, no
I/O, no wall clock.

Modules, by concern: `config` (the `[analytics]` settings), `outputs` (what is emitted), `window` (rolling
buckets), `pools` (reserves, liquidity, price impact), `wallets` (whale histories, follow-ups, influence),
`lifecycle` (a signal's states), `strategies` (paper accounts), `market` (the snapshot document), `state`.
"""

from __future__ import annotations

from quantbot.analytics.config import AnalyticsConfig
from quantbot.analytics.outputs import (
    MarketSnapshot,
    Output,
    SignalUpdate,
    StrategyMetrics,
    StrategyPerformance,
    TokenDocument,
    TokenRequest,
    WhaleUpdate,
)
from quantbot.analytics.state import Analytics
from quantbot.tokens import TokenFacts

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
