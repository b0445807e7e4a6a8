"""What the dataflow wrote, read back from the four stores as plain, comparable data.

Used to check that a run interrupted by crashes left exactly what an uninterrupted run leaves. Only
what the flow determines is read: server-side clocks (`dead_letters.recorded_at`) and TTLs are left out.
"""

from __future__ import annotations

import hashlib
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
SIGNIFICANT_DIGITS = 12


def _digest(rows: list[Any]) -> str:
    return hashlib.sha256(orjson.dumps(rows, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _significant(value: float) -> float:
    """`value` to `SIGNIFICANT_DIGITS`: VictoriaMetrics stores a block of samples as decimals with a
    shared exponent, so the same float written in differently cut batches can come back a few units
    in the 16th digit apart. InfluxDB keeps float64 exactly; the comparison must not depend on that."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def influx_series(url: str) -> list[dict[str, Any]]:
    """Every flow series of a VictoriaMetrics server, sorted, samples sorted by time."""
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=HTTP_TIMEOUT_S):  # noqa: S310 - store URL
        pass
    query = urllib.parse.urlencode({"match[]": FLOW_SERIES})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
        lines = [orjson.loads(line) for line in response.read().splitlines() if line.strip()]
    series = []
    for line in lines:
        samples = sorted(zip(line["timestamps"], (_significant(v) for v in line["values"]), strict=True))
        series.append({"metric": line["metric"], "samples": samples})
    return sorted(series, key=lambda s: sorted(s["metric"].items()))


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
        hashes = {key: {k.decode(): v.decode() for k, v in sorted(cache.hgetall(key).items())} for key in keys}
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


def summarise(snapshot: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """(item count, sha256) per store part: short enough to print, exact enough to compare."""
    return {
        name: (len(part), _digest(part if isinstance(part, list) else sorted(part.items())))
        for name, part in snapshot.items()
    }
