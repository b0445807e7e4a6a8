"""InfluxDB sink: `token_prices` points per trade and quote, `trading_signals` points per signal (completed with
its outcome), `trading_metrics` points per strategy."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import urllib3.exceptions
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from quantbot import metrics
from quantbot.analytics import SignalUpdate, StrategyMetrics
from quantbot.models import PriceTick, Signal, TickStats
from quantbot.schema.influx import TokenPrice, TradingMetrics, TradingSignalEvent, token_price_line
from quantbot.units import NS_PER_S, NS_PER_US
from sinks.dead_letters import DeadLetterStore, DeadLetterWriter, convert_each, deliver, find_refused, refused
from sinks.retry import Retry

log = logging.getLogger(__name__)

# Bytes of the BLAKE2b digest a point's offset is taken from: 64 bits, whose remainder modulo a second
# of nanoseconds is uniform to within 1e-10.
OFFSET_DIGEST_BYTES = 8
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REFUSED_STATUS = frozenset({400, 413, 422})
"""The body itself is refused: a line the server cannot parse or store (400), too large a body (413, cured
by the halving that finds the offender), points the bucket will not keep, e.g. beyond its retention
(422). Sent again unchanged, the same body gets the same answer."""
STORE = "influx"
UNKNOWN_USER = "00000000-0000-0000-0000-000000000000"
"""The `user_id` tag of a strategy whose document names no `userId` (the tag is required): the nil UUID."""
NO_STATS = TickStats()
"""The statistics of a tick the analytics has not seen: none known."""

Pointed = PriceTick | Signal | SignalUpdate | StrategyMetrics
"""What the sink writes."""


def point_offset_ns(tick: PriceTick) -> int:
    """Where in its second a tick's point lies, in nanoseconds: a function of what the tick is, not of when it came.

    A trade's tick is placed by a hash of the trade's natural key (signature, outer and inner
    instruction index) into the second's 10^9 nanoseconds: a duplicate frame, a replay or a second
    recording of the same trade rewrites the very same point, and two distinct trades of one token on
    one venue in one second share a point with probability 1 in 10^9 per pair. A feed quote has no
    signature; its identity is its source and token (the point's tags) and its publish time, so it lies
    on its publish second itself.

    VictoriaMetrics, the development stand-in, keeps milliseconds: there the offsets fall into 1,000
    slots, and two distinct trades of one series in one second share one with probability 1 in 1,000
    (about k^2/2,000 such pairs for k trades), of which it keeps one sample.
    """
    if tick.is_quote:
        return 0
    key = f"{tick.signature}/{tick.index.outer}/{tick.index.inner}".encode()
    digest = hashlib.blake2b(key, digest_size=OFFSET_DIGEST_BYTES).digest()
    return int.from_bytes(digest, "big") % NS_PER_S


def point_time_ns(tick: PriceTick) -> int:
    """The time of a tick's point, in nanoseconds since the epoch: its block second plus `point_offset_ns`."""
    return tick.block_time * NS_PER_S + point_offset_ns(tick)


class PriceFields(TypedDict):
    """The `token_prices` fields, by name (`TokenPrice`'s and `token_price_line`'s keyword arguments)."""

    price: float
    volume: float | None
    market_cap: float | None
    liquidity: float | None
    price_change_24h: float | None
    high_24h: float | None
    low_24h: float | None


def price_fields(tick: PriceTick) -> PriceFields:
    """The `token_prices` fields of a price tick: its price and volume, and its statistics where known."""
    stats = tick.stats if tick.stats is not None else NO_STATS
    return PriceFields(
        price=tick.price_usd,
        volume=tick.volume_usd,
        market_cap=stats.market_cap_usd,
        liquidity=stats.liquidity_usd,
        price_change_24h=stats.change_24h_pct,
        high_24h=stats.high_24h,
        low_24h=stats.low_24h,
    )


def price_point(tick: PriceTick) -> TokenPrice:
    """The `token_prices` point of a price tick (the sink writes its line, `line_of`, without building it)."""
    offset = point_offset_ns(tick)
    return TokenPrice(
        time=datetime.fromtimestamp(tick.block_time, tz=UTC) + timedelta(microseconds=offset // NS_PER_US),
        nanosecond=offset % NS_PER_US,
        token_address=tick.token,
        symbol=tick.symbol,
        source=tick.source,
        **price_fields(tick),
    )


def signal_point(item: Signal | SignalUpdate) -> TradingSignalEvent:
    """The `trading_signals` point of a signal; of a lifecycle step, the same point with the outcome known so far.

    Outcome fields (`actual_move_1h`, `actual_move_24h`, `success`) stay absent until known; a later step
    rewrites the point with the same fields and more, so whichever order the writes take, the point ends
    with every outcome known.

    The signal id is a tag, so each signal is a series of its own: its point at `created_at` is
    unique to it, and a replayed signal (same id, derived from strategy and signature) rewrites it.
    """
    signal = item.signal if isinstance(item, SignalUpdate) else item
    outcome = item if isinstance(item, SignalUpdate) else None
    predicted = None
    if signal.price and signal.take_profit:
        predicted = (signal.take_profit / signal.price - 1) * 100
    return TradingSignalEvent(
        time=datetime.fromtimestamp(signal.created_at, tz=UTC),
        signal_id=signal.signal_id,
        strategy_id=signal.strategy_id,
        token_address=signal.token_address,
        direction=signal.direction,
        confidence=signal.confidence,
        strength=signal.strength,
        price=signal.price,
        volume=signal.usd_value,
        predicted_move=predicted,
        actual_move_1h=None if outcome is None else outcome.actual_move_1h,
        actual_move_24h=None if outcome is None else outcome.actual_move_24h,
        success=None if outcome is None else outcome.success,
    )


def metrics_point(item: StrategyMetrics) -> TradingMetrics:
    """The `trading_metrics` point of a strategy at a snapshot time (tagged by strategy and user)."""
    fields = item.fields

    def real(name: str) -> float | None:
        value = fields.get(name)
        return None if value is None else float(value)

    def whole(name: str) -> int | None:
        value = fields.get(name)
        return None if value is None else int(value)

    return TradingMetrics(
        time=datetime.fromtimestamp(item.at, tz=UTC),
        strategy_id=item.strategy_id,
        user_id=item.user_id or UNKNOWN_USER,
        pnl_percent=real("pnl_percent"),
        pnl_absolute=real("pnl_absolute"),
        win_count=whole("win_count"),
        loss_count=whole("loss_count"),
        active_positions=whole("active_positions"),
        exposure_usd=real("exposure_usd"),
        max_drawdown=real("max_drawdown"),
        sharpe_ratio=real("sharpe_ratio"),
        sortino_ratio=real("sortino_ratio"),
    )


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, ApiException):
        return int(exc.status) if exc.status is not None else None
    if isinstance(exc, InfluxDBError) and exc.response is not None:
        return int(exc.response.status)
    return None


def is_transient(exc: BaseException) -> bool:
    """Connection refused or reset, timeouts, and the HTTP statuses that mean "try again"."""
    if isinstance(exc, ApiException | InfluxDBError):
        return _status(exc) in RETRYABLE_STATUS
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def is_refusal(exc: BaseException) -> bool:
    """The server refused the body for what it holds (`REFUSED_STATUS`)."""
    return isinstance(exc, ApiException | InfluxDBError) and _status(exc) in REFUSED_STATUS


def line_of(item: Pointed) -> str:
    """The item's point as one line of line protocol."""
    if isinstance(item, PriceTick):
        return token_price_line(point_time_ns(item), item.token, item.symbol, item.source, **price_fields(item))
    if isinstance(item, StrategyMetrics):
        return metrics_point(item).to_line_protocol()
    return signal_point(item).to_line_protocol()


class InfluxSink(DynamicSink[Pointed]):
    """Writes price ticks, signals (and their outcomes) and strategy metrics as line protocol through the v2
    write API, synchronously.

    Delivery: a batch is one HTTP write that has succeeded when `write_batch` returns. Points are keyed
    by measurement, tags and a time derived from what the item is (`point_offset_ns`, the signal id),
    never from when it arrived, so a replayed or duplicated item rewrites the identical point.

    An item that cannot become a point (a time past year 9999, a value the point builder refuses), or
    whose line the server refuses (HTTP 400, 413 or 422 for the body: the body is bisected to find
    the offending lines), goes to `dead_letters` as a dead letter of stage `sink:influx`; the batch's
    other points are written. Without a `dead_letters` store, such an item stops the flow.

    Parallelism: one client per worker.

    Args:
        client: builds the influxdb-client (from `sinks.clients.influx_client`).
        bucket: the bucket written to.
        org: the organisation of the bucket.
        retry: the retry policy for transient failures.
        dead_letters: where items that cannot be stored go.
    """

    def __init__(
        self,
        client: Callable[[], InfluxDBClient],
        bucket: str,
        org: str,
        retry: Retry,
        dead_letters: DeadLetterStore | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.org = org
        self.retry = retry
        self.dead_letters = dead_letters

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _InfluxPartition:
        """A client and a synchronous write API for this worker."""
        letters = self.dead_letters.writer() if self.dead_letters is not None else None
        return _InfluxPartition(self.client(), self.bucket, self.org, self.retry, letters)


class _InfluxPartition(StatelessSinkPartition[Pointed]):
    def __init__(
        self, client: InfluxDBClient, bucket: str, org: str, retry: Retry, letters: DeadLetterWriter | None
    ) -> None:
        self._client = client
        self._write_api = client.write_api(write_options=SYNCHRONOUS)
        self._bucket = bucket
        self._org = org
        self._retry = retry
        self._letters = letters

    def _attempt(self, chunk: Sequence[tuple[Pointed, str]]) -> BaseException | None:
        """Write `chunk` as one body, retrying transient failures; the server's refusal, or None."""
        body = "\n".join(line for _, line in chunk)

        def write() -> BaseException | None:
            try:
                self._write_api.write(bucket=self._bucket, org=self._org, record=body)
            except (ApiException, InfluxDBError) as exc:
                if is_refusal(exc):
                    return exc
                raise
            return None

        start = time.perf_counter()
        what = f"sink=influx points={len(chunk)}"
        error = self._retry.call(write, is_transient, what=what, sink=STORE)
        log.debug("%s refused=%s elapsed_s=%.3f", what, error is not None, time.perf_counter() - start)
        return error

    @metrics.observe_batches(STORE)
    def write_batch(self, items: list[Pointed]) -> None:
        lines, letters = convert_each(items, line_of, STORE)
        letters += [refused(item, STORE, error) for (item, _), error in find_refused(lines, self._attempt)]
        deliver(self._letters, letters)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
        if self._letters is not None:
            self._letters.close()
