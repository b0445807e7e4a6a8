"""`quantbot reconcile` on real stores: a replayed corpus is consistent; planted differences are found and fixed."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pymongo
import pytest
import redis
from psycopg.types.json import Jsonb

from flows.replay import replay
from quantbot.ops import stack
from quantbot.ops.demo import DEMO_STRATEGY_ID, DEMO_USER_ID, ensure_demo_strategy
from quantbot.schema import mongo as mongo_schema
from quantbot.schema import postgres as pg_schema
from quantbot.signals import signal_id
from tests.conftest import CORPUS_DIR, REPO_ROOT, InfluxEndpoint, run_cli
from tests.test_cli import closed_port
from tests.test_flow import corpus_frames, write_recording

EX_UNAVAILABLE = 69
EX_DIFFERENCES = 65
# A century: the corpus' signals (block times of 2024-2025) are still active today, so they are cached.
HOLDING_HOURS = 100 * 365 * 24
# VictoriaMetrics makes a new series searchable a little after it is written (its index is cached):
# a reconcile right after a fix that wrote points may not see them yet; it is run again up to this long.
SERIES_VISIBLE_S = 20.0
CHECKS = (
    "signal_strategy_missing",
    "signal_whale_missing",
    "redis_signal_missing",
    "redis_signal_stray",
    "redis_signal_differs",
    "influx_signal_missing",
    "influx_signal_unknown",
    "whale_token_missing",
)


@pytest.fixture(scope="module")
def own_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxEndpoint]:
    """A VictoriaMetrics server of this module's own: the session's holds other tests' signal points."""
    directory = tmp_path_factory.mktemp("vm-reconcile")
    server = stack.start_victoria_metrics(directory / "data", stack.free_port(), directory / "server.log")
    try:
        yield InfluxEndpoint(url=server.url, token="test-token", org="quantbot", bucket="quantbot")
    finally:
        stack.stop(server)


@pytest.fixture
def env(
    pg_url: str, redis_url: str, mongo_url: str, own_influx: InfluxEndpoint, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Migrated test stores holding a replay of the mainnet corpus, and the environment naming them."""
    from quantbot.settings import load_settings

    environ = {
        "QUANTBOT_PROFILE": "default",
        "QUANTBOT_POSTGRES_URL": pg_url,
        "QUANTBOT_REDIS_URL": redis_url,
        "QUANTBOT_MONGO_URL": mongo_url,
        "QUANTBOT_MONGO_DB": f"reconcile_{secrets.token_hex(4)}",
        "QUANTBOT_INFLUX_URL": own_influx.url,
        "QUANTBOT_INFLUX_TOKEN": own_influx.token,
        "QUANTBOT_WHALES_TIERS": '[{name = "test", min_usd = 1.0}]',
        "QUANTBOT_STACK_DIR": str(tmp_path / "stack"),
    }
    settings = load_settings("default", REPO_ROOT / "config", environ=environ)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        pg_schema.migrate_up(conn)
    db = environ["QUANTBOT_MONGO_DB"]
    with pymongo.MongoClient(mongo_url) as client:
        mongo_schema.apply(client[db])
    ensure_demo_strategy(settings)
    with pymongo.MongoClient(mongo_url) as client:  # follow every whale, and keep its signal active
        client[db].strategy_configs.update_one(
            {"_id": DEMO_STRATEGY_ID},
            {
                "$set": {
                    "parameters.minTransactionValueUsd": 0,
                    "parameters.minWhaleInfluenceScore": 0,
                    "parameters.timeBasedExit.maxHoldingTimeHours": HOLDING_HOURS,
                }
            },
        )
    write_recording(tmp_path / "rec", corpus_frames(), [])
    replay(settings, [tmp_path / "rec"])
    yield environ
    with pymongo.MongoClient(mongo_url) as client:
        client.drop_database(db)


def reconcile_json(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    """Run `quantbot reconcile --format json`; its exit status and its checks by name."""
    result = run_cli("reconcile", "--format", "json", *args, env=env)
    assert result.returncode in {0, EX_DIFFERENCES}, result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    return result.returncode, {check["check"]: check for check in report["checks"]}


def found(checks: dict[str, Any]) -> dict[str, int]:
    """The checks that found something, with how many."""
    return {name: check["found"] for name, check in checks.items() if check["found"]}


def consistent_within(env: dict[str, str], deadline_s: float) -> dict[str, int]:
    """What `reconcile` still finds once it exits 0 or `deadline_s` has passed (see SERIES_VISIBLE_S)."""
    deadline = time.monotonic() + deadline_s
    status, checks = reconcile_json(env)
    while status != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        status, checks = reconcile_json(env)
    return found(checks)


def test_a_replayed_corpus_lacks_only_token_documents(env: dict[str, str]) -> None:
    """After a replay, whale tokens lack token documents, and the Geyser twin's hash differs while its signal is
    open; `--fix` repairs both.

    The corpus holds one transaction twice, as an RPC result and as a Geyser update, which carries no
    block time: PostgreSQL keeps the first signal's creation (the Geyser twin's, created at 0), the Redis
    hash the last (the RPC twin's, created at its block time), as long as the signal is open: once its
    lifecycle closes it, the flow removes the hash.
    """
    (twin,) = {p.name.removesuffix(".geyser.json") for p in CORPUS_DIR.glob("*.geyser.json")}
    with psycopg.connect(env["QUANTBOT_POSTGRES_URL"]) as conn:
        (twin_status,) = conn.execute(
            "SELECT status FROM trading_signals WHERE signal_id = %s", (signal_id(DEMO_STRATEGY_ID, twin),)
        ).fetchone() or ("none",)
    differs = 1 if twin_status in ("pending", "active") else 0

    status, checks = reconcile_json(env)

    assert status == EX_DIFFERENCES
    assert set(checks) == set(CHECKS)
    assert found(checks).keys() == {"whale_token_missing", *(["redis_signal_differs"] if differs else [])}
    assert checks["redis_signal_differs"]["found"] == differs
    fixed_status, fixed = reconcile_json(env, "--fix")
    assert fixed["whale_token_missing"]["fixed"] == checks["whale_token_missing"]["found"]
    assert fixed["redis_signal_differs"]["fixed"] == differs
    assert fixed_status == 0
    assert consistent_within(env, SERIES_VISIBLE_S) == {}


def _plant(env: dict[str, str], own_influx: InfluxEndpoint) -> dict[str, str]:
    """One difference per check, planted directly in the stores; the key each check must name."""
    pg_url, db = env["QUANTBOT_POSTGRES_URL"], env["QUANTBOT_MONGO_DB"]
    cache = redis.Redis.from_url(env["QUANTBOT_REDIS_URL"], decode_responses=True)
    cached = sorted(key.removeprefix("signal:") for key in cache.scan_iter(match="signal:*"))
    assert len(cached) >= 4, "the corpus replay cached too few signals to plant in"
    deleted_key, orphaned_by_whale, unpointed, altered = cached[:4]
    stray_key, stray_point = str(uuid.uuid4()), str(uuid.uuid4())
    unknown_strategy, orphaned_by_strategy = str(uuid.uuid4()), str(uuid.uuid4())

    cache.delete(f"signal:{deleted_key}")
    cache.hset(f"signal:{altered}", "confidence", "99.99")
    cache.hset(f"signal:{stray_key}", mapping={"token_address": "x", "direction": "buy"})
    with psycopg.connect(pg_url, autocommit=True) as conn:
        (signature,) = conn.execute(
            "SELECT metadata->>'whale_signature' FROM trading_signals WHERE signal_id = %s", (orphaned_by_whale,)
        ).fetchone() or ("",)
        conn.execute(
            "INSERT INTO trading_strategies (strategy_id, user_id, strategy_name, strategy_type, parameters)"
            " VALUES (%s, %s, 'gone from mongo', 'whale_follower', '{}')",
            (unknown_strategy, DEMO_USER_ID),
        )
        conn.execute(
            "INSERT INTO trading_signals (signal_id, strategy_id, signal_type, token_address, direction, confidence,"
            " expiration_time, created_at, metadata) SELECT %s, %s, signal_type, token_address, direction, confidence,"
            " expiration_time, created_at, %s FROM trading_signals WHERE signal_id = %s",
            (orphaned_by_strategy, unknown_strategy, Jsonb({"whale_signature": "none"}), unpointed),
        )
    token = ""
    with pymongo.MongoClient(env["QUANTBOT_MONGO_URL"]) as client:
        assert client[db].whale_activity.delete_one({"_id": signature}).deleted_count == 1
        whale = client[db].whale_activity.find_one({"tokens.decimals": {"$exists": True}})
        assert whale is not None
        token = next(leg["address"] for leg in whale["tokens"] if "decimals" in leg)
        client[db].tokens.delete_one({"_id": token})
    _delete_series(own_influx, f'{{__name__=~"trading_signals_.*",signal_id="{unpointed}"}}')
    tags = f"signal_id={stray_point},strategy_id={DEMO_STRATEGY_ID},direction=buy"
    line = f"trading_signals,{tags} confidence=1 1700000000"
    _write_line(own_influx, line)
    return {
        "redis_signal_missing": deleted_key,
        "redis_signal_stray": stray_key,
        "redis_signal_differs": altered,
        "signal_whale_missing": orphaned_by_whale,
        "signal_strategy_missing": orphaned_by_strategy,
        "influx_signal_missing": unpointed,
        "influx_signal_unknown": stray_point,
        "whale_token_missing": token,
    }


def _delete_series(influx: InfluxEndpoint, match: str) -> None:
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode({"match[]": match}).encode()
    with urllib.request.urlopen(f"{influx.url}/api/v1/admin/tsdb/delete_series", data=body, timeout=30):
        pass


def _write_line(influx: InfluxEndpoint, line: str) -> None:
    import urllib.request

    request = urllib.request.Request(f"{influx.url}/api/v2/write?bucket=quantbot&precision=s", data=line.encode())
    with urllib.request.urlopen(request, timeout=30):
        pass


def test_each_planted_difference_is_found_then_fixed(env: dict[str, str], own_influx: InfluxEndpoint) -> None:
    """A difference planted in each store is named by its check (table and JSON); `--fix` leaves `reconcile` clean."""
    assert reconcile_json(env, "--fix")[0] == 0  # the token documents a replay does not write
    planted = _plant(env, own_influx)

    table = run_cli("reconcile", "--limit", "100", env=env)
    status, checks = reconcile_json(env, "--limit", "100")

    assert table.returncode == EX_DIFFERENCES, table.stdout + table.stderr
    assert status == EX_DIFFERENCES
    for check, key in planted.items():
        assert key in checks[check]["sample"], (check, checks[check])
        assert check in table.stdout
    fix_status, fixes = reconcile_json(env, "--fix")
    assert all(fixes[check]["fixed"] >= 1 for check in planted), fixes
    assert fix_status == 0
    assert consistent_within(env, SERIES_VISIBLE_S) == {}
    _, again = reconcile_json(env, "--fix")
    assert {name: check["fixed"] for name, check in again.items() if check["fixed"]} == {}
    with psycopg.connect(env["QUANTBOT_POSTGRES_URL"]) as conn:
        statuses = dict(
            conn.execute(
                "SELECT signal_id::text, status FROM trading_signals WHERE signal_id = ANY(%s::uuid[])",
                ([planted["signal_whale_missing"], planted["signal_strategy_missing"]],),
            ).fetchall()
        )
    assert set(statuses.values()) == {"orphaned"}


def test_an_unreachable_store_exits_69(env: dict[str, str]) -> None:
    """A store that does not answer makes `reconcile` exit 69, naming the store."""
    result = run_cli("reconcile", env={**env, "QUANTBOT_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"})

    assert result.returncode == EX_UNAVAILABLE, result.stdout + result.stderr
    assert "redis" in result.stderr


def _signal_samples(influx: InfluxEndpoint, signal_id: str) -> dict[str, tuple[list[int], list[float]]]:
    """Every field's samples of one signal's `trading_signals` point: {series name: (times, values)}."""
    lines = influx.export(f'{{__name__=~"trading_signals_.*",signal_id="{signal_id}"}}')
    return {line["metric"]["__name__"]: (line["timestamps"], line["values"]) for line in lines}


def test_a_rebuilt_hash_and_point_equal_what_the_flow_wrote(env: dict[str, str], own_influx: InfluxEndpoint) -> None:
    """`--fix` rewrites a signal's hash and point from PostgreSQL alone, as the flow wrote them (volume to the cent)."""
    cache = redis.Redis.from_url(env["QUANTBOT_REDIS_URL"], decode_responses=True)
    # Not the Geyser twin's signal: a Geyser update carries no block time, so its row says 1970, while
    # the RPC twin's hash, written later, says when the trade happened (a difference of the flow's own).
    with psycopg.connect(env["QUANTBOT_POSTGRES_URL"]) as conn:
        (signal_id,) = conn.execute(
            "SELECT min(signal_id::text) FROM trading_signals WHERE created_at > '2020-03-16'"
            " AND metadata->'price' <> 'null'::jsonb AND status IN ('pending', 'active')"
        ).fetchone() or ("",)
    hash_before, ttl_before = cache.hgetall(f"signal:{signal_id}"), cache.pttl(f"signal:{signal_id}")
    points_before = _signal_samples(own_influx, signal_id)
    assert "trading_signals_price" in points_before
    cache.delete(f"signal:{signal_id}")
    _delete_series(own_influx, f'{{__name__=~"trading_signals_.*",signal_id="{signal_id}"}}')

    _, checks = reconcile_json(env, "--fix")

    assert checks["redis_signal_missing"]["fixed"] == 1
    assert checks["influx_signal_missing"]["fixed"] == 1
    assert cache.hgetall(f"signal:{signal_id}") == hash_before
    assert abs(cache.pttl(f"signal:{signal_id}") - ttl_before) < SERIES_VISIBLE_S * 1000
    deadline = time.monotonic() + SERIES_VISIBLE_S
    points_after = _signal_samples(own_influx, signal_id)
    while points_after.keys() != points_before.keys() and time.monotonic() < deadline:
        time.sleep(0.5)
        points_after = _signal_samples(own_influx, signal_id)
    assert points_after.keys() == points_before.keys()
    for name, (times, values) in points_before.items():
        assert points_after[name][0] == times
        tolerance = 0.005 if name == "trading_signals_volume" else 1e-9 * abs(values[0])
        assert abs(points_after[name][1][0] - values[0]) <= tolerance, name


def test_a_token_without_decimals_is_reported_only(env: dict[str, str]) -> None:
    """A whale token no whale leg gives decimals for gets no token document: `--fix` leaves it, exit 65."""
    token = "So1anaTokenWithoutDecima1s11111111111111111"
    with pymongo.MongoClient(env["QUANTBOT_MONGO_URL"]) as client:
        client[env["QUANTBOT_MONGO_DB"]].whale_activity.insert_one(
            {
                "_id": "no-decimals-signature",
                "signature": "no-decimals-signature",
                "timestamp": "2025-01-01T00:00:00Z",
                "walletAddress": "wallet",
                "transactionType": "swap",
                "tokens": [{"address": token, "direction": "buy", "amount": 1}],
            }
        )

    status, checks = reconcile_json(env, "--fix", "--limit", "1000")

    assert status == EX_DIFFERENCES
    missing = checks["whale_token_missing"]
    assert token in missing["sample"]
    assert missing["unfixable"] == 1
    assert missing["remaining"] == 1
    assert "report only" in missing["note"]
    assert {name: check["remaining"] for name, check in checks.items() if check["remaining"]} == {
        "whale_token_missing": 1
    }


def test_a_signal_the_sink_refuses_is_reported_not_crashed_on(env: dict[str, str]) -> None:
    """A pending signal whose token no Redis key can hold: `--fix` reports the sink's refusal and exits 65."""
    with psycopg.connect(env["QUANTBOT_POSTGRES_URL"], autocommit=True) as conn:
        (signal_id,) = conn.execute(
            "SELECT min(signal_id::text) FROM trading_signals WHERE created_at > '2020-03-16'"
            " AND metadata->'price' <> 'null'::jsonb AND status IN ('pending', 'active')"
        ).fetchone() or ("",)
        conn.execute(
            "UPDATE trading_signals SET token_address = 'not a solana address' WHERE signal_id = %s", (signal_id,)
        )
    redis.Redis.from_url(env["QUANTBOT_REDIS_URL"]).delete(f"signal:{signal_id}")

    status, checks = reconcile_json(env, "--fix")

    assert status == EX_DIFFERENCES
    missing = checks["redis_signal_missing"]
    assert missing["sample"] == [signal_id]
    assert (missing["fixed"], missing["unfixable"], missing["remaining"]) == (0, 1, 1)
    assert "not a solana address" in missing["note"]
