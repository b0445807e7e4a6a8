"""Running a flow against the real stores: sinks and strategies from the settings, recovery, the engine."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn

import psycopg
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from prometheus_client import Counter, Histogram

from flows.graph import FlowConfig, FlowSinks
from quantbot import metrics
from quantbot.analytics import AnalyticsConfig
from quantbot.backoff import Backoff
from quantbot.bounds import ParseConfig
from quantbot.cluster import SINGLE, ClusterSpec
from quantbot.errors import ResumeRefusedError
from quantbot.events import EventType, Severity, SystemEvent
from quantbot.feeds import FeedMap
from quantbot.pricing import PricingConfig
from quantbot.redaction import redact
from quantbot.schema import postgres as pg_schema
from quantbot.schema.mongo import STRATEGY_CONFIGS
from quantbot.settings import Settings
from quantbot.signals import WhaleFollower, load_strategies
from quantbot.steps import WatchConfig
from quantbot.units import SECONDS_PER_HOUR
from quantbot.whales import WhaleConfig, load_labels
from sinks.clients import influx_client, mongo_client, postgres_connect, redis_client, resolve_endpoints
from sinks.dead_letters import DeadLetterStore
from sinks.influx import InfluxSink
from sinks.mongo import MongoSink
from sinks.operational import EventLog, PerformanceReporter, ReporterConfig, default_instance
from sinks.postgres import PostgresSink
from sinks.redis import RedisPolicy, RedisSink
from sinks.retry import Retry

log = logging.getLogger(__name__)

RECOVERY_PARTITIONS = 1
"""Recovery partitions of a new recovery directory. Bytewax spreads them over every worker of a cluster
and any count works with any cluster size; the flows' state is small (one source position, one
valuation), so one partition, written by one worker, is enough."""
RECOVERY_INIT_LOCK = ".quantbot-init.lock"
"""The file, in the recovery directory, that the processes of a cluster starting together lock while one
of them initialises the directory: it is created once, never by two at the same time."""
FLOW_LOCK_CHECK_S = 5.0
"""How often a running flow checks the session holding its flow lock, and re-takes the lock after the
session broke (PostgreSQL restarted): a few seconds unguarded at most, one trivial query per period."""
APPLICATION_NAME_MAX = 63
"""PostgreSQL keeps the first NAMEDATALEN - 1 bytes of an application name."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""What a process supervisor (SIGTERM) or a terminal (SIGINT) sends to stop a flow cleanly."""
ERROR_DETAIL_MAX = 2000
"""Characters of an error's text kept in an event's details: the first lines say what it was."""
RUN_COUNTERS: dict[str, Counter | Histogram] = {
    "inputs": metrics.INPUTS,
    "transactions": metrics.TRANSACTIONS,
    "whales": metrics.WHALES,
    "signals": metrics.SIGNALS,
    "dead_letters": metrics.DEAD_LETTERS,
    "store_writes": metrics.SINK_WRITE_SECONDS,
    "store_write_failures": metrics.STORE_WRITE_FAILURES,
}
"""What a run's `run_finished` (and `run_stopped`, `run_failed`) event counts (store writes: the batches
the sinks observed)."""


PIPELINE_COUNTERS: dict[str, Counter] = {
    "frames": metrics.FRAMES,
    "transactions": metrics.TRANSACTIONS,
    "activities": metrics.ACTIVITIES,
    "valued": metrics.VALUED,
    "whales": metrics.WHALES,
    "signals": metrics.SIGNALS,
    "dead_letters": metrics.DEAD_LETTERS,
}
"""What a flow's summary counts (replay, live, backfill: each adds its source's own)."""


def counter_values(counters: dict[str, Counter] = PIPELINE_COUNTERS) -> dict[str, float]:
    """Each of `counters` now, summed over its labels."""
    return {name: metrics.total(counter) for name, counter in counters.items()}


def counts_since(before: dict[str, float], counters: dict[str, Counter] = PIPELINE_COUNTERS) -> dict[str, int]:
    """Each of `counters` now, minus what it was in `before` (a `counter_values` taken earlier)."""
    return {name: int(metrics.total(counter) - before.get(name, 0.0)) for name, counter in counters.items()}


def refuse_resume(settings: Settings, flow_id: str, problem: Exception, recovery_dir: Path | None) -> NoReturn:
    """Raise the refusal a source noted inside the engine (where an exception becomes a Rust panic), after
    writing it as a `resume_refused` system event.

    Raises:
        ResumeRefusedError: always, naming the recovery directory and the problem.
    """
    refusal = ResumeRefusedError(f"recovery directory `{recovery_dir}`: {problem}")
    event_log(settings).record(
        SystemEvent(
            EventType.RESUME_REFUSED, Severity.ERROR, flow_id, str(refusal), {"recovery_dir": str(recovery_dir)}
        )
    )
    raise refusal


def retry_policy(settings: Settings) -> Retry:
    """The sinks' retry policy from `[sinks]`."""
    sinks = settings.sinks
    return Retry(budget_s=sinks.retry_budget_s, backoff=Backoff(base_s=sinks.retry_base_s, cap_s=sinks.retry_cap_s))


def store_sinks(settings: Settings) -> FlowSinks:
    """Sinks for the four stores, connecting lazily on each worker.

    Items a store cannot take go to PostgreSQL's `dead_letters` (`sinks.dead_letters`); the PostgreSQL
    sink writes its own there.
    """
    endpoints = resolve_endpoints(settings)
    retry = retry_policy(settings)
    dead_letters = DeadLetterStore(lambda: postgres_connect(settings, endpoints.postgres), retry)
    return FlowSinks(
        influx=InfluxSink(
            lambda: influx_client(settings, endpoints.influx),
            settings.influx.bucket,
            settings.influx.org,
            retry,
            dead_letters=dead_letters,
        ),
        redis=RedisSink(
            lambda: redis_client(settings, endpoints.redis),
            retry,
            RedisPolicy(price_ttl_s=settings.redis.price_ttl_s),
            dead_letters=dead_letters,
        ),
        mongo=MongoSink(
            lambda: mongo_client(settings, endpoints.mongo), settings.mongo.db, retry, dead_letters=dead_letters
        ),
        postgres=PostgresSink(lambda: postgres_connect(settings, endpoints.postgres), retry),
    )


def active_strategies(settings: Settings) -> list[WhaleFollower]:
    """Active whale-follower strategies: configured in MongoDB and registered in PostgreSQL.

    A configuration without its `trading_strategies` row is skipped with a warning: its signals
    could not be stored (the row is their foreign key).
    """
    endpoints = resolve_endpoints(settings)
    with mongo_client(settings, endpoints.mongo) as client:
        documents: list[dict[str, Any]] = list(client[settings.mongo.db][STRATEGY_CONFIGS.name].find({}))
    holding = int(settings.signals.default_holding_hours * SECONDS_PER_HOUR)
    strategies = load_strategies(documents, holding)
    if not strategies:
        return []
    with postgres_connect(settings, endpoints.postgres) as conn:
        rows = conn.execute(
            "SELECT strategy_id::text FROM trading_strategies WHERE strategy_id::text = ANY(%s) AND status = 'active'",
            ([s.strategy_id for s in strategies],),
        ).fetchall()
    registered = {row[0] for row in rows}
    for strategy in strategies:
        if strategy.strategy_id not in registered:
            log.warning("strategy=%s skipped: no active trading_strategies row", strategy.strategy_id)
    return [s for s in strategies if s.strategy_id in registered]


def flow_config(settings: Settings, strategies: list[WhaleFollower]) -> FlowConfig:
    """Thresholds from the settings, labels from the labels file, and the strategies."""
    whales = settings.whales
    analytics = settings.analytics
    labels = load_labels(Path(whales.labels_file)) if whales.labels_file else {}
    return FlowConfig(
        pricing=PricingConfig(
            stable_mints=frozenset(settings.pricing.stable_mints),
            min_learn_usd=settings.pricing.min_learn_usd,
            feed_stale_s=settings.pricing.feed_stale_s,
            token_stale_s=settings.pricing.token_stale_s,
            max_tokens=settings.pricing.max_tokens,
            feed_precedence=tuple(settings.pricing.feed_precedence),
            source_stale_s=dict(settings.feeds.stale_s),
            disagreement_share=settings.pricing.disagreement_share,
            disagreement_every_s=settings.pricing.disagreement_every_s,
        ),
        analytics=AnalyticsConfig(
            whales=WhaleConfig(
                tiers=tuple((t.name, t.min_usd) for t in whales.tiers),
                impact_medium_pct=whales.impact_medium_pct,
                impact_high_pct=whales.impact_high_pct,
                labels=labels,
            ),
            strategies=tuple(strategies),
            snapshot_interval_s=analytics.snapshot_interval_s,
            window_s=analytics.window_s,
            bucket_s=analytics.bucket_s,
            max_tokens=analytics.max_tokens,
            max_pools=analytics.max_pools,
            follow_up_s=analytics.follow_up_s,
            related_window_s=analytics.related_window_s,
            influence_full_move_pct=analytics.influence_full_move_pct,
            max_wallets=analytics.max_wallets,
            max_pending=analytics.max_pending,
            top_movers=analytics.top_movers,
            mover_min_volume_usd=analytics.mover_min_volume_usd,
            token_refresh_s=analytics.token_refresh_s,
            performance_window_days=analytics.performance_window_days,
            token_document_every_s=analytics.token_document_every_s,
            repeats_max=analytics.repeats_max,
        ),
        parse=ParseConfig(max_ahead_s=settings.parse.max_ahead_s, max_decimals=settings.parse.max_decimals),
        feeds=FeedMap(pyth_mints=dict(settings.feeds.pyth_ids)),
        watch=WatchConfig(
            enabled="birdeye" in settings.feeds.enabled and settings.feeds.large_trade_min_usd > 0,
            delay_s=settings.feeds.large_trade_delay_s,
            seen_max=settings.solana.seen_max,
        ),
        on_event=event_log(settings).record,
    )


def recovery_config(directory: Path | None) -> RecoveryConfig | None:
    """A recovery configuration for `directory`, initialising it on first use.

    Every process of a cluster is given the same directory (a shared file system when they run on
    several machines); the first to take its lock file (`RECOVERY_INIT_LOCK`) initialises it, the others
    find it initialised.
    """
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / RECOVERY_INIT_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if not any(directory.glob("part-*.sqlite3")):
            init_db_dir(directory, RECOVERY_PARTITIONS)
            log.info("recovery_dir=%s initialised partitions=%d", directory, RECOVERY_PARTITIONS)
        else:
            log.info("recovery_dir=%s resuming", directory)
    return RecoveryConfig(directory)


def recovered_keys(directory: Path | None, step_id: str) -> frozenset[str]:
    """The state keys whose latest snapshot in `directory` is a state (not a deletion), for step `step_id`.

    Read from Bytewax 0.21's recovery partitions (SQLite files `part-*.sqlite3`, table `snaps`): what a
    source needs to list partitions it no longer reads (`connectors.replay.ReplaySource`'s `recovered`),
    since Bytewax routes every snapshot to the worker of its partition and stops on one nobody lists.
    An uninitialised directory, or none, holds nothing.
    """
    if directory is None:
        return frozenset()
    keys: set[str] = set()
    for part in sorted(directory.glob("part-*.sqlite3")):
        with contextlib.closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
            try:
                rows = db.execute(
                    "SELECT state_key FROM snaps AS s WHERE step_id = ? AND ser_change IS NOT NULL"
                    " AND snap_epoch = (SELECT max(snap_epoch) FROM snaps"
                    " WHERE step_id = s.step_id AND state_key = s.state_key)",
                    (step_id,),
                ).fetchall()
            except sqlite3.OperationalError:  # its tables are not created yet
                continue
        keys.update(str(key) for (key,) in rows)
    return frozenset(keys)


class FlowLock:
    """The flow lock (`quantbot.schema.postgres.FLOW_LOCK_KEY`) held shared on a session of its own.

    While it is held, `quantbot migrate down` waits for the flow and then refuses, naming it by the
    session's application name: `quantbot <flow> pid=<os pid>@<host>`. A watcher thread checks the
    session every `FLOW_LOCK_CHECK_S`; when it broke (PostgreSQL restarted, a network cut), the lock is
    gone with it, so the watcher reconnects and takes it again, logging the gap, and the flow itself is
    never stopped by it: its sinks ride out the outage on their own retry policy.

    Args:
        settings: the effective settings (PostgreSQL's URL, timeouts).
        name: the flow's name, shown to whoever is kept waiting.
    """

    def __init__(self, settings: Settings, name: str) -> None:
        self._settings = settings
        self._url = resolve_endpoints(settings).postgres
        label = f"quantbot {name} pid={os.getpid()}@{socket.gethostname()}"
        self.application_name = label.encode()[:APPLICATION_NAME_MAX].decode(errors="ignore")
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _locked_session(self) -> psycopg.Connection[Any]:
        conn = postgres_connect(self._settings, self._url, autocommit=True, application_name=self.application_name)
        try:
            pg_schema.hold_flow_lock(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def acquire(self) -> None:
        """Take the lock, waiting while a destructive migration runs; then watch the session.

        Raises:
            psycopg.Error: PostgreSQL is unreachable, or a migration outlasted `statement_timeout`.
        """
        self._conn = self._locked_session()
        log.info("flow_lock=held application_name=%r", self.application_name)
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="flow-lock", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(FLOW_LOCK_CHECK_S):
            if self._conn is not None:
                try:
                    self._conn.execute("SELECT 1")
                    continue
                except psycopg.Error as exc:
                    log.warning("flow_lock=lost: %r", exc)
                    self._conn.close()
                    self._conn = None
            try:
                self._conn = self._locked_session()
                log.warning("flow_lock=retaken application_name=%r", self.application_name)
            except psycopg.Error as exc:
                log.warning("flow_lock=unheld retry_in_s=%.0f: %r", FLOW_LOCK_CHECK_S, exc)

    def release(self) -> None:
        """Stop watching and release the lock (closing the session would release it too)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        if self._conn is not None:
            try:
                pg_schema.release_flows(self._conn, shared=True)
            except psycopg.Error as exc:
                log.warning("flow_lock=release_failed (the session's end releases it): %r", exc)
            finally:
                self._conn.close()
                self._conn = None
        log.info("flow_lock=released application_name=%r", self.application_name)

    def __enter__(self) -> FlowLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def event_log(settings: Settings) -> EventLog:
    """Where `system_events` rows go: the configured PostgreSQL."""
    url = resolve_endpoints(settings).postgres
    return EventLog(lambda: postgres_connect(settings, url, autocommit=True))


def operational(settings: Settings, source: str) -> tuple[EventLog, PerformanceReporter]:
    """The run's event log and performance reporter, from `[observability]` and the stores' settings."""
    endpoints = resolve_endpoints(settings)
    events = event_log(settings)
    observability = settings.observability
    config = ReporterConfig(
        interval_s=observability.interval_s,
        service=observability.service,
        instance=observability.instance or default_instance(),
        region=observability.region,
        dead_letter_burst=observability.dead_letter_burst,
        source=source,
    )
    reporter = PerformanceReporter(
        lambda: influx_client(settings, endpoints.influx), settings.influx.bucket, settings.influx.org, config, events
    )
    return events, reporter


@contextlib.contextmanager
def stopping_on_signals(stop: Callable[[], None]) -> Iterator[list[str]]:
    """While inside, SIGTERM and SIGINT call `stop` (once) instead of killing the process; a second one interrupts.

    Yields the names of the signals received, for the caller to tell a stopped run from a finished one.
    Only the main thread may install handlers: elsewhere this changes nothing.
    """
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if received:
            raise KeyboardInterrupt(f"{name} while stopping")
        received.append(name)
        log.warning("signal=%s stopping: the sources stop reading, the sinks finish, a last snapshot is taken", name)
        stop()

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _causes(exc: BaseException) -> list[str]:
    """What `exc` was raised from, outermost first: the engine wraps a step's exception in its own."""
    causes: list[str] = []
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        causes.append(redact(repr(inner))[:ERROR_DETAIL_MAX])
        exc = inner
    return causes


def _counts(before: dict[str, float]) -> dict[str, int]:
    return {name: int(metrics.total(counter) - before.get(name, 0.0)) for name, counter in RUN_COUNTERS.items()}


@contextlib.contextmanager
def collector_tuned(young_threshold: int) -> Iterator[None]:
    """The cyclic garbage collector's youngest-generation threshold set to `young_threshold`, restored on exit.

    A flow allocates a few hundred container objects per transaction (decoded activities, ticks, store
    requests) that reference counting frees at once, beside a large long-lived heap (the price book and
    the analytics' windows). At Python's default of 700 allocations the collector runs several times per
    batch, and every tenth young pass walks the middle generation, every hundredth all of it: a tenth of
    a replay's time went there (`bench/replay.py --txs 40000 --skip latency memory`: 4,865 and 4,895 tx/s
    with `gc_young_threshold = 700` in config/default.toml, 5,493 and 5,478 with 10,000; 50,000 gains no
    more; the RSS of its memory run stays flat). Cycles are still collected, later.
    """
    before = gc.get_threshold()
    gc.set_threshold(young_threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run(
    flow: Dataflow,
    settings: Settings,
    recovery_dir: Path | None,
    *,
    stop: Callable[[], None] | None = None,
    cluster: ClusterSpec = SINGLE,
) -> bool:
    """Execute `flow` in this process until its sources end; snapshots every `pipeline.snapshot_interval_s`.

    The flow holds the flow lock for its whole run (`FlowLock`): no destructive migration changes the
    schema under it. Beside it, a `PerformanceReporter` writes `system_performance` points, and
    `system_events` rows mark the run's start and end (finished, stopped, or failed: when a sink gave
    up on a store, `sink_retries_exhausted`, written before the error propagates).

    Args:
        flow: the dataflow.
        settings: the effective settings.
        recovery_dir: where snapshots are kept; `None` runs without recovery.
        stop: makes the flow's sources end early (at a position their snapshot resumes from); when
            given, SIGTERM and SIGINT call it instead of killing the process.
        cluster: this process's worker threads and place in a cluster (Bytewax's `-w`, `-i`, `-a`).
            Each process of a cluster holds its own flow lock and writes its own run events; if one
            process dies, the others stop too, and a restart of every process with the same
            `recovery_dir` resumes from the last snapshot.

    Returns:
        True when a signal stopped the run early, False when its sources ended.
    """
    events, reporter = operational(settings, flow.flow_id)
    before = {name: metrics.total(counter) for name, counter in RUN_COUNTERS.items()}
    started = time.monotonic()
    with FlowLock(settings, flow.flow_id) as lock:
        details = {
            "application_name": lock.application_name,
            "recovery_dir": str(recovery_dir) if recovery_dir else None,
            "workers": cluster.workers,
            "process_id": cluster.process_id,
            "addresses": list(cluster.addresses),
        }
        log.info("flow=%s cluster=%r", flow.flow_id, cluster.describe())
        events.record(
            SystemEvent(EventType.RUN_STARTED, Severity.INFO, flow.flow_id, f"{flow.flow_id} started", details)
        )
        reporter.start()
        received: list[str] = []
        try:
            with contextlib.ExitStack() as stack:
                if stop is not None:
                    received = stack.enter_context(stopping_on_signals(stop))
                stack.enter_context(collector_tuned(settings.pipeline.gc_young_threshold))
                cli_main(
                    flow,
                    workers_per_process=cluster.workers,
                    process_id=cluster.process_id,
                    addresses=list(cluster.addresses) or None,
                    epoch_interval=timedelta(seconds=settings.pipeline.snapshot_interval_s),
                    recovery_config=recovery_config(recovery_dir),
                )
        except BaseException as exc:
            reporter.stop()
            counts = _counts(before)
            given_up = counts["store_write_failures"] > 0
            events.record(
                SystemEvent(
                    EventType.SINK_RETRIES_EXHAUSTED if given_up else EventType.RUN_FAILED,
                    Severity.CRITICAL if given_up else Severity.ERROR,
                    flow.flow_id,
                    f"{flow.flow_id} stopped by an error"
                    + (": a sink gave up on its store; a restart resumes from the last snapshot" if given_up else ""),
                    {
                        **counts,
                        "error": redact(repr(exc))[:ERROR_DETAIL_MAX],
                        "causes": _causes(exc),
                        "elapsed_s": round(time.monotonic() - started, 3),
                    },
                )
            )
            raise
        reporter.stop()
        summary: dict[str, float] = {
            **_counts(before),
            "elapsed_s": round(time.monotonic() - started, 3),
            "points": reporter.points,
        }
        if received:
            events.record(
                SystemEvent(
                    EventType.RUN_STOPPED,
                    Severity.INFO,
                    flow.flow_id,
                    f"{flow.flow_id} stopped by {received[0]}",
                    summary,
                )
            )
        else:
            events.record(
                SystemEvent(EventType.RUN_FINISHED, Severity.INFO, flow.flow_id, f"{flow.flow_id} finished", summary)
            )
    return bool(received)
