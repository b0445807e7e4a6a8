"""No schema change under a running flow: a flow holds a shared lock that `migrate down` must take alone.

Issue 8, item 6: `migrate down` succeeded while a replay wrote, and the replay then failed on a missing
table. Now a running flow holds a shared advisory lock on a session of its own; `migrate down` (the
destructive migration, the MongoDB drop at 0 included) waits `migrate.lock_wait_s` for it and then
refuses, naming the holders, with exit status 75 (EX_TEMPFAIL: try again once the flows are done).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymongo
import pytest

from flows.runtime import FLOW_LOCK_CHECK_S, FlowLock
from quantbot.errors import SchemaInUseError
from quantbot.ops import schema as operations
from quantbot.schema import mongo as mongo_schema
from quantbot.schema import postgres as pg_schema
from quantbot.settings import Settings, load_settings
from tests.conftest import REPO_ROOT, InfluxEndpoint, run_cli, store_env

EX_TEMPFAIL = 75
LOCK_SEEN_WITHIN_S = 60.0
"""A replay's start-up (imports, strategies, recovery) takes a few seconds on a busy 2-core machine."""
POLL_S = 0.1


def table_exists(pg_url: str, table: str) -> bool:
    """Whether `table` exists in the database."""
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def lock_env(
    pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, *, db: str, stack_dir: Path
) -> dict[str, str]:
    """The environment pointing quantbot at the test stores, with a one-second lock wait."""
    return {
        **store_env(pg_url, redis_url, mongo_url, influx, mongo_db=db, stack_dir=stack_dir),
        "QUANTBOT_MIGRATE_LOCK_WAIT_S": "1",
    }


@pytest.fixture
def migrated(
    pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """The test stores, PostgreSQL and MongoDB migrated; yields the environment pointing at them."""
    db = f"lock_{int(time.time() * 1000)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        pg_schema.migrate_up(conn)
    with pymongo.MongoClient(mongo_url) as client:
        mongo_schema.apply(client[db])
    yield lock_env(pg_url, redis_url, mongo_url, influx, db=db, stack_dir=tmp_path / "stack")
    with pymongo.MongoClient(mongo_url) as client:
        client.drop_database(db)


def settings_of(env: dict[str, str], tmp_path: Path) -> Settings:
    """The settings a `quantbot` process would read from `env`."""
    return load_settings("default", REPO_ROOT / "config", environ={**env, "QUANTBOT_STACK_DIR": str(tmp_path)})


def test_migrate_down_refuses_while_a_flow_holds_the_lock(
    migrated: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    """Held by a flow, the lock makes `migrate down` wait, then refuse naming the holder; the tables stay."""
    settings = settings_of(migrated, tmp_path)
    lock = FlowLock(settings, "replay")
    lock.acquire()
    try:
        started = time.monotonic()
        with pytest.raises(SchemaInUseError) as refused:
            operations.migrate_down(settings, 0)
        waited = time.monotonic() - started
    finally:
        lock.release()

    message = str(refused.value)
    assert "quantbot replay" in message and "pid" in message
    assert "lock_wait_s" in message
    assert waited >= settings.migrate.lock_wait_s
    assert table_exists(pg_url, "trading_signals") and table_exists(pg_url, "dead_letters")
    reports = operations.migrate_down(settings, 0)
    assert all(r.ok for r in reports), reports
    assert not table_exists(pg_url, "trading_signals")


def test_migrate_down_goes_ahead_when_the_flow_ends_within_the_wait(
    migrated: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    """A flow that ends while `migrate down` waits lets it through: the wait is a wait, not a refusal."""
    settings = settings_of({**migrated, "QUANTBOT_MIGRATE_LOCK_WAIT_S": "30"}, tmp_path)
    lock = FlowLock(settings, "replay")
    lock.acquire()
    releaser = threading.Timer(0.5, lock.release)
    releaser.start()
    try:
        reports = operations.migrate_down(settings, 0)
    finally:
        releaser.join()

    assert all(r.ok for r in reports), reports
    assert not table_exists(pg_url, "trading_signals")


def test_a_flow_takes_its_lock_again_after_losing_its_session(
    migrated: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    """The session holding a flow's lock is killed (as a PostgreSQL restart would): the lock is taken again."""
    lock = FlowLock(settings_of(migrated, tmp_path), "replay")
    lock.acquire()
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            (first,) = pg_schema.flow_lock_holders(conn)
            conn.execute("SELECT pg_terminate_backend(%s)", (first.pid,))
            deadline = time.monotonic() + 3 * FLOW_LOCK_CHECK_S
            while not (holders := pg_schema.flow_lock_holders(conn)) or holders[0].pid == first.pid:
                assert time.monotonic() < deadline, "the lock was not taken again"
                time.sleep(POLL_S)
    finally:
        lock.release()

    assert holders[0].application_name == first.application_name == lock.application_name


def test_a_running_replay_is_not_migrated_down_under_it(
    migrated: dict[str, str], pg_url: str, mongo_url: str, tmp_path: Path
) -> None:
    """Real processes: `migrate down --to 0` during a paced replay exits 75, the replay ends with its data."""
    recording = tmp_path / "feed.jsonl"
    generated = run_cli("synthetic", "generate", "--txs", "4000", "--seed", "5", "--out", str(recording), env=migrated)
    assert generated.returncode == 0, generated.stderr
    # 4,000 transactions recorded at about 400/s: some ten seconds at recorded pace.
    replay = subprocess.Popen(
        [sys.executable, "-m", "quantbot", "replay", str(recording), "--speed", "1", "--no-progress"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **migrated},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + LOCK_SEEN_WITHIN_S
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while not pg_schema.flow_lock_holders(conn):
                assert replay.poll() is None, replay.communicate()
                assert time.monotonic() < deadline, "the replay never took the flow lock"
                time.sleep(POLL_S)

        down = run_cli("migrate", "down", "--to", "0", "--yes", env=migrated)

        assert replay.poll() is None, "the replay ended before `migrate down` ran: nothing was tested"
        assert down.returncode == EX_TEMPFAIL, down.stdout + down.stderr
        assert "quantbot replay" in down.stderr and "running flow" in down.stderr
        assert table_exists(pg_url, "trading_signals") and table_exists(pg_url, "dead_letters")
        with pymongo.MongoClient(mongo_url) as client:
            assert "whale_activity" in client[migrated["QUANTBOT_MONGO_DB"]].list_collection_names()
        out, err = replay.communicate(timeout=300)
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.communicate()
    assert replay.returncode == 0, out + err
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert row is not None and row[0] > 0, "the replay's garbage lines are not in dead_letters"
    with pymongo.MongoClient(mongo_url) as client:
        assert client[migrated["QUANTBOT_MONGO_DB"]].whale_activity.count_documents({}) > 0

    after = run_cli("migrate", "down", "--to", "0", "--yes", env=migrated)

    assert after.returncode == 0, after.stdout + after.stderr
    assert not table_exists(pg_url, "trading_signals")
