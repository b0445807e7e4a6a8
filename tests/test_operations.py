"""The running flow's operational data and start-up checks: system_performance, system_events, exit statuses."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flows.runtime import stopping_on_signals
from quantbot import metrics
from quantbot.synthetic import FeedSpec, generate_feed
from sinks.retry import Retry
from tests.conftest import InfluxEndpoint, run_cli
from tests.test_cli import EX_UNAVAILABLE, closed_port, env  # noqa: F401 - `env` is a fixture

EX_CONFIG = 78
FEED_START = 1_750_000_000  # a plausible block time: the parse step dead-letters frames before Solana's genesis


def events(pg_url: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The `system_events` rows as (event_type, severity, source, details), oldest first."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT event_type, severity, source, details FROM system_events ORDER BY created_at, event_type"
        ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def test_retry_counts_a_write_given_up_on_and_nothing_for_one_that_succeeds() -> None:
    """A write given up on counts once as a failure and as a write error; a write that succeeds counts neither."""
    retry = Retry(budget_s=0)
    failures, errors = metrics.total(metrics.STORE_WRITE_FAILURES), metrics.total(metrics.SINK_WRITE_ERRORS)

    retry.call(lambda: None, lambda _exc: True, what="test", sink="test")
    assert (metrics.total(metrics.STORE_WRITE_FAILURES), metrics.total(metrics.SINK_WRITE_ERRORS)) == (failures, errors)
    with pytest.raises(ValueError, match="refused"):
        retry.call(lambda: (_ for _ in ()).throw(ValueError("refused")), lambda _exc: False, what="test", sink="test")

    assert metrics.total(metrics.STORE_WRITE_FAILURES) == failures + 1
    assert metrics.total(metrics.SINK_WRITE_ERRORS) == errors + 1


def test_a_histograms_total_is_its_observations_and_observed_sum_their_sum() -> None:
    """`metrics.total` of a histogram counts observations over all labels; `observed_sum` adds what they were."""
    count, seconds = metrics.total(metrics.SINK_WRITE_SECONDS), metrics.observed_sum(metrics.SINK_WRITE_SECONDS)

    metrics.SINK_WRITE_SECONDS.labels("test-a").observe(0.25)
    metrics.SINK_WRITE_SECONDS.labels("test-b").observe(0.5)

    assert metrics.total(metrics.SINK_WRITE_SECONDS) == count + 2
    assert metrics.observed_sum(metrics.SINK_WRITE_SECONDS) == pytest.approx(seconds + 0.75)


def test_sigterm_calls_stop_once_and_restores_the_handlers() -> None:
    """Inside `stopping_on_signals`, SIGTERM calls `stop` and is reported; outside, the old handlers are back."""
    calls: list[str] = []
    before = signal.getsignal(signal.SIGTERM)

    with stopping_on_signals(lambda: calls.append("stop")) as received:
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a second signal while stopping interrupts

    assert calls == ["stop"] and received == ["SIGTERM"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_replay_writes_performance_points_and_run_events(
    env: dict[str, str],  # noqa: F811 - the fixture
    influx: InfluxEndpoint,
    tmp_path: Path,
) -> None:
    """A replay writes system_performance points (tagged service/instance/region) and run_started/run_finished rows."""
    feed = tmp_path / "feed.jsonl"
    generate_feed(FeedSpec(txs=1200, seed=5, garbage_share=0.01, start_time=FEED_START), feed)
    instance = f"test-{secrets.token_hex(4)}"
    env = {
        **env,
        "QUANTBOT_OBSERVABILITY_INTERVAL_S": "0.5",
        "QUANTBOT_OBSERVABILITY_INSTANCE": instance,
        "QUANTBOT_OBSERVABILITY_REGION": "test-region",
    }
    assert run_cli("migrate", "up", env=env).returncode == 0

    # 1,200 transactions recorded at about 400/s, replayed at twice that pace: about 1.5 s, three intervals.
    result = run_cli("replay", str(feed), "--no-progress", "--speed", "2", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    match = f'{{__name__=~"system_performance_.*",instance="{instance}"}}'
    series = {s["metric"]["__name__"]: s for s in influx.export(match)}
    assert set(series) == {
        f"system_performance_{field}"
        for field in (
            "cpu_usage_percent",
            "memory_usage_percent",
            "request_count",
            "error_count",
            "response_time_ms",
            "queue_depth",
            "active_connections",
            "throughput",
        )
    }
    requests = series["system_performance_request_count"]
    assert requests["metric"]["service"] == "quantbot" and requests["metric"]["region"] == "test-region"
    assert len(requests["values"]) >= 2  # the periodic points and the last one
    assert sum(requests["values"]) > 0
    assert sum(series["system_performance_error_count"]["values"]) > 0  # 1 % garbage: dead letters
    assert max(series["system_performance_throughput"]["values"]) > 0
    assert 0 < max(series["system_performance_memory_usage_percent"]["values"]) < 100
    rows = events(env["QUANTBOT_POSTGRES_URL"])
    kinds = [(kind, severity, source) for kind, severity, source, _ in rows]
    assert kinds == [("run_started", "info", "replay"), ("run_finished", "info", "replay")]
    finished = rows[1][3]
    assert finished["inputs"] >= 1200 and finished["dead_letters"] > 0 and finished["store_writes"] > 0


def test_a_recording_full_of_garbage_raises_a_dead_letter_burst(
    env: dict[str, str],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """More dead letters in one interval than `observability.dead_letter_burst`: one dead_letter_burst row."""
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"".join(b"this is not a frame %d\n" % i for i in range(300)))
    env = {**env, "QUANTBOT_OBSERVABILITY_DEAD_LETTER_BURST": "100", "QUANTBOT_OBSERVABILITY_INTERVAL_S": "60"}
    assert run_cli("migrate", "up", env=env).returncode == 0

    result = run_cli("replay", str(garbage), "--no-progress", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    bursts = [details for kind, _, _, details in events(env["QUANTBOT_POSTGRES_URL"]) if kind == "dead_letter_burst"]
    assert len(bursts) == 1
    assert bursts[0]["dead_letters"] == 300 and bursts[0]["threshold"] == 100


def test_replay_exits_69_when_a_store_is_down_at_start(
    env: dict[str, str],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """Redis unreachable at start: exit 69 naming it, before the flow is built (no run_started event)."""
    feed = tmp_path / "feed.jsonl"
    generate_feed(FeedSpec(txs=10, seed=1, start_time=FEED_START), feed)
    assert run_cli("migrate", "up", env=env).returncode == 0
    env = {**env, "QUANTBOT_REDIS_URL": f"redis://:hunter2@127.0.0.1:{closed_port()}/0"}

    result = run_cli("replay", str(feed), "--no-progress", env=env)

    assert result.returncode == EX_UNAVAILABLE, result.stdout + result.stderr
    assert "unreachable at start" in result.stderr and "redis" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert events(env["QUANTBOT_POSTGRES_URL"]) == []


def test_replay_refuses_an_unmigrated_database(
    env: dict[str, str],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """A PostgreSQL without this version's schema: exit 78 saying `quantbot migrate up`; the flow migrates nothing."""
    feed = tmp_path / "feed.jsonl"
    generate_feed(FeedSpec(txs=10, seed=1, start_time=FEED_START), feed)
    assert run_cli("migrate", "up", env=env).returncode == 0
    assert run_cli("migrate", "down", "--to", "1", "--yes", env=env).returncode == 0

    result = run_cli("replay", str(feed), "--no-progress", env=env)

    assert result.returncode == EX_CONFIG, result.stdout + result.stderr
    assert "run `quantbot migrate up`" in result.stderr and "postgres schema 1/" in result.stderr
    with psycopg.connect(env["QUANTBOT_POSTGRES_URL"]) as conn:
        (version,) = conn.execute("SELECT max(version) FROM schema_migrations").fetchone() or (None,)
    assert version == 1


def test_a_sink_giving_up_writes_sink_retries_exhausted_before_the_error_propagates(
    pg_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path
) -> None:
    """Redis gone with no retry budget: the replay fails; a critical sink_retries_exhausted row says why."""
    from flows.replay import replay
    from quantbot.schema import postgres as pg_schema
    from quantbot.settings import load_settings
    from tests.conftest import REPO_ROOT

    feed = tmp_path / "feed.jsonl"
    generate_feed(FeedSpec(txs=200, seed=2, start_time=FEED_START), feed)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        pg_schema.migrate_up(conn)
    environ = {
        "QUANTBOT_POSTGRES_URL": pg_url,
        "QUANTBOT_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
        "QUANTBOT_MONGO_URL": mongo_url,
        "QUANTBOT_MONGO_DB": f"ops_{secrets.token_hex(4)}",
        "QUANTBOT_INFLUX_URL": influx.url,
        "QUANTBOT_SINKS_RETRY_BUDGET_S": "0",
    }
    settings = load_settings("default", REPO_ROOT / "config", environ=environ)

    with pytest.raises(Exception, match="error writing output batch"):  # bytewax, the cause chained
        replay(settings, [feed])

    rows = events(pg_url)
    assert [(kind, severity) for kind, severity, _, _ in rows] == [
        ("run_started", "info"),
        ("sink_retries_exhausted", "critical"),
    ]
    assert rows[1][3]["store_write_failures"] >= 1 and "ConnectionError" in rows[1][3]["causes"][0]
