"""The four sinks against real stores: idempotent writes, newest-wins prices, TTLs, retry through an outage."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pymongo
import pytest
import redis
from influxdb_client.client.influxdb_client import InfluxDBClient
from pymongo.database import Database

from quantbot.analytics import SignalUpdate, TokenDocument, WhaleUpdate
from quantbot.backoff import Backoff
from quantbot.models import (
    WSOL_MINT,
    Activity,
    ActivityKind,
    DeadLetter,
    InstructionIndex,
    PriceTick,
    TickStats,
    TokenAmount,
)
from quantbot.ops import stack
from quantbot.pricing import USDC_MINT, PriceBook
from quantbot.schema import mongo as mongo_schema
from quantbot.schema import postgres as pg_schema
from quantbot.signals import WhaleFollower, evaluate
from quantbot.whales import WhaleConfig, detect
from sinks.influx import NS_PER_S, InfluxSink, line_of, point_time_ns, price_point
from sinks.mongo import MongoSink
from sinks.postgres import PostgresSink
from sinks.redis import RedisPolicy, RedisSink
from sinks.retry import Retry
from tests.conftest import InfluxEndpoint

BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
WALLET = "7tN3U3EHDBhP9ETMhzG3Sd1rovFF6UfpWQ45YHyotMGC"
STRATEGY_ID = "5b0f6a3e-5f6e-4c1a-9a3b-1d2c3e4f5a6b"
USER_ID = "0d9b6c2a-1111-4222-8333-944455566677"
NS_PER_MS = 1_000_000
FAST_RETRY = Retry(budget_s=30.0, backoff=Backoff(base_s=0.05, cap_s=0.5))


def whale_and_signal(block_time: int) -> tuple[Any, Any]:
    """A $500k SOL->BONK whale and the signal a whale follower derives from it."""
    book = PriceBook()
    book.value(
        Activity("s0", 1, block_time, ActivityKind.SWAP, InstructionIndex(0), WALLET, "raydium_amm_v4",
                 TokenAmount(WSOL_MINT, 10**9, 9), TokenAmount(USDC_MINT, 100 * 10**6, 6))
    )  # fmt: skip
    activity = Activity(
        "5Q8EMUvmvFFuWRKHEk754TXDEMNoqB2GFTdMp2S8uLQfkfZCdryWLwRJz5rDnpRfnZ6fyfFgfkchoy4UdkHpcYBz",
        2, block_time, ActivityKind.SWAP, InstructionIndex(3, 1), WALLET, "jupiter_v6",
        TokenAmount(WSOL_MINT, 5000 * 10**9, 9), TokenAmount(BONK, 10**12, 5),
    )  # fmt: skip
    whale = detect(book.value(activity), WhaleConfig())
    assert whale is not None
    strategy = WhaleFollower.from_document(
        {"_id": STRATEGY_ID, "type": "whale_follower", "parameters": {"minTransactionValueUsd": 1}}, 3600
    )
    signal = evaluate(strategy, whale)
    assert signal is not None
    return whale, signal


def migrate_with_strategy(pg_url: str) -> str:
    """Bring `pg_url`'s database to the latest schema and add the user and strategy the signals refer to."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        pg_schema.migrate_up(conn)
        conn.execute("INSERT INTO users (user_id, email, password_hash) VALUES (%s, 'a@b.c', '!')", (USER_ID,))
        conn.execute(
            "INSERT INTO trading_strategies (strategy_id, user_id, strategy_name, strategy_type, parameters)"
            " VALUES (%s, %s, 'f', 'whale_follower', '{}')",
            (STRATEGY_ID, USER_ID),
        )
    return pg_url


@pytest.fixture
def migrated_pg(pg_url: str) -> str:
    """A database at the latest schema, with the user and strategy the signals refer to."""
    return migrate_with_strategy(pg_url)


def test_postgres_sink_writes_a_replayed_batch_once(migrated_pg: str) -> None:
    """Signals and dead letters written twice are stored once, with the block time as created_at."""
    _, signal = whale_and_signal(1_750_000_000)
    letter = DeadLetter("feed.jsonl@0", "recording", "frame", "line is not JSON", "garb\x00age", 0)
    sink = PostgresSink(lambda: psycopg.connect(migrated_pg, options="-c TimeZone=UTC"), FAST_RETRY)
    partition = sink.build("postgres", 0, 1)

    partition.write_batch([signal, letter])
    partition.write_batch([signal, letter])

    with psycopg.connect(migrated_pg, options="-c TimeZone=UTC") as conn:
        rows = conn.execute(
            "SELECT signal_id::text, direction, token_address, created_at, status FROM trading_signals"
        ).fetchall()
        letters = conn.execute("SELECT position, stage, reason, raw FROM dead_letters").fetchall()
    # TIMESTAMP (no zone) columns hold UTC wall time: 1_750_000_000 is 2025-06-15 15:06:40 UTC
    stored_at = datetime(2025, 6, 15, 15, 6, 40, tzinfo=UTC).replace(tzinfo=None)
    assert rows == [(signal.signal_id, "buy", BONK, stored_at, "pending")]
    assert letters == [("feed.jsonl@0", "frame", "line is not JSON", "garb\\x00age")]


def test_redis_sink_keeps_the_newest_price_and_sets_ttls(redis_url: str) -> None:
    """An older tick does not overwrite a newer one; prices live 30 s, signals until their expiry."""
    now = time.time()
    _, signal = whale_and_signal(int(now))
    newer = PriceTick(BONK, 0.00003, int(now), "raydium", 1.0, "s2", InstructionIndex(0))
    older = PriceTick(BONK, 0.00001, int(now) - 60, "orca", 1.0, "s1", InstructionIndex(0))
    partition = RedisSink(lambda: redis.Redis.from_url(redis_url), FAST_RETRY, RedisPolicy(price_ttl_s=30)).build(
        "redis", 0, 1
    )

    partition.write_batch([newer, signal])
    partition.write_batch([older])

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    price = client.hgetall(f"price:{BONK}")
    assert price["source"] == "raydium" and float(price["price"]) == pytest.approx(0.00003)
    assert 25_000 < client.pttl(f"price:{BONK}") <= 30_000
    stored = client.hgetall(f"signal:{signal.signal_id}")
    assert stored["direction"] == "buy" and stored["strategy_id"] == STRATEGY_ID
    expected_ttl_ms = (signal.expires_at - now) * 1000
    assert abs(client.pttl(f"signal:{signal.signal_id}") - expected_ttl_ms) < 5_000


def test_redis_sink_does_not_cache_expired_signals(redis_url: str) -> None:
    """A signal whose expiry has passed is not put in the active-signal cache."""
    _, signal = whale_and_signal(1_600_000_000)
    partition = RedisSink(lambda: redis.Redis.from_url(redis_url), FAST_RETRY).build("redis", 0, 1)

    partition.write_batch([signal])

    assert redis.Redis.from_url(redis_url).exists(f"signal:{signal.signal_id}") == 0


def test_mongo_sink_upserts_whale_documents_by_signature(mongo_url: str, mongo_db: Database[dict[str, Any]]) -> None:
    """A whale document written twice is one document that passes the collection's validator."""
    mongo_schema.apply(mongo_db)
    whale, _ = whale_and_signal(1_750_000_000)
    partition = MongoSink(lambda: pymongo.MongoClient(mongo_url), mongo_db.name, FAST_RETRY).build("mongo", 0, 1)

    partition.write_batch([whale])
    partition.write_batch([whale])

    docs = list(mongo_db.whale_activity.find({}))
    assert len(docs) == 1
    assert docs[0]["_id"] == whale.document["_id"]
    assert docs[0]["walletProfile"]["whaleCategory"] == "whale"
    assert docs[0]["timestamp"].replace(tzinfo=UTC) == datetime.fromtimestamp(1_750_000_000, tz=UTC)


def test_mongo_sink_applies_a_whales_follow_ups_after_it_and_keeps_the_latest_whole_writes(
    mongo_url: str, mongo_db: Database[dict[str, Any]]
) -> None:
    """A whale and its follow-ups in one batch apply in stream order; of a token's documents the last is stored."""
    mongo_schema.apply(mongo_db)
    whale, _ = whale_and_signal(1_750_000_000)
    signature = str(whale.document["_id"])
    token = {"_id": BONK, "exchanges": [], "createdAt": datetime.fromtimestamp(1_750_000_000, tz=UTC)}
    partition = MongoSink(lambda: pymongo.MongoClient(mongo_url), mongo_db.name, FAST_RETRY).build("mongo", 0, 1)

    partition.write_batch(
        [
            WhaleUpdate(signature, {"significance.priceMoveAfter3h": -1.0}),  # before its whale: nothing to update
            whale,
            TokenDocument(BONK, {**token, "updatedAt": datetime.fromtimestamp(1_750_000_300, tz=UTC)}),
            WhaleUpdate(signature, {"significance.priceMoveAfter3h": 4.2}, related=("other",)),
            WhaleUpdate(signature, related=("other", "third")),
            TokenDocument(BONK, {**token, "updatedAt": datetime.fromtimestamp(1_750_003_600, tz=UTC)}),
        ]
    )

    stored = mongo_db.whale_activity.find_one({"_id": signature})
    assert stored is not None
    assert stored["significance"]["priceMoveAfter3h"] == 4.2
    assert stored["relatedTransactions"] == ["other", "third"]
    assert stored["walletProfile"] == whale.document["walletProfile"]
    (document,) = mongo_db.tokens.find({})
    assert document["updatedAt"].replace(tzinfo=UTC) == datetime.fromtimestamp(1_750_003_600, tz=UTC)


def test_signal_lifecycle_rows_and_cache_follow_the_stream(pg_url: str, redis_url: str) -> None:
    """A signal, its activation and its close in one batch: the row ends closed with its outcome, the hash is gone."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        pg_schema.migrate_up(conn)
        conn.execute(
            "INSERT INTO users (user_id, email, password_hash) VALUES (%s, 'x@y.z', '!') ON CONFLICT DO NOTHING",
            (USER_ID,),
        )
        conn.execute(
            "INSERT INTO trading_strategies (strategy_id, user_id, strategy_name, strategy_type, parameters)"
            " VALUES (%s, %s, 's', 'whale_follower', '{}') ON CONFLICT DO NOTHING",
            (STRATEGY_ID, USER_ID),
        )
    now = int(time.time())
    _, signal = whale_and_signal(now)
    active = SignalUpdate(signal, "active", now + 60, entry_price=1.0)
    closed = SignalUpdate(
        signal,
        "closed",
        now + 600,
        entry_price=1.0,
        exit_price=1.2,
        exit_reason="take_profit",
        pnl_percent=20.0,
        success=True,
    )
    PostgresSink(lambda: psycopg.connect(pg_url), FAST_RETRY).build("postgres", 0, 1).write_batch(
        [signal, active, closed]
    )
    cache = RedisSink(lambda: redis.Redis.from_url(redis_url), FAST_RETRY).build("redis", 0, 1)
    cache.write_batch([signal])
    assert redis.Redis.from_url(redis_url).exists(f"signal:{signal.signal_id}") == 1
    cache.write_batch([active, closed])

    with psycopg.connect(pg_url) as conn:
        status, processed, metadata = conn.execute(
            "SELECT status, processed_at, metadata FROM trading_signals WHERE signal_id = %s", (signal.signal_id,)
        ).fetchone() or (None, None, None)
    assert status == "closed" and processed == datetime.fromtimestamp(now + 600, tz=UTC).replace(tzinfo=None)
    assert metadata["outcome"] == {
        "entry_price": 1.0,
        "exit_price": 1.2,
        "exit_reason": "take_profit",
        "pnl_percent": 20.0,
        "success": True,
    }
    assert redis.Redis.from_url(redis_url).exists(f"signal:{signal.signal_id}") == 0


def test_influx_sink_points_are_identical_on_replay(influx: InfluxEndpoint) -> None:
    """Same-second trades of one token are distinct points by their natural key; rewriting adds no point."""
    ticks = [
        PriceTick(BONK, 0.00002 + i * 1e-7, 1_750_000_000, "raydium", 100.0 + i, f"sig{i}", InstructionIndex(i))
        for i in range(5)
    ]
    _, signal = whale_and_signal(1_750_000_000)
    sink = InfluxSink(lambda: InfluxDBClient(url=influx.url, token=influx.token, org=influx.org), "b", "o", FAST_RETRY)
    partition = sink.build("influx", 0, 1)

    partition.write_batch([*ticks, signal])
    partition.write_batch([*ticks, signal])

    (prices,) = influx.export(f'{{__name__="token_prices_price",token_address="{BONK}"}}')
    assert sorted(prices["values"]) == pytest.approx(sorted(t.price_usd for t in ticks))
    assert sorted(prices["timestamps"]) == sorted(point_time_ns(t) // NS_PER_MS for t in ticks)
    assert all(1_750_000_000_000 <= ms < 1_750_000_001_000 for ms in prices["timestamps"])  # within the block second
    (confidence,) = influx.export(f'{{__name__="trading_signals_confidence",signal_id="{signal.signal_id}"}}')
    assert confidence["values"] == [signal.confidence]


def test_influx_point_time_is_the_trades_identity_not_its_arrival() -> None:
    """A tick's point time depends only on the trade (signature, outer, inner): equal ticks, equal lines; distinct
    trades of one second, distinct nanoseconds; a feed quote lies on its publish second."""
    second = 1_750_000_000
    trades = [
        PriceTick(BONK, 1.0, second, "raydium", 1.0, f"{i:064x}", InstructionIndex(outer, inner))
        for i in range(2_000)
        for outer, inner in ((0, None), (0, 0), (1, 2))
    ]
    again = [
        PriceTick(t.token, t.price_usd, t.block_time, t.source, t.volume_usd, t.signature, t.index) for t in trades
    ]

    assert [price_point(t).to_line_protocol() for t in again] == [price_point(t).to_line_protocol() for t in trades]
    times = [point_time_ns(t) for t in trades]
    assert len(set(times)) == len(trades)
    assert all(second * NS_PER_S <= ns < (second + 1) * NS_PER_S for ns in times)
    assert [int(price_point(t).to_line_protocol().rsplit(" ", 1)[1]) for t in trades[:50]] == times[:50]
    quote = PriceTick(WSOL_MINT, 150.0, second, "pyth", 0.0, "", InstructionIndex(0))
    assert point_time_ns(quote) == second * NS_PER_S


def test_the_sinks_price_line_is_the_price_points_line() -> None:
    """What the sink writes for a tick (`line_of`, rendered directly) is its `price_point`'s line, stats or none."""
    second = 1_750_000_000
    stats = TickStats(1.5e6, 2.0e9, -3.25, 1.0, 0.5, 7.0e5)
    ticks = [
        PriceTick(BONK, 0.5 + i / 7, second + i, "raydium", 10.0 * i, f"{i:064x}", InstructionIndex(i, None), symbol)
        for i in range(50)
        for symbol in (None, "BONK, the dog")
    ]
    ticks += [dataclasses.replace(tick, stats=stats) for tick in ticks]
    ticks.append(PriceTick(WSOL_MINT, 150.0, second, "pyth", 0.0, "", InstructionIndex(0), "SOL", stats))

    assert [line_of(tick) for tick in ticks] == [price_point(tick).to_line_protocol() for tick in ticks]


@pytest.mark.slow  # starts and restarts a Valkey server of its own
def test_redis_sink_retries_through_a_server_restart(tmp_path: Path) -> None:
    """A write issued while Redis is down completes once it is back, within the retry budget."""
    port = stack.free_port()
    server = stack.start_valkey(tmp_path / "data", port, tmp_path / "valkey.log")
    url = f"redis://127.0.0.1:{port}/0"
    partition = RedisSink(lambda: redis.Redis.from_url(url, socket_timeout=1), FAST_RETRY).build("redis", 0, 1)
    tick = PriceTick(BONK, 0.00002, int(time.time()), "raydium", 1.0, "s", InstructionIndex(0))
    stack.stop(server)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            partition.write_batch([tick])
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(1.0)  # the writer is now retrying against a closed port (bounded by FAST_RETRY's budget)
    restarted = stack.start_valkey(tmp_path / "data", port, tmp_path / "valkey.log")
    try:
        writer.join(timeout=FAST_RETRY.budget_s)
        assert not writer.is_alive() and errors == []
        assert redis.Redis.from_url(url).hget(f"price:{BONK}", "source") == b"raydium"
    finally:
        stack.stop(restarted)


def test_redis_sink_keeps_the_newest_tick_of_a_batch(redis_url: str) -> None:
    """Within one batch, the newest block time wins whatever its place; equal times go to the later tick."""
    now = int(time.time())
    ticks = [
        PriceTick(BONK, 1.0, now - 5, "a", 1.0, "s1", InstructionIndex(0)),
        PriceTick(BONK, 2.0, now, "b", 1.0, "s2", InstructionIndex(0)),
        PriceTick(BONK, 3.0, now - 9, "c", 1.0, "s3", InstructionIndex(0)),
        PriceTick(WSOL_MINT, 4.0, now, "d", 1.0, "s4", InstructionIndex(0)),
        PriceTick(WSOL_MINT, 5.0, now, "e", 1.0, "s5", InstructionIndex(1)),
    ]
    partition = RedisSink(lambda: redis.Redis.from_url(redis_url), FAST_RETRY).build("redis", 0, 1)

    partition.write_batch(ticks)

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.hget(f"price:{BONK}", "source") == "b"
    assert client.hget(f"price:{WSOL_MINT}", "source") == "e"
