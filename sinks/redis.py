"""Redis sink: latest token prices (`price:{token}`) and active signals (`signal:{id}`), removed when they close."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from quantbot import metrics
from quantbot.analytics import SignalUpdate
from quantbot.models import DeadLetter, PriceTick, Signal
from quantbot.schema.redis_keys import price_fields, price_key, signal_fields, signal_key
from quantbot.units import MS_PER_S
from sinks.dead_letters import DeadLetterStore, DeadLetterWriter, convert_each, deliver, refused
from sinks.retry import Retry

log = logging.getLogger(__name__)

R = TypeVar("R")

# Newest block time wins: a price is written only if it is not older than the one stored. ISO-8601
# UTC strings of one format compare like the times they name. The hash is replaced whole, so a field the
# new price lacks (no 24 h change known) does not keep an older price's. Runs atomically on the server.
NEWEST_PRICE_WINS = """
local current = redis.call('HGET', KEYS[1], 'updated_at')
if current and current > ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
STORE = "redis"
ACTIVE_STATUSES = frozenset({"pending", "active"})
"""A signal in these states is cached; once closed or expired its hash is removed."""

Cached = PriceTick | Signal | SignalUpdate
"""What the sink writes."""


@dataclass(frozen=True, slots=True)
class RedisPolicy:
    """TTLs of the cache; `[redis] price_ttl_s` is the seed's 30 s unless configured otherwise."""

    price_ttl_s: float = 30.0


def newest_per_token(
    items: Sequence[Cached], convert: Callable[[Cached], R]
) -> tuple[list[tuple[Cached, R]], list[DeadLetter]]:
    """The newest tick of each token (by block time, then stream order) and every signal and signal update
    (in stream order: a signal's hash is written before its closing removes it), converted.

    Of several ticks of one token in a batch only the newest can survive the newest-wins write, so
    converting and sending the others is wasted work (most of a batch, for the most traded tokens).
    A tick whose conversion fails is a dead letter, and the next newest of its token takes its place,
    so that a bad tick never hides an older good one.

    Returns:
        The items to send with their conversions; the dead letters of those that failed to convert.
    """
    ticks: dict[str, list[tuple[int, PriceTick]]] = {}
    signals: list[Signal | SignalUpdate] = []
    for order, item in enumerate(items):
        if isinstance(item, PriceTick):
            ticks.setdefault(item.token, []).append((order, item))
        else:
            signals.append(item)
    chosen: list[tuple[Cached, R]] = []
    letters: list[DeadLetter] = []
    for candidates in ticks.values():
        for _, tick in sorted(candidates, key=lambda c: (c[1].block_time, c[0]), reverse=True):
            converted, failed = convert_each([tick], convert, STORE)
            chosen += converted
            letters += failed
            if converted:
                break
    converted_signals, failed_signals = convert_each(signals, convert, STORE)
    return [*chosen, *converted_signals], [*letters, *failed_signals]


def is_transient(exc: BaseException) -> bool:
    """Connection refused or lost, timeout, a server loading its data set, read-only, out of memory or busy."""
    return isinstance(
        exc,
        redis.ConnectionError
        | redis.TimeoutError
        | redis.exceptions.BusyLoadingError
        | redis.exceptions.ReadOnlyError
        | redis.exceptions.OutOfMemoryError
        | redis.exceptions.NoScriptError
        | redis.exceptions.TryAgainError
        | redis.exceptions.MasterDownError
        | redis.exceptions.ClusterDownError,
    )


def is_refusal(exc: BaseException) -> bool:
    """The server refused one command for what it holds or touches: `WRONGTYPE`, a script's error, a bad argument.

    Permission and authentication errors are about the connection, not the item: they stop the flow.
    """
    return (
        isinstance(exc, redis.ResponseError)
        and not is_transient(exc)
        and not isinstance(exc, redis.exceptions.NoPermissionError | redis.exceptions.AuthenticationError)
    )


@dataclass(frozen=True, slots=True)
class _Price:
    key: str
    args: list[str]


@dataclass(frozen=True, slots=True)
class _SignalHash:
    key: str
    fields: dict[str, str]
    expires_at: int


@dataclass(frozen=True, slots=True)
class _Removal:
    key: str


def _price(tick: PriceTick, ttl_ms: str) -> _Price:
    stats = tick.stats
    fields = price_fields(
        price=tick.price_usd,
        updated_at=datetime.fromtimestamp(tick.block_time, tz=UTC),
        source=tick.source,
        change_24h=None if stats is None else stats.change_24h_pct,
        volume_24h=None if stats is None else stats.volume_24h_usd,
    )
    rest = [part for k, v in fields.items() if k != "updated_at" for part in (k, v)]
    return _Price(price_key(tick.token), [fields["updated_at"], ttl_ms, *rest])


def signal_hash(signal: Signal) -> _SignalHash | None:
    """The `signal:{id}` key and fields of a signal, and its expiry; None without a price (not cached)."""
    if signal.price is None:
        return None  # no price to cache: PostgreSQL has the signal
    fields = signal_fields(
        token_address=signal.token_address,
        direction=signal.direction,
        confidence=signal.confidence,
        price=signal.price,
        strategy_id=signal.strategy_id,
        created_at=datetime.fromtimestamp(signal.created_at, tz=UTC),
        expires_at=datetime.fromtimestamp(signal.expires_at, tz=UTC),
    )
    return _SignalHash(signal_key(signal.signal_id), fields, signal.expires_at)


class RedisSink(DynamicSink[Cached]):
    """Writes price hashes (newest block time wins, 30 s TTL) and signal hashes (TTL to their expiry), and
    removes a signal's hash when it closes or expires (`SignalUpdate`).

    Delivery: each batch is one pipelined round trip that completes before `write_batch` returns;
    hash overwrites with the same values are idempotent. A signal already expired at write time is not
    cached (the cache holds active signals only; PostgreSQL keeps every signal).

    An item that cannot become a key and hash (a time past year 9999, a token that is no Solana
    address), or whose command the server refuses (`WRONGTYPE`: the key holds something else), goes to
    `dead_letters` as a dead letter of stage `sink:redis`; the batch's other commands are applied.
    Without a `dead_letters` store, such an item stops the flow.

    Parallelism: one connection pool per worker.

    Args:
        client: builds the redis-py client (from `sinks.clients.redis_client`).
        retry: the retry policy for transient failures.
        policy: the TTLs.
        now: the clock deciding whether a signal is still active (injectable for replays of old data).
        dead_letters: where items that cannot be stored go.
    """

    def __init__(
        self,
        client: Callable[[], redis.Redis],
        retry: Retry,
        policy: RedisPolicy = RedisPolicy(),
        now: Callable[[], float] = time.time,
        dead_letters: DeadLetterStore | None = None,
    ) -> None:
        self.client = client
        self.retry = retry
        self.policy = policy
        self.now = now
        self.dead_letters = dead_letters

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisPartition:
        """A client for this worker."""
        letters = self.dead_letters.writer() if self.dead_letters is not None else None
        return _RedisPartition(self.client(), self.retry, self.policy, self.now, letters)


class _RedisPartition(StatelessSinkPartition[Cached]):
    def __init__(
        self,
        client: redis.Redis,
        retry: Retry,
        policy: RedisPolicy,
        now: Callable[[], float],
        letters: DeadLetterWriter | None,
    ) -> None:
        self._client = client
        self._retry = retry
        self._policy = policy
        self._now = now
        self._letters = letters
        self._newest_wins = client.register_script(NEWEST_PRICE_WINS)

    def _convert(self, item: Cached) -> _Price | _SignalHash | _Removal | None:
        if isinstance(item, PriceTick):
            return _price(item, str(int(self._policy.price_ttl_s * MS_PER_S)))
        if isinstance(item, SignalUpdate):
            return None if item.status in ACTIVE_STATUSES else _Removal(signal_key(item.signal.signal_id))
        return signal_hash(item)

    def _queue(self, pipe: redis.client.Pipeline, command: _Price | _SignalHash | _Removal, now: float) -> int:
        """Queue one item's commands on `pipe`; returns how many (0 for a signal no longer active)."""
        if isinstance(command, _Price):
            self._newest_wins(keys=[command.key], args=command.args, client=pipe)
            return 1
        if isinstance(command, _Removal):
            pipe.delete(command.key)
            return 1
        ttl_ms = int((command.expires_at - now) * MS_PER_S)
        if ttl_ms < 1:
            return 0  # no longer active: PostgreSQL has it
        # redis-py's Mapping is invariant in its key type; a str->str dict is what it takes
        pipe.hset(command.key, mapping=cast("Mapping[Any, Any]", command.fields))
        pipe.pexpire(command.key, ttl_ms)
        return 2

    @metrics.observe_batches(STORE)
    def write_batch(self, items: list[Cached]) -> None:
        now = self._now()
        converted, letters = newest_per_token(items, self._convert)
        to_send = [(item, command) for item, command in converted if command is not None]

        def send() -> list[tuple[Cached, BaseException]]:
            # Rebuilt on every attempt: a server that restarted has forgotten the script, and a
            # fresh pipeline loads it again before sending. Each command is idempotent.
            pipe = self._client.pipeline(transaction=False)
            owners = [item for item, command in to_send for _ in range(self._queue(pipe, command, now))]
            if not owners:
                return []
            results = pipe.execute(raise_on_error=False)
            failed = [
                (owner, result) for owner, result in zip(owners, results, strict=True) if isinstance(result, Exception)
            ]
            for _, error in failed:
                if not is_refusal(error):
                    raise error
            # An item with two commands (a signal's hash and its expiry) is refused once.
            return list({id(owner): (owner, error) for owner, error in failed}.values())

        start = time.perf_counter()
        refusals = self._retry.call(send, is_transient, what=f"sink=redis items={len(items)}", sink=STORE)
        log.debug(
            "sink=redis items=%d refused=%d elapsed_s=%.3f", len(to_send), len(refusals), time.perf_counter() - start
        )
        letters += [refused(item, STORE, error) for item, error in refusals]
        deliver(self._letters, letters)

    def close(self) -> None:
        self._client.close()
        if self._letters is not None:
            self._letters.close()
