"""Schema operations across the four stores, and the health check behind `quantbot doctor`.

Versions: PostgreSQL's schema is the numbered migrations (`quantbot.schema.postgres`). The other
stores have one schema state each, present or absent: MongoDB's four collections with validators
and indexes, InfluxDB's bucket (where the server has a buckets API), and Redis's key patterns (no
server-side schema: keys are built and validated by `quantbot.schema.redis_keys`). `migrate up` brings
all four to the latest state; `migrate down --to N` steps PostgreSQL down to N, and at 0 also drops
the MongoDB collections quantbot created, so the stores are as empty as before the first `up`.
"""

from __future__ import annotations

import logging
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from quantbot.schema import influx as influx_schema
from quantbot.schema import mongo as mongo_schema
from quantbot.schema import postgres as pg_schema
from quantbot.settings import Settings
from sinks.stores import (
    describe,
    influx_client,
    mongo_client,
    postgres_connect,
    redis_client,
    resolve_endpoints,
)

log = logging.getLogger(__name__)
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class StoreReport:
    """One store's line in `migrate` and `doctor` output."""

    store: str
    url: str
    reachable: bool | None
    version: str | None
    schema: str | None
    detail: str

    @property
    def ok(self) -> bool:
        """Reachable (or not configured at all) and nothing failed."""
        return self.reachable is not False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


Outcome = tuple[str | None, str | None, str]
"""What one store's check found: (server version, schema state, detail)."""


def _checked(store: str, url: str | None, check: Callable[[], Outcome]) -> StoreReport:
    """Run one store's check; any failure becomes an unreachable report carrying its first line."""
    try:
        version, schema, detail = check()
    except Exception as exc:
        return StoreReport(store, describe(url), False, None, None, _first_line(exc))
    return StoreReport(store, describe(url), True, version, schema, detail)


def _listed(verb: str, items: list[Any], otherwise: str) -> str:
    return f"{verb} {', '.join(map(str, items))}" if items else otherwise


def _redis_check(settings: Settings, url: str | None, note: str) -> Outcome:
    client = redis_client(settings, url)
    try:
        info: dict[str, Any] = client.info("server")
    finally:
        client.close()
    return str(info.get("valkey_version") or info.get("redis_version")), "key patterns v1", note


def migrate_up(settings: Settings) -> list[StoreReport]:
    """Bring every configured store's schema to the latest version; idempotent."""
    endpoints = resolve_endpoints(settings)

    def postgres() -> Outcome:
        with postgres_connect(settings, endpoints.postgres, autocommit=True) as conn:
            applied = pg_schema.migrate_up(conn)
            version = pg_schema.current_version(conn)
        return None, f"{version}/{pg_schema.latest_version()}", _listed("applied", applied, "already up to date")

    def mongo() -> Outcome:
        with mongo_client(settings, endpoints.mongo) as client:
            results = mongo_schema.apply(client[settings.mongo.db])
        changed = [r.name for r in results if r.changed]
        return None, f"{len(results)} collections", _listed("changed", changed, "already up to date")

    def influx() -> Outcome:
        with influx_client(settings, endpoints.influx) as client:
            retention = settings.influx.retention_days * SECONDS_PER_DAY
            note = influx_schema.ensure_bucket(client, settings.influx.bucket, settings.influx.org, retention)
        return None, f"bucket {settings.influx.bucket}", note

    redis_note = "no server-side schema: key patterns are built in code"
    return [
        _checked("postgres", endpoints.postgres, postgres),
        _checked("mongo", endpoints.mongo, mongo),
        _checked("influx", endpoints.influx, influx),
        _checked("redis", endpoints.redis, lambda: _redis_check(settings, endpoints.redis, redis_note)),
    ]


def migrate_down(settings: Settings, target: int) -> list[StoreReport]:
    """Step PostgreSQL down to `target`; at 0 also drop quantbot's MongoDB collections."""
    endpoints = resolve_endpoints(settings)

    def postgres() -> Outcome:
        with postgres_connect(settings, endpoints.postgres, autocommit=True) as conn:
            reverted = pg_schema.migrate_down(conn, target)
            version = pg_schema.current_version(conn)
        return None, f"{version}/{pg_schema.latest_version()}", _listed("reverted", reverted, "nothing to revert")

    def mongo() -> Outcome:
        with mongo_client(settings, endpoints.mongo) as client:
            db = client[settings.mongo.db]
            present = set(db.list_collection_names())
            dropped = [spec.name for spec in mongo_schema.COLLECTIONS if spec.name in present]
            for name in dropped:
                db.drop_collection(name)
        return None, "0 collections", _listed("dropped", dropped, "nothing to drop")

    reports = [_checked("postgres", endpoints.postgres, postgres)]
    if target == 0:
        reports.append(_checked("mongo", endpoints.mongo, mongo))
    return reports


def doctor(settings: Settings) -> list[StoreReport]:
    """Reachability, server version and schema version of each store; reads only."""
    endpoints = resolve_endpoints(settings)
    to_migrate = "run `quantbot migrate up`"

    def postgres() -> Outcome:
        with postgres_connect(settings, endpoints.postgres, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            version = pg_schema.current_version(conn)
        latest = pg_schema.latest_version()
        return row[0] if row else None, f"{version}/{latest}", "up to date" if version == latest else to_migrate

    def mongo() -> Outcome:
        with mongo_client(settings, endpoints.mongo) as client:
            server = client.server_info()
            present = set(client[settings.mongo.db].list_collection_names())
        have = sum(1 for spec in mongo_schema.COLLECTIONS if spec.name in present)
        total = len(mongo_schema.COLLECTIONS)
        detail = "up to date" if have == total else to_migrate
        return str(server.get("version")), f"{have}/{total} collections", detail

    def influx() -> Outcome:
        with influx_client(settings, endpoints.influx) as client:
            if not client.ping():
                raise ConnectionError(f"no answer to ping at {describe(endpoints.influx)}")
            return client.version(), f"bucket {settings.influx.bucket}", "write API"

    return [
        _checked("postgres", endpoints.postgres, postgres),
        _checked("mongo", endpoints.mongo, mongo),
        _checked("influx", endpoints.influx, influx),
        _checked("redis", endpoints.redis, lambda: _redis_check(settings, endpoints.redis, "ok")),
    ]


# The look-back of a point count: 30 years covers every Solana block time (the chain began in 2020);
# VictoriaMetrics answers nothing at all for a 100-year window.
COUNT_WINDOW = "30y"


def _influx_series_count(settings: Settings, url: str | None, measurement: str, field: str) -> int | None:
    """Points of one field of a measurement, where the server answers PromQL (VictoriaMetrics); else None."""
    if url is None:
        return None
    query = f'sum(count_over_time({{__name__="{measurement}_{field}"}}[{COUNT_WINDOW}]))'
    try:
        with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=settings.influx.timeout_ms / 1000):  # noqa: S310 - the configured store URL
            pass
        address = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        with urllib.request.urlopen(address, timeout=settings.influx.timeout_ms / 1000) as response:  # noqa: S310
            result = orjson.loads(response.read())["data"]["result"]
    except Exception as exc:
        log.info("store=influx count unavailable: %s", _first_line(exc))
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


def store_counts(settings: Settings, largest: int = 5) -> StoreCounts:
    """Count rows, documents, keys and points in the four stores."""
    endpoints = resolve_endpoints(settings)
    with postgres_connect(settings, endpoints.postgres) as conn:
        signals = conn.execute("SELECT count(*) FROM trading_signals").fetchone()
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    with mongo_client(settings, endpoints.mongo) as client:
        collection = client[settings.mongo.db][mongo_schema.WHALE_ACTIVITY.name]
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
    )


DEMO_USER_ID = "00000000-0000-4000-8000-00000000d3e0"
DEMO_STRATEGY_ID = "00000000-0000-4000-8000-00000000d3e1"
# Not a password hash any login could match: the demo user exists to own the demo strategy only.
DISABLED_PASSWORD_HASH = "!disabled"  # noqa: S105 - deliberately matches no password


def demo_strategy_document() -> dict[str, Any]:
    """The demo's whale follower, in the schema's strategy-configuration shape."""
    return {
        "_id": DEMO_STRATEGY_ID,
        "userId": DEMO_USER_ID,
        "name": "Whale Follower Demo",
        "type": "whale_follower",
        "description": "Follows swaps of $100k and more into the token the whale bought",
        "status": "active",
        "parameters": {
            "minTransactionValueUsd": 100_000,
            "minWhaleInfluenceScore": 1,
            "followSizePercentage": 5,
            "maxPositionSizeUsd": 10_000,
            "allowedTokens": {"type": "denylist", "list": []},
            "executionDelay": 60,
            "takeProfitPercent": 15,
            "stopLossPercent": 7.5,
            "timeBasedExit": {"enabled": True, "maxHoldingTimeHours": 48},
        },
        "filters": {"transactionTypes": ["swap"], "excludedWallets": [], "minimumLiquidityUsd": 500_000},
    }


def ensure_demo_strategy(settings: Settings) -> str:
    """Create the demo user and its whale-follower strategy in PostgreSQL and MongoDB; idempotent."""
    from psycopg.types.json import Jsonb

    endpoints = resolve_endpoints(settings)
    document = demo_strategy_document()
    with postgres_connect(settings, endpoints.postgres) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO users (user_id, email, password_hash, role) VALUES (%s, %s, %s, 'user')"
            " ON CONFLICT (user_id) DO NOTHING",
            (DEMO_USER_ID, "demo@quantbot.local", DISABLED_PASSWORD_HASH),
        )
        conn.execute(
            "INSERT INTO trading_strategies"
            " (strategy_id, user_id, strategy_name, strategy_type, description, parameters)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (strategy_id) DO NOTHING",
            (
                DEMO_STRATEGY_ID,
                DEMO_USER_ID,
                document["name"],
                document["type"],
                document["description"],
                Jsonb({"parameters": document["parameters"], "filters": document["filters"]}),
            ),
        )
    with mongo_client(settings, endpoints.mongo) as client:
        client[settings.mongo.db][mongo_schema.STRATEGY_CONFIGS.name].replace_one(
            {"_id": DEMO_STRATEGY_ID}, document, upsert=True
        )
    return DEMO_STRATEGY_ID
