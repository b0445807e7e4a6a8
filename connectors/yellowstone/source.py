"""The Yellowstone gRPC live source: whole DEX transactions from a Geyser node's `Subscribe` stream.

```
QuantbotError
 ├── ResumeRefusedError     (quantbot.errors) a snapshot of another program group
 └── YellowstoneError       the server refused the subscription for good: bad token, bad request
```

Transient failures (the stream dropped, the server unavailable, a silent stream) are not errors: the
source reconnects with jittered exponential backoff and asks the server to replay from the last slot it
had fully seen (`from_slot`), so nothing is lost while the server's replay window reaches back that far.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, NoReturn
from urllib.parse import urlsplit

import grpc
import grpc.aio
import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from google.protobuf.json_format import MessageToDict

from connectors.refused import RefusedPartition
from connectors.yellowstone import geyser_pb2 as geyser
from connectors.yellowstone import geyser_pb2_grpc
from quantbot import metrics
from quantbot.errors import QuantbotError, ResumeRefusedError
from quantbot.events import EventType, Severity, SystemEvent
from quantbot.health import SourceActivity
from quantbot.models import Frame, FrameKind
from quantbot.redaction import redact, redact_url
from quantbot.solana.codec import signature_str

log = logging.getLogger(__name__)

SOURCE = "grpc"
"""The frames' `source`, the metrics' `source` label, the partition keys' prefix."""
Commitment = Literal["processed", "confirmed", "finalized"]
COMMITMENTS: dict[str, geyser.CommitmentLevel] = {
    "processed": geyser.PROCESSED,
    "confirmed": geyser.CONFIRMED,
    "finalized": geyser.FINALIZED,
}
FILTER_NAME = "quantbot"
"""The name of the subscription's one transaction filter (and slot filter): servers echo it in `filters`."""

DEFAULT_BATCH_SIZE = 512
"""Frames per batch at most: the replay's batch size (large enough to amortise the engine's per-batch cost)."""
DEFAULT_STALE_AFTER_S = 30.0
"""Yellowstone pings every stream every 10 s: a stream silent for three pings' time is dead."""
DEFAULT_SEEN_MAX = 10_000
"""Signatures remembered to drop a replay's overlap. The overlap is the transactions of the slot last fully
seen and after (a few slots of one program group: hundreds at mainnet's busiest); ten times that is ample."""
DEFAULT_RECONNECT_BASE_S = 0.5
"""First reconnection waits up to this long (jittered): a dropped stream is usually back at once."""
DEFAULT_RECONNECT_CAP_S = 30.0
"""Reconnections wait at most this long, so an outage ends within half a minute of the server's return."""
QUEUE_MAX = 10_000
"""Updates buffered between the stream's thread and the flow; when full the thread stops reading, and
gRPC's flow control holds the server back."""
QUEUE_FULL_WAIT_S = 0.005
"""How long the stream's thread waits before offering an update to a full buffer again."""
IDLE_POLL_S = 0.01
"""With nothing buffered, the flow asks again after this long: a delay far under the 1 s lag budget."""
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The largest update accepted. gRPC's default (4 MiB) is below a transaction's worst case with its logs,
inner instructions and balances; Yellowstone's own clients raise it too."""
PING_ID = 1
"""The id of the ping a client answers a server's ping with (Yellowstone's clients use 1)."""
STOP_JOIN_S = 5.0
"""How long closing a partition waits for its stream's thread to end."""
FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.NOT_FOUND,
    }
)
"""Statuses that another attempt cannot change: the source stops and says why."""

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # grpc-stubs lacks it
"""What `read()` returns once the server has ended the stream."""

START_FRESH = "to start fresh, delete the recovery directory or use another one"


class YellowstoneError(QuantbotError):
    """The server refused the subscription in a way that retrying cannot fix (bad token, bad request)."""


@dataclass(frozen=True, slots=True)
class GrpcPosition:
    """Where a program group's subscription resumes, and what it resumes.

    Attributes:
        programs: the group's program ids, sorted: a snapshot resumes this group only.
        slot: the last slot whose transactions were all emitted (None: none yet). A resumed subscription
            asks the server to replay from this slot (`from_slot`).
        seen: `(signature, slot)` of the transactions emitted from `slot` on, oldest first: the replayed
            overlap is dropped by signature, so each transaction is emitted once.
    """

    programs: tuple[str, ...]
    slot: int | None
    seen: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class GrpcGap:
    """Transactions a subscription may have missed: its server could not replay from `after_slot`.

    Attributes:
        partition: the program group's partition key.
        after_slot: the last slot fully seen before the gap.
        reason: the server's answer.
        before_slot: the first slot seen after it (None until the stream delivers again): the slots
            strictly between the two are what a backfill over RPC covers.
    """

    partition: str
    after_slot: int
    reason: str
    before_slot: int | None = None


class YellowstoneSource(FixedPartitionedSource[Frame, GrpcPosition | None]):
    """Whole transactions of the given program groups from a Yellowstone gRPC (Geyser) server.

    One `Subscribe` stream per program group: a transactions filter with `account_include` = the group's
    programs, no vote transactions, failed ones as configured, at the configured commitment, and a slots
    filter so that the slot a stream has reached advances even while the group is quiet. Each transaction
    is one frame: `Frame(received_ns, "grpc", "transaction", <the SubscribeUpdate in protobuf's JSON
    mapping, compact>, "grpc:<slot>:<signature>")`, which `quantbot.solana.normalise` reads.

    Delivery: at-least-once from the server, exactly-once out of the source while the overlap fits in
    `seen_max`. A slot is *fully seen* once an update of a later slot arrived (a server sends a slot's
    transactions before any of later slots at confirmed and finalized commitment; at processed, forks
    may interleave, which the replay from the slot before makes good). On reconnection the stream asks
    for `from_slot` = the last slot fully seen, so the server replays the gap and a little overlap; the
    overlap is dropped by signature (a bounded set of the signatures emitted from that slot on,
    snapshotted, oldest forgotten first). A server that cannot replay that far (`OUT_OF_RANGE`) is
    subscribed to again from now on, and the gap is reported (`gaps`, the `GAPS` metric, a log line).
    The snapshot resumes after the last emitted frame: the slot last fully seen by the flow and the
    signatures emitted since.

    Liveness: the server's pings are answered; a stream silent for `stale_after_s` is dead and replaced.
    A refusal that retrying cannot fix (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `INVALID_ARGUMENT`, ...)
    ends the partition and is kept in `failure` for the caller to raise once the engine has stopped (an
    exception raised inside the engine reaches the user as a Rust panic). So is a refused resume, in
    `refusal` (a snapshot of another program group).

    Parallelism: one partition per program group, each with its own stream on its own thread (the
    gRPC client runs there, and hands updates to the flow through a bounded buffer, so `next_batch`
    never blocks). Bytewax spreads the partitions over the workers.

    Args:
        url: the server, `https://host[:port]` (TLS, port 443 by default) or `http://host:port`; only the
            host and port are used (the token goes in `token`).
        token: sent as the `x-token` metadata when given (the usual Yellowstone authentication).
        groups: the program groups, one partition each; a group's key is `grpc:<its first program>`.
        commitment: `processed`, `confirmed` or `finalized`.
        include_failed: whether failed transactions are asked for too.
        reconnect_base_s: the first reconnection waits up to this long (full jitter), doubling per attempt.
        reconnect_cap_s: the most a reconnection waits.
        stale_after_s: a stream that says nothing (not even a ping) for this long is reconnected.
        seen_max: signatures remembered per partition to drop a replay's overlap.
        batch_size: frames per batch at most.
        activity: where the source notes its progress for readiness; a new one named `grpc` when not given.
        on_event: where a gap the server could not replay is reported as a `system_events` row.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        groups: Sequence[Sequence[str]],
        *,
        commitment: Commitment = "confirmed",
        include_failed: bool = False,
        reconnect_base_s: float = DEFAULT_RECONNECT_BASE_S,
        reconnect_cap_s: float = DEFAULT_RECONNECT_CAP_S,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        seen_max: int = DEFAULT_SEEN_MAX,
        batch_size: int = DEFAULT_BATCH_SIZE,
        activity: SourceActivity | None = None,
        on_event: Callable[[SystemEvent], object] | None = None,
    ) -> None:
        if not groups or any(not group for group in groups):
            raise ValueError("a Yellowstone source needs at least one group of at least one program")
        if commitment not in COMMITMENTS:
            raise ValueError(f"unknown commitment `{commitment}`: one of {', '.join(COMMITMENTS)}")
        if stale_after_s <= 0 or reconnect_base_s <= 0 or reconnect_cap_s < reconnect_base_s:
            raise ValueError("stale_after_s and reconnect_base_s must be positive, reconnect_cap_s at least the base")
        if seen_max < 1 or batch_size < 1:
            raise ValueError("seen_max and batch_size must be at least 1")
        self.url = url
        self.target, self.tls = _target(url)
        self.token = token
        self.groups = {f"{SOURCE}:{group[0]}": tuple(group) for group in groups}
        if len(self.groups) != len(groups):
            raise ValueError("two program groups start with the same program: their partition keys would clash")
        self.commitment = commitment
        self.include_failed = include_failed
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_cap_s = reconnect_cap_s
        self.stale_after_s = stale_after_s
        self.seen_max = seen_max
        self.batch_size = batch_size
        self.activity = activity if activity is not None else SourceActivity(SOURCE)
        self.on_event = on_event
        self.failure: YellowstoneError | None = None
        self.refusal: ResumeRefusedError | None = None
        self.gaps: list[GrpcGap] = []
        self._stopping = threading.Event()

    def __getstate__(self) -> dict[str, object]:
        """Picklable: the stop event is process-local and recreated."""
        return {name: value for name, value in self.__dict__.items() if name != "_stopping"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._stopping = threading.Event()

    def stop(self) -> None:
        """End every partition after what it has emitted (safe from a signal handler)."""
        self._stopping.set()

    def list_parts(self) -> list[str]:
        """One partition per program group: see the class docstring."""
        return list(self.groups)

    def build_part(
        self, step_id: str, for_part: str, resume_state: GrpcPosition | None
    ) -> StatefulSourcePartition[Frame, GrpcPosition | None]:
        """Open the group's stream where the last snapshot left it, or refuse to (another group's snapshot)."""
        programs = self.groups[for_part]
        try:
            start = resume_position(programs, resume_state)
        except ResumeRefusedError as exc:
            self.refusal = exc
            return RefusedPartition[Frame, GrpcPosition](resume_state)
        return _YellowstonePartition(self, for_part, programs, start, self._stopping)


def _target(url: str) -> tuple[str, bool]:
    """(`host:port`, whether TLS) of a server URL."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"a Yellowstone url is http(s)://host[:port], got `{url}`")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    return f"{parts.hostname}:{port}", tls


def _refuse(problem: str) -> NoReturn:
    raise ResumeRefusedError(f"cannot resume the Yellowstone subscription: {problem}; {START_FRESH}")


def resume_position(programs: Sequence[str], resume: GrpcPosition | None) -> GrpcPosition:
    """Where a group's subscription starts: the snapshot's position, or live from now without one.

    Raises:
        ResumeRefusedError: `resume` is of another program group.
    """
    group = tuple(sorted(programs))
    if resume is None:
        return GrpcPosition(group, None)
    if not isinstance(resume, GrpcPosition):
        _refuse(f"the snapshot is a {type(resume).__name__}, not a Yellowstone position")
    if resume.programs != group:
        _refuse(f"the snapshot is of programs {', '.join(resume.programs)}, not {', '.join(group)}")
    return resume


@dataclass(frozen=True, slots=True)
class _Received:
    """One update handed from the stream's thread to the flow: a transaction's frame, or a slot reached."""

    slot: int
    signature: str | None = None
    frame: Frame | None = None


_FAILED = _Received(-1)
"""Put in the buffer after a fatal refusal: the partition ends once it reaches it."""


class _YellowstonePartition(StatefulSourcePartition[Frame, GrpcPosition | None]):
    def __init__(
        self,
        source: YellowstoneSource,
        key: str,
        programs: tuple[str, ...],
        start: GrpcPosition,
        stopping: threading.Event,
    ) -> None:
        self._source = source
        self._stopping = stopping
        self._key = key
        self._programs = start.programs
        self._slot = start.slot
        self._seen: dict[str, int] = dict(start.seen)
        self._buffer: queue.Queue[_Received] = queue.Queue(QUEUE_MAX)
        self._awake: datetime | None = None
        self._ended = False
        if start.slot is not None:
            log.info("source=grpc resuming partition=%s from_slot=%d seen=%d", key, start.slot, len(start.seen))
        source.activity.opened()
        self._stream = _Stream(source, key, list(programs), start.slot, self._buffer)
        self._stream.start()

    def next_batch(self) -> list[Frame]:
        """The frames buffered so far, up to `batch_size`, the replayed overlap dropped; never blocks."""
        if self._ended or self._stopping.is_set():
            self.close()
            raise StopIteration
        batch: list[Frame] = []
        while len(batch) < self._source.batch_size:
            try:
                item = self._buffer.get_nowait()
            except queue.Empty:
                break
            if item is _FAILED:
                self._ended = True
                break
            if item.slot - 1 > (self._slot if self._slot is not None else -1):
                self._slot = item.slot - 1  # a later slot arrived: the one before is fully seen
                self._forget_before(self._slot)
            if item.frame is None or item.signature is None:
                continue
            if item.signature in self._seen:
                continue  # replayed overlap: emitted already
            self._seen[item.signature] = item.slot
            if len(self._seen) > self._source.seen_max:
                del self._seen[next(iter(self._seen))]
            batch.append(item.frame)
        if batch:
            self._source.activity.progressed()
            self._awake = None
        elif not self._ended:
            self._awake = datetime.now(UTC) + timedelta(seconds=IDLE_POLL_S)
        return batch

    def _forget_before(self, slot: int) -> None:
        """Forget signatures of slots before `slot`: a replay from `slot` cannot send them again."""
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] >= slot:
                break
            del seen[oldest]

    def next_awake(self) -> datetime | None:
        """With nothing buffered, a little later; else now."""
        return self._awake

    def snapshot(self) -> GrpcPosition:
        """The slot last fully seen by the flow and the signatures emitted from it on."""
        return GrpcPosition(self._programs, self._slot, tuple(self._seen.items()))

    def close(self) -> None:
        """Stop the stream's thread."""
        self._stream.stop()


async def _drain(requests: asyncio.Queue[geyser.SubscribeRequest | None]) -> AsyncIterator[geyser.SubscribeRequest]:
    """The requests of one call, as they are queued, until None is."""
    while (request := await requests.get()) is not None:
        yield request


class _Stream(threading.Thread):
    """One group's `Subscribe` stream, on its own thread and event loop, reconnecting until stopped."""

    def __init__(
        self,
        source: YellowstoneSource,
        key: str,
        programs: list[str],
        from_slot: int | None,
        out: queue.Queue[_Received],
    ) -> None:
        super().__init__(name=f"yellowstone-{key}", daemon=True)
        self._source = source
        self._key = key
        self._programs = programs
        self._fully_seen = from_slot
        self._out = out
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = threading.Event()
        self._open_gap: GrpcGap | None = None

    def run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # this thread's: gRPC's asyncio layer looks it up
        self._loop = loop
        try:
            self._task = loop.create_task(self._subscribe_forever())
            if not self._stopped.is_set():
                loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            # What the stream left (gRPC's own tasks, the request generator) ends before the loop does.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Cancel the stream and wait (boundedly) for the thread to end."""
        self._stopped.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(task.cancel)
        if self.is_alive() and threading.current_thread() is not self:
            self.join(STOP_JOIN_S)

    def _request(self, from_slot: int | None) -> geyser.SubscribeRequest:
        source = self._source
        request = geyser.SubscribeRequest(commitment=COMMITMENTS[source.commitment])
        tx_filter = request.transactions[FILTER_NAME]
        tx_filter.vote = False
        tx_filter.failed = source.include_failed
        tx_filter.account_include.extend(self._programs)
        request.slots[FILTER_NAME].filter_by_commitment = True
        if from_slot is not None:
            request.from_slot = from_slot
        return request

    async def _subscribe_forever(self) -> None:
        source = self._source
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        metadata = (("x-token", source.token),) if source.token else ()
        attempt = 0
        while not self._stopped.is_set():
            from_slot = self._fully_seen
            channel = (
                grpc.aio.secure_channel(source.target, grpc.ssl_channel_credentials(), options=options)
                if source.tls
                else grpc.aio.insecure_channel(source.target, options=options)
            )
            problem, code, details = "", None, ""
            # Requests go through a queue the call reads from (the subscription, then ping replies): a
            # request written to a call the server has just ended would fail with a status of its own
            # (INTERNAL), where reading gives the server's (UNAUTHENTICATED, OUT_OF_RANGE, ...).
            requests: asyncio.Queue[geyser.SubscribeRequest | None] = asyncio.Queue()
            requests.put_nowait(self._request(from_slot))
            async with channel:
                try:
                    call = geyser_pb2_grpc.GeyserStub(channel).Subscribe(_drain(requests), metadata=metadata)
                    while True:
                        update = await asyncio.wait_for(call.read(), source.stale_after_s)
                        if update is _EOF:
                            problem = "the server ended the stream"
                            break
                        attempt = 0  # the stream works: the next drop reconnects quickly again
                        await self._handle(requests, update)
                except TimeoutError:
                    problem = f"no update for {source.stale_after_s:g} s"
                except grpc.aio.AioRpcError as exc:
                    code, details = exc.code(), redact(exc.details() or "")
                    problem = f"{code.name}: {details}"
                finally:
                    requests.put_nowait(None)  # the call is over: its requests end
            if code is not None:
                if code in FATAL_CODES:
                    await self._fail(code, details)
                    return
                if code == grpc.StatusCode.OUT_OF_RANGE and from_slot is not None:
                    self._gap(from_slot, details)
            metrics.RECONNECTS.labels(SOURCE).inc()
            delay = random.uniform(0, min(source.reconnect_cap_s, source.reconnect_base_s * 2**attempt))  # noqa: S311 - jitter
            attempt += 1
            log.warning(
                "source=grpc reconnect partition=%s attempt=%d from_slot=%s delay_s=%.2f reason=%s",
                self._key,
                attempt,
                self._fully_seen,
                delay,
                problem,
            )
            await asyncio.sleep(delay)

    async def _handle(
        self, requests: asyncio.Queue[geyser.SubscribeRequest | None], update: geyser.SubscribeUpdate
    ) -> None:
        kind = update.WhichOneof("update_oneof")
        if kind == "ping":
            requests.put_nowait(geyser.SubscribeRequest(ping=geyser.SubscribeRequestPing(id=PING_ID)))
            return
        if kind == "transaction":
            slot = update.transaction.slot
            signature = signature_str(update.transaction.transaction.signature)
            payload = orjson.dumps(MessageToDict(update)).decode()
            frame = Frame(time.time_ns(), SOURCE, FrameKind.TRANSACTION, payload, f"{SOURCE}:{slot}:{signature}")
            await self._put(_Received(slot, signature, frame))
        elif kind == "slot":
            slot = update.slot.slot
            await self._put(_Received(slot))
        else:
            return  # pongs and what this subscription did not ask for
        if self._open_gap is not None:
            self._close_gap(self._open_gap, slot)
        if slot - 1 > (self._fully_seen if self._fully_seen is not None else -1):
            self._fully_seen = slot - 1

    async def _put(self, item: _Received) -> None:
        while True:
            try:
                self._out.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(QUEUE_FULL_WAIT_S)

    async def _fail(self, code: grpc.StatusCode, details: str) -> None:
        hint = " (check the x-token)" if code == grpc.StatusCode.UNAUTHENTICATED else ""
        failure = YellowstoneError(
            f"yellowstone server {redact_url(self._source.url)} refused the subscription of {self._key}: "
            f"{code.name.lower()}: {details}{hint}"
        )
        log.error("source=grpc refused partition=%s code=%s details=%s", self._key, code.name, details)
        self._source.failure = failure
        await self._put(_FAILED)

    def _gap(self, from_slot: int, details: str) -> None:
        """The server cannot replay from `from_slot`: subscribe from now on, and say what may be missing."""
        gap = GrpcGap(self._key, from_slot, redact(details))
        self._source.gaps.append(gap)
        self._open_gap = gap
        metrics.GAPS.labels(SOURCE).inc()
        log.warning("source=grpc gap partition=%s after_slot=%d reason=%s", self._key, from_slot, gap.reason)
        self._fully_seen = None

    def _close_gap(self, gap: GrpcGap, slot: int) -> None:
        """The stream delivers again, from `slot`: the gap ends there."""
        gaps = self._source.gaps
        gaps[gaps.index(gap)] = dataclasses.replace(gap, before_slot=slot)
        self._open_gap = None
        log.warning(
            "source=grpc gap partition=%s after_slot=%d before_slot=%d (to backfill)", self._key, gap.after_slot, slot
        )
        on_event = self._source.on_event
        if on_event is not None:
            programs = self._source.groups[self._key]
            backfill = " ".join(f"--program {p}" for p in programs)
            event = SystemEvent(
                EventType.GAP_DETECTED,
                Severity.WARNING,
                self._key,
                f"the server could not replay from slot {gap.after_slot}: slots {gap.after_slot + 1} to {slot - 1}"
                f" may be missing; `quantbot backfill {backfill} --from-slot {gap.after_slot + 1}"
                f" --to-slot {slot - 1}` repairs them",
                {"after_slot": gap.after_slot, "before_slot": slot, "reason": gap.reason, "programs": list(programs)},
            )
            # The event log writes to PostgreSQL: off the stream's loop, which must keep reading.
            threading.Thread(target=on_event, args=(event,), name="grpc-gap-event", daemon=True).start()
