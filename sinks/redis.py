"""Redis sink: latest token prices (`price:{token}`) and active signals (`signal:{id}`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from quantbot.models import PriceTick, Signal
from quantbot.schema.redis_keys import price_fields, price_key, signal_fields, signal_key
from sinks.retry import Retry

log = logging.getLogger(__name__)

# Newest block time wins: a price is written only if it is not older than the one stored. ISO-8601
# UTC strings of one format compare like the times they name. Runs atomically on the server.
NEWEST_PRICE_WINS = """
local current = redis.call('HGET', KEYS[1], 'updated_at')
if current and current > ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
MS_PER_S = 1000


@dataclass(frozen=True, slots=True)
class RedisPolicy:
    """TTLs of the cache; `[redis] price_ttl_s` is the seed's 30 s unless configured otherwise."""

    price_ttl_s: float = 30.0


def newest_per_token(items: list[PriceTick | Signal]) -> list[PriceTick | Signal]:
    """The batch with only the newest tick of each token (by block time, then stream order), signals kept.

    Of several ticks of one token in a batch only the newest can survive the newest-wins write, so
    sending the others is wasted work (most of a batch, for the most traded tokens).
    """
    newest: dict[str, PriceTick] = {}
    kept: list[PriceTick | Signal] = []
    for item in items:
        if isinstance(item, Signal):
            kept.append(item)
        elif (current := newest.get(item.token)) is None or item.block_time >= current.block_time:
            newest[item.token] = item
    return [*newest.values(), *kept]


def is_transient(exc: BaseException) -> bool:
    """Connection refused or lost, timeout, server loading its data set."""
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.BusyLoadingError)


class RedisSink(DynamicSink[PriceTick | Signal]):
    """Writes price hashes (newest block time wins, 30 s TTL) and signal hashes (TTL to their expiry).

    Delivery: each batch is one pipelined round trip that completes before `write_batch` returns;
    hash overwrites with the same values are idempotent. A signal already expired at write time is not
    cached (the cache holds active signals only; PostgreSQL keeps every signal).

    Parallelism: one connection pool per worker.

    Args:
        client: builds the redis-py client (from `sinks.clients.redis_client`).
        retry: the retry policy for transient failures.
        policy: the TTLs.
        now: the clock deciding whether a signal is still active (injectable for replays of old data).
    """

    def __init__(
        self,
        client: Callable[[], redis.Redis],
        retry: Retry,
        policy: RedisPolicy = RedisPolicy(),
        now: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.retry = retry
        self.policy = policy
        self.now = now

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisPartition:
        """A client for this worker."""
        return _RedisPartition(self.client(), self.retry, self.policy, self.now)


class _RedisPartition(StatelessSinkPartition[PriceTick | Signal]):
    def __init__(self, client: redis.Redis, retry: Retry, policy: RedisPolicy, now: Callable[[], float]) -> None:
        self._client = client
        self._retry = retry
        self._policy = policy
        self._now = now
        self._newest_wins = client.register_script(NEWEST_PRICE_WINS)

    def _queue(self, pipe: redis.client.Pipeline, items: list[PriceTick | Signal], now: float) -> tuple[int, int]:
        """Queue the batch's commands on `pipe`; returns (prices, signals) queued."""
        price_ttl_ms = str(int(self._policy.price_ttl_s * MS_PER_S))
        prices = signals = 0
        for item in newest_per_token(items):
            if isinstance(item, PriceTick):
                fields = price_fields(
                    price=item.price_usd, updated_at=datetime.fromtimestamp(item.block_time, tz=UTC), source=item.source
                )
                rest = [part for k, v in fields.items() if k != "updated_at" for part in (k, v)]
                args = [fields["updated_at"], price_ttl_ms, *rest]
                self._newest_wins(keys=[price_key(item.token)], args=args, client=pipe)
                prices += 1
                continue
            ttl_ms = int((item.expires_at - now) * MS_PER_S)
            if ttl_ms < 1 or item.price is None:
                continue  # no longer active, or no price to cache: PostgreSQL has it
            key = signal_key(item.signal_id)
            pipe.hset(
                key,
                mapping=cast(  # redis-py's Mapping is invariant in its key type; a str->str dict is what it takes
                    "Mapping[Any, Any]",
                    signal_fields(
                        token_address=item.token_address,
                        direction=item.direction,
                        confidence=item.confidence,
                        price=item.price,
                        strategy_id=item.strategy_id,
                        created_at=datetime.fromtimestamp(item.created_at, tz=UTC),
                        expires_at=datetime.fromtimestamp(item.expires_at, tz=UTC),
                    ),
                ),
            )
            pipe.pexpire(key, ttl_ms)
            signals += 1
        return prices, signals

    def write_batch(self, items: list[PriceTick | Signal]) -> None:
        now = self._now()
        counts = (0, 0)

        def send() -> None:
            # Rebuilt on every attempt: a server that restarted has forgotten the script, and a
            # fresh pipeline loads it again before sending. Each command is idempotent.
            nonlocal counts
            pipe = self._client.pipeline(transaction=False)
            counts = self._queue(pipe, items, now)
            if counts != (0, 0):
                pipe.execute()

        start = time.perf_counter()
        self._retry.call(send, is_transient, what=f"sink=redis items={len(items)}")
        log.debug("sink=redis prices=%d signals=%d elapsed_s=%.3f", *counts, time.perf_counter() - start)

    def close(self) -> None:
        self._client.close()
