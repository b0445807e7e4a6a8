"""Items a store cannot take: dead letters in PostgreSQL's `dead_letters`, so that the flow goes on.

A sink meets two kinds of per-item failure, neither of which waiting cures:

- converting the item to the store's form raises (a tick timed in milliseconds: `datetime` stops at
  year 9999; a value a point builder or key builder refuses);
- the store refuses the item (a Mongo validator, a PostgreSQL constraint or numeric overflow, an HTTP
  400 for one line of an InfluxDB body, a Redis key holding another type).

Retrying either forever, or stopping the flow so that every resume meets the same item again, would turn
one bad item into an outage (DESIGN.md §4: bad input never stops the flow and is never silently
dropped). So the sink writes the rest of the batch and turns each offender into a `DeadLetter`: stage
`sink:<store>`, the store's error as the reason, the item's natural key as the position, and the item
as JSON (`item_json`) so that it can be re-driven once the cause is fixed. Transient failures (a store
down or restarting) are not dead letters: they are retried as before (`sinks.retry`).

Where the store reports only that a batch failed (PostgreSQL aborts the whole transaction, InfluxDB
answers 400 for the body), `find_refused` bisects the batch to find the offenders.

The sinks other than PostgreSQL's hand their dead letters to a `DeadLetterStore`: one small writer with
its own PostgreSQL connection, opened when the first dead letter comes, under the same retry policy.
PostgreSQL being down is then a transient failure like any other, and the batch waits for it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg

from quantbot import metrics
from quantbot.errors import QuantbotError
from quantbot.models import DeadLetter, PriceTick, Signal, WhaleTransaction
from quantbot.units import NS_PER_S
from sinks.retry import Retry

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

CONVERSION_ERRORS: tuple[type[Exception], ...] = (ArithmeticError, LookupError, OSError, TypeError, ValueError)
"""What converting one item to a store's form may raise because of the item: the conversions are pure
(no I/O), so these say the item cannot be stored, whatever the store's state. `OSError` is what
`datetime.fromtimestamp` raises for some out-of-range times on some platforms."""

STAGE_PREFIX = "sink:"
DEAD_LETTERS_SINK = "dead_letters"
"""The dead-letter writer, as the sink metrics label it."""

# The `dead_letters` columns' limits (migration 0003): a row is clipped to fit rather than refused, so
# that writing a dead letter cannot itself fail on its length.
POSITION_MAX = 512
STAGE_MAX = 50
SOURCE_MAX = 255
REASON_MAX = 2000
"""A store's error can quote the whole offending document; its first two thousand characters say why."""

INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (position, stage, source, reason, raw, received_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (position, stage) DO NOTHING
"""


class ItemsRefusedError(QuantbotError):
    """Items a sink can neither store nor keep as dead letters; the message names the first.

    Raised by a sink built without a dead-letter store, and by the PostgreSQL sink for a dead letter
    PostgreSQL refuses (rows are made to fit `dead_letters`, so that is a bug, and stops the flow).
    """

    def __init__(self, letters: Sequence[DeadLetter]) -> None:
        self.letters = list(letters)
        first = letters[0]
        more = f" (and {len(letters) - 1} more)" if len(letters) > 1 else ""
        super().__init__(f"{first.stage} cannot store `{first.position}`{more}: {first.reason}")


def stage_of(store: str) -> str:
    """The dead-letter stage of items refused by `store`: `sink:influx`, `sink:mongo`, ..."""
    return f"{STAGE_PREFIX}{store}"


def position_of(item: object) -> str:
    """The natural key of an item, as a dead letter's position: the same item always gets the same one.

    A trade's tick is keyed by signature, instruction index and token (a trade prices two legs); a feed
    quote's, which has no signature, by its point (source, publish time, token); a signal by its id;
    a whale by its document id (the transaction signature).
    """
    if isinstance(item, PriceTick):
        if item.signature:
            inner = "" if item.index.inner is None else f".{item.index.inner}"
            return f"{item.signature}#{item.index.outer}{inner}/{item.token}"
        return f"{item.source}@{item.block_time}/{item.token}"
    if isinstance(item, Signal):
        return item.signal_id
    if isinstance(item, WhaleTransaction):
        return str(item.document.get("_id", item.valued.activity.signature))
    if isinstance(item, DeadLetter):
        return item.position
    return repr(item)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)


def item_json(item: object) -> str:
    """The item as JSON, `{"type": "PriceTick", "item": {...}}`, to re-drive it once the cause is fixed.

    The standard library's encoder: raw amounts are u64 and balance deltas their negatives, beyond the
    64-bit integers faster encoders accept; a NaN or an infinity (maybe the very reason) is kept as the
    bare `NaN`/`Infinity` Python and most JSON readers accept.
    """
    body = dataclasses.asdict(item) if dataclasses.is_dataclass(item) and not isinstance(item, type) else item
    return json.dumps({"type": type(item).__name__, "item": body}, default=_json_default)


def refused(item: object, store: str, reason: str | BaseException) -> DeadLetter:
    """The dead letter of an item `store` could not take, with the store's error as the reason."""
    text = reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"
    return DeadLetter(
        position=position_of(item),
        source=type(item).__name__,
        stage=stage_of(store),
        reason=text,
        raw=item_json(item),
        received_ns=0,
    )


def convert_each(
    items: Iterable[T], convert: Callable[[T], R], store: str
) -> tuple[list[tuple[T, R]], list[DeadLetter]]:
    """Convert every item; an item whose conversion raises one of `CONVERSION_ERRORS` is a dead letter.

    Returns:
        The items that converted, each with its conversion, in order; and the dead letters.
    """
    converted: list[tuple[T, R]] = []
    letters: list[DeadLetter] = []
    for item in items:
        try:
            converted.append((item, convert(item)))
        except CONVERSION_ERRORS as exc:
            letters.append(refused(item, store, exc))
    return converted, letters


def find_refused(
    chunk: Sequence[T], attempt: Callable[[Sequence[T]], BaseException | None]
) -> list[tuple[T, BaseException]]:
    """Write `chunk`; where the store refuses it as a whole, bisect to find the items it refuses alone.

    One offender among n items costs about 2·log2(n) extra writes; every write must be idempotent, as
    the halves that succeed are written again when a later attempt covers them.

    Args:
        chunk: the items to write.
        attempt: writes some items; returns the store's refusal, or None when they were stored.
            Transient failures are the attempt's own business (retried inside it, or raised).

    Returns:
        Each item the store refused on its own, with the store's error.
    """
    if not chunk:
        return []
    error = attempt(chunk)
    if error is None:
        return []
    if len(chunk) == 1:
        return [(chunk[0], error)]
    middle = len(chunk) // 2
    return find_refused(chunk[:middle], attempt) + find_refused(chunk[middle:], attempt)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(text: str) -> str:
    # PostgreSQL text holds neither NUL nor lone surrogates (undecodable bytes read with
    # `surrogateescape`): both are escaped rather than dropped.
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def dead_letter_row(letter: DeadLetter) -> tuple[Any, ...]:
    """The `dead_letters` row: the raw input and why it could not be used, keyed by position and stage.

    Every value is made to fit its column (NUL escaped, lengths clipped, an impossible receive time
    left NULL), so that storing a dead letter never fails because of what it holds.
    """
    try:
        received = datetime.fromtimestamp(letter.received_ns / NS_PER_S, tz=UTC) if letter.received_ns else None
    except CONVERSION_ERRORS:
        received = None
    return (
        _clip(_text(letter.position), POSITION_MAX),
        _clip(_text(letter.stage), STAGE_MAX),
        _clip(_text(letter.source), SOURCE_MAX),
        _clip(_text(letter.reason), REASON_MAX),
        _text(letter.raw),
        received,
    )


def is_transient(exc: BaseException) -> bool:
    """Connection lost, server restarting or shutting down: worth retrying on a new connection."""
    return isinstance(exc, psycopg.OperationalError | psycopg.errors.AdminShutdown | psycopg.errors.CannotConnectNow)


def count(letters: Iterable[DeadLetter]) -> None:
    """Count stored dead letters in `quantbot_dead_letters_total` by stage."""
    for letter in letters:
        metrics.DEAD_LETTERS.labels(letter.stage).inc()


def deliver(writer: DeadLetterWriter | None, letters: Sequence[DeadLetter]) -> None:
    """Store a sink's dead letters through `writer`; without one, raise: nothing is dropped silently.

    Raises:
        ItemsRefusedError: there are dead letters and no writer to store them.
    """
    if not letters:
        return
    if writer is None:
        raise ItemsRefusedError(letters)
    writer.write(letters)


class DeadLetterStore:
    """Where the sinks other than PostgreSQL's put their dead letters: PostgreSQL's `dead_letters`.

    A picklable description, like a sink: `writer()` makes the stateful writer each sink partition
    keeps. Rows are keyed by (position, stage) with `ON CONFLICT DO NOTHING`, so a replayed dead letter
    is stored once.

    Args:
        connect: opens a new connection (from `sinks.clients.postgres_connect`).
        retry: the retry policy for transient failures (the sinks').
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], retry: Retry) -> None:
        self.connect = connect
        self.retry = retry

    def writer(self) -> DeadLetterWriter:
        """A writer for one sink partition; it connects on its first dead letter."""
        return DeadLetterWriter(self.connect, self.retry)


class DeadLetterWriter:
    """One connection's worth of dead-letter writes; opened lazily, reopened after a transient failure."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], retry: Retry) -> None:
        self._connect = connect
        self._retry = retry
        self._conn: psycopg.Connection[Any] | None = None

    def _reset(self, _exc: BaseException) -> None:
        self.close()

    @metrics.observe_batches(DEAD_LETTERS_SINK)
    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Store `letters` in one transaction, committed before this returns, and count them.

        Raises:
            psycopg.Error: PostgreSQL refused the rows (e.g. no `dead_letters` table: run
                `quantbot migrate up`), or stayed unreachable past the retry budget.
        """
        if not letters:
            return
        rows = [dead_letter_row(letter) for letter in letters]

        def write() -> None:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.executemany(INSERT_DEAD_LETTER, rows)

        start = time.perf_counter()
        stages = ",".join(sorted({letter.stage for letter in letters}))
        what = f"sink=dead_letters stage={stages} dead_letters={len(rows)}"
        self._retry.call(write, is_transient, what=what, sink=DEAD_LETTERS_SINK, on_retry=self._reset)
        for letter in letters:
            log.warning("stage=%s position=%s dead letter: %s", letter.stage, letter.position, letter.reason)
        log.debug("%s elapsed_s=%.3f", what, time.perf_counter() - start)
        count(letters)

    def close(self) -> None:
        """Close the connection, if one is open."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None
