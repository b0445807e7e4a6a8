"""The demo's user and whale-follower strategy (PostgreSQL and MongoDB), its feed, and its simulated chain for
`--live`."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from quantbot.ops.peers.solana_rpc import Faults
from quantbot.schema import mongo as mongo_schema
from quantbot.settings import Settings
from quantbot.synthetic import FeedSpec
from quantbot.units import SECONDS_PER_DAY, SECONDS_PER_HOUR
from sinks.clients import mongo_client, postgres_connect, resolve_endpoints

DEMO_USER_ID = "00000000-0000-4000-8000-00000000d3e0"
DEMO_STRATEGY_ID = "00000000-0000-4000-8000-00000000d3e1"
MEGA_STRATEGY_ID = "00000000-0000-4000-8000-00000000d3e2"
SCALPER_STRATEGY_ID = "00000000-0000-4000-8000-00000000d3e3"
# Not a password hash any login could match: the demo user exists to own the demo strategy only.
DISABLED_PASSWORD_HASH = "!disabled"  # noqa: S105 - deliberately matches no password


def demo_strategy_document() -> dict[str, Any]:
    """The demo's whale follower, in the schema's strategy-configuration shape."""
    return {
        "_id": DEMO_STRATEGY_ID,
        "userId": DEMO_USER_ID,
        "name": "Whale Follower Demo",
        "type": "whale_follower",
        "description": "Follows swaps of $100k and more into the token the whale bought",
        "status": "active",
        "parameters": {
            "minTransactionValueUsd": 100_000,
            "minWhaleInfluenceScore": 1,
            "followSizePercentage": 5,
            "maxPositionSizeUsd": 10_000,
            "allowedTokens": {"type": "denylist", "list": []},
            "executionDelay": 60,
            "takeProfitPercent": 15,
            "stopLossPercent": 7.5,
            "timeBasedExit": {"enabled": True, "maxHoldingTimeHours": 48},
        },
        "filters": {"transactionTypes": ["swap"], "excludedWallets": [], "minimumLiquidityUsd": 500_000},
    }


def more_demo_strategy_documents() -> list[dict[str, Any]]:
    """Two more whale followers with other rules, so that the demo has a best and a worst strategy to show."""
    base = demo_strategy_document()
    mega = {
        **base,
        "_id": MEGA_STRATEGY_ID,
        "name": "Mega Whale Momentum",
        "description": "Follows swaps of $250k and more, wide exits, held a day at most",
        "parameters": {
            **base["parameters"],
            "minTransactionValueUsd": 250_000,
            "followSizePercentage": 2,
            "maxPositionSizeUsd": 25_000,
            "executionDelay": 30,
            "takeProfitPercent": 25,
            "stopLossPercent": 12,
            "timeBasedExit": {"enabled": True, "maxHoldingTimeHours": 24},
        },
    }
    scalper = {
        **base,
        "_id": SCALPER_STRATEGY_ID,
        "name": "Quick Scalper",
        "description": "Follows swaps of $50k and more, tight exits, held four hours at most",
        "parameters": {
            **base["parameters"],
            "minTransactionValueUsd": 50_000,
            "followSizePercentage": 10,
            "maxPositionSizeUsd": 5_000,
            "executionDelay": 10,
            "takeProfitPercent": 4,
            "stopLossPercent": 3,
            "timeBasedExit": {"enabled": True, "maxHoldingTimeHours": 4},
        },
        "filters": {**base["filters"], "minimumLiquidityUsd": 0},
    }
    return [mega, scalper]


def ensure_demo_strategy(settings: Settings, *, all_of_them: bool = False) -> str:
    """Create the demo user and its whale-follower strategy (with `all_of_them`, the two others too) in
    PostgreSQL and MongoDB; idempotent. Returns the first strategy's id."""
    endpoints = resolve_endpoints(settings)
    documents = [demo_strategy_document(), *(more_demo_strategy_documents() if all_of_them else [])]
    with postgres_connect(settings, endpoints.postgres) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO users (user_id, email, password_hash, role) VALUES (%s, %s, %s, 'user')"
            " ON CONFLICT (user_id) DO NOTHING",
            (DEMO_USER_ID, "demo@quantbot.local", DISABLED_PASSWORD_HASH),
        )
        for document in documents:
            conn.execute(
                "INSERT INTO trading_strategies"
                " (strategy_id, user_id, strategy_name, strategy_type, description, parameters)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (strategy_id) DO NOTHING",
                (
                    document["_id"],
                    DEMO_USER_ID,
                    document["name"],
                    document["type"],
                    document["description"],
                    Jsonb({"parameters": document["parameters"], "filters": document["filters"]}),
                ),
            )
    with mongo_client(settings, endpoints.mongo) as client:
        configs = client[settings.mongo.db][mongo_schema.STRATEGY_CONFIGS.name]
        for document in documents:
            configs.replace_one({"_id": document["_id"]}, document, upsert=True)
    return DEMO_STRATEGY_ID


def demo_feed_spec(*, txs: int, hours: float, seed: int, garbage_share: float, now: float) -> FeedSpec:
    """The demo's feed: `txs` transactions over `hours` of feed time, ending at the midnight (UTC) before `now`.

    Ending there, the feed lies wholly in the past, its latest signals are still active (those of the
    demo strategy live 48 h), and a second demo on the same day writes the very same data, so the stores'
    counts stay as shown.

    Args:
        txs: transactions in the feed.
        hours: hours of feed time it spans.
        seed: its seed.
        garbage_share: share of malformed lines.
        now: Unix seconds of the present (the wall clock: it only places the feed, never derives data).
    """
    midnight = int(now) // SECONDS_PER_DAY * SECONDS_PER_DAY
    start = midnight - round(hours * SECONDS_PER_HOUR)
    return FeedSpec(txs=txs, seed=seed, garbage_share=garbage_share, start_time=start, hours=hours)


LIVE_FAULTS = Faults(drop_every_s=10.0, http_429_share=0.02, http_503_share=0.01, null_first_fetch_share=0.05)
"""What the live demo's node does wrong by default, so that reconnections, gaps and retries show: a provider's
bad minute (mainnet providers drop sockets every few minutes and answer 429 at their plan's rate)."""
LIVE_REQUESTS_PER_S = 1000.0
"""The loopback node has no plan to respect: enough for mainnet's DEX pace with every retry."""
LIVE_BACKOFF_CAP_S = 2.0
"""Reconnections of the demo wait at most this long: the loopback node is back at once."""


def with_node(settings: Settings, rpc_url: str, ws_url: str) -> Settings:
    """`settings` pointed at a node (the demo's loopback one), with limits that suit it."""
    solana = settings.solana.model_copy(
        update={
            "rpc_url": rpc_url,
            "ws_url": ws_url,
            "requests_per_s": LIVE_REQUESTS_PER_S,
            "backoff_cap_s": LIVE_BACKOFF_CAP_S,
        }
    )
    return settings.model_copy(update={"solana": solana})


def describe_faults(faults: Faults) -> str:
    """One line of what a node's faults are."""
    if faults == Faults():
        return "none"
    return (
        f"websocket dropped every {faults.drop_every_s:g} s, {faults.http_429_share:.0%} of requests 429,"
        f" {faults.http_503_share:.0%} 503, {faults.null_first_fetch_share:.0%} of first fetches null"
    )
