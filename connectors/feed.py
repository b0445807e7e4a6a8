"""What the price-feed sources share: a partition running its feed's asyncio client in a thread of its own,
its resume state, reconnection with backoff, and the feed's down time.

```
RuntimeError
 └── FeedError             the feed failed this attempt: reconnect after a backoff (retryable)
      ├── RateLimitedError the provider answered 429: wait what it said (Retry-After) or the feed's default
      └── StreamSilentError no message for `silent_after_s`: the stream is dead
```

A partition never blocks the dataflow: `next_batch` takes what the loop has made ready. The loop (`_session`,
one per provider) connects, reads, and raises when the connection is lost; the base class counts the
reconnection, waits, and keeps the feed's down time: from the moment a stream was lost (for a silent
one, its last message) to the next connection, added to `quantbot_feed_down_seconds_total{source}`. A feed
cannot seek: what it sent while down is lost, and the metric says for how long.

Resume state (`FeedPosition`): per feed id or token, the newest quote time emitted. After a restart or a
reconnection, a message that re-sends only older quotes is dropped (counted in
`quantbot_feed_duplicates_total`); a quote of the same time is emitted again (a candle's close moves within
its minute) and the stores' natural keys absorb it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.refused import RefusedPartition
from quantbot import metrics
from quantbot.backoff import Backoff
from quantbot.errors import ResumeRefusedError
from quantbot.events import EventType, Severity, SystemEvent
from quantbot.health import SourceActivity
from quantbot.models import DeadLetter, Frame
from quantbot.redaction import redact

log = logging.getLogger(__name__)

BATCH_MAX = 1024
"""Items handed to the flow per `next_batch` at most."""
IDLE_WAIT_S = 0.02
"""With nothing ready, the engine asks again after this long: prices are worth most when fresh."""
POLL_S = 0.25
"""The loop looks this often whether it was asked to stop, and how long its stream has been silent."""
JOIN_TIMEOUT_S = 10.0
"""How long `close()` waits for the loop's thread to end."""
EVENT_TIMEOUT_S = 30.0
"""Writing a system event runs off the loop; a store slower than this does not hold the feed up."""

EventSink = Callable[[SystemEvent], object]
"""Where a feed reports the time it was down (`sinks.operational.EventLog.record`)."""


class FeedError(RuntimeError):
    """This attempt at the feed failed (connection refused or lost, an unexpected answer): reconnect."""


class RateLimitedError(FeedError):
    """The provider answered 429: wait `wait_s` before asking again."""

    def __init__(self, message: str, wait_s: float) -> None:
        super().__init__(message)
        self.wait_s = wait_s


class StreamSilentError(FeedError):
    """No message for longer than the feed allows: the stream is dead."""


def retry_after_s(header: str | None, default_s: float) -> float:
    """Seconds a `Retry-After` header asks to wait (delta-seconds form), else `default_s`."""
    if header is not None:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    return default_s


@dataclass(frozen=True)
class FeedPosition:
    """A feed partition's resume state: which feed and partition, and the newest quote time emitted per id.

    Attributes:
        source: the feed (`pyth`, `birdeye`, `jupiter`).
        key: the partition (`birdeye-0`, ...).
        last: per Pyth feed id or mint, the newest quote time (Unix seconds) emitted.
    """

    source: str
    key: str
    last: dict[str, int] = field(default_factory=dict)

    def refusal(self, source: str, key: str) -> str | None:
        """Why this state cannot resume partition `key` of `source`, or None."""
        if (self.source, self.key) != (source, key):
            return f"the snapshot is of {self.source} partition {self.key}, not {source} partition {key}"
        return None


class FeedPartition(StatefulSourcePartition[Frame | DeadLetter, FeedPosition | None]):
    """One connection of a feed, on an asyncio loop in a thread of its own; subclasses write `_session`.

    `_ready` (frames and the quote times they carry) is written by the loop and drained by `next_batch`
    under `_lock`; `_emitted` (the snapshot) moves only when `next_batch` hands an item to the flow, so a
    snapshot never claims more than was emitted.

    Args:
        source: the feed's name (metrics label, frame source).
        key: the partition's key.
        resume: the state to resume from (None: fresh).
        stopping: set when the source is asked to stop.
        activity: where progress is noted, for readiness.
        backoff: waits between reconnection attempts.
        on_event: where each time down is reported as a `gap_detected` system event (None: nowhere).
    """

    def __init__(
        self,
        source: str,
        key: str,
        resume: FeedPosition | None,
        *,
        stopping: threading.Event,
        activity: SourceActivity,
        backoff: Backoff,
        on_event: EventSink | None = None,
    ) -> None:
        self._source = source
        self._on_event = on_event
        self._key = key
        self._stopping = stopping
        self._activity = activity
        self._backoff = backoff
        self._lock = threading.Lock()
        self._emitted: dict[str, int] = dict(resume.last) if resume else {}
        self._queued: dict[str, int] = dict(self._emitted)
        self._ready: deque[tuple[Frame | DeadLetter, dict[str, int]]] = deque()
        self._failure: BaseException | None = None
        self._down_since: float | None = None
        self._last_heard = time.monotonic()
        self.connections = 0
        """Connections made so far (tests read it)."""
        activity.opened()
        self._thread = threading.Thread(target=self._run, name=f"feed-{key}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the dataflow's side

    def next_batch(self) -> list[Frame | DeadLetter]:
        """What the loop has received so far (never waits); ends once stopped and drained."""
        if self._failure is not None:
            raise self._failure
        batch: list[Frame | DeadLetter] = []
        with self._lock:
            while self._ready and len(batch) < BATCH_MAX:
                item, times = self._ready.popleft()
                for feed_id, at in times.items():
                    if at > self._emitted.get(feed_id, -1):
                        self._emitted[feed_id] = at
                batch.append(item)
        if batch:
            self._activity.progressed()
        elif self._stopping.is_set() and not self._thread.is_alive():
            log.info("source=%s partition=%s stopped", self._source, self._key)
            raise StopIteration
        return batch

    def next_awake(self) -> datetime | None:
        """Now when items are ready, else a moment later."""
        return None if self._ready else datetime.now(UTC) + timedelta(seconds=IDLE_WAIT_S)

    def snapshot(self) -> FeedPosition:
        """The newest quote time emitted per feed id."""
        with self._lock:
            return FeedPosition(self._source, self._key, dict(self._emitted))

    def close(self) -> None:
        """Stop the loop (the flow is ending)."""
        self._stopping.set()
        self._thread.join(timeout=JOIN_TIMEOUT_S)

    # ------------------------------------------------------------------ the loop's side

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the dataflow's thread, which raises it
            log.error("source=%s partition=%s failed: %s", self._source, self._key, redact(repr(exc)))
            self._failure = exc

    async def _main(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            before = self.connections
            silent = False
            try:
                await self._session()
                reason, wait = "closed by the server", self._backoff.delay(0)
            except RateLimitedError as exc:
                metrics.FEED_RATE_LIMITED.labels(self._source).inc()
                reason, wait = f"rate limited: {exc}", exc.wait_s
            except (FeedError, OSError, TimeoutError) as exc:
                silent = isinstance(exc, StreamSilentError)
                if self.connections > before:  # it had connected: a fresh run of attempts
                    attempt = 0
                reason, wait = redact(str(exc) or type(exc).__name__), self._backoff.delay(attempt)
            if self._stopping.is_set():
                return
            self._lost(silent=silent)
            metrics.RECONNECTS.labels(self._source).inc()
            attempt += 1
            log.warning(
                "source=%s partition=%s reconnect attempt=%d in_s=%.2f reason=%s",
                self._source,
                self._key,
                attempt,
                wait,
                reason,
            )
            await self._sleep(wait)

    async def _session(self) -> None:
        """Connect, subscribe and read until the connection is lost (raise) or the source stops (return)."""
        raise NotImplementedError

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, POLL_S))

    def _connected(self) -> None:
        """The feed is receiving again: its down time ends here."""
        now = time.monotonic()
        self.connections += 1
        self._last_heard = now
        if self._down_since is not None:
            down = now - self._down_since
            metrics.FEED_DOWN_SECONDS.labels(self._source).inc(down)
            log.info("source=%s partition=%s connected down_s=%.2f", self._source, self._key, down)
            self._down_since = None
            self._report(
                SystemEvent(
                    EventType.GAP_DETECTED,
                    Severity.WARNING,
                    self._key,
                    f"{self._source} feed down for {down:.1f} s: its quotes of that time are lost",
                    {"feed": self._source, "partition": self._key, "down_s": round(down, 3)},
                )
            )
        else:
            log.info("source=%s partition=%s connected", self._source, self._key)

    def _report(self, event: SystemEvent) -> None:
        if self._on_event is None:
            return
        on_event = self._on_event

        async def write() -> None:
            with contextlib.suppress(Exception):  # an event log that cannot write logs it itself
                await asyncio.wait_for(asyncio.to_thread(on_event, event), EVENT_TIMEOUT_S)

        asyncio.get_running_loop().create_task(write())

    def _lost(self, *, silent: bool) -> None:
        """The stream ended: down since now, or since its last message when it went silent."""
        if self._down_since is None:
            self._down_since = self._last_heard if silent else time.monotonic()

    def _heard(self) -> None:
        self._last_heard = time.monotonic()

    def _check_silence(self, silent_after_s: float) -> None:
        """Raise `StreamSilentError` when nothing was heard for longer than `silent_after_s`."""
        silent = time.monotonic() - self._last_heard
        if silent > silent_after_s:
            raise StreamSilentError(f"silent for {silent:.1f} s")

    def _emit(self, frame: Frame, times: dict[str, int] | None = None) -> bool:
        """Queue `frame` for the flow, unless every quote time it carries is older than one already queued.

        Returns:
            Whether it was queued.
        """
        times = times or {}
        with self._lock:
            if times and all(at < self._queued.get(feed_id, -1) for feed_id, at in times.items()):
                metrics.FEED_DUPLICATES.labels(self._source).inc()
                return False
            for feed_id, at in times.items():
                if at > self._queued.get(feed_id, -1):
                    self._queued[feed_id] = at
            self._ready.append((frame, times))
        return True

    def _letter(self, letter: DeadLetter) -> None:
        with self._lock:
            self._ready.append((letter, {}))


class FeedSource(FixedPartitionedSource[Frame | DeadLetter, FeedPosition | None]):
    """What the feed sources share: a name (their input's step id is `feed_<name>`), `stop()`, and the check
    that a snapshot resumed is the feed's own. A feed says its partitions (`list_parts`, default one named
    after the feed) and builds each (`_partition`).

    Args:
        name: the feed (`pyth`, `birdeye`, `jupiter`).
        activity: where the partitions note their progress, for readiness.
        on_event: where each time the feed was down is reported as a system event.
    """

    def __init__(self, name: str, activity: SourceActivity | None, on_event: EventSink | None) -> None:
        self.name = name
        """The feed's name: its input's step id is `feed_<name>`."""
        self.on_event = on_event
        self.activity = activity if activity is not None else SourceActivity(name)
        self.refusal: ResumeRefusedError | None = None
        self._stopping = threading.Event()
        self.partitions: list[FeedPartition] = []

    def stop(self) -> None:
        """Stop reading: each partition emits what it has received and ends (safe from a signal handler)."""
        self._stopping.set()

    def list_parts(self) -> list[str]:
        """One partition, named after the feed."""
        return [self.name]

    def build_part(
        self, step_id: str, for_part: str, resume_state: FeedPosition | None
    ) -> StatefulSourcePartition[Frame | DeadLetter, FeedPosition | None]:
        """Open partition `for_part`, resuming from `resume_state` when it is that partition's."""
        if resume_state is not None:
            problem = (
                resume_state.refusal(self.name, for_part)
                if isinstance(resume_state, FeedPosition)
                else "the snapshot was taken by another source"
            )
            if problem is not None:
                self.refusal = ResumeRefusedError(f"cannot resume partition {for_part}: {problem}")
                return RefusedPartition[Frame | DeadLetter, FeedPosition](resume_state)
        partition = self._partition(for_part, resume_state)
        self.partitions.append(partition)
        return partition

    def _partition(self, for_part: str, resume: FeedPosition | None) -> FeedPartition:
        raise NotImplementedError
