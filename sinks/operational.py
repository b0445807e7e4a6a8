"""The running process's own operational data: `system_events` rows and `system_performance` points.

`EventLog` writes `quantbot.events.SystemEvent`s to PostgreSQL; `PerformanceReporter` is a daemon thread
that every `[observability] interval_s` writes one `system_performance` point to InfluxDB from the
process's counters (`quantbot.metrics`) and its CPU and memory use, raises a `dead_letter_burst` event
when an interval saw too many dead letters, and writes a last point when stopped.

Both are best effort: a failed write is logged and counted
(`quantbot_operational_write_failures_total{kind}`), never retried at length and never raised into the
flow, whose data matters more than its telemetry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psutil
import psycopg
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from quantbot import metrics
from quantbot.events import EventType, Severity, SystemEvent
from quantbot.schema.influx import SystemPerformance
from quantbot.units import MS_PER_S

log = logging.getLogger(__name__)

INSERT_EVENT = """
INSERT INTO system_events (event_id, event_type, severity, source, message, details, created_at)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT (event_id) DO NOTHING
"""
"""An event is keyed by its id, drawn once per occurrence: writing it again changes nothing."""


def default_instance() -> str:
    """`<hostname>-<pid>`: one running process, distinct from its siblings on the host."""
    return f"{socket.gethostname()}-{os.getpid()}"


class EventLog:
    """Writes `system_events` rows, one short-lived connection per event (events are rare).

    Args:
        connect: opens a PostgreSQL connection (`sinks.clients.postgres_connect`).
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connect = connect

    def record(self, event: SystemEvent) -> bool:
        """Write `event`; True when it is stored. A failure is logged and counted, never raised."""
        row = (
            event.event_id,
            event.event_type.value,
            event.severity.value,
            event.source,
            event.message,
            orjson.dumps(event.details, default=str).decode(),
            event.created_at,
        )
        try:
            with self._connect() as conn:
                conn.execute(INSERT_EVENT, row)
        except Exception as exc:
            metrics.OPERATIONAL_WRITE_FAILURES.labels("system_events").inc()
            log.warning("system_event=%s event_id=%s not written: %r", event.event_type, event.event_id, exc)
            return False
        log.debug(
            "system_event=%s severity=%s event_id=%s %s",
            event.event_type,
            event.severity,
            event.event_id,
            event.message,
        )
        return True


@dataclass(frozen=True, slots=True)
class Totals:
    """The process's counters at one moment (`quantbot.metrics`), for differences over an interval."""

    at: float
    inputs: float
    writes: float
    write_failures: float
    write_seconds: float
    dead_letters: float

    @classmethod
    def now(cls) -> Totals:
        """The counters as they are now."""
        return cls(
            at=time.monotonic(),
            inputs=metrics.total(metrics.INPUTS),
            writes=metrics.total(metrics.SINK_WRITE_SECONDS),
            write_failures=metrics.total(metrics.STORE_WRITE_FAILURES),
            write_seconds=metrics.observed_sum(metrics.SINK_WRITE_SECONDS),
            dead_letters=metrics.total(metrics.DEAD_LETTERS),
        )


@dataclass(frozen=True, slots=True)
class ReporterConfig:
    """What `PerformanceReporter` needs from `[observability]`."""

    interval_s: float
    service: str
    instance: str
    region: str
    dead_letter_burst: int
    source: str
    """The flow's name: the `source` of the events it raises."""


class PerformanceReporter:
    """A daemon thread writing one `system_performance` point per interval, and a last one on `stop()`.

    The fields, over the interval since the previous point:
    - cpu_usage_percent: this process's CPU time over wall time (100 = one core busy);
    - memory_usage_percent: this process's resident memory, as a share of the machine's total;
    - request_count: store writes (batches written, as each sink observes them in `quantbot_sink_write_seconds`);
    - error_count: store writes given up on plus dead letters;
    - response_time_ms: mean duration of a batch write, retries included (absent without writes);
    - queue_depth: frames read by the source but not yet through the flow. One worker runs each batch
      through every step before it asks the source again, so this is 0 between batches: the reporter
      writes 0 for a replay and leaves live sources to report their receive buffers;
    - active_connections: this process's established TCP connections (store clients, the reporter's);
    - throughput: frames (and unreadable lines) read per second.

    Args:
        client: opens the InfluxDB client the points are written with.
        bucket: the InfluxDB bucket.
        org: the InfluxDB organisation.
        config: tags, interval and the dead-letter burst threshold.
        events: where a `dead_letter_burst` event goes.
    """

    def __init__(
        self, client: Callable[[], InfluxDBClient], bucket: str, org: str, config: ReporterConfig, events: EventLog
    ) -> None:
        self._client_factory = client
        self._bucket = bucket
        self._org = org
        self._config = config
        self._events = events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process()
        self._last = Totals.now()
        self._client: InfluxDBClient | None = None
        self.points = 0
        """Points written so far."""

    def start(self) -> None:
        """Start reporting; the first point comes one interval from now."""
        self._process.cpu_percent()  # the first call only sets the reference for the next
        self._last = Totals.now()
        self._thread = threading.Thread(target=self._loop, name="performance-reporter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write the last point, over what is left of the interval."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.report()
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
            self._client = None

    def _loop(self) -> None:
        while not self._stop.wait(self._config.interval_s):
            self.report()

    def point(self) -> tuple[SystemPerformance, Totals, Totals]:
        """The point for the interval ending now, with the counters at its start and its end."""
        now = Totals.now()
        last = self._last
        elapsed = max(now.at - last.at, 1e-9)  # two readings in one clock tick must not divide by zero
        writes = int(now.writes - last.writes)
        connections = sum(1 for c in self._process.net_connections(kind="tcp") if c.status == psutil.CONN_ESTABLISHED)
        point = SystemPerformance(
            time=datetime.now(UTC),
            service=self._config.service,
            instance=self._config.instance,
            region=self._config.region,
            cpu_usage_percent=self._process.cpu_percent(),
            memory_usage_percent=float(self._process.memory_percent()),
            request_count=writes,
            error_count=int(now.write_failures - last.write_failures + now.dead_letters - last.dead_letters),
            response_time_ms=(now.write_seconds - last.write_seconds) / writes * MS_PER_S if writes else None,
            queue_depth=0,
            active_connections=connections,
            throughput=(now.inputs - last.inputs) / elapsed,
        )
        return point, last, now

    def report(self) -> None:
        """Write the point of the interval ending now; raise a dead-letter burst event if there was one."""
        point, last, now = self.point()
        self._last = now
        dead_letters = int(now.dead_letters - last.dead_letters)
        if dead_letters > self._config.dead_letter_burst:
            self._events.record(
                SystemEvent(
                    EventType.DEAD_LETTER_BURST,
                    Severity.WARNING,
                    self._config.source,
                    f"{dead_letters} dead letters in {now.at - last.at:.1f} s"
                    f" (more than {self._config.dead_letter_burst})",
                    {
                        "dead_letters": dead_letters,
                        "interval_s": round(now.at - last.at, 3),
                        "threshold": self._config.dead_letter_burst,
                    },
                )
            )
        try:
            if self._client is None:
                self._client = self._client_factory()
            self._client.write_api(write_options=SYNCHRONOUS).write(
                bucket=self._bucket, org=self._org, record=point.to_line_protocol()
            )
        except Exception as exc:
            metrics.OPERATIONAL_WRITE_FAILURES.labels("system_performance").inc()
            log.warning("system_performance point not written: %r", exc)
            return
        self.points += 1
        log.debug(
            "system_performance requests=%s errors=%s throughput=%.0f",
            point.request_count,
            point.error_count,
            point.throughput or 0.0,
        )
