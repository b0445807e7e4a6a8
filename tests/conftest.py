"""Real stores for the test suite: no store is mocked (DESIGN.md §6).

PostgreSQL and Redis are the machine's own servers (127.0.0.1:5432 and :6379 on the development and CI
machines; override with QUANTBOT_TEST_POSTGRES_URL / QUANTBOT_TEST_REDIS_URL). MongoDB (SecantusDB) and
the InfluxDB v2 write API (VictoriaMetrics) are started once per session on free loopback ports, under
the session's temporary directory, and stopped at the end.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymongo
import pytest
import redis
from pymongo.database import Database

from quantbot.ops import readback, stack

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
CORPUS_DIR = SHARED_DIR / "fixtures" / "mainnet"
SCHEMA_DOCUMENT = SHARED_DIR / "seed" / "database-schema.md"

POSTGRES_ADMIN_URL = os.environ.get("QUANTBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("QUANTBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Redis database 15 is the last of the 16 a default server has: the one least likely to hold
# anything of a developer's own, and it is flushed before every test that asks for it. Two test runs at
# once on one machine (two checkouts) each need their own: QUANTBOT_TEST_REDIS_DB picks another. The
# suite's parallel workers (pytest-xdist: `gw0`, `gw1`, ...) take the databases below it, one each.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
REDIS_TEST_DB = int(os.environ.get("QUANTBOT_TEST_REDIS_DB", "15")) - int(XDIST_WORKER.removeprefix("gw") or 0)


SERVER_FIXTURES = frozenset({"pg_url", "redis_url", "mongo_url", "mongo_db", "influx"})
"""Fixtures that hand a test a real server: a test asking for one is marked `slow`."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `slow` every test that talks to a real server or runs the CLI in a child process.

    `pytest -m "not slow"` then runs the pure unit tests alone in seconds; the README's test command
    runs everything. Tests that start servers or processes of their own say so with `pytest.mark.slow`.
    """
    for item in items:
        function = getattr(item, "function", None)
        names = function.__code__.co_names if function is not None else ()
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())) or "run_cli" in names:
            item.add_marker(pytest.mark.slow)


# A CLI command against test stores: start-up, a few round trips, and at most a schema migration.
CLI_TIMEOUT_S = 120


def transactions_parsed(log: Path) -> int:
    """The `transactions` row of the run summary a `quantbot replay` or `quantbot run` process printed."""
    found = re.search(r"^\W*transactions\W+(\d+)", log.read_text(), re.MULTILINE)
    assert found is not None, log.read_text()[-4000:]
    return int(found.group(1))


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `quantbot` entry point in a child process, as a user would, with only `env` set."""
    return subprocess.run(
        [sys.executable, "-m", "quantbot", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        cwd=REPO_ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"qbtest_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(POSTGRES_ADMIN_URL)
    yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database, flushed before the test."""
    url = f"{REDIS_BASE_URL}/{REDIS_TEST_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SecantusDB server (MongoDB wire protocol over TCP) for the whole session."""
    from secantus import SecantusDBServer

    server = SecantusDBServer(port=0, storage_path=str(tmp_path_factory.mktemp("mongo")))
    server.start()
    try:
        yield str(server.uri)
    finally:
        server.stop()


@pytest.fixture
def mongo_db(mongo_url: str) -> Iterator[Database[dict[str, Any]]]:
    """A database with a fresh name on the session's Mongo server, dropped afterwards."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    name = f"qbtest_{secrets.token_hex(6)}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


@dataclass(frozen=True)
class InfluxEndpoint:
    """An InfluxDB v2 write API (VictoriaMetrics) and the read-back the tests need."""

    url: str
    token: str
    org: str
    bucket: str

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every series matching `match`, read back after a flush (see `quantbot.ops.readback`)."""
        return readback.influx_export(self.url, match)


def store_env(
    pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, *, mongo_db: str, stack_dir: Path
) -> dict[str, str]:
    """The environment of a `quantbot` run against the test stores: profile `default`, nothing embedded.

    Tests add what they need on top (thresholds, snapshot interval, retry budget, ...).
    """
    return {
        "QUANTBOT_PROFILE": "default",
        "QUANTBOT_POSTGRES_URL": pg_url,
        "QUANTBOT_REDIS_URL": redis_url,
        "QUANTBOT_MONGO_URL": mongo_url,
        "QUANTBOT_MONGO_DB": mongo_db,
        "QUANTBOT_INFLUX_URL": influx.url,
        "QUANTBOT_INFLUX_TOKEN": influx.token,
        "QUANTBOT_STACK_DIR": str(stack_dir),
    }


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxEndpoint]:
    """A VictoriaMetrics server accepting the InfluxDB v2 write API, for the whole session."""
    if shutil.which("victoria-metrics") is None and not Path("/usr/bin/victoria-metrics").exists():
        pytest.fail(
            "victoria-metrics is not installed: run the README's test command, which installs it",
            pytrace=False,
        )
    directory = tmp_path_factory.mktemp("victoria-metrics")
    server = stack.start_victoria_metrics(directory / "data", stack.free_port(), directory / "server.log")
    try:
        yield InfluxEndpoint(url=server.url, token="test-token", org="quantbot", bucket="quantbot")
    finally:
        stack.stop(server)


@pytest.fixture
def reference_pg_url() -> Iterator[str]:
    """A second fresh PostgreSQL database, for a reference run beside the one under test."""
    name = f"qbtest_reference_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _victoria_metrics(directory: Path) -> Iterator[str]:
    server = stack.start_victoria_metrics(directory / "data", stack.free_port(), directory / "server.log")
    try:
        yield server.url
    finally:
        stack.stop(server)


# Each run compared has a VictoriaMetrics server of its own: series of two runs, or of other tests (the
# session's server), cannot be told apart.
@pytest.fixture
def reference_influx(tmp_path: Path) -> Iterator[str]:
    """An empty VictoriaMetrics server for a reference run."""
    yield from _victoria_metrics(tmp_path / "vm-reference")


@pytest.fixture
def run_influx(tmp_path: Path) -> Iterator[str]:
    """An empty VictoriaMetrics server for the run under test."""
    yield from _victoria_metrics(tmp_path / "vm-run")


RUN_SNAPSHOT_INTERVAL_S = "0.5"
"""Snapshots every half second in the tests that kill a flow: a kill loses at most that much work."""
RUN_PRICE_TTL_S = "86400"
"""Prices must outlive a comparison of two runs: the schema's 30 s TTL would expire them in between."""


def flow_environment(pg_url: str, redis_url: str, mongo_url: str, mongo_db: str, influx_url: str) -> dict[str, str]:
    """The environment of a flow run in a child process (replay, run) whose stores a test compares with another
    run's: profile `default`, snapshots every half second, prices that do not expire, warnings only."""
    return {
        "QUANTBOT_PROFILE": "default",
        "QUANTBOT_POSTGRES_URL": pg_url,
        "QUANTBOT_REDIS_URL": redis_url,
        "QUANTBOT_MONGO_URL": mongo_url,
        "QUANTBOT_MONGO_DB": mongo_db,
        "QUANTBOT_INFLUX_URL": influx_url,
        "QUANTBOT_INFLUX_TOKEN": "test-token",
        "QUANTBOT_PIPELINE_SNAPSHOT_INTERVAL_S": RUN_SNAPSHOT_INTERVAL_S,
        "QUANTBOT_REDIS_PRICE_TTL_S": RUN_PRICE_TTL_S,
        "QUANTBOT_LOGGING_LEVEL": "WARNING",
    }
