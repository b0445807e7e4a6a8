"""PostgreSQL sink: trading signals (and their lifecycle) and dead letters, keyed so that a replayed batch
changes nothing."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from quantbot import metrics
from quantbot.analytics import SignalUpdate
from quantbot.models import DeadLetter, Signal
from sinks.dead_letters import (
    INSERT_DEAD_LETTER,
    ItemsRefusedError,
    convert_each,
    count,
    dead_letter_row,
    find_refused,
    is_transient,
    refused,
)
from sinks.retry import Retry

__all__ = ["INSERT_DEAD_LETTER", "UPSERT_SIGNAL", "PostgresSink", "dead_letter_row", "is_transient", "signal_row"]

log = logging.getLogger(__name__)

STORE = "postgres"

UPSERT_SIGNAL = """
INSERT INTO trading_signals (
    signal_id, strategy_id, signal_type, token_address, direction, confidence,
    price_target, stop_loss, take_profit, expiration_time, created_at, processed_at, status, metadata
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (signal_id) DO UPDATE
SET processed_at = EXCLUDED.processed_at, status = EXCLUDED.status, metadata = EXCLUDED.metadata
WHERE trading_signals.status <> 'orphaned'
"""
"""One statement for a new signal and each step of its lifecycle: every write is the row's whole state at
that point of the stream, so the rows of one batch apply in stream order and the last one is the truth. A
signal `quantbot reconcile --fix` marked `orphaned` (its strategy or whale is gone) is left so.
(Two statements would be grouped apart, and an update could run before the insert it follows.)"""

PENDING = "pending"

REFUSALS = (psycopg.DataError, psycopg.IntegrityError)
"""What PostgreSQL answers about the rows themselves (SQLSTATE classes 22 and 23: a value out of range, a
text it cannot hold, a constraint, a missing strategy): the same rows are refused every time. Anything
else (no table, no permission) is about the database, and stops the flow loudly."""

Row = tuple[str, tuple[Any, ...]]
"""A statement and its parameters."""


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def signal_row(item: Signal | SignalUpdate) -> tuple[Any, ...]:
    """The `trading_signals` row of a new signal, or of one at a step of its lifecycle.

    Times are feed times (block times), so a replay writes the same row. A lifecycle step sets `status` and
    `processed_at` and adds `metadata.outcome`: what is known of the outcome (entry and exit prices, the
    exit's reason, the profit in percent, the token's moves 1 h and 24 h after the signal, success).
    The metadata is encoded here rather than when the row is sent, so that a value JSON cannot hold
    fails this signal's conversion, not the batch's transaction.
    """
    if isinstance(item, SignalUpdate):
        signal, status, processed = item.signal, item.status, _utc(item.processed_at)
        outcome = {
            name: value
            for name in (
                "entry_price",
                "exit_price",
                "exit_reason",
                "pnl_percent",
                "actual_move_1h",
                "actual_move_24h",
                "success",
            )
            if (value := getattr(item, name)) is not None
        }
        metadata = {**signal.metadata, "outcome": outcome}
    else:
        signal, status, processed, metadata = item, PENDING, None, item.metadata
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
        processed,
        status,
        json.dumps(metadata),
    )


Stored = Signal | SignalUpdate | DeadLetter
"""What the sink writes."""


def _row(item: Stored) -> Row:
    if isinstance(item, Signal | SignalUpdate):
        return UPSERT_SIGNAL, signal_row(item)
    return INSERT_DEAD_LETTER, dead_letter_row(item)


class PostgresSink(DynamicSink[Stored]):
    """Writes signals, and each step of their lifecycle, to `trading_signals` and dead letters to `dead_letters`.

    Delivery: each batch is written in transactions that commit before `write_batch` returns; dead letters
    are keyed by (position, stage) with `ON CONFLICT DO NOTHING`, a signal by its id with an upsert of
    its whole state at that point of the stream (`UPSERT_SIGNAL`; a signal `quantbot reconcile` marked
    orphaned stays so), so at-least-once input in stream order ends as exactly-once rows. The signals of
    one stream must reach one partition in stream order (the flow writes them from the valuation's worker).
    Transient failures are retried on a fresh connection within `retry`'s budget.

    A signal PostgreSQL refuses (a value out of its column's range, a strategy that no longer exists)
    or that cannot become a row (a time past year 9999) is stored as a dead letter of stage
    `sink:postgres` instead, and the rest of the batch is written: the failed transaction is bisected
    to find the offenders (see `sinks.dead_letters`). A dead letter is made to fit its row, so it is
    never refused; if one still were, that is a bug, and it stops the flow.

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


class _PostgresPartition(StatelessSinkPartition[Stored]):
    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], retry: Retry) -> None:
        self._connect = connect
        self._retry = retry
        self._conn: psycopg.Connection[Any] | None = None

    def _reset(self, _exc: BaseException) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _attempt(self, chunk: Sequence[tuple[Stored, Row]]) -> BaseException | None:
        """Write `chunk` in one transaction, retrying transient failures; PostgreSQL's refusal, or None."""

        def write() -> BaseException | None:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            by_statement: dict[str, list[tuple[Any, ...]]] = {}
            for _, (statement, params) in chunk:
                by_statement.setdefault(statement, []).append(params)
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    for statement, rows in by_statement.items():
                        cur.executemany(statement, rows)
            except REFUSALS as exc:
                return exc
            return None

        signals = sum(1 for item, _ in chunk if isinstance(item, Signal | SignalUpdate))
        what = f"sink=postgres signals={signals} dead_letters={len(chunk) - signals}"
        start = time.perf_counter()
        error = self._retry.call(write, is_transient, what=what, sink=STORE, on_retry=self._reset)
        log.debug("%s refused=%s elapsed_s=%.3f", what, error is not None, time.perf_counter() - start)
        return error

    @metrics.observe_batches(STORE)
    def write_batch(self, items: list[Stored]) -> None:
        rows, letters = convert_each(items, _row, STORE)
        for (item, _), error in find_refused(rows, self._attempt):
            if isinstance(item, DeadLetter):
                raise ItemsRefusedError([refused(item, STORE, error)])
            letters.append(refused(item, STORE, error))
        if not letters:
            return
        unstored = find_refused([(letter, _row(letter)) for letter in letters], self._attempt)
        if unstored:
            raise ItemsRefusedError([refused(letter, STORE, error) for (letter, _), error in unstored])
        for letter in letters:
            log.warning("stage=%s position=%s dead letter: %s", letter.stage, letter.position, letter.reason)
        count(letters)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
