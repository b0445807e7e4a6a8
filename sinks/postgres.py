"""PostgreSQL sink: trading signals and dead letters, keyed so that a replayed batch changes nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg.types.json import Jsonb

from quantbot.models import DeadLetter, Signal
from sinks.retry import Retry

log = logging.getLogger(__name__)

INSERT_SIGNAL = """
INSERT INTO trading_signals (
    signal_id, strategy_id, signal_type, token_address, direction, confidence,
    price_target, stop_loss, take_profit, expiration_time, created_at, status, metadata
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', %s)
ON CONFLICT (signal_id) DO NOTHING
"""

INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (position, stage, source, reason, raw, received_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (position, stage) DO NOTHING
"""


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def signal_row(signal: Signal) -> tuple[Any, ...]:
    """The `trading_signals` row of a signal; times are block times, so a replay writes the same row."""
    return (
        signal.signal_id,
        signal.strategy_id,
        signal.signal_type,
        signal.token_address,
        signal.direction,
        signal.confidence,
        signal.price_target,
        signal.stop_loss,
        signal.take_profit,
        _utc(signal.expires_at),
        _utc(signal.created_at),
        Jsonb(signal.metadata),
    )


def dead_letter_row(letter: DeadLetter) -> tuple[Any, ...]:
    """The `dead_letters` row: the raw frame and why it could not be used, keyed by position and stage."""
    received = datetime.fromtimestamp(letter.received_ns / 1e9, tz=UTC) if letter.received_ns else None
    # PostgreSQL text cannot hold NUL; the raw frame is kept with NULs escaped rather than dropped.
    return (letter.position, letter.stage, letter.source, letter.reason, letter.raw.replace("\x00", "\\x00"), received)


def is_transient(exc: BaseException) -> bool:
    """Connection lost, server restarting or shutting down: worth retrying on a new connection."""
    return isinstance(exc, psycopg.OperationalError | psycopg.errors.AdminShutdown | psycopg.errors.CannotConnectNow)


class PostgresSink(DynamicSink[Signal | DeadLetter]):
    """Writes signals to `trading_signals` and dead letters to `dead_letters`.

    Delivery: each batch is one transaction that commits before `write_batch` returns; rows are keyed
    by signal id and by (position, stage) with `ON CONFLICT DO NOTHING`, so at-least-once input is
    stored exactly once. Transient failures are retried on a fresh connection within `retry`'s budget.

    Parallelism: one connection per worker.

    Args:
        connect: opens a new connection (from `sinks.clients.postgres_connect`).
        retry: the retry policy for transient failures.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], retry: Retry) -> None:
        self.connect = connect
        self.retry = retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresPartition:
        """One connection for this worker, opened lazily on the first batch."""
        return _PostgresPartition(self.connect, self.retry)


class _PostgresPartition(StatelessSinkPartition[Signal | DeadLetter]):
    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], retry: Retry) -> None:
        self._connect = connect
        self._retry = retry
        self._conn: psycopg.Connection[Any] | None = None

    def _reset(self, _exc: BaseException) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def write_batch(self, items: list[Signal | DeadLetter]) -> None:
        signals = [signal_row(i) for i in items if isinstance(i, Signal)]
        letters = [dead_letter_row(i) for i in items if isinstance(i, DeadLetter)]

        def write() -> None:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            with self._conn.transaction(), self._conn.cursor() as cur:
                if signals:
                    cur.executemany(INSERT_SIGNAL, signals)
                if letters:
                    cur.executemany(INSERT_DEAD_LETTER, letters)

        start = time.perf_counter()
        what = f"sink=postgres signals={len(signals)} dead_letters={len(letters)}"
        self._retry.call(write, is_transient, what=what, on_retry=self._reset)
        log.debug("%s elapsed_s=%.3f", what, time.perf_counter() - start)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
