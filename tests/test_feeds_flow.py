"""The price feeds end to end: loopback Hermes and Birdeye peers through the one graph into the real stores, recorded,
and the recording replayed to the same stores; no key in any output."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from flows.feeds import feed_sources, stop_feeds
from flows.graph import build_flow
from flows.replay import replay
from flows.runtime import flow_config, run, store_sinks
from quantbot import metrics
from quantbot.feeds import SOL_USD_FEED_ID, FeedMap
from quantbot.models import WSOL_MINT
from quantbot.ops.peers.birdeye import BirdeyePeer, ScriptedTrade
from quantbot.ops.peers.hermes import HermesPeer
from quantbot.pricing import FeedQuote
from quantbot.recordings import decode_frame, find_recordings, read_lines
from quantbot.redaction import redact
from quantbot.schema import postgres as pg_schema
from quantbot.settings import Settings, load_settings
from quantbot.steps import parse_frame
from sinks.recorder import RecorderSink
from tests.conftest import REPO_ROOT, InfluxEndpoint, store_env

BONK = "FeedBirdeyeTestMint111111111111111111111111"
"""A mint of this test alone: the Influx server is shared by the session, and other tests write Bonk."""
KEY = "bird-k3y-0123456789abcdef"
RUN_S = 2.0
"""How long the feeds run before the peers stop moving their prices."""
SETTLE_S = 0.5
"""After the peers stop, how long the flow reads on: ten of their ticks, so the newest has arrived."""
MISSED = "4xLargeTradeTheFlowNeverSaw1111111111111111111111111111111111111111111"


@pytest.fixture
def own_influx(run_influx: str) -> InfluxEndpoint:
    """A VictoriaMetrics of this test's own: the session's holds the SOL prices other tests' replays wrote in
    the last minute (synthetic feeds end now, with pyth quotes), indistinguishable from this test's."""
    return InfluxEndpoint(url=run_influx, token="test-token", org="quantbot", bucket="quantbot")


@pytest.fixture
def settings(
    pg_url: str, redis_url: str, mongo_url: str, own_influx: InfluxEndpoint, tmp_path: Path
) -> Iterator[tuple[Settings, HermesPeer, BirdeyePeer]]:
    """Settings with the Pyth and Birdeye feeds pointed at loopback peers, over migrated test stores."""
    with (
        HermesPeer({SOL_USD_FEED_ID: 151.25}, interval_s=0.05) as hermes,
        BirdeyePeer(
            {BONK: ("Bonk", 0.0000231)},
            api_key=KEY,
            interval_s=0.05,
            trades=[ScriptedTrade(MISSED, 250_000.0, int(time.time()))],
        ) as birdeye,
    ):
        env = {
            **store_env(pg_url, redis_url, mongo_url, own_influx, mongo_db="feeds", stack_dir=tmp_path / "stack"),
            "QUANTBOT_FEEDS_ENABLED": '["pyth", "birdeye"]',
            "QUANTBOT_PYTH_URL": hermes.url,
            "QUANTBOT_BIRDEYE_WS_URL": birdeye.ws_url,
            "QUANTBOT_BIRDEYE_API_KEY": KEY,
            "QUANTBOT_FEEDS_BIRDEYE_TOKENS": f'["{BONK}"]',
            "QUANTBOT_FEEDS_LARGE_TRADE_MIN_USD": "100000",
            "QUANTBOT_FEEDS_LARGE_TRADE_DELAY_S": "0.3",
            "QUANTBOT_FEEDS_BACKOFF_BASE_S": "0.05",
            "QUANTBOT_PIPELINE_SNAPSHOT_INTERVAL_S": "0.5",
        }
        loaded = load_settings("default", REPO_ROOT / "config", environ=env)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            pg_schema.migrate_up(conn)
        yield loaded, hermes, birdeye


def prices(settings: Settings) -> dict[str, dict[str, str]]:
    assert settings.redis.url
    client = redis.Redis.from_url(settings.redis.url, decode_responses=True)
    return {key: client.hgetall(key) for key in sorted(client.scan_iter(match="price:*"))}


def feed_points(influx: InfluxEndpoint, since: int) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(source, token) -> the token_prices samples of the feeds since `since` (Unix seconds)."""
    found: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for series in influx.export('{__name__="token_prices_price", source=~"pyth|birdeye"}'):
        samples = [(ms, v) for ms, v in zip(series["timestamps"], series["values"], strict=True) if ms >= since * 1000]
        if samples:
            key = (series["metric"]["source"], series["metric"]["token_address"])
            found.setdefault(key, []).extend(sorted(samples))
    return found


def test_feeds_write_the_peers_prices_with_their_sources_and_the_recording_replays_the_same(
    settings: tuple[Settings, HermesPeer, BirdeyePeer],
    own_influx: InfluxEndpoint,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis price:<SOL> holds Hermes' newest price from `pyth`; Influx has pyth and birdeye points; a replay agrees."""
    config, hermes, birdeye = settings
    caplog.set_level(logging.DEBUG)
    started = int(time.time()) - 60  # Birdeye's candles start at the minute
    sources = feed_sources(config, None, [])
    recorder = RecorderSink(tmp_path / "rec")
    flow = build_flow(sources, store_sinks(config), flow_config(config, []), name="feeds", record=recorder)

    def script() -> None:
        time.sleep(RUN_S)
        hermes.paused = birdeye.paused = True
        time.sleep(SETTLE_S)
        stop_feeds(sources)

    scripter = threading.Thread(target=script)
    scripter.start()
    missed_before = metrics.FEED_MISSED_TRADES._value.get()
    run(flow, config, None)
    scripter.join()

    live_prices = prices(config)
    sol = live_prices[f"price:{WSOL_MINT}"]
    assert sol["source"] == "pyth"
    assert float(sol["price"]) == pytest.approx(hermes.latest(SOL_USD_FEED_ID).price, rel=1e-9)
    assert live_prices[f"price:{BONK}"]["source"] == "birdeye"
    points = feed_points(own_influx, started)
    assert set(points) == {("pyth", WSOL_MINT), ("birdeye", BONK)}

    frames = [decode_frame(line.data, "") for path in find_recordings([tmp_path / "rec"]) for line in read_lines(path)]
    assert {(f.source, f.kind) for f in frames} == {("pyth", "price"), ("birdeye", "price"), ("birdeye", "large_trade")}
    assert metrics.FEED_MISSED_TRADES._value.get() - missed_before == 1
    with psycopg.connect(config.postgres.url or "") as conn:
        events = conn.execute("SELECT event_type, message, details::text FROM system_events").fetchall()
    assert any(kind == "gap_detected" and MISSED in message for kind, message, _ in events)
    assert not any(KEY in message or KEY in details for _, message, details in events)

    assert config.redis.url
    redis.Redis.from_url(config.redis.url).flushdb()
    replay(config, [tmp_path / "rec"])

    assert prices(config) == live_prices
    # InfluxDB keeps the last of several writes to one point (a feed sends several quotes a second: the
    # replay writes them in the recorded order); VictoriaMetrics, its stand-in here, keeps one of them.
    replayed = feed_points(own_influx, started)
    assert {key: [ms for ms, _ in samples] for key, samples in replayed.items()} == {
        key: [ms for ms, _ in samples] for key, samples in points.items()
    }
    quoted = {
        (q.source, q.token, q.ts * 1000, round(q.price_usd, 9))
        for frame in frames
        for q in parse_frame(frame, feeds=FeedMap(dict(config.feeds.pyth_ids)))
        if isinstance(q, FeedQuote)
    }
    for (source, token), samples in replayed.items():
        assert all((source, token, ms, round(value, 9)) in quoted for ms, value in samples)
    assert KEY not in redact(caplog.text)
    assert KEY not in str(config.redacted())
