"""InfluxDB sink: `token_prices` points per trade and `trading_signals` points per signal."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import urllib3.exceptions
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from quantbot.models import PriceTick, Signal
from quantbot.schema.influx import TokenPrice, TradingSignalEvent
from sinks.retry import Retry

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
NS_PER_US = 1000
# Bytes of the BLAKE2b digest a point's offset is taken from: 64 bits, whose remainder modulo a second
# of nanoseconds is uniform to within 1e-10.
OFFSET_DIGEST_BYTES = 8
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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


def price_point(tick: PriceTick) -> TokenPrice:
    """The `token_prices` point of a price tick."""
    offset = point_offset_ns(tick)
    return TokenPrice(
        time=datetime.fromtimestamp(tick.block_time, tz=UTC) + timedelta(microseconds=offset // NS_PER_US),
        nanosecond=offset % NS_PER_US,
        token_address=tick.token,
        symbol=tick.symbol,
        source=tick.source,
        price=tick.price_usd,
        volume=tick.volume_usd,
    )


def signal_point(signal: Signal) -> TradingSignalEvent:
    """The `trading_signals` point of a signal (outcome fields stay absent until known).

    The signal id is a tag, so each signal is a series of its own: its point at `created_at` is
    unique to it, and a replayed signal (same id, derived from strategy and signature) rewrites it.
    """
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
    )


def is_transient(exc: BaseException) -> bool:
    """Connection refused or reset, timeouts, and the HTTP statuses that mean "try again"."""
    if isinstance(exc, ApiException):
        return exc.status in RETRYABLE_STATUS
    if isinstance(exc, InfluxDBError):
        response = exc.response
        return response is not None and response.status in RETRYABLE_STATUS
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


class InfluxSink(DynamicSink[PriceTick | Signal]):
    """Writes price ticks and signals as line protocol through the v2 write API, synchronously.

    Delivery: a batch is one HTTP write that has succeeded when `write_batch` returns. Points are keyed
    by measurement, tags and a time derived from what the item is (`point_offset_ns`, the signal id),
    never from when it arrived, so a replayed or duplicated item rewrites the identical point.

    Parallelism: one client per worker.

    Args:
        client: builds the influxdb-client (from `sinks.clients.influx_client`).
        bucket: the bucket written to.
        org: the organisation of the bucket.
        retry: the retry policy for transient failures.
    """

    def __init__(self, client: Callable[[], InfluxDBClient], bucket: str, org: str, retry: Retry) -> None:
        self.client = client
        self.bucket = bucket
        self.org = org
        self.retry = retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _InfluxPartition:
        """A client and a synchronous write API for this worker."""
        return _InfluxPartition(self.client(), self.bucket, self.org, self.retry)


class _InfluxPartition(StatelessSinkPartition[PriceTick | Signal]):
    def __init__(self, client: InfluxDBClient, bucket: str, org: str, retry: Retry) -> None:
        self._client = client
        self._write_api = client.write_api(write_options=SYNCHRONOUS)
        self._bucket = bucket
        self._org = org
        self._retry = retry

    def write_batch(self, items: list[PriceTick | Signal]) -> None:
        lines = [(price_point(i) if isinstance(i, PriceTick) else signal_point(i)).to_line_protocol() for i in items]
        if not lines:
            return
        body = "\n".join(lines)
        start = time.perf_counter()
        what = f"sink=influx points={len(lines)}"
        self._retry.call(
            lambda: self._write_api.write(bucket=self._bucket, org=self._org, record=body),
            is_transient,
            what=what,
        )
        log.debug("%s elapsed_s=%.3f", what, time.perf_counter() - start)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
