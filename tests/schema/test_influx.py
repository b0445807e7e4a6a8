"""InfluxDB measurements: the document's tags and fields, line protocol, and a round trip through a real server."""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import base58
import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write.point import Point
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from quantbot.schema.influx import (
    NO_BUCKETS_API_NOTE,
    InvalidPointError,
    SystemPerformance,
    TokenPrice,
    TradingMetrics,
    TradingSignalEvent,
    ensure_bucket,
    to_nanoseconds,
    token_price_line,
)
from tests.conftest import InfluxEndpoint
from tests.schema import document

BUILDERS = {cls.MEASUREMENT: cls for cls in (TokenPrice, TradingMetrics, SystemPerformance, TradingSignalEvent)}
# Where the issue overrides the document: token_prices is tagged with the symbol "when known"
# (issue: the dataflow's sinks), so the tag is optional; every other tag is as the document says.
OPTIONAL_BY_ISSUE = {"token_prices": {"symbol"}}
DOCUMENT_TYPE_OF = {"FLOAT_FIELDS": "float", "INTEGER_FIELDS": "integer", "BOOLEAN_FIELDS": "boolean"}
# A moment with whole milliseconds: VictoriaMetrics keeps millisecond timestamps.
MOMENT = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)


def _address() -> str:
    return base58.b58encode(os.urandom(32)).decode()


def _full_points() -> list[TokenPrice | TradingMetrics | SystemPerformance | TradingSignalEvent]:
    """One point per measurement with every tag and field set, to values VictoriaMetrics keeps exactly."""
    return [
        TokenPrice(
            time=MOMENT,
            token_address=_address(),
            symbol="BONK",
            source="raydium",
            price=0.000023456,
            volume=125000.5,
            market_cap=1500000000,
            liquidity=4200000.25,
            price_change_24h=-3.75,
            high_24h=0.000025,
            low_24h=0.0000219,
        ),
        TradingMetrics(
            time=MOMENT,
            strategy_id=str(uuid.uuid4()),
            user_id=str(uuid.uuid4()),
            token_address=_address(),
            pnl_percent=12.5,
            pnl_absolute=-340.75,
            win_count=17,
            loss_count=4,
            active_positions=3,
            exposure_usd=25000.0,
            max_drawdown=8.25,
            sharpe_ratio=1.8,
            sortino_ratio=2.1,
        ),
        SystemPerformance(
            time=MOMENT,
            service="dataflow",
            instance=f"worker-{uuid.uuid4().hex[:8]}",
            region="eu-west",
            cpu_usage_percent=63.5,
            memory_usage_percent=41.25,
            request_count=1_048_576,
            error_count=2,
            response_time_ms=12.75,
            queue_depth=250,
            active_connections=8,
            throughput=5120.5,
        ),
        TradingSignalEvent(
            time=MOMENT,
            signal_id=str(uuid.uuid4()),
            strategy_id=str(uuid.uuid4()),
            token_address=_address(),
            direction="buy",
            confidence=0.85,
            strength=7.5,
            price=145.75,
            volume=7250000,
            predicted_move=15,
            actual_move_1h=2.5,
            actual_move_24h=-1.25,
            success=True,
        ),
    ]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_builders_have_exactly_the_documents_tags_and_field_types(name: str) -> None:
    """Each builder declares the document's tags, and its fields with the document's types."""
    spec = document.measurements()[name]
    builder = BUILDERS[name]
    fields = {f: DOCUMENT_TYPE_OF[kind] for kind in DOCUMENT_TYPE_OF for f in getattr(builder, kind)}

    assert set(builder.TAGS) == set(spec.tags)
    assert fields == spec.fields
    optional = {t for t, kind in spec.tags.items() if "optional" in kind} | OPTIONAL_BY_ISSUE.get(name, set())
    assert optional == set(builder.OPTIONAL_TAGS)


def test_the_document_has_four_measurements() -> None:
    """The document's time-series section has exactly the four measurements the builders cover."""
    assert set(document.measurements()) == set(BUILDERS)


def _reference_line(built: Any) -> str:
    """The line influxdb_client.Point renders for a builder's tags, fields and time."""
    point: Any = Point(built.MEASUREMENT)  # type: ignore[no-untyped-call]  # the client is unannotated
    for key, value in built.tags().items():
        point.tag(key, value)
    for key, value in built.fields().items():
        point.field(key, value)
    return str(point.time(built.timestamp_ns).to_line_protocol())


@pytest.mark.parametrize("index", range(4), ids=list(BUILDERS))
def test_line_protocol_is_what_influxdb_client_renders(index: int) -> None:
    """For the same values, a builder's line is byte-for-byte influxdb_client.Point's line."""
    built = _full_points()[index]

    assert built.to_line_protocol() == _reference_line(built)


def test_tags_are_escaped_as_line_protocol_requires() -> None:
    """Spaces, commas and equals signs in tag values are escaped, as influxdb_client.Point does."""
    built = TokenPrice(time=MOMENT, token_address="a b", symbol="x,y=z", source="dex one", price=1.5)

    line = built.to_line_protocol()

    assert line == _reference_line(built)
    assert line.startswith(r"token_prices,source=dex\ one,symbol=x\,y\=z,token_address=a\ b price=1.5 ")


def test_token_price_time_keeps_nanoseconds_a_datetime_cannot() -> None:
    """`nanosecond` adds to the point's time exactly as line protocol renders it; outside 0-999 it is refused."""
    built = TokenPrice(time=MOMENT, token_address="a", symbol=None, source="s", price=1.5, nanosecond=789)

    assert built.timestamp_ns == to_nanoseconds(MOMENT) + 789
    assert built.to_line_protocol() == _reference_line(built)
    with pytest.raises(InvalidPointError, match="nanosecond"):
        TokenPrice(time=MOMENT, token_address="a", symbol=None, source="s", price=1.5, nanosecond=1000)


def test_field_types_are_fixed_whatever_python_type_arrives() -> None:
    """An int given for a float field is written as a float, integers get `i`, the boolean stays boolean."""
    built = TradingSignalEvent(
        time=MOMENT,
        signal_id="s",
        strategy_id="t",
        token_address="a",
        direction="sell",
        confidence=1,
        volume=7250000,
        success=False,
    )
    metrics = SystemPerformance(time=MOMENT, service="s", instance="i", region="r", request_count=5, throughput=5)

    assert built.fields() == {"confidence": 1.0, "volume": 7250000.0, "success": False}
    assert isinstance(built.fields()["confidence"], float)
    assert " confidence=1,success=false,volume=7250000 " in built.to_line_protocol()
    assert " request_count=5i,throughput=5 " in metrics.to_line_protocol()


def test_optional_tag_and_absent_fields_are_omitted() -> None:
    """trading_metrics without token_address has no such tag; fields left None are not written."""
    built = TradingMetrics(time=MOMENT, strategy_id="s", user_id="u", win_count=3)

    assert built.tags() == {"strategy_id": "s", "user_id": "u"}
    assert built.to_line_protocol() == f"trading_metrics,strategy_id=s,user_id=u win_count=3i {built.timestamp_ns}"


def test_timestamps_are_exact_nanoseconds_from_aware_datetimes() -> None:
    """Any zone gives the same instant, to the microsecond; nanoseconds are exact integers."""
    utc = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
    elsewhere = utc.astimezone(timezone(timedelta(hours=-5, minutes=-30)))

    assert to_nanoseconds(utc) == 1_773_500_966_535_897_000
    assert to_nanoseconds(elsewhere) == to_nanoseconds(utc)


BAD_POINTS: list[tuple[str, dict[str, Any]]] = [
    ("naive time", {"time": datetime(2026, 1, 1)}),  # noqa: DTZ001 -- the very thing being refused
    ("NaN price", {"price": math.nan}),
    ("infinite price", {"price": math.inf}),
    ("boolean price", {"price": True}),
    ("string price", {"price": "1.5"}),
    ("empty tag", {"symbol": ""}),
    ("missing tag", {"source": None}),
    ("tag ending in a backslash", {"source": "dex\\"}),
]


@pytest.mark.parametrize(("what", "change"), BAD_POINTS, ids=[w for w, _ in BAD_POINTS])
def test_invalid_points_are_refused(what: str, change: dict[str, Any]) -> None:
    """A value that cannot become a correct point raises InvalidPointError (a ValueError)."""
    values: dict[str, Any] = {"time": MOMENT, "token_address": "a", "symbol": "S", "source": "x", "price": 1.0}
    values.update(change)

    with pytest.raises(InvalidPointError):
        TokenPrice(**values)


TOKEN_PRICE_FIELDS = ("price", "volume", "market_cap", "liquidity", "price_change_24h", "high_24h", "low_24h")
TOKEN_PRICE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("every field", dict(zip(TOKEN_PRICE_FIELDS, (1.5, 2.0, 3e20, 4.25, -5.5, 1e-9, 0.1), strict=True))),
    ("price only, no symbol", {"price": 123456789.0, "symbol": None}),
    ("whole and tiny floats", {"price": 1.0, "volume": 0.0, "low_24h": 5e-324, "high_24h": 1e16}),
    ("escaped tags", {"price": 2.5, "token_address": "a b", "symbol": "x,y=z\tq", "source": "dex one"}),
    ("an int for a float", {"price": 3, "volume": 7250000}),
    ("a numpy-free subclass of float", {"price": type("Sub", (float,), {})(2.5)}),
    ("negative time", {"price": 1.5, "time_ns": -1_500_000_001}),
    ("the last nanosecond of 2262", {"price": 1.5, "time_ns": 2**63 - 1}),
    ("nanosecond offset", {"price": 1.5, "time_ns": 1_773_500_966_535_897_123}),
]


@pytest.mark.parametrize(("what", "values"), TOKEN_PRICE_CASES, ids=[w for w, _ in TOKEN_PRICE_CASES])
def test_token_price_line_is_the_points_line(what: str, values: dict[str, Any]) -> None:
    """The flow's fast `token_prices` line is byte for byte `TokenPrice(...).to_line_protocol()` and the client's."""
    given: dict[str, Any] = {"token_address": "So1ana", "symbol": "SOL", "source": "raydium", "time_ns": 10**18 + 7}
    given.update(values)
    fields: dict[str, Any] = {name: given.get(name) for name in TOKEN_PRICE_FIELDS}
    time_ns = given["time_ns"]
    point = TokenPrice(
        time=datetime.fromtimestamp(0, tz=UTC) + timedelta(microseconds=time_ns // 1000),
        nanosecond=time_ns % 1000,
        token_address=given["token_address"],
        symbol=given["symbol"],
        source=given["source"],
        **fields,
    )

    line = token_price_line(time_ns, given["token_address"], given["symbol"], given["source"], **fields)

    assert line == point.to_line_protocol() == _reference_line(point)


@pytest.mark.parametrize(("what", "change"), BAD_POINTS[1:], ids=[w for w, _ in BAD_POINTS[1:]])
def test_token_price_line_refuses_what_the_point_refuses(what: str, change: dict[str, Any]) -> None:
    """A value `TokenPrice` refuses is refused by the fast line too, with the same error."""
    values: dict[str, Any] = {"token_address": "a", "symbol": "S", "source": "x", "price": 1.0}
    values.update(change)
    fields: dict[str, Any] = {name: values.get(name) for name in TOKEN_PRICE_FIELDS}

    with pytest.raises(InvalidPointError):
        token_price_line(10**18, values["token_address"], values["symbol"], values["source"], **fields)


SYSTEM_TAGS = {"service": "s", "instance": "i", "region": "r"}
METRICS_TAGS = {"strategy_id": "s", "user_id": "u"}


@pytest.mark.parametrize(
    ("builder", "values"),
    [
        (SystemPerformance, {**SYSTEM_TAGS, "request_count": 1.5}),
        (SystemPerformance, {**SYSTEM_TAGS, "request_count": True}),
        (SystemPerformance, SYSTEM_TAGS),
        (TradingMetrics, {**METRICS_TAGS, "token_address": None}),
    ],
    ids=["float count", "boolean count", "no field", "only tags"],
)
def test_integer_fields_and_empty_points_are_refused(builder: type[Any], values: dict[str, Any]) -> None:
    """Integer fields take integers only, and a point needs at least one field."""
    with pytest.raises(InvalidPointError):
        builder(time=MOMENT, **values)


def test_signal_direction_is_buy_or_sell() -> None:
    """The trading_signals direction tag is `buy` or `sell`, nothing else."""
    with pytest.raises(InvalidPointError, match="direction"):
        TradingSignalEvent(
            time=MOMENT, signal_id="s", strategy_id="t", token_address="a", direction="hold", confidence=0.5
        )


def test_points_are_written_and_read_back_exactly(influx: InfluxEndpoint) -> None:
    """Every measurement's every field round-trips through the v2 write API with its tags and time."""
    points = _full_points()
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=influx.bucket, org=influx.org, record=[p.to_line_protocol() for p in points]
        )

    for point in points:
        tags = point.tags()
        selector = ",".join(f'{k}="{v}"' for k, v in tags.items())
        series = influx.export(f'{{__name__=~"{point.MEASUREMENT}_.+",{selector}}}')
        stored = {s["metric"]["__name__"].removeprefix(f"{point.MEASUREMENT}_"): s for s in series}
        # VictoriaMetrics keeps numbers only: the boolean `success` arrives as 1.0 / 0.0.
        expected = {k: float(v) for k, v in point.fields().items()}
        assert {k: s["values"] for k, s in stored.items()} == {k: [v] for k, v in expected.items()}
        assert all(s["timestamps"] == [point.timestamp_ns // 1_000_000] for s in stored.values())
        assert all({k: v for k, v in s["metric"].items() if k != "__name__"} == tags for s in stored.values())


def test_ensure_bucket_skips_a_server_without_buckets_api(influx: InfluxEndpoint) -> None:
    """VictoriaMetrics has no buckets API: ensure_bucket returns the skip note instead of failing."""
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        note = ensure_bucket(client, influx.bucket, influx.org, retention_seconds=3600)

    assert note == NO_BUCKETS_API_NOTE


ORG_ID = "0123456789abcdef"  # InfluxDB ids are 16 hex digits


@dataclass
class _BucketsServer:
    """A scripted InfluxDB 2 buckets API on loopback: it records requests and keeps buckets in memory."""

    url: str
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    deny: bool = False


@pytest.fixture
def buckets_server() -> Iterator[_BucketsServer]:
    """A loopback server speaking the part of the InfluxDB 2 API that ensure_bucket uses."""
    state = _BucketsServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length else None

        def _handle(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            body = self._body()
            state.requests.append((method, url.path, body))
            if state.deny:
                self._reply(401, {"code": "unauthorized", "message": "unauthorized access"})
            elif method == "GET" and url.path == "/api/v2/orgs":
                self._reply(200, {"orgs": [{"id": ORG_ID, "name": query.get("org", "quantbot")}]})
            elif method == "GET" and url.path == "/api/v2/buckets":
                found = [b for b in state.buckets.values() if b["name"] == query.get("name")]
                self._reply(200, {"buckets": found})
            elif method == "POST" and url.path == "/api/v2/buckets":
                bucket = {"id": uuid.uuid4().hex[:16], "type": "user", **body}
                state.buckets[bucket["id"]] = bucket
                self._reply(201, bucket)
            elif method == "PATCH" and url.path.startswith("/api/v2/buckets/"):
                bucket = state.buckets[url.path.rsplit("/", 1)[1]]
                bucket.update(body)
                self._reply(200, bucket)
            else:
                self._reply(404, {"code": "not found", "message": "path not found"})

        def do_GET(self) -> None:
            """Serve a GET."""
            self._handle("GET")

        def do_POST(self) -> None:
            """Serve a POST."""
            self._handle("POST")

        def do_PATCH(self) -> None:
            """Serve a PATCH."""
            self._handle("PATCH")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll keeps shutdown() quick; the default half second would dominate these tests.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_ensure_bucket_creates_then_keeps_then_updates_retention(buckets_server: _BucketsServer) -> None:
    """Against a buckets API: created with its retention, unchanged when equal, patched when different."""
    with InfluxDBClient(url=buckets_server.url, token="t", org="quantbot") as client:
        created = ensure_bucket(client, "quantbot", "quantbot", retention_seconds=3600)
        unchanged = ensure_bucket(client, "quantbot", "quantbot", retention_seconds=3600)
        updated = ensure_bucket(client, "quantbot", "quantbot", retention_seconds=7200)

    (bucket,) = buckets_server.buckets.values()
    posts = [body for method, _, body in buckets_server.requests if method == "POST"]
    assert (created, unchanged, updated) == ("created", "unchanged", "retention updated")
    assert [(p["name"], p["orgID"], p["retentionRules"]) for p in posts] == [
        ("quantbot", ORG_ID, [{"type": "expire", "everySeconds": 3600}])
    ]
    assert bucket["retentionRules"] == [{"type": "expire", "everySeconds": 7200}]


def test_ensure_bucket_raises_when_the_server_refuses(buckets_server: _BucketsServer) -> None:
    """An answer other than "no such API" (here 401) is an error, not a skip."""
    buckets_server.deny = True

    with InfluxDBClient(url=buckets_server.url, token="t", org="quantbot") as client, pytest.raises(ApiException):
        ensure_bucket(client, "quantbot", "quantbot", retention_seconds=3600)
