"""Health, readiness and Prometheus metrics over HTTP, against a real replay into the real stores."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymongo
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from flows.replay import replay
from quantbot.backoff import Backoff
from quantbot.health import SourceActivity
from quantbot.models import Frame
from quantbot.ops import stack
from quantbot.ops.demo import DEMO_STRATEGY_ID, ensure_demo_strategy
from quantbot.ops.observability import serve
from quantbot.recordings import FrameFormatError, decode_frame, read_lines
from quantbot.schema import mongo as mongo_schema
from quantbot.schema import postgres as pg_schema
from quantbot.settings import Settings, load_settings
from quantbot.synthetic import FeedSpec, generate_feed
from sinks.retry import Retry
from tests.conftest import REPO_ROOT, InfluxEndpoint

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

SECRET = "s3cret-pw"
"""A password in the store URLs: accepted by the trust-auth PostgreSQL and the password-less Valkey alike."""
HTTP_TIMEOUT_S = 10.0
"""One request to the endpoint: a readiness answer probes four loopback stores, each bounded by 2 s."""
READY_CACHE_S = 0.5
"""The tests' `[observability] ready_cache_s`: short, so that a stopped store shows soon."""
AGE_S = 7_200
"""How old the replayed feed's blocks are: the lag behind the chain a replay of it must show."""
STORE_STOPS_S = 20.0
"""Bound on `/readyz` turning 503 after a store stops: the cache interval, then one probe (2 s each)."""
CLI_RUN_S = 120.0
"""Bound on the CLI replay's whole run: start-up, a paced feed of a few seconds, the summary."""


def _env(pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path) -> dict[str, str]:
    """The environment of a profile whose stores are the test servers, a password in the PostgreSQL URL."""
    return {
        "QUANTBOT_POSTGRES_URL": pg_url.replace("postgres@", f"postgres:{SECRET}@"),
        "QUANTBOT_REDIS_URL": redis_url,
        "QUANTBOT_MONGO_URL": mongo_url,
        "QUANTBOT_MONGO_DB": f"obs_{int(time.time() * 1000)}",
        "QUANTBOT_INFLUX_URL": influx.url,
        "QUANTBOT_INFLUX_TOKEN": influx.token,
        "QUANTBOT_STACK_DIR": str(tmp_path / "stack"),
        "QUANTBOT_OBSERVABILITY_READY_CACHE_S": str(READY_CACHE_S),
        # Synthetic trades are small; a $1 whale tier makes every valued trade a whale.
        "QUANTBOT_WHALES_TIERS": '[{name = "test", min_usd = 1.0}]',
    }


def _migrate(settings: Settings) -> None:
    assert settings.postgres.url and settings.mongo.url
    with psycopg.connect(settings.postgres.url, autocommit=True) as conn:
        pg_schema.migrate_up(conn)
    with pymongo.MongoClient(settings.mongo.url) as client:
        mongo_schema.apply(client[settings.mongo.db])


@pytest.fixture
def settings(pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path) -> Iterator[Settings]:
    """Settings on the test stores, migrated, with a whale follower that follows every whale."""
    settings = load_settings(
        "default", REPO_ROOT / "config", environ=_env(pg_url, redis_url, mongo_url, influx, tmp_path)
    )
    _migrate(settings)
    ensure_demo_strategy(settings)
    with pymongo.MongoClient(mongo_url) as client:
        client[settings.mongo.db].strategy_configs.update_one(
            {"_id": DEMO_STRATEGY_ID},
            {"$set": {"parameters.minTransactionValueUsd": 0, "parameters.minWhaleInfluenceScore": 0}},
        )
        yield settings
        client.drop_database(settings.mongo.db)


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> Samples:
    """Every sample `/metrics` serves, by name and labels."""
    status, text = get(f"{base}/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def grown(before: Samples, after: Samples, name: str, label: str) -> dict[str, float]:
    """How much each series of `name` grew between two scrapes, by the value of `label` (zeros left out)."""
    sums: dict[str, float] = {}
    for (sample, labels), value in after.items():
        if sample == name:
            key = dict(labels).get(label, "")
            sums[key] = sums.get(key, 0.0) + value - before.get((sample, labels), 0.0)
    return {key: value for key, value in sums.items() if value}


def frames_in(recording: Path) -> dict[str, float]:
    """The recording's frames by `source/kind`, counted from its lines (lines that are not frames left out)."""
    counts: Counter[str] = Counter()
    for line in read_lines(recording):
        try:
            frame = decode_frame(line.data, "x")
        except FrameFormatError:
            continue
        if isinstance(frame, Frame):
            counts[f"{frame.source}/{frame.kind}"] += 1
    return {key: float(value) for key, value in counts.items()}


def test_metrics_agree_with_the_stores_after_a_replay(settings: Settings, tmp_path: Path) -> None:
    """After a replay with the HTTP server up, `/metrics` counts what the stores hold, series by series."""
    feed = tmp_path / "feed.jsonl"
    start = int(time.time()) - AGE_S
    generate_feed(FeedSpec(txs=400, seed=3, garbage_share=0.03, start_time=start), feed)
    endpoint = serve(settings, 0, [])
    try:
        before = scrape(endpoint.url)
        began = time.time()
        replay(settings, [feed])
        took = time.time() - began
        after = scrape(endpoint.url)
    finally:
        endpoint.close()

    assert settings.postgres.url and settings.mongo.url
    with psycopg.connect(settings.postgres.url) as conn:
        signal_rows = conn.execute("SELECT count(*) FROM trading_signals").fetchone()
        letter_rows = dict(conn.execute("SELECT stage, count(*) FROM dead_letters GROUP BY stage").fetchall())
    with pymongo.MongoClient(settings.mongo.url) as client:
        whale_documents = client[settings.mongo.db].whale_activity.count_documents({})
        # What else the flow wrote to MongoDB (the analytics): each stored document went through the sink.
        created = sum(client[settings.mongo.db][name].count_documents({}) for name in ("tokens", "market_snapshots"))
    assert signal_rows is not None
    signals, whales = float(signal_rows[0]), float(whale_documents)
    assert signals > 0 and whales > 0 and letter_rows

    frames = {
        f"{dict(labels)['source']}/{dict(labels)['kind']}": value - before.get((name, labels), 0.0)
        for (name, labels), value in after.items()
        if name == "quantbot_frames_total"
    }
    assert {key: value for key, value in frames.items() if value} == frames_in(feed)
    assert grown(before, after, "quantbot_signals_total", "strategy") == {DEMO_STRATEGY_ID: signals}
    assert sum(grown(before, after, "quantbot_whales_total", "tier").values()) == whales
    assert grown(before, after, "quantbot_dead_letters_total", "stage") == {k: float(v) for k, v in letter_rows.items()}
    batch_items = grown(before, after, "quantbot_sink_batch_items_sum", "sink")
    flow_letters = sum(v for k, v in letter_rows.items() if not k.startswith("sink:"))
    # Whale documents, token documents and snapshots; and follow-ups and rewrites of the same documents.
    assert batch_items["mongo"] >= whales + created and created > 0
    assert batch_items["postgres"] == signals + flow_letters
    batches = grown(before, after, "quantbot_sink_batch_items_count", "sink")
    assert batches == grown(before, after, "quantbot_sink_write_seconds_count", "sink")
    assert set(batches) >= {"influx", "redis", "mongo", "postgres"}
    assert grown(before, after, "quantbot_sink_retries_total", "sink") == {}
    assert grown(before, after, "quantbot_sink_write_errors_total", "sink") == {}
    lag = grown(before, after, "quantbot_chain_lag_seconds_sum", "")[""]
    observed = grown(before, after, "quantbot_chain_lag_seconds_count", "")[""]
    assert observed >= whales
    # Every block of the feed lies in the second hour before the replay: its lag is that age.
    assert AGE_S - 60 <= lag / observed <= AGE_S + took + 60


def test_readyz_turns_unready_when_a_store_stops(
    pg_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path
) -> None:
    """`/readyz` answers 200 while every store answers and 503 naming the store once one stops; `/healthz` stays 200."""
    port = stack.free_port()
    server = stack.start_valkey(tmp_path / "valkey", port, tmp_path / "valkey.log")
    redis_url = f"redis://default:{SECRET}@127.0.0.1:{port}/0"  # Valkey's default user takes any password
    settings = load_settings(
        "default", REPO_ROOT / "config", environ=_env(pg_url, redis_url, mongo_url, influx, tmp_path)
    )
    source = SourceActivity("replay")
    source.opened()
    source.finished()
    endpoint = serve(settings, 0, [source])
    running = True
    try:
        assert get(f"{endpoint.url}/readyz") == (200, "ready\n")
        assert get(f"{endpoint.url}/healthz")[0] == 200

        stack.stop(server)
        running = False
        deadline = time.monotonic() + STORE_STOPS_S
        status, body = get(f"{endpoint.url}/readyz")
        while status == 200 and time.monotonic() < deadline:
            time.sleep(READY_CACHE_S / 5)
            status, body = get(f"{endpoint.url}/readyz")

        assert status == 503, body
        assert "redis" in body and f"{port}" in body
        assert SECRET not in body
        assert get(f"{endpoint.url}/healthz")[0] == 200
    finally:
        endpoint.close()
        if running:
            stack.stop(server)


def test_readyz_turns_unready_while_a_source_is_stale(settings: Settings) -> None:
    """A source with no item for `stale_after_s` makes `/readyz` 503 naming it; an item, or its end, makes it ready."""
    now = [0.0]
    source = SourceActivity("replay", clock=lambda: now[0])
    endpoint = serve(settings, 0, [source], clock=lambda: now[0])
    try:
        status, body = get(f"{endpoint.url}/readyz")
        assert status == 503 and "replay" in body and "not reading yet" in body
        source.opened()
        assert get(f"{endpoint.url}/readyz")[0] == 200
        now[0] += settings.observability.stale_after_s + 1
        status, body = get(f"{endpoint.url}/readyz")
        assert status == 503 and "replay" in body and "no item" in body
        source.progressed()
        assert get(f"{endpoint.url}/readyz")[0] == 200
        source.finished()
        now[0] += 10 * settings.observability.stale_after_s
        assert get(f"{endpoint.url}/readyz")[0] == 200
    finally:
        endpoint.close()


def test_readyz_counts_a_source_added_once_the_flow_built_it(settings: Settings) -> None:
    """A price feed joins the endpoint's list after it started (`quantbot run` builds the feeds later): a feed
    not reading yet makes `/readyz` 503 naming it."""
    now = [0.0]
    chain = SourceActivity("websocket", clock=lambda: now[0])
    chain.opened()
    sources = [chain]
    endpoint = serve(settings, 0, sources, clock=lambda: now[0])
    try:
        assert get(f"{endpoint.url}/readyz")[0] == 200
        sources.append(SourceActivity("pyth", clock=lambda: now[0]))
        status, body = get(f"{endpoint.url}/readyz")
        assert status == 503 and "pyth" in body
    finally:
        endpoint.close()


def test_a_source_is_stale_only_while_reading_without_items() -> None:
    """Not opened: not reading yet; opened: stale after `stale_after_s` without an item; finished: never stale."""
    now = [100.0]
    source = SourceActivity("live", clock=lambda: now[0])
    assert source.problem(10.0) == "source live: not reading yet"
    source.opened()
    now[0] += 10.0
    assert source.problem(10.0) is None
    now[0] += 0.5
    assert source.problem(10.0) == "source live: no item for 10.5 s (stale after 10 s)"
    source.progressed()
    assert source.problem(10.0) is None
    source.finished()
    now[0] += 1_000.0
    assert source.problem(10.0) is None


def _counted(name: str, sink: str) -> float:
    return REGISTRY.get_sample_value(name, {"sink": sink}) or 0.0


def test_retries_and_write_errors_are_counted_by_sink() -> None:
    """Each failed attempt counts a write error of its sink; each attempt made again after one counts a retry."""
    retry = Retry(budget_s=5.0, backoff=Backoff(base_s=0.001, cap_s=0.001))
    failures = [ConnectionError("reset"), ConnectionError("reset")]

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "stored"

    def refused() -> str:
        raise ValueError("refused")

    errors, retries = _counted("quantbot_sink_write_errors_total", "t"), _counted("quantbot_sink_retries_total", "t")
    assert retry.call(flaky, lambda exc: isinstance(exc, ConnectionError), what="sink=t", sink="t") == "stored"
    with pytest.raises(ValueError, match="refused"):
        retry.call(refused, lambda exc: isinstance(exc, ConnectionError), what="sink=t", sink="t")

    assert _counted("quantbot_sink_write_errors_total", "t") - errors == 3
    assert _counted("quantbot_sink_retries_total", "t") - retries == 2


def test_replay_serves_health_readiness_and_metrics_as_a_user_runs_it(
    pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path
) -> None:
    """`quantbot replay --http-port P` answers /healthz, /readyz and /metrics on 127.0.0.1:P while it replays."""
    env = _env(pg_url, redis_url, mongo_url, influx, tmp_path)
    _migrate(load_settings("default", REPO_ROOT / "config", environ=env))
    feed = tmp_path / "feed.jsonl"
    # 80 transactions at 20 a second, replayed at recorded pace: four seconds of reading.
    generate_feed(FeedSpec(txs=80, seed=4, garbage_share=0.0, tx_per_s=20.0), feed)
    port = stack.free_port()
    base = f"http://127.0.0.1:{port}"
    flags = ("--http-port", str(port))
    child = subprocess.Popen(
        [sys.executable, "-m", "quantbot", "--profile", "default", "replay", str(feed), *("--speed", "1"), *flags],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + CLI_RUN_S
        ready = None
        while child.poll() is None and time.monotonic() < deadline:
            try:
                ready = get(f"{base}/readyz")
            except urllib.error.URLError:
                ready = None  # not listening yet
            if ready is not None and ready[0] == 200:
                break
            time.sleep(0.1)
        assert ready == (200, "ready\n")
        assert get(f"{base}/healthz") == (200, "ok\n")
        status, text = get(f"{base}/metrics")
        assert status == 200
        assert "quantbot_frames_total{" in text and "quantbot_chain_lag_seconds_bucket{" in text
        out, err = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, out + err
    assert f"http=127.0.0.1:{port}" in err
