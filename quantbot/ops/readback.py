"""What the dataflow wrote, read back from the four stores: counts for summaries, snapshots to compare.

Used to check that a run interrupted by crashes left exactly what an uninterrupted run leaves. Only
what the flow determines is read: server-side clocks (`dead_letters.recorded_at`) and TTLs are left out.
"""

from __future__ import annotations

import logging
import math
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from quantbot.redaction import first_line
from quantbot.schema import mongo as mongo_schema
from quantbot.schema.mongo import WHALE_ACTIVITY
from quantbot.settings import Settings
from quantbot.units import MS_PER_S, NS_PER_MS, SECONDS_PER_DAY
from sinks.clients import mongo_client, postgres_connect, redis_client, resolve_endpoints

log = logging.getLogger(__name__)

# Every measurement the flow writes; VictoriaMetrics names a series `<measurement>_<field>`.
FLOW_SERIES = '{__name__=~"token_prices_.*|trading_signals_.*|trading_metrics_.*"}'
HTTP_TIMEOUT_S = 30
EXPORT_AHEAD_S = SECONDS_PER_DAY
"""How far past now a read-back looks: points lie up to a second ahead of their block second, and block
times up to `[parse] max_ahead_s` ahead of the receive clock; a day covers both with room."""
FLOAT_REL_TOLERANCE = 1e-9
"""How far two stored floats may be apart and still be the same value. VictoriaMetrics stores a block of
samples as integers with a shared decimal exponent, so one float written in differently cut batches can
come back a few units apart in its 12th to 16th digit. InfluxDB and the other stores keep float64
exactly; a real difference in the flow's output is many orders of magnitude larger."""


def influx_export(url: str, match: str, timeout_s: float = HTTP_TIMEOUT_S) -> list[dict[str, Any]]:
    """Every series matching `match` on a VictoriaMetrics server, as `/api/v1/export` gives them.

    The server's in-memory buffers are flushed first, so that what was just written is read back. The
    export's window ends `EXPORT_AHEAD_S` from now rather than at now (the server's default): a point of
    the current second lies up to a second ahead of its block second (`sinks.influx.point_offset_ns`).
    """
    _force_flush(url, timeout_s)
    query = urllib.parse.urlencode({"match[]": match, "end": str(int(time.time()) + EXPORT_AHEAD_S)})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=timeout_s) as response:  # noqa: S310 - store URL
        return [orjson.loads(line) for line in response.read().splitlines() if line.strip()]


def _force_flush(url: str, timeout_s: float) -> None:
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=timeout_s):  # noqa: S310 - the store URL
        pass


def influx_series(url: str) -> list[dict[str, Any]]:
    """Every flow series of a VictoriaMetrics server, sorted, samples sorted by time."""
    series = []
    for line in influx_export(url, FLOW_SERIES):
        samples = sorted(zip(line["timestamps"], line["values"], strict=True))
        series.append({"metric": line["metric"], "samples": samples})
    return sorted(series, key=lambda s: sorted(s["metric"].items()))


def _text_hash(fields: Any) -> dict[str, str]:
    """A Redis hash as text, sorted by field name."""
    return {k.decode(): v.decode() for k, v in sorted(fields.items())}


def store_snapshot(settings: Settings) -> dict[str, Any]:
    """The flow's data in each store: rows, documents, hashes and series, sorted by their keys."""
    endpoints = resolve_endpoints(settings)
    with postgres_connect(settings, endpoints.postgres) as conn:
        signals = conn.execute(
            "SELECT signal_id::text, strategy_id::text, signal_type, token_address, direction, confidence::text,"
            " price_target::text, stop_loss::text, take_profit::text, expiration_time, created_at, processed_at,"
            " status, metadata::text FROM trading_signals ORDER BY signal_id"
        ).fetchall()
        letters = conn.execute(
            "SELECT position, stage, source, reason, raw, received_at FROM dead_letters ORDER BY position, stage"
        ).fetchall()
    with mongo_client(settings, endpoints.mongo) as client:
        db = client[settings.mongo.db]
        whales = list(db[WHALE_ACTIVITY.name].find({}).sort("_id"))
        tokens = list(db[mongo_schema.TOKENS.name].find({}).sort("_id"))
        snapshots = list(db[mongo_schema.MARKET_SNAPSHOTS.name].find({}).sort("_id"))
        performance = list(
            db[mongo_schema.STRATEGY_CONFIGS.name].find({}, {"performance": 1, "lastRunAt": 1}).sort("_id")
        )
    cache = redis_client(settings, endpoints.redis)
    try:
        keys = sorted(k.decode() for pattern in ("price:*", "signal:*") for k in cache.scan_iter(match=pattern))
        hashes = {key: _text_hash(cache.hgetall(key)) for key in keys}
    finally:
        cache.close()
    series = influx_series(endpoints.influx) if endpoints.influx else []
    return {
        "postgres.trading_signals": [list(r) for r in signals],
        "postgres.dead_letters": [list(r) for r in letters],
        "mongo.whale_activity": whales,
        "mongo.tokens": tokens,
        "mongo.market_snapshots": snapshots,
        "mongo.strategy_configs.performance": performance,
        "redis": hashes,
        "influx": series,
    }


def first_difference(a: object, b: object, path: str = "") -> str | None:
    """Where two snapshots first differ (floats within `FLOAT_REL_TOLERANCE` are equal), or None."""
    if (isinstance(a, float) and isinstance(b, float | int)) or (isinstance(b, float) and isinstance(a, int)):
        return None if math.isclose(a, b, rel_tol=FLOAT_REL_TOLERANCE) else f"{path}: {a!r} vs {b!r}"
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}.{key}: only in {'the second' if key in b else 'the first'}"
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} vs {b!r}"


SeriesKey = tuple[tuple[str, str], ...]
"""A VictoriaMetrics series: its labels (`__name__` included), sorted."""


def shared_milliseconds(recording: Path, settings: Settings) -> dict[tuple[SeriesKey, int], list[float]]:
    """The VictoriaMetrics samples that two or more distinct trades share, with each trade's value.

    VictoriaMetrics keeps milliseconds, and a price point lies at its trade's hash-derived nanosecond
    (`sinks.influx.point_offset_ns`): two distinct trades of one series may share a millisecond there,
    and which of the two samples the server keeps depends on how the writes were cut into requests,
    which a crash or a restart changes. The recording is valued with the flow's own steps, in stream
    order, as the replay values it, the analytics included (a tick's 24 h statistics are its fields too).

    Args:
        recording: the recording that was replayed.
        settings: the settings the replay ran with (its pricing thresholds).

    Returns:
        For each shared (series, millisecond), the values of the trades that share it, sorted.
    """
    from flows.runtime import flow_config
    from quantbot.pricing import FeedQuote
    from quantbot.recordings import FrameFormatError, decode_frame, read_lines
    from quantbot.steps import DecodedTransaction, PricedQuote, Valuation, ValuedTransaction, parse_frame, price_ticks
    from quantbot.tokens import TokenFacts
    from sinks.influx import price_point

    flow = flow_config(settings, [])  # the ticks' statistics do not depend on the strategies
    valuation, config, analytics = Valuation(), flow.pricing, flow.analytics
    values: dict[tuple[SeriesKey, int], dict[object, float]] = defaultdict(dict)
    for line in read_lines(recording):
        try:
            frame = decode_frame(line.data, "")
        except FrameFormatError:
            continue
        for item in parse_frame(frame):
            if not isinstance(item, DecodedTransaction | FeedQuote | TokenFacts):
                continue
            valued = [
                b for b in valuation.book(item, config, analytics) if isinstance(b, ValuedTransaction | PricedQuote)
            ]
            for tick in (tick for booked in valued for tick in price_ticks(booked)):
                point = price_point(tick)
                identity = (tick.signature, tick.index) if tick.signature else tick.block_time
                for name, value in point.fields().items():
                    labels = {"__name__": f"{point.MEASUREMENT}_{name}", **point.tags()}
                    key = (tuple(sorted(labels.items())), point.timestamp_ns // NS_PER_MS)
                    values[key][identity] = float(value)
    return {key: sorted(by_trade.values()) for key, by_trade in values.items() if len(by_trade) > 1}


def settle_shared(series: list[dict[str, Any]], shared: dict[tuple[SeriesKey, int], list[float]]) -> int:
    """Mark each shared sample as "one of" its trades' values when it is one of them; how many were.

    Applied to two snapshots' `influx` parts, a sample either run kept for a shared millisecond compares
    equal to the other's, while a value no trade had still differs.

    Args:
        series: a snapshot's `influx` part (`influx_series`), changed in place.
        shared: `shared_milliseconds` of the replayed recording.
    """
    settled = 0
    for line in series:
        key = tuple(sorted(line["metric"].items()))
        for i, (ms, value) in enumerate(line["samples"]):
            candidates = shared.get((key, ms))
            if candidates and any(math.isclose(value, c, rel_tol=FLOAT_REL_TOLERANCE) for c in candidates):
                line["samples"][i] = (ms, ["one of", candidates])
                settled += 1
    return settled


def counts(snapshot: dict[str, Any]) -> dict[str, int]:
    """Items per store part (rows, documents, keys, series), for the report."""
    return {name: len(part) for name, part in snapshot.items()}


# The look-back of a point count: 30 years covers every Solana block time (the chain began in 2020);
# VictoriaMetrics answers nothing at all for a 100-year window.
COUNT_WINDOW = "30y"


def _influx_series_count(settings: Settings, url: str | None, measurement: str, field: str) -> int | None:
    """Points of one field of a measurement, where the server answers PromQL (VictoriaMetrics); else None."""
    if url is None:
        return None
    query = f'sum(count_over_time({{__name__="{measurement}_{field}"}}[{COUNT_WINDOW}]))'
    timeout_s = settings.influx.timeout_ms / MS_PER_S
    try:
        _force_flush(url, timeout_s)
        at = str(int(time.time()) + EXPORT_AHEAD_S)  # as the export: points of this second lie ahead of now
        address = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': query, 'time': at})}"
        with urllib.request.urlopen(address, timeout=timeout_s) as response:  # noqa: S310
            result = orjson.loads(response.read())["data"]["result"]
    except Exception as exc:
        log.info("store=influx count unavailable: %s", first_line(exc))
        return None
    return int(float(result[0]["value"][1])) if result else 0


@dataclass(frozen=True)
class StoreCounts:
    """What the stores hold after a run, read back from the stores themselves."""

    signals: int
    dead_letters: int
    whales: int
    price_keys: int
    signal_keys: int
    price_points: int | None
    signal_points: int | None
    largest_whales: list[dict[str, Any]]
    tokens: int = 0
    market_snapshots: int = 0
    metrics_points: int | None = None
    latest_snapshot: dict[str, Any] | None = None
    token_samples: list[dict[str, Any]] = field(default_factory=list)
    strategies: list[dict[str, Any]] = field(default_factory=list)
    """Each strategy's `name` and `performance`, best `allTime.profitPercent` first."""
    signal_statuses: dict[str, int] = field(default_factory=dict)


def store_counts(settings: Settings, largest: int = 5) -> StoreCounts:
    """Count rows, documents, keys and points in the four stores."""
    endpoints = resolve_endpoints(settings)
    with postgres_connect(settings, endpoints.postgres) as conn:
        signals = conn.execute("SELECT count(*) FROM trading_signals").fetchone()
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        statuses = dict(conn.execute("SELECT status, count(*) FROM trading_signals GROUP BY status").fetchall())
    with mongo_client(settings, endpoints.mongo) as client:
        db = client[settings.mongo.db]
        tokens = db[mongo_schema.TOKENS.name]
        token_count = tokens.count_documents({})
        # A few tokens whose facts came from the chain (they have a name), for the summary.
        token_samples = list(tokens.find({"name": {"$exists": True}}).sort("_id").limit(largest))
        snapshots = db[mongo_schema.MARKET_SNAPSHOTS.name]
        snapshot_count = snapshots.count_documents({})
        latest = next(iter(snapshots.find({}).sort("_id", -1).limit(1)), None)
        configured = list(db[mongo_schema.STRATEGY_CONFIGS.name].find({}, {"name": 1, "performance": 1}))
        collection = db[mongo_schema.WHALE_ACTIVITY.name]
        whales = collection.count_documents({})
        top = list(
            collection.find(
                {}, {"walletAddress": 1, "valueUsd": 1, "walletProfile.whaleCategory": 1, "market.venue": 1}
            )
            .sort("valueUsd", -1)
            .limit(largest)
        )
    client_r = redis_client(settings, endpoints.redis)
    try:
        price_keys = sum(1 for _ in client_r.scan_iter(match="price:*", count=1000))
        signal_keys = sum(1 for _ in client_r.scan_iter(match="signal:*", count=1000))
    finally:
        client_r.close()
    return StoreCounts(
        signals=int(signals[0]) if signals else 0,
        dead_letters=int(letters[0]) if letters else 0,
        whales=whales,
        price_keys=price_keys,
        signal_keys=signal_keys,
        price_points=_influx_series_count(settings, endpoints.influx, "token_prices", "price"),
        signal_points=_influx_series_count(settings, endpoints.influx, "trading_signals", "confidence"),
        largest_whales=top,
        tokens=token_count,
        market_snapshots=snapshot_count,
        metrics_points=_influx_series_count(settings, endpoints.influx, "trading_metrics", "pnl_percent"),
        latest_snapshot=latest,
        token_samples=token_samples,
        strategies=sorted(
            (s for s in configured if "performance" in s),
            key=lambda s: -float(s["performance"].get("allTime", {}).get("profitPercent", 0.0)),
        ),
        signal_statuses={str(k): int(v) for k, v in statuses.items()},
    )
