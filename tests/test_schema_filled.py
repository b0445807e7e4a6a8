"""Issue 13's list: after a replay of the demo's feed, every part of the schema the chain supports is filled.

The feed is the demo's (`quantbot demo`: its generator, its 26 h of feed time, its seed and its three strategies),
smaller, so that the test takes seconds. Each assertion names a field the schema document lists; fields nothing
on chain supports (`tokenomics`, `socialMetrics`, a total crypto market cap, fear and greed) are absent, and the
README's "What the flow derives" says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pymongo
import pytest
import redis

from flows.replay import replay
from quantbot.ops import readback
from quantbot.ops import schema as operations
from quantbot.ops.cli import DEMO_HOURS
from quantbot.ops.demo import demo_feed_spec, ensure_demo_strategy
from quantbot.settings import Settings, load_settings
from quantbot.synthetic import generate_feed
from tests.conftest import REPO_ROOT, flow_environment

pytestmark = pytest.mark.slow  # generates and replays a 26 h feed into the four stores

TXS = 8_000
"""A smaller demo feed: enough whales, signals that open and close, and follow-ups, in about ten seconds."""
DEMO_SEED = 7
"""The demo's seed (`quantbot demo --seed`)."""


@pytest.fixture
def filled(pg_url: str, redis_url: str, mongo_url: str, run_influx: str, tmp_path: Path) -> tuple[Settings, str]:
    """The four stores after a replay of the demo's feed, and the Influx URL."""
    env = flow_environment(pg_url, redis_url, mongo_url, f"filled_{time.monotonic_ns()}", run_influx)
    settings = load_settings(config_dir=REPO_ROOT / "config", environ=env)
    assert all(report.ok for report in operations.migrate_up(settings))
    ensure_demo_strategy(settings, all_of_them=True)
    feed = tmp_path / "feed.jsonl"
    generate_feed(demo_feed_spec(txs=TXS, hours=DEMO_HOURS, seed=DEMO_SEED, garbage_share=0.01, now=time.time()), feed)
    replay(settings, [feed])
    return settings, run_influx


def has(document: dict[str, Any], path: str) -> bool:
    """Whether `document` holds the dotted `path`."""
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def some(documents: list[dict[str, Any]], path: str, where: Callable[[Any], bool] = lambda _v: True) -> bool:
    """Whether one document at least holds `path`, with a value `where` accepts."""
    return any(has(d, path) and where(_get(d, path)) for d in documents)


def _get(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        node = node[part]
    return node


def test_every_field_the_chain_supports_is_filled(filled: tuple[Settings, str]) -> None:
    """Tokens, snapshots, whale follow-ups, signal outcomes, strategy figures and the 24 h fields are all there."""
    settings, influx = filled
    assert settings.mongo.url and settings.postgres.url and settings.redis.url
    with pymongo.MongoClient(settings.mongo.url) as client:
        db = client[settings.mongo.db]
        tokens = list(db.tokens.find({}))
        snapshots = list(db.market_snapshots.find({}))
        whales = list(db.whale_activity.find({}))
        strategies = list(db.strategy_configs.find({}))

    # Mongo `tokens`: the chain's facts, their analysis, the pools they trade in.
    assert tokens
    for path in ("symbol", "name", "decimals", "totalSupply", "createdAt", "updatedAt", "contractAnalysis.renounced"):
        assert all(has(t, path) for t in tokens if has(t, "name")), path
    for path in ("mintAuthority", "freezeAuthority", "contractAnalysis.securityScore", "contractAnalysis.riskFactors"):
        assert some(tokens, path), path
    assert some(tokens, "contractAnalysis.mutable")
    for path in ("metadata.description", "metadata.image", "metadata.externalUrl"):
        assert some(tokens, path), path
    exchanges = [e for t in tokens for e in t.get("exchanges", [])]
    for field in ("name", "address", "volume24h", "liquidityUsd", "priceImpact1000usd"):
        assert any(field in e for e in exchanges), field
    assert not some(tokens, "tokenomics") and not some(tokens, "socialMetrics")

    # Mongo `market_snapshots`: one every 5 min of feed time, with what the flow knows of the market.
    assert len(snapshots) >= DEMO_HOURS * 12 - 1
    for path in (
        "timestamp",
        "globalMetrics.solanaPrice",
        "whaleActivity.largeTransactionCount",
        "whaleActivity.largeTransactionVolumeUsd",
        "whaleActivity.netFlowUsd",
        "liquidityMetrics.topDexVolume",
    ):
        assert all(has(s, path) for s in snapshots), path
    assert some(snapshots, "topMovers", lambda movers: bool(movers) and "priceChangePercent" in movers[0])
    assert some(snapshots, "whaleActivity.largeTransactionCount", lambda n: n > 0)

    # Mongo `whale_activity`: the follow-ups in place.
    assert some(whales, "significance.priceMoveAfter3h")
    assert some(whales, "relatedTransactions", bool)
    assert some(whales, "walletProfile.historicalInfluence")
    assert some(whales, "significance.marketImpact")

    # Mongo `strategy_configs`: each strategy's performance.
    for path in ("performance.allTime.tradesTotal", "performance.allTime.winRate", "performance.last30Days"):
        assert all(has(s, path) for s in strategies), path
    assert some(strategies, "performance.allTime.tradesTotal", lambda n: n > 0)

    # PostgreSQL `trading_signals`: the lifecycle, with processed_at once it moved on.
    with psycopg.connect(settings.postgres.url) as conn:
        rows = conn.execute("SELECT status, processed_at, metadata FROM trading_signals").fetchall()
    statuses = {status for status, _, _ in rows}
    assert "closed" in statuses and statuses <= {"pending", "active", "closed", "expired"}
    assert all(processed is not None for status, processed, _ in rows if status != "pending")
    reasons = {m["outcome"].get("exit_reason") for status, _, m in rows if status == "closed"}
    assert reasons & {"take_profit", "stop_loss", "time_exit"}

    # Redis: the 24 h change and volume beside the latest price.
    cache = redis.Redis.from_url(settings.redis.url, decode_responses=True)
    prices = [cache.hgetall(key) for key in cache.scan_iter(match="price:*")]
    assert any("change_24h" in p and "volume_24h" in p for p in prices)

    # Influx: token_prices complete, signal outcomes, strategy metrics.
    names = {s["metric"]["__name__"] for s in readback.influx_series(influx)}
    for field in ("price", "volume", "market_cap", "liquidity", "price_change_24h", "high_24h", "low_24h"):
        assert f"token_prices_{field}" in names, field
    for field in ("actual_move_1h", "actual_move_24h", "success"):
        assert f"trading_signals_{field}" in names, field
    for field in (
        "pnl_percent",
        "pnl_absolute",
        "win_count",
        "loss_count",
        "active_positions",
        "exposure_usd",
        "max_drawdown",
    ):
        assert f"trading_metrics_{field}" in names, field
    assert {"trading_metrics_sharpe_ratio", "trading_metrics_sortino_ratio"} & names
