"""Periodic reconciliation of the four stores (the schema document's "Data Integrity Approach").

Each check names one kind of difference between stores, counts it and samples its keys; with `fix`,
it repairs what the source of truth allows, then the next check runs (so a signal a check marks
orphaned is no longer among the active signals the Redis check compares). The checks, in order:

======================== ======== ================================================== =========================
check                    store    difference                                         `--fix`
======================== ======== ================================================== =========================
signal_strategy_missing  postgres an open signal whose strategy has no               status `orphaned`
                                  `trading_strategies` row or `strategy_configs` doc
signal_whale_missing     postgres an open signal whose `metadata.whale_signature`    status `orphaned`
                                  has no `whale_activity` document
redis_signal_missing     redis    an open, unexpired signal with a price but no      written by the sink
                                  `signal:{id}` hash
redis_signal_stray       redis    a `signal:{id}` hash of no open, unexpired signal  deleted
redis_signal_differs     redis    a signal's hash whose fields are not those the      rewritten by the sink
                                  sink writes from its row
influx_signal_missing    influx   a signal without a `trading_signals` point         written by the sink
influx_signal_unknown    influx   a `trading_signals` series of no signal            deleted (VictoriaMetrics)
whale_token_missing      mongo    a whale's token address without a `tokens` doc     minimal token document
======================== ======== ================================================== =========================

PostgreSQL is the truth for signals. An open signal is `pending` (before its execution delay) or `active`
(entered, not yet closed: `quantbot.analytics`). An orphaned signal is not deleted: its status becomes
`orphaned` (the seed's statuses are free text with `pending` as the default; `orphaned` says why the
signal left the active set, where `expired` would claim its time ran out) and its metadata records
the reason. The orphan checks look at open signals only: a signal already closed, expired or marked is
history, and marking it again would change nothing. A later replay does not revive an orphaned
signal (the sink's upsert leaves an orphaned row as it is).

Rebuilt signals (Redis hashes, Influx points) go through the sinks' own code, `RedisSink` (TTL to the
signal's expiry) and `InfluxSink` (`sinks.influx.signal_point`), from the row and the values its
metadata records (`price`, `strength`, `whale_value_usd`): a rebuilt point's `volume` is the whale's
value to the cent. A row written before the metadata held `price` has none, so it is not expected in
the Redis cache.

Influx read-back and deletion exist for VictoriaMetrics (`/api/v1/export`,
`/api/v1/admin/tsdb/delete_series`). Against another server (InfluxDB 2/3) the two Influx checks are
reported as skipped: the read-back is not implemented for it.

A token document needs its decimals (the `tokens` validator requires them): a whale leg that records
none leaves its token missing, reported and never fixed (`unfixable`). So is a signal a sink refuses
(a row whose token address no key can hold): the note gives the sink's reason.

Exceptions::

    QuantbotError
     └── StoreUnavailableError   a store does not answer (the CLI exits 69)
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import orjson
import psycopg
import pymongo
import pymongo.errors
import redis
from bytewax.outputs import StatelessSinkPartition
from psycopg.types.json import Jsonb

from flows.runtime import retry_policy
from quantbot.errors import QuantbotError
from quantbot.models import DeadLetter, Signal
from quantbot.ops.readback import influx_export
from quantbot.ops.stack import ServerUnavailableError, unreachable_reason
from quantbot.redaction import first_line
from quantbot.schema.mongo import STRATEGY_CONFIGS, TOKENS, WHALE_ACTIVITY
from quantbot.schema.redis_keys import CacheSchemaError
from quantbot.settings import Settings
from quantbot.stack_state import StoreName
from quantbot.units import MS_PER_S
from sinks.clients import (
    Endpoints,
    influx_client,
    mongo_client,
    mongo_kwargs,
    postgres_connect,
    postgres_kwargs,
    redis_client,
    redis_kwargs,
    resolve_endpoints,
)
from sinks.dead_letters import ItemsRefusedError
from sinks.influx import InfluxSink
from sinks.redis import RedisPolicy, RedisSink, signal_hash

log = logging.getLogger(__name__)
T = TypeVar("T")

ORPHANED = "orphaned"
"""The status an orphaned signal is given: out of the active set, kept, and saying why."""
PENDING = "pending"
ACTIVE = "active"
OPEN = (PENDING, ACTIVE)
"""A signal waiting for its execution delay, or entered and not yet closed: the set the Redis cache mirrors."""
SIGNAL_SERIES = '{__name__="trading_signals_confidence"}'
"""One series per signal: `confidence` is the field every `trading_signals` point carries."""
SIGNAL_SERIES_OF = '{{__name__=~"trading_signals_.*",signal_id="{}"}}'
IN_BATCH = 1000
"""Keys per `$in` query or pipelined batch: large enough for few round trips, small enough for one message."""
SCAN_COUNT = 1000
"""Keys per `SCAN` step: the same trade-off as `IN_BATCH`."""
DEFAULT_SAMPLE = 10
"""Sample keys per check unless `--limit` says otherwise: a table row stays readable."""
SELECT_SIGNALS = (
    "SELECT signal_id::text, strategy_id::text, signal_type, token_address, direction, confidence,"
    " price_target, stop_loss, take_profit, expiration_time, created_at, metadata FROM trading_signals"
)
"""A signal's row in the order `signal_from_row` takes it."""
SELECT_ACTIVE_SIGNALS = (
    f"{SELECT_SIGNALS} WHERE status IN ('{PENDING}', '{ACTIVE}') AND expiration_time > now() AT TIME ZONE 'UTC'"
)


class StoreUnavailableError(QuantbotError):
    """A store the reconciliation needs does not answer; the message names it and says why."""


@dataclass
class CheckResult:
    """What one check found and, with `fix`, repaired.

    Attributes:
        check: The check's name.
        store: The store whose content differs (the one a fix changes).
        what: What the difference is, in a few words.
        found: How many differences (signals, keys, series or token addresses).
        sample: Up to the sample size of their keys, sorted.
        fixed: How many were repaired; None without `fix`.
        unfixable: Differences no fix can repair (reported only).
        note: Why a check was skipped, or what it could not do.
    """

    check: str
    store: str
    what: str
    found: int = 0
    sample: list[str] = field(default_factory=list)
    fixed: int | None = None
    unfixable: int = 0
    note: str = ""

    @property
    def remaining(self) -> int:
        """Differences left after this run: all found without `fix`, those not repaired with it."""
        return self.found - (self.fixed or 0)

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON data."""
        return {
            "check": self.check,
            "store": self.store,
            "what": self.what,
            "found": self.found,
            "fixed": self.fixed,
            "unfixable": self.unfixable,
            "remaining": self.remaining,
            "sample": self.sample,
            "note": self.note,
        }


@dataclass(frozen=True)
class Report:
    """Every check's result; consistent when none leaves a difference."""

    checks: list[CheckResult]

    @property
    def consistent(self) -> bool:
        """No check left a difference."""
        return all(c.remaining == 0 for c in self.checks)


@dataclass(frozen=True)
class _PendingSignal:
    signal_id: str
    strategy_id: str | None
    whale_signature: str | None


def _chunks(items: Sequence[T], size: int = IN_BATCH) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _result(check: str, store: str, what: str, keys: Iterable[str], limit: int) -> CheckResult:
    ordered = sorted(set(keys))
    return CheckResult(check, store, what, found=len(ordered), sample=ordered[:limit])


def _probe(settings: Settings, endpoints: Endpoints) -> None:
    """Raise `StoreUnavailableError` for the first store that is not configured or does not answer."""
    for store in StoreName:
        url = endpoints.get(store.value)
        if url is None:
            raise StoreUnavailableError(f"{store.value}: not configured (no URL and no embedded server)")
        options: dict[str, Any] = {}
        if store is StoreName.POSTGRES:
            options, timeout_s = postgres_kwargs(settings), settings.postgres.connect_timeout_s
        elif store is StoreName.MONGO:
            options, timeout_s = mongo_kwargs(settings), settings.mongo.timeout_ms / MS_PER_S
        elif store is StoreName.REDIS:
            options, timeout_s = redis_kwargs(settings), settings.redis.socket_timeout_s
        else:
            timeout_s = settings.influx.timeout_ms / MS_PER_S
        try:
            why = unreachable_reason(store, url, timeout_s, options)
        except ServerUnavailableError as exc:
            why = str(exc)
        if why is not None:
            raise StoreUnavailableError(f"{store.value}: {why}")


class _Reconciler:
    """The checks over one set of open connections."""

    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        conn: psycopg.Connection[Any],
        mongo: pymongo.MongoClient[dict[str, Any]],
        cache: redis.Redis,
        *,
        fix: bool,
        limit: int,
    ) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.conn = conn
        self.db = mongo[settings.mongo.db]
        self.cache = cache
        self.fix = fix
        self.limit = limit

    # --------------------------------------------------------------------------------- postgres

    def _pending(self) -> list[_PendingSignal]:
        rows = self.conn.execute(
            "SELECT signal_id::text, strategy_id::text, metadata->>'whale_signature' FROM trading_signals"
            " WHERE status = ANY(%s)",
            (list(OPEN),),
        ).fetchall()
        return [_PendingSignal(*row) for row in rows]

    def _existing(self, collection: str, ids: Iterable[str]) -> set[str]:
        wanted = sorted(set(ids))
        found: set[str] = set()
        for chunk in _chunks(wanted):
            found |= {str(d["_id"]) for d in self.db[collection].find({"_id": {"$in": list(chunk)}}, {"_id": 1})}
        return found

    def _orphan(self, result: CheckResult, signal_ids: Sequence[str], reason: str) -> None:
        if not self.fix:
            return
        with self.conn.transaction():
            cursor = self.conn.execute(
                "UPDATE trading_signals SET status = %s, metadata = coalesce(metadata, '{}'::jsonb) || %s"
                " WHERE signal_id = ANY(%s::uuid[]) AND status = ANY(%s)",
                (ORPHANED, Jsonb({"orphaned": reason}), list(signal_ids), list(OPEN)),
            )
        result.fixed = cursor.rowcount

    def signal_strategy_missing(self) -> CheckResult:
        pending = self._pending()
        strategy_ids = {s.strategy_id for s in pending if s.strategy_id is not None}
        rows = self.conn.execute(
            "SELECT strategy_id::text FROM trading_strategies WHERE strategy_id = ANY(%s::uuid[])",
            (sorted(strategy_ids),),
        ).fetchall()
        known = {row[0] for row in rows} & self._existing(STRATEGY_CONFIGS.name, strategy_ids)
        orphans = [s.signal_id for s in pending if s.strategy_id not in known]
        result = _result(
            "signal_strategy_missing",
            "postgres",
            "open signals whose strategy has no trading_strategies row or strategy_configs document",
            orphans,
            self.limit,
        )
        self._orphan(result, orphans, "no trading_strategies row or strategy_configs document")
        return result

    def signal_whale_missing(self) -> CheckResult:
        pending = self._pending()
        known = self._existing(WHALE_ACTIVITY.name, (s.whale_signature for s in pending if s.whale_signature))
        orphans = [s.signal_id for s in pending if s.whale_signature not in known]
        result = _result(
            "signal_whale_missing",
            "postgres",
            "open signals whose metadata.whale_signature has no whale_activity document",
            orphans,
            self.limit,
        )
        self._orphan(result, orphans, "no whale_activity document")
        return result

    def _signals(self, *, active_only: bool) -> list[Signal]:
        """Every signal, or the open and unexpired ones (the active set the Redis cache mirrors)."""
        query = SELECT_ACTIVE_SIGNALS if active_only else SELECT_SIGNALS
        return [signal_from_row(row) for row in self.conn.execute(query).fetchall()]

    # ------------------------------------------------------------------------------------ redis

    def _active(self) -> list[Signal]:
        return self._signals(active_only=True)

    def _signal_keys(self) -> set[str]:
        return {k.decode().removeprefix("signal:") for k in self.cache.scan_iter(match="signal:*", count=SCAN_COUNT)}

    def _write_signals(self, signals: Sequence[Signal]) -> list[DeadLetter]:
        """Cache `signals` through the Redis sink itself (its fields, its TTL); those it refuses."""
        sink = RedisSink(
            lambda: redis_client(self.settings, self.endpoints.redis),
            retry_policy(self.settings),
            RedisPolicy(price_ttl_s=self.settings.redis.price_ttl_s),
        )
        return _through(sink.build("reconcile", 0, 1), signals)

    def _cached_now(self, signals: Sequence[Signal]) -> int:
        """How many of `signals` are cached now (one expiring between check and write is not)."""
        return sum(int(self.cache.exists(f"signal:{s.signal_id}")) for s in signals)

    def _cacheable(self) -> list[Signal]:
        """The active signals the Redis sink caches: those with a price (`sinks.redis`)."""
        return [s for s in self._active() if s.price is not None]

    def redis_signal_missing(self) -> CheckResult:
        expected = self._cacheable()
        cached = self._signal_keys()
        missing = [s for s in expected if s.signal_id not in cached]
        result = _result(
            "redis_signal_missing",
            "redis",
            "open, unexpired signals with a price and no signal:{id} hash",
            (s.signal_id for s in missing),
            self.limit,
        )
        if self.fix:
            _refused(result, self._write_signals(missing))
            result.fixed = self._cached_now(missing)
        return result

    def redis_signal_differs(self) -> CheckResult:
        differing: list[Signal] = []
        for chunk in _chunks(self._cacheable()):
            pipe = self.cache.pipeline(transaction=False)
            for signal in chunk:
                pipe.hgetall(f"signal:{signal.signal_id}")
            for signal, stored in zip(chunk, pipe.execute(), strict=True):
                if not stored:
                    continue  # not cached: `redis_signal_missing` says so
                try:
                    expected = signal_hash(signal)
                except CacheSchemaError:
                    expected = None  # a row no hash can hold differs from any hash (the fix reports it)
                fields = {k.decode(): v.decode() for k, v in stored.items()}
                if expected is None or fields != expected.fields:
                    differing.append(signal)
        result = _result(
            "redis_signal_differs",
            "redis",
            "signal:{id} hashes whose fields differ from the signal's row",
            (s.signal_id for s in differing),
            self.limit,
        )
        if self.fix:
            # Replaced as a whole: an HSET over the old hash would keep fields the row no longer has.
            for chunk in _chunks(differing):
                self.cache.delete(*(f"signal:{s.signal_id}" for s in chunk))
            _refused(result, self._write_signals(differing))
            result.fixed = self._cached_now(differing)
        return result

    def redis_signal_stray(self) -> CheckResult:
        active = {s.signal_id for s in self._active()}
        stray = sorted(key for key in self._signal_keys() if _canonical_uuid(key) not in active)
        result = _result(
            "redis_signal_stray",
            "redis",
            "signal:{id} hashes of no open, unexpired signal",
            stray,
            self.limit,
        )
        if self.fix:
            result.fixed = sum(int(self.cache.delete(*(f"signal:{k}" for k in chunk))) for chunk in _chunks(stray))
        return result

    # ----------------------------------------------------------------------------------- influx

    def _influx_skip(self) -> str | None:
        """Why the Influx checks cannot run here (a server without VictoriaMetrics' API), or None."""
        url = self.endpoints.influx
        assert url is not None  # _probe refused an unconfigured store
        try:
            with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=self._http_timeout_s()):  # noqa: S310
                return None
        except urllib.error.HTTPError as exc:
            return f"influx checks skipped: the server has no VictoriaMetrics read-back (HTTP {exc.code})"

    def _http_timeout_s(self) -> float:
        return self.settings.influx.timeout_ms / MS_PER_S

    def _pointed(self) -> set[str]:
        url = self.endpoints.influx
        assert url is not None
        return {
            str(line["metric"].get("signal_id", ""))
            for line in influx_export(url, SIGNAL_SERIES, self._http_timeout_s())
            if line.get("values")
        }

    def influx_signal_missing(self) -> CheckResult:
        result = CheckResult("influx_signal_missing", "influx", "signals without a trading_signals point")
        if (why := self._influx_skip()) is not None:
            result.note = why
            return result
        pointed = self._pointed()
        missing = [s for s in self._signals(active_only=False) if s.signal_id not in pointed]
        result = _result(result.check, result.store, result.what, (s.signal_id for s in missing), self.limit)
        if self.fix and missing:
            sink = InfluxSink(
                lambda: influx_client(self.settings, self.endpoints.influx),
                self.settings.influx.bucket,
                self.settings.influx.org,
                retry_policy(self.settings),
            )
            refused = _through(sink.build("reconcile", 0, 1), missing)
            _refused(result, refused)
            result.fixed = len(missing) - len(refused)
        elif self.fix:
            result.fixed = 0
        return result

    def influx_signal_unknown(self) -> CheckResult:
        result = CheckResult("influx_signal_unknown", "influx", "trading_signals series of no signal")
        if (why := self._influx_skip()) is not None:
            result.note = why
            return result
        known = {row[0] for row in self.conn.execute("SELECT signal_id::text FROM trading_signals").fetchall()}
        unknown = sorted(s for s in self._pointed() if _canonical_uuid(s) not in known)
        result = _result(result.check, result.store, result.what, unknown, self.limit)
        if self.fix:
            url = self.endpoints.influx
            assert url is not None
            for signal_id in unknown:
                body = urllib.parse.urlencode({"match[]": SIGNAL_SERIES_OF.format(signal_id)}).encode()
                address = f"{url}/api/v1/admin/tsdb/delete_series"
                with urllib.request.urlopen(address, data=body, timeout=self._http_timeout_s()):  # noqa: S310
                    pass
            result.fixed = len(unknown)
        return result

    # ------------------------------------------------------------------------------------ mongo

    def whale_token_missing(self) -> CheckResult:
        legs: dict[str, dict[str, Any]] = {}
        for whale in self.db[WHALE_ACTIVITY.name].find({}, {"tokens": 1}):
            for leg in whale.get("tokens") or ():
                known = legs.setdefault(str(leg.get("address")), {})
                if isinstance(leg.get("decimals"), int) and "decimals" not in known:
                    known["decimals"] = leg["decimals"]
                if isinstance(leg.get("symbol"), str) and "symbol" not in known:
                    known["symbol"] = leg["symbol"]
        missing = sorted(set(legs) - self._existing(TOKENS.name, legs))
        result = _result(
            "whale_token_missing",
            "mongo",
            "token addresses of whale documents without a tokens document",
            missing,
            self.limit,
        )
        writable = [a for a in missing if "decimals" in legs[a]]
        result.unfixable = len(missing) - len(writable)
        if result.unfixable:
            result.note = f"{result.unfixable} without decimals in any whale leg: report only"
        if self.fix:
            now = datetime.now(UTC)
            fixed = 0
            for address in writable:
                document = {"symbol": legs[address].get("symbol"), "createdAt": now, "updatedAt": now}
                document["decimals"] = legs[address]["decimals"]
                update = self.db[TOKENS.name].update_one({"_id": address}, {"$setOnInsert": document}, upsert=True)
                fixed += int(update.upserted_id is not None)
            result.fixed = fixed
        return result

    def run(self) -> list[CheckResult]:
        checks: list[Callable[[], CheckResult]] = [
            self.signal_strategy_missing,
            self.signal_whale_missing,
            self.redis_signal_missing,
            self.redis_signal_stray,
            self.redis_signal_differs,
            self.influx_signal_missing,
            self.influx_signal_unknown,
            self.whale_token_missing,
        ]
        results = []
        for check in checks:
            start = time.perf_counter()
            result = check()
            # A check that changed nothing is worth a debug line; a fix is worth an info line.
            log.log(
                logging.INFO if result.fixed else logging.DEBUG,
                "reconcile check=%s found=%d fixed=%s elapsed_s=%.3f",
                result.check,
                result.found,
                result.fixed,
                time.perf_counter() - start,
            )
            results.append(result)
        return results


def _through(partition: StatelessSinkPartition[Any], signals: Sequence[Signal]) -> list[DeadLetter]:
    """Write `signals` through a sink's partition; the dead letters of those it refuses (the others are written)."""
    try:
        partition.write_batch(list(signals))
    except ItemsRefusedError as exc:
        return exc.letters
    finally:
        partition.close()
    return []


def _refused(result: CheckResult, letters: Sequence[DeadLetter]) -> None:
    """Count what a sink refused as unfixable, and say why in the note (the first reason)."""
    if letters:
        result.unfixable += len(letters)
        result.note = f"{len(letters)} refused by the sink, e.g. {letters[0].position}: {letters[0].reason}"


def _canonical_uuid(text: str) -> str:
    """`text` as a canonical UUID string, or itself when it is none (so it matches no signal)."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def _seconds(moment: datetime) -> int:
    """Unix seconds of a `TIMESTAMP` column's value, which holds UTC (`sinks.clients.postgres_kwargs`)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(aware.timestamp())


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


def signal_from_row(row: Sequence[Any]) -> Signal:
    """The `Signal` a `trading_signals` row records, for the sinks to rebuild its hash and its point.

    Args:
        row: signal_id, strategy_id, signal_type, token_address, direction, confidence, price_target,
            stop_loss, take_profit, expiration_time, created_at, metadata.
    """
    (sid, strategy, kind, token, direction, confidence, target, stop, take, expires, created, metadata) = row
    meta: dict[str, object] = metadata if isinstance(metadata, dict) else {}
    return Signal(
        signal_id=sid,
        strategy_id=strategy or "",
        signal_type=kind,
        token_address=token,
        direction=direction,
        confidence=float(confidence),
        price=_number(meta.get("price")),
        price_target=_number(target),
        stop_loss=_number(stop),
        take_profit=_number(take),
        created_at=_seconds(created),
        expires_at=_seconds(expires),
        usd_value=_number(meta.get("whale_value_usd")) or 0.0,
        strength=_number(meta.get("strength")) or 0.0,
        metadata=meta,
    )


def reconcile(settings: Settings, *, fix: bool = False, limit: int = DEFAULT_SAMPLE) -> Report:
    """Run every check against the configured stores; with `fix`, repair what each may.

    Args:
        settings: the effective settings.
        fix: repair each check's differences from the source of truth.
        limit: sample keys kept per check.

    Raises:
        StoreUnavailableError: a store is not configured or does not answer.
    """
    endpoints = resolve_endpoints(settings)
    _probe(settings, endpoints)
    try:
        with (
            postgres_connect(settings, endpoints.postgres, autocommit=True) as conn,
            mongo_client(settings, endpoints.mongo) as mongo,
        ):
            cache = redis_client(settings, endpoints.redis)
            try:
                return Report(_Reconciler(settings, endpoints, conn, mongo, cache, fix=fix, limit=limit).run())
            finally:
                cache.close()
    except (
        psycopg.OperationalError,
        pymongo.errors.ConnectionFailure,
        redis.ConnectionError,
        redis.TimeoutError,
        urllib.error.URLError,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise StoreUnavailableError(f"a store stopped answering: {first_line(exc)}") from exc


def report_json(report: Report) -> bytes:
    """The report as one JSON document."""
    return orjson.dumps(
        {"consistent": report.consistent, "checks": [c.as_dict() for c in report.checks]}, option=orjson.OPT_INDENT_2
    )
