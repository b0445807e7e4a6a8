"""Schema operations across the four stores, and the health check behind `quantbot doctor`.

Versions: PostgreSQL's schema is the numbered migrations (`quantbot.schema.postgres`). The other
stores have one schema state each, present or absent: MongoDB's four collections with validators
and indexes, InfluxDB's bucket (where the server has a buckets API), and Redis's key patterns (no
server-side schema: keys are built and validated by `quantbot.schema.redis_keys`). `migrate up` brings
all four to the latest state; `migrate down --to N` steps PostgreSQL down to N, and at 0 also drops
the MongoDB collections quantbot created, so the stores are as empty as before the first `up`.

Whether a store is reachable, and why not, is the embedded stack's probe (`quantbot.ops.stack`), given
the clients' own credentials, TLS settings and timeouts; only a store that answers is then asked for
its server version and schema state.

Running flows: `migrate down` is destructive, so it first takes the flow lock exclusively
(`quantbot.schema.postgres.lock_out_flows`): it waits `migrate.lock_wait_s` for running flows to end,
then refuses with `SchemaInUseError` naming them, and changes nothing. `migrate up` is additive and
does not wait for flows (see `quantbot.schema.postgres`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quantbot.ops.stack import ServerUnavailableError, unreachable_reason
from quantbot.redaction import first_line
from quantbot.schema import influx as influx_schema
from quantbot.schema import mongo as mongo_schema
from quantbot.schema import postgres as pg_schema
from quantbot.settings import Settings
from quantbot.stack_state import StoreName
from quantbot.units import MS_PER_S, SECONDS_PER_DAY
from sinks.clients import (
    describe,
    influx_client,
    mongo_client,
    mongo_kwargs,
    postgres_connect,
    postgres_kwargs,
    redis_client,
    redis_kwargs,
    resolve_endpoints,
)

log = logging.getLogger(__name__)

LIBPQ_MIN_CONNECT_TIMEOUT_S = 2
"""libpq's smallest effective `connect_timeout`: it treats anything under 2 s as 2 s."""


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


Outcome = tuple[str | None, str | None, str]
"""What one store's check found: (server version, schema state, detail)."""


def _unreachable(settings: Settings, store: StoreName, url: str, bound_s: float | None = None) -> str | None:
    """Why `store` does not answer at `url`, by the stack's probe with the clients' options; None when it does.

    Each network step is bounded by the client's own timeout, or by `bound_s` when given.
    """
    options: dict[str, Any] = {}
    if store is StoreName.POSTGRES:
        options, timeout_s = postgres_kwargs(settings), settings.postgres.connect_timeout_s
    elif store is StoreName.MONGO:
        options, timeout_s = mongo_kwargs(settings), settings.mongo.timeout_ms / MS_PER_S
    elif store is StoreName.REDIS:
        options, timeout_s = redis_kwargs(settings), settings.redis.socket_timeout_s
    else:
        timeout_s = settings.influx.timeout_ms / MS_PER_S
    if bound_s is not None:
        timeout_s = bound_s
        options = {**options, **_timeout_options(store, bound_s)}
    try:
        return unreachable_reason(store, url, timeout_s, options, with_url=False)  # the report shows the URL
    except ServerUnavailableError as exc:
        return str(exc)


def _timeout_options(store: StoreName, timeout_s: float) -> dict[str, Any]:
    """The client options that bound each network step of `store`'s probe by `timeout_s`."""
    if store is StoreName.POSTGRES:
        return {"connect_timeout": max(LIBPQ_MIN_CONNECT_TIMEOUT_S, math.ceil(timeout_s))}
    if store is StoreName.MONGO:
        ms = int(timeout_s * MS_PER_S)
        return {"serverSelectionTimeoutMS": ms, "connectTimeoutMS": ms, "socketTimeoutMS": ms}
    if store is StoreName.REDIS:
        return {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    return {}


def unreachable_stores(settings: Settings, timeout_s: float | None = None) -> dict[StoreName, str]:
    """Why each store that does not answer does not, by the doctor's probe; an empty dict when all four answer.

    Args:
        settings: the effective settings (URLs, credentials, TLS).
        timeout_s: bound on each network step of each probe; the clients' own timeouts when None.
    """
    endpoints = resolve_endpoints(settings)
    problems: dict[StoreName, str] = {}
    for store in StoreName:
        url = endpoints.get(store)
        if url is None:
            problems[store] = f"not configured: set QUANTBOT_{store.upper()}_URL or run `quantbot stack up`"
        elif (why := _unreachable(settings, store, url, timeout_s)) is not None:
            problems[store] = f"{describe(url)}: {why}"
    return problems


def _checked(settings: Settings, store: StoreName, url: str | None, check: Callable[[], Outcome]) -> StoreReport:
    """Probe one store, then run its check; unreachable, or any failure, is reported with the reason."""
    if url is not None and (why := _unreachable(settings, store, url)) is not None:
        return StoreReport(store, describe(url), False, None, None, why)
    try:
        version, schema, detail = check()
    except Exception as exc:
        return StoreReport(store, describe(url), False, None, None, first_line(exc))
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

    def redis() -> Outcome:
        return _redis_check(settings, endpoints.redis, "no server-side schema: key patterns are built in code")

    return [
        _checked(settings, StoreName.POSTGRES, endpoints.postgres, postgres),
        _checked(settings, StoreName.MONGO, endpoints.mongo, mongo),
        _checked(settings, StoreName.INFLUX, endpoints.influx, influx),
        _checked(settings, StoreName.REDIS, endpoints.redis, redis),
    ]


def migrate_down(settings: Settings, target: int) -> list[StoreReport]:
    """Step PostgreSQL down to `target`; at 0 also drop quantbot's MongoDB collections.

    Nothing is changed while a flow runs: the flow lock is taken exclusively first, on a session held
    until both stores are done. When PostgreSQL cannot be reached, neither store is touched, since
    whether flows run cannot be known.

    Raises:
        SchemaInUseError: flows still ran after `migrate.lock_wait_s`; the message names them.
    """
    endpoints = resolve_endpoints(settings)
    try:
        guard = postgres_connect(
            settings, endpoints.postgres, autocommit=True, application_name="quantbot migrate down"
        )
    except Exception as exc:
        reports = [StoreReport("postgres", describe(endpoints.postgres), False, None, None, first_line(exc))]
        if target == 0:
            untouched = "not dropped: PostgreSQL is unreachable, so running flows cannot be ruled out"
            reports.append(StoreReport("mongo", describe(endpoints.mongo), None, None, None, untouched))
        return reports
    with guard:
        pg_schema.lock_out_flows(guard, settings.migrate.lock_wait_s)

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

        reports = [_checked(settings, StoreName.POSTGRES, endpoints.postgres, postgres)]
        if target == 0:
            reports.append(_checked(settings, StoreName.MONGO, endpoints.mongo, mongo))
        # Closing the guard's session releases the lock: flows may start again.
    return reports


TO_MIGRATE = "run `quantbot migrate up`"
"""The detail of a store whose schema is older than this version of quantbot's."""


@dataclass(frozen=True)
class StartCheck:
    """Whether a flow may start: every store answers and has this version's schema.

    Attributes:
        unreachable: the stores that do not answer (or are not configured), with the reason.
        outdated: the stores whose schema is older than this version's: `quantbot migrate up` first.
    """

    unreachable: list[StoreReport]
    outdated: list[StoreReport]


def start_check(settings: Settings) -> StartCheck:
    """The checks a flow runs before it is built, with `doctor`'s probes; reads only, migrates nothing."""
    reports = doctor(settings)
    return StartCheck(
        unreachable=[r for r in reports if not r.reachable],
        outdated=[r for r in reports if r.reachable and r.detail == TO_MIGRATE],
    )


def doctor(settings: Settings) -> list[StoreReport]:
    """Reachability, server version and schema version of each store; reads only."""
    endpoints = resolve_endpoints(settings)
    to_migrate = TO_MIGRATE

    def postgres() -> Outcome:
        with postgres_connect(settings, endpoints.postgres, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            version = pg_schema.current_version(conn)
        latest = pg_schema.latest_version()
        if version > latest:
            detail = f"newer than this version of quantbot knows ({latest})"
        else:
            detail = "up to date" if version == latest else to_migrate
        return row[0] if row else None, f"{version}/{latest}", detail

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
            return client.version(), f"bucket {settings.influx.bucket}", "write API"

    return [
        _checked(settings, StoreName.POSTGRES, endpoints.postgres, postgres),
        _checked(settings, StoreName.MONGO, endpoints.mongo, mongo),
        _checked(settings, StoreName.INFLUX, endpoints.influx, influx),
        _checked(settings, StoreName.REDIS, endpoints.redis, lambda: _redis_check(settings, endpoints.redis, "ok")),
    ]
