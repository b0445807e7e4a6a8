"""What the dataflow wrote, read back from the four stores as plain, comparable data.

Used to check that a run interrupted by crashes left exactly what an uninterrupted run leaves. Only
what the flow determines is read: server-side clocks (`dead_letters.recorded_at`) and TTLs are left out.
"""

from __future__ import annotations

import math
import urllib.parse
import urllib.request
from typing import Any

import orjson

from quantbot.schema.mongo import WHALE_ACTIVITY
from quantbot.settings import Settings
from sinks.stores import mongo_client, postgres_connect, redis_client, resolve_endpoints

# Every measurement the flow writes; VictoriaMetrics names a series `<measurement>_<field>`.
FLOW_SERIES = '{__name__=~"token_prices_.*|trading_signals_.*"}'
HTTP_TIMEOUT_S = 30
FLOAT_REL_TOLERANCE = 1e-9
"""How far two stored floats may be apart and still be the same value. VictoriaMetrics stores a block of
samples as integers with a shared decimal exponent, so one float written in differently cut batches can
come back a few units apart in its 12th to 16th digit. InfluxDB and the other stores keep float64
exactly; a real difference in the flow's output is many orders of magnitude larger."""


def influx_series(url: str) -> list[dict[str, Any]]:
    """Every flow series of a VictoriaMetrics server, sorted, samples sorted by time."""
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=HTTP_TIMEOUT_S):  # noqa: S310 - store URL
        pass
    query = urllib.parse.urlencode({"match[]": FLOW_SERIES})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
        lines = [orjson.loads(line) for line in response.read().splitlines() if line.strip()]
    series = []
    for line in lines:
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
            " price_target::text, stop_loss::text, take_profit::text, expiration_time, created_at, status,"
            " metadata::text FROM trading_signals ORDER BY signal_id"
        ).fetchall()
        letters = conn.execute(
            "SELECT position, stage, source, reason, raw, received_at FROM dead_letters ORDER BY position, stage"
        ).fetchall()
    with mongo_client(settings, endpoints.mongo) as client:
        whales = list(client[settings.mongo.db][WHALE_ACTIVITY.name].find({}).sort("_id"))
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


def counts(snapshot: dict[str, Any]) -> dict[str, int]:
    """Items per store part (rows, documents, keys, series), for the report."""
    return {name: len(part) for name, part in snapshot.items()}
