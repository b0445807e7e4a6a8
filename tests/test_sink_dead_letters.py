"""A store refusing one item: the item becomes a dead letter in PostgreSQL, the rest of the batch is stored.

Each sink gets a batch of good items with one (or two) poison items among them, against the real store:
an item whose conversion to the store's form raises (a price tick timed in milliseconds, as a price feed
may send it: `datetime.fromtimestamp` refuses year 57,425), or one the store itself refuses (a Mongo
validator, a PostgreSQL numeric overflow, a Redis key of the wrong type). `write_batch` must return.
"""

from __future__ import annotations

import dataclasses
import gc
import http.server
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import bytewax.operators as op
import orjson
import psycopg
import pymongo
import pytest
import redis
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource
from influxdb_client.client.influxdb_client import InfluxDBClient
from pymongo.database import Database

from flows import runtime
from quantbot.models import WSOL_MINT, DeadLetter, Frame, InstructionIndex, PriceTick
from quantbot.recordings import RecordingWriter
from quantbot.schema import mongo as mongo_schema
from quantbot.settings import Settings, load_settings
from sinks.dead_letters import DeadLetterStore, find_refused
from sinks.influx import InfluxSink
from sinks.mongo import MongoSink
from sinks.postgres import PostgresSink
from sinks.redis import RedisSink
from tests.conftest import REPO_ROOT, InfluxEndpoint, run_cli, store_env
from tests.test_sinks import FAST_RETRY, migrate_with_strategy, whale_and_signal

JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
WIF = "EKpQGSJtjMFqKZ9KQanSqYXRcF8fBopzLHYxdM65zcjm"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
MSOL = "mSoLzYCxHdYgdzU16g5QSh3i5K3z3KZK7ytfqcJm7So"
# Not BONK: tests/test_sinks.py reads back every BONK series of the session's shared VictoriaMetrics.
MS_TIME = 1_750_000_000_000
"""A block time in milliseconds where seconds belong: year 57,425, past what a datetime holds."""


@pytest.fixture
def letters_pg(pg_url: str) -> str:
    """A database at the latest schema, with the user and strategy the test signals refer to."""
    return migrate_with_strategy(pg_url)


def letters_in(pg_url: str) -> list[tuple[str, str, str, str]]:
    """Every dead letter: (position, stage, reason, raw), ordered by stage then position."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT position, stage, reason, raw FROM dead_letters ORDER BY stage, position").fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def dead_letter_store(pg_url: str) -> DeadLetterStore:
    """Dead letters into the test database, with the tests' quick retry policy."""
    return DeadLetterStore(lambda: psycopg.connect(pg_url, options="-c TimeZone=UTC"), FAST_RETRY)


def tick(token: str, block_time: int, source: str = "letters", signature: str = "sig") -> PriceTick:
    """A trade's price tick with a fixed price, from a source of its own (the test Influx is shared)."""
    return PriceTick(token, 0.5, block_time, source, 10.0, signature, InstructionIndex(2, 1))


def test_influx_sink_dead_letters_ticks_it_cannot_time(letters_pg: str, influx: InfluxEndpoint) -> None:
    """Ticks in milliseconds or past 2262 (beyond int64 ns) are `sink:influx` dead letters; the rest is written."""
    now = int(time.time())
    good = [tick(WIF, now, signature="good1"), tick(JUP, now, signature="good2")]
    poison = tick(WSOL_MINT, MS_TIME, signature="poison")
    # VictoriaMetrics answers 204 and drops such a line; InfluxDB answers 400 for the whole body.
    year_2302 = tick(USDC, 10_500_000_000, signature="far")
    sink = InfluxSink(
        lambda: InfluxDBClient(url=influx.url, token=influx.token, org=influx.org),
        "b",
        "o",
        FAST_RETRY,
        dead_letters=dead_letter_store(letters_pg),
    )
    partition = sink.build("influx", 0, 1)

    partition.write_batch([good[0], poison, year_2302, good[1]])

    stored = {s["metric"]["token_address"] for s in influx.export('{__name__="token_prices_price",source="letters"}')}
    assert stored == {WIF, JUP}
    letters = letters_in(letters_pg)
    assert [(p, s) for p, s, _, _ in letters] == [
        (f"far#2.1/{USDC}", "sink:influx"),
        (f"poison#2.1/{WSOL_MINT}", "sink:influx"),
    ]
    assert "1677-2262" in letters[0][2]
    assert "1677-2262" in letters[1][2]  # a time in milliseconds is a time in the 55th millennium
    item = orjson.loads(orjson.dumps(dataclasses.asdict(poison)))
    assert orjson.loads(letters[1][3]) == {"type": "PriceTick", "item": item}


def test_redis_sink_dead_letters_an_untimed_tick_and_a_key_of_the_wrong_type(letters_pg: str, redis_url: str) -> None:
    """A tick in milliseconds and a tick whose key holds a string are dead letters; the good prices are set."""
    now = int(time.time())
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.set(f"price:{JUP}", "not a hash")  # e.g. left by another program sharing the database
    batch = [
        tick(WIF, now, signature="good"),
        tick(JUP, now, signature="wrongtype"),
        tick(WSOL_MINT, now - 1, signature="older"),
        tick(WSOL_MINT, MS_TIME),
    ]
    sink = RedisSink(lambda: redis.Redis.from_url(redis_url), FAST_RETRY, dead_letters=dead_letter_store(letters_pg))

    sink.build("redis", 0, 1).write_batch(batch)

    assert client.hget(f"price:{WIF}", "source") == "letters"
    assert client.get(f"price:{JUP}") == "not a hash"
    assert client.hget(f"price:{WSOL_MINT}", "source") == "letters", "the untimed tick hid an older good one"
    letters = letters_in(letters_pg)
    assert [(p, s) for p, s, _, _ in letters] == [
        (f"sig#2.1/{WSOL_MINT}", "sink:redis"),
        (f"wrongtype#2.1/{JUP}", "sink:redis"),
    ]
    assert "year" in letters[0][2]
    assert "WRONGTYPE" in letters[1][2]


def test_mongo_sink_dead_letters_a_document_the_validator_refuses(
    letters_pg: str, mongo_url: str, mongo_db: Database[dict[str, Any]]
) -> None:
    """A whale document failing `$jsonSchema` (code 121) is a `sink:mongo` dead letter; the other is upserted."""
    mongo_schema.apply(mongo_db)
    whale, _ = whale_and_signal(1_750_000_000)
    document = {**whale.document, "_id": "refused", "signature": "refused"}
    del document["walletAddress"]
    refused = dataclasses.replace(whale, document=document)
    sink = MongoSink(
        lambda: pymongo.MongoClient(mongo_url), mongo_db.name, FAST_RETRY, dead_letters=dead_letter_store(letters_pg)
    )

    sink.build("mongo", 0, 1).write_batch([refused, whale])

    assert [d["_id"] for d in mongo_db.whale_activity.find({})] == [whale.document["_id"]]
    ((position, stage, reason, raw),) = letters_in(letters_pg)
    assert (position, stage) == ("refused", "sink:mongo")
    assert "121" in reason and "validation" in reason
    assert orjson.loads(raw)["item"]["document"]["signature"] == "refused"


def test_postgres_sink_dead_letters_an_overflowing_and_an_untimed_signal(letters_pg: str) -> None:
    """A confidence past DECIMAL(5, 2) and a creation time in milliseconds become dead letters; the rest is stored."""
    _, signal = whale_and_signal(1_750_000_000)
    overflow = dataclasses.replace(signal, signal_id="11111111-1111-4111-8111-111111111111", confidence=10_000.0)
    untimed = dataclasses.replace(signal, signal_id="22222222-2222-4222-8222-222222222222", created_at=MS_TIME)
    letter = DeadLetter("feed.jsonl@7", "recording", "frame", "line is not JSON", "garbage", 0)
    sink = PostgresSink(lambda: psycopg.connect(letters_pg, options="-c TimeZone=UTC"), FAST_RETRY)

    sink.build("postgres", 0, 1).write_batch([overflow, signal, letter, untimed])

    with psycopg.connect(letters_pg) as conn:
        stored = [r[0] for r in conn.execute("SELECT signal_id::text FROM trading_signals").fetchall()]
    assert stored == [signal.signal_id]
    letters = letters_in(letters_pg)
    assert [(p, s) for p, s, _, _ in letters] == [
        ("feed.jsonl@7", "frame"),
        (overflow.signal_id, "sink:postgres"),
        (untimed.signal_id, "sink:postgres"),
    ]
    assert "numeric field overflow" in letters[1][2]
    assert "year" in letters[2][2]


@pytest.fixture
def settings(letters_pg: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, tmp_path: Path) -> Settings:
    """Settings pointing at the test stores (PostgreSQL migrated, the other stores as they are)."""
    db = f"letters_{int(time.time() * 1000)}"
    with pymongo.MongoClient(mongo_url) as client:
        mongo_schema.apply(client[db])
    return load_settings(
        "default", REPO_ROOT / "config", environ=letters_env(letters_pg, redis_url, mongo_url, influx, db)
    )


def letters_env(pg_url: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint, db: str) -> dict[str, str]:
    """The environment pointing quantbot at the test stores, with frequent snapshots and a short retry budget."""
    return {
        **store_env(pg_url, redis_url, mongo_url, influx, mongo_db=db, stack_dir=REPO_ROOT / ".quantbot" / "unused"),
        "QUANTBOT_PIPELINE_SNAPSHOT_INTERVAL_S": "0.5",
        "QUANTBOT_SINKS_RETRY_BUDGET_S": "5",
    }


def test_a_flow_with_an_untimed_tick_runs_to_its_end(settings: Settings, letters_pg: str, tmp_path: Path) -> None:
    """The store sinks as the runtime wires them: a tick in milliseconds is dead-lettered, the flow finishes."""
    now = int(time.time())
    ticks = [tick(WIF, now, signature="a"), tick(WSOL_MINT, MS_TIME, signature="b"), tick(JUP, now, signature="c")]
    sinks = runtime.store_sinks(settings)
    flow = Dataflow("untimed")
    items = op.input("ticks", flow, TestingSource(ticks))
    op.output("influx", items, sinks.influx)
    op.output("redis", items, sinks.redis)

    runtime.run(flow, settings, tmp_path / "recovery")

    assert [(p, s) for p, s, _, _ in letters_in(letters_pg)] == [
        (f"b#2.1/{WSOL_MINT}", "sink:influx"),
        (f"b#2.1/{WSOL_MINT}", "sink:redis"),
    ]
    assert settings.redis.url is not None
    assert redis.Redis.from_url(settings.redis.url).exists(f"price:{WIF}", f"price:{JUP}") == 2


def test_a_run_collects_garbage_at_its_configured_threshold_and_restores_the_interpreters(
    settings: Settings, tmp_path: Path
) -> None:
    """`pipeline.gc_young_threshold` holds inside the flow's steps; the process's own threshold is back after."""
    before = gc.get_threshold()
    tuned = settings.model_copy(
        update={"pipeline": settings.pipeline.model_copy(update={"gc_young_threshold": before[0] + 4321})}
    )
    seen: list[int] = []
    flow = Dataflow("collector")
    items = op.input("numbers", flow, TestingSource([1, 2]))
    op.inspect("threshold", items, lambda _step, _item: seen.append(gc.get_threshold()[0]))

    runtime.run(flow, tuned, None)

    assert seen == [before[0] + 4321] * 2
    assert gc.get_threshold() == before


@pytest.fixture
def cli_env(letters_pg: str, redis_url: str, mongo_url: str, influx: InfluxEndpoint) -> Iterator[dict[str, str]]:
    """The environment of a `quantbot` child process using the test stores, Mongo migrated."""
    db = f"letters_{int(time.time() * 1000)}"
    with pymongo.MongoClient(mongo_url) as client:
        mongo_schema.apply(client[db])
    yield letters_env(letters_pg, redis_url, mongo_url, influx, db)
    with pymongo.MongoClient(mongo_url) as client:
        client.drop_database(db)


def test_a_replay_and_its_resume_survive_a_price_frame_in_milliseconds(
    cli_env: dict[str, str], letters_pg: str, tmp_path: Path
) -> None:
    """Issue 8's frame (a SOL/USD quote timed in ms) is a dead letter: the replay exits 0, and so does a resume."""
    quote = orjson.dumps({"symbol": "SOL/USD", "price": 151.2, "ts": MS_TIME}).decode()
    good = orjson.dumps({"symbol": "SOL/USD", "price": 150.0, "ts": int(time.time())}).decode()
    writer = RecordingWriter(tmp_path / "rec")
    writer.write([Frame(1, "feed", "price", good), Frame(2, "feed", "price", quote)])
    writer.close()
    recovery = tmp_path / "recovery"

    first = run_cli("replay", str(tmp_path / "rec"), "--recovery-dir", str(recovery), env=cli_env)
    again = run_cli("replay", str(tmp_path / "rec"), "--recovery-dir", str(recovery), env=cli_env)

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert any("151.2" in raw for _, _, _, raw in letters_in(letters_pg))


class _RefusingInflux(http.server.BaseHTTPRequestHandler):
    """InfluxDB's answer to a body with a line it cannot take (400, nothing written), in front of the real store.

    VictoriaMetrics drops a bad line and answers 204, so it cannot show the sink's bisection; this
    loopback server refuses any body holding a `source=refused` point, as InfluxDB 2 refuses a body
    with one unparsable line, and passes every other body on to VictoriaMetrics unchanged.
    """

    upstream = ""
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(body)
        if b"source=refused" in body:
            answer = b'{"code":"invalid","message":"unable to parse \'token_prices,source=refused ...\': bad field"}'
            self.send_response(400)
        else:
            request = urllib.request.Request(self.upstream + self.path, data=body, method="POST")
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = response.read()
            self.send_response(204)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on what matters."""


def test_influx_sink_bisects_a_body_the_server_refuses(letters_pg: str, influx: InfluxEndpoint) -> None:
    """HTTP 400 for a body: the sink halves it until the one refused point is alone; the others are written."""
    now = int(time.time())
    tokens = [WIF, JUP, USDC, MSOL, WSOL_MINT]
    good = [tick(token, now, source="bisect", signature=f"good{i}") for i, token in enumerate(tokens)]
    bad = tick(WIF, now, source="refused", signature="bad")
    _RefusingInflux.upstream, _RefusingInflux.bodies = influx.url, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingInflux)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    sink = InfluxSink(
        lambda: InfluxDBClient(url=url, token=influx.token, org=influx.org),
        "b",
        "o",
        FAST_RETRY,
        dead_letters=dead_letter_store(letters_pg),
    )
    try:
        sink.build("influx", 0, 1).write_batch([*good[:3], bad, *good[3:]])
    finally:
        server.shutdown()
        server.server_close()

    stored = {s["metric"]["token_address"] for s in influx.export('{__name__="token_prices_price",source="bisect"}')}
    assert stored == set(tokens)
    ((position, stage, reason, _),) = letters_in(letters_pg)
    assert (position, stage) == (f"bad#2.1/{WIF}", "sink:influx")
    assert "400" in reason and "unable to parse" in reason
    # six points: the whole body, then halves down to the one refused point: 2 * log2(6) + 1 bodies at most
    assert len(_RefusingInflux.bodies) <= 7


def test_find_refused_isolates_every_offender() -> None:
    """Bisection finds each item refused on its own, however many, and writes every other item."""
    items = list(range(37))
    offenders = {3, 4, 30}
    written: set[int] = set()

    def attempt(chunk: Sequence[int]) -> BaseException | None:
        if offenders & set(chunk):
            return ValueError(f"refused {sorted(offenders & set(chunk))}")
        written.update(chunk)
        return None

    refused = find_refused(items, attempt)

    assert [item for item, _ in refused] == sorted(offenders)
    assert written == set(items) - offenders
