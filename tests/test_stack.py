"""The embedded local stack against real servers: `up`, `status`, `down` and the reachability probes.

One stack of all four stores is started for the module (PostgreSQL's initdb is the slow part) and the
tests run in file order against it: start, reuse, kill one server, restart it, stop everything. Under
root, PostgreSQL runs as the system account `quantbot`, which is what CI exercises.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pymongo
import pytest
import redis

from quantbot.ops import stack
from quantbot.ops.stack import StoreState, StoreWanted
from quantbot.stack_state import StoreName, recorded_urls

pytestmark = pytest.mark.slow  # every test here starts real servers of its own

ALL_EMBEDDED = [StoreWanted(name, None, True) for name in StoreName]
# A killed process disappears within milliseconds; 5 s means the test found a real leak.
PROCESS_GONE_DEADLINE_S = 5.0


@pytest.fixture(scope="module")
def stack_dir() -> Iterator[Path]:
    """The module's stack directory; whatever the tests leave running is stopped at the end.

    Not under pytest's basetemp: every pytest session resets `/tmp/pytest-of-<user>` to mode 0700, and
    under root the PostgreSQL account must traverse the stack directory's parents for as long as it runs.
    """
    directory = Path(tempfile.mkdtemp(prefix="quantbot-test-stack-"))
    try:
        yield directory
    finally:
        stack.down(directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def first_up(stack_dir: Path) -> list[StoreState]:
    """The states reported by the module's first `up` of all four stores."""
    return stack.up(ALL_EMBEDDED, stack_dir)


def _by_name(states: list[StoreState]) -> dict[StoreName, StoreState]:
    return {state.name: state for state in states}


def _port(url: str) -> int:
    port = urllib.parse.urlsplit(url).port
    assert port is not None
    return port


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (servers started by this process are its children)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + PROCESS_GONE_DEADLINE_S
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.02)
    return False


def _influx_export(url: str, match: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10):
        pass
    query = urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=10) as response:
        return [orjson.loads(line) for line in response.read().splitlines() if line.strip()]


def test_up_starts_every_embedded_store(first_up: list[StoreState]) -> None:
    """With no URLs and everything embedded, `up` starts all four stores on loopback and reports each."""
    states = _by_name(first_up)
    assert set(states) == set(StoreName)
    for state in first_up:
        assert state.action == "started", state.detail
        assert state.pid is not None
        assert urllib.parse.urlsplit(state.url).hostname == "127.0.0.1"
        assert stack.is_reachable(state.name, state.url, 2.0)
    assert states[StoreName.POSTGRES].url.endswith("/quantbot")


def test_postgres_answers_sql(first_up: list[StoreState]) -> None:
    """The embedded PostgreSQL takes a connection to database `quantbot` and runs SQL."""
    url = _by_name(first_up)[StoreName.POSTGRES].url
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_database()").fetchone() == ("quantbot",)
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY)")
        conn.execute("INSERT INTO kept VALUES (42)")


def test_redis_answers_ping(first_up: list[StoreState]) -> None:
    """The embedded Valkey answers PING and keeps a key."""
    client = redis.Redis.from_url(_by_name(first_up)[StoreName.REDIS].url)
    try:
        assert client.ping()
        client.set("kept", "yes")
        assert client.get("kept") == b"yes"
    finally:
        client.close()


def test_mongo_answers_hello(first_up: list[StoreState]) -> None:
    """The embedded SecantusDB answers `hello` and stores a document."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        _by_name(first_up)[StoreName.MONGO].url, serverSelectionTimeoutMS=5000
    )
    try:
        assert client.admin.command("hello")["ok"] == 1.0
        client.quantbot.kept.insert_one({"_id": "doc", "n": 1})
        assert client.quantbot.kept.find_one({"_id": "doc"}) == {"_id": "doc", "n": 1}
    finally:
        client.close()


def test_influx_write_api_reads_back(first_up: list[StoreState]) -> None:
    """One InfluxDB line written to `/api/v2/write` of the embedded VictoriaMetrics reads back."""
    url = _by_name(first_up)[StoreName.INFLUX].url
    line = b"stack_probe,token=abc price=1.5 1700000000000000000"
    request = urllib.request.Request(
        f"{url}/api/v2/write?org=quantbot&bucket=quantbot&precision=ns", data=line, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
    series = _influx_export(url, '{__name__="stack_probe_price"}')
    assert len(series) == 1
    assert series[0]["metric"]["token"] == "abc"
    assert series[0]["values"] == [1.5]
    assert series[0]["timestamps"] == [1_700_000_000_000]


def test_second_up_reuses_every_server(first_up: list[StoreState], stack_dir: Path) -> None:
    """A second `up` starts nothing: every store is reused, same pid, same URL."""
    again = _by_name(stack.up(ALL_EMBEDDED, stack_dir))
    for state in first_up:
        assert again[state.name].action == "reused", again[state.name].detail
        assert again[state.name].url == state.url
        assert again[state.name].pid == state.pid


def test_recorded_urls_are_the_started_ones(first_up: list[StoreState], stack_dir: Path) -> None:
    """`recorded_urls` gives other commands exactly the URLs `up` reported."""
    assert recorded_urls(stack_dir) == {state.name: state.url for state in first_up}


def test_status_reports_every_store_running(first_up: list[StoreState], stack_dir: Path) -> None:
    """`status` sees every started server alive and answering."""
    for state in stack.status(ALL_EMBEDDED, stack_dir):
        assert state.action == "running", state.detail
        assert state.pid == _by_name(first_up)[state.name].pid


def test_status_tells_a_killed_server_is_stopped(first_up: list[StoreState], stack_dir: Path) -> None:
    """After SIGKILL of the Redis server, `status` says it stopped, the rest run, and `up` restarts it."""
    killed = _by_name(first_up)[StoreName.REDIS]
    assert killed.pid is not None
    os.kill(killed.pid, signal.SIGKILL)
    assert _wait_gone(killed.pid)

    states = _by_name(stack.status(ALL_EMBEDDED, stack_dir))
    assert states[StoreName.REDIS].action == "stopped"
    assert "not running" in states[StoreName.REDIS].detail
    assert {states[name].action for name in StoreName if name is not StoreName.REDIS} == {"running"}

    restarted = _by_name(stack.up(ALL_EMBEDDED, stack_dir))
    assert restarted[StoreName.REDIS].action == "started"
    assert restarted[StoreName.REDIS].url == killed.url  # its port was still free, so URLs stay valid
    assert {restarted[name].action for name in StoreName if name is not StoreName.REDIS} == {"reused"}


@pytest.mark.parametrize(
    ("name", "target", "expected"),
    [
        (StoreName.POSTGRES, StoreName.REDIS, "does not answer as PostgreSQL"),
        (StoreName.REDIS, StoreName.POSTGRES, "does not answer as Redis"),
        (StoreName.INFLUX, StoreName.REDIS, "does not answer as the InfluxDB API"),
        (StoreName.MONGO, None, "nothing answers at"),
        (StoreName.POSTGRES, None, "nothing answers at"),
    ],
)
def test_a_url_that_does_not_answer_is_unavailable(
    first_up: list[StoreState], stack_dir: Path, name: StoreName, target: StoreName | None, expected: str
) -> None:
    """A non-embedded URL at another kind of server, or at a closed port, is unavailable, and says why."""
    port = _port(_by_name(first_up)[target].url) if target else stack.free_port()
    scheme = {"postgres": "postgresql", "redis": "redis", "mongo": "mongodb", "influx": "http"}[name]
    url = f"{scheme}://user:secret-pw@127.0.0.1:{port}/db"

    [state] = stack.up([StoreWanted(name, url, embedded=False)], stack_dir)

    assert state.action == "unavailable"
    assert expected in state.detail
    assert "embedded = false" in state.detail
    assert "secret-pw" not in state.detail + state.url
    assert not stack.is_reachable(name, url, 2.0)
    assert stack.status([StoreWanted(name, url, embedded=False)], stack_dir)[0].action == "unavailable"


def test_no_url_and_not_embedded_is_unavailable(stack_dir: Path) -> None:
    """A store with no URL that the profile does not let the stack start is unavailable, not started."""
    [state] = stack.up([StoreWanted(StoreName.MONGO, None, embedded=False)], stack_dir)
    assert state.action == "unavailable"
    assert "embedded = false" in state.detail


def test_a_failed_start_reports_the_log(tmp_path: Path) -> None:
    """A server that cannot bind its port fails fast, and the error quotes the reason from its log."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: the bind fails, connects are refused at once
        port = holder.getsockname()[1]
        with pytest.raises(stack.ServerStartError, match=r"(?s)exited while starting.*redis\.log"):
            stack.start_valkey(tmp_path / "data", port, tmp_path / "redis.log")


def test_concurrent_ups_start_one_server(tmp_path: Path) -> None:
    """Two `up` at once on one stack start a single server: the lock makes the second one reuse it."""
    wanted = [StoreWanted(StoreName.REDIS, None, True)]
    barrier = threading.Barrier(2)
    results: list[StoreState] = []

    def run() -> None:
        barrier.wait()
        results.extend(stack.up(wanted, tmp_path))

    threads = [threading.Thread(target=run) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(state.action for state in results) == ["reused", "started"]
        assert results[0].pid == results[1].pid
    finally:
        stack.down(tmp_path)


def test_down_stops_everything_and_keeps_data(first_up: list[StoreState], stack_dir: Path) -> None:
    """`down` stops every server and forgets it; the next `up` finds the data written before."""
    running = {state.name: state.pid for state in stack.status(ALL_EMBEDDED, stack_dir)}

    stopped = _by_name(stack.down(stack_dir))

    assert set(stopped) == set(StoreName)
    for name, state in stopped.items():
        assert state.action == "stopped"
        assert "data kept" in state.detail
        pid = running[name]
        assert pid is not None
        assert _wait_gone(pid)
    assert recorded_urls(stack_dir) == {}
    assert {state.action for state in stack.status(ALL_EMBEDDED, stack_dir)} == {"stopped"}

    again = _by_name(stack.up(ALL_EMBEDDED, stack_dir))
    assert {state.action for state in again.values()} == {"started"}
    with psycopg.connect(again[StoreName.POSTGRES].url) as conn:
        assert conn.execute("SELECT id FROM kept").fetchall() == [(42,)]
    client = redis.Redis.from_url(again[StoreName.REDIS].url)
    try:
        assert client.get("kept") == b"yes"
    finally:
        client.close()
    mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        again[StoreName.MONGO].url, serverSelectionTimeoutMS=5000
    )
    try:
        assert mongo.quantbot.kept.find_one({"_id": "doc"}) == {"_id": "doc", "n": 1}
    finally:
        mongo.close()
    assert _influx_export(again[StoreName.INFLUX].url, '{__name__="stack_probe_price"}')[0]["values"] == [1.5]
