"""Strategy rules: whale transactions -> trading signals.

A strategy is the schema's strategy configuration document (collection `strategy_configs`, matching the
`trading_strategies` row). One type is implemented, `whale_follower`: follow a whale into the token it
bought (or out of the token it sold). Its parameters, all from the document:

- `parameters.minTransactionValueUsd`, `parameters.minWhaleInfluenceScore` (compared with the whale's
  signal strength, 0-10: the influence the flow can measure today), `parameters.allowedTokens`
  (`{"type": "allowlist" | "denylist", "list": [...]}`), `parameters.executionDelay` (seconds),
  `parameters.takeProfitPercent`, `parameters.stopLossPercent`, `parameters.timeBasedExit`
  (`enabled`, `maxHoldingTimeHours`), `parameters.followSizePercentage`, `parameters.maxPositionSizeUsd`;
- `filters.transactionTypes`, `filters.excludedWallets`, `filters.minimumLiquidityUsd` (checked against
  the pool's liquidity where the trade's events carry reserves; where they do not, the signal says
  `liquidity_checked: false` in its metadata rather than pretending);
- `status` must be `active`.

The followed token is the side that is not a quote asset (SOL, USDC, USDT): a whale paying SOL for X is
`buy X`; a whale selling X for USDC is `sell X`. A trade between two quote assets follows SOL.
The signal id is a UUIDv5 of strategy id and signature: a replayed whale produces the same signal.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quantbot.models import WSOL_MINT, Signal, WhaleTransaction
from quantbot.pricing import USDC_MINT, USDT_MINT
from quantbot.units import SECONDS_PER_HOUR

WHALE_FOLLOWER = "whale_follower"
SIGNAL_NAMESPACE = uuid.UUID("6f0c1a2e-4b1d-5c8e-9a57-0e6b1e3c2d10")
"""Namespace of signal ids (uuid5): fixed forever, or replays would mint new ids for old signals."""
QUOTE_MINTS = frozenset({WSOL_MINT, USDC_MINT, USDT_MINT})
CONFIDENCE_PER_STRENGTH_POINT = 10.0
"""Signal strength 0-10 maps onto `trading_signals.confidence` 0-100 (DECIMAL(5,2))."""


class StrategyError(ValueError):
    """A strategy configuration cannot be used; the message names the strategy and the field."""


@dataclass(frozen=True, slots=True)
class WhaleFollower:
    """A parsed `whale_follower` strategy configuration."""

    strategy_id: str
    name: str
    min_value_usd: float
    min_influence: float
    list_rule: str | None
    token_list: frozenset[str]
    transaction_types: frozenset[str] | None
    excluded_wallets: frozenset[str]
    min_liquidity_usd: float
    execution_delay_s: int
    take_profit_pct: float | None
    stop_loss_pct: float | None
    max_holding_s: int | None
    follow_size_pct: float | None
    max_position_usd: float | None
    user_id: str | None = None
    """The owner (`userId`): the `trading_metrics` points' `user_id` tag; None when the document has none."""

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], default_holding_s: int) -> WhaleFollower:
        """Parse a strategy configuration document.

        Raises:
            StrategyError: naming the strategy and the offending field.
        """
        sid = str(doc.get("_id", ""))
        params = doc.get("parameters") or {}
        filters = doc.get("filters") or {}

        def number(where: Mapping[str, Any], key: str, default: float | None) -> float | None:
            value = where.get(key, default)
            if value is None:
                return None
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise StrategyError(f"strategy `{sid}`: `{key}` must be a number, got {value!r}")
            return float(value)

        allowed = params.get("allowedTokens") or {}
        list_type = allowed.get("type")
        if list_type not in (None, "allowlist", "denylist"):
            raise StrategyError(
                f"strategy `{sid}`: allowedTokens.type must be allowlist or denylist, got {list_type!r}"
            )
        exit_rule = params.get("timeBasedExit") or {}
        max_hours = number(exit_rule, "maxHoldingTimeHours", None) if exit_rule.get("enabled") else None
        types = filters.get("transactionTypes")
        return cls(
            strategy_id=sid,
            name=str(doc.get("name", sid)),
            min_value_usd=number(params, "minTransactionValueUsd", 0.0) or 0.0,
            min_influence=number(params, "minWhaleInfluenceScore", 0.0) or 0.0,
            list_rule=list_type,
            token_list=frozenset(allowed.get("list") or ()),
            transaction_types=frozenset(types) if types else None,
            excluded_wallets=frozenset(filters.get("excludedWallets") or ()),
            min_liquidity_usd=number(filters, "minimumLiquidityUsd", 0.0) or 0.0,
            execution_delay_s=int(number(params, "executionDelay", 0.0) or 0),
            take_profit_pct=number(params, "takeProfitPercent", None),
            stop_loss_pct=number(params, "stopLossPercent", None),
            max_holding_s=int(max_hours * SECONDS_PER_HOUR) if max_hours is not None else default_holding_s,
            follow_size_pct=number(params, "followSizePercentage", None),
            max_position_usd=number(params, "maxPositionSizeUsd", None),
            user_id=str(doc["userId"]) if doc.get("userId") else None,
        )


def load_strategies(documents: Sequence[Mapping[str, Any]], default_holding_s: int) -> list[WhaleFollower]:
    """The active whale-follower strategies among `documents` (other types and statuses are skipped)."""
    return [
        WhaleFollower.from_document(doc, default_holding_s)
        for doc in documents
        if doc.get("type") == WHALE_FOLLOWER and doc.get("status", "active") == "active"
    ]


def signal_id(strategy_id: str, signature: str) -> str:
    """The deterministic id of the signal a strategy derives from a transaction."""
    return str(uuid.uuid5(SIGNAL_NAMESPACE, f"{strategy_id}:{signature}"))


def followed_token(whale: WhaleTransaction) -> tuple[str, str, float | None] | None:
    """(token, direction, token USD price at the whale) the whale's trade points at; None if it has no leg.

    The token is the side that is not a quote asset (a trade between two follows SOL); the direction is the
    whale's (`buy` when it got the token); the price is the trade's tick of the token (SOL/USD for SOL), if any.
    """
    activity = whale.valued.activity
    usd = whale.valued.usd_value
    legs = [(leg, "sell") for leg in [activity.input] if leg] + [(leg, "buy") for leg in [activity.output] if leg]
    candidates = [(leg, d) for leg, d in legs if leg.mint not in QUOTE_MINTS] or [
        (leg, d) for leg, d in legs if leg.mint == WSOL_MINT
    ]
    if not candidates:
        return None
    leg, direction = candidates[0]
    price = None
    for tick in whale.valued.ticks:
        if tick.token == leg.mint:
            price = tick.price_usd
    if price is None and usd is not None and leg.mint == WSOL_MINT:
        price = whale.valued.sol_usd
    return leg.mint, direction, price


def evaluate(strategy: WhaleFollower, whale: WhaleTransaction, liquidity_usd: float | None = None) -> Signal | None:
    """The signal `strategy` derives from `whale`, or None when a rule rejects it."""
    activity = whale.valued.activity
    usd = whale.valued.usd_value or 0.0
    significance = whale.document.get("significance")
    strength = float(significance.get("signalStrength", 0.0)) if isinstance(significance, dict) else 0.0
    if usd < strategy.min_value_usd or strength < strategy.min_influence:
        return None
    if activity.trader in strategy.excluded_wallets:
        return None
    if strategy.transaction_types is not None and str(activity.kind) not in strategy.transaction_types:
        return None
    followed = followed_token(whale)
    if followed is None:
        return None
    token, direction, price = followed
    if strategy.list_rule == "allowlist" and token not in strategy.token_list:
        return None
    if strategy.list_rule == "denylist" and token in strategy.token_list:
        return None
    if liquidity_usd is not None and liquidity_usd < strategy.min_liquidity_usd:
        return None

    take_profit = stop_loss = None
    if price is not None:
        sign = 1.0 if direction == "buy" else -1.0
        if strategy.take_profit_pct is not None:
            take_profit = price * (1 + sign * strategy.take_profit_pct / 100)
        if strategy.stop_loss_pct is not None:
            stop_loss = price * (1 - sign * strategy.stop_loss_pct / 100)
    created = activity.block_time or 0
    execute_after = created + strategy.execution_delay_s
    expires = execute_after + (strategy.max_holding_s or 0)
    follow_usd = None
    if strategy.follow_size_pct is not None:
        follow_usd = usd * strategy.follow_size_pct / 100
        if strategy.max_position_usd is not None:
            follow_usd = min(follow_usd, strategy.max_position_usd)
    metadata: dict[str, object] = {
        "whale_signature": activity.signature,
        "whale_wallet": activity.trader,
        "whale_value_usd": round(usd, 2),
        "whale_category": whale.tier,
        "venue": activity.venue,
        "execute_after": execute_after,
        "liquidity_checked": liquidity_usd is not None,
        # The values the Redis hash and the Influx point carry beside the row's columns: with them,
        # PostgreSQL alone can rebuild both (`quantbot reconcile --fix`).
        "price": price,
        "strength": strength,
    }
    if follow_usd is not None:
        metadata["position_size_usd"] = round(follow_usd, 2)
    return Signal(
        signal_id=signal_id(strategy.strategy_id, activity.signature),
        strategy_id=strategy.strategy_id,
        signal_type=WHALE_FOLLOWER,
        token_address=token,
        direction=direction,
        confidence=round(min(100.0, strength * CONFIDENCE_PER_STRENGTH_POINT), 2),
        price=price,
        price_target=take_profit,
        stop_loss=stop_loss,
        take_profit=take_profit,
        created_at=created,
        expires_at=expires,
        usd_value=usd,
        strength=strength,
        metadata=metadata,
    )
