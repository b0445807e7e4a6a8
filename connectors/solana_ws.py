"""The live Solana source over the standard PubSub websocket and JSON-RPC: `logsSubscribe` per DEX program,
then `getTransaction` for each notified signature.

What one partition does, in a thread of its own running an asyncio loop (Bytewax's `next_batch` never
waits on the network: it takes what the loop has ready):

1. connects to the websocket (`solana.ws_url`), subscribes `logsSubscribe {"mentions": [program]}` for
   each program of its group and `slotSubscribe` (slots arrive every 0.4 s: a silent stream is dead), and
   does so again on every connection, after a jittered backoff;
2. for each notified signature it has not seen (`quantbot.live.SeenSignatures`), of a transaction that
   succeeded (unless `include_failed`) and that no earlier partition owns (`quantbot.live.owning_group`),
   calls `getTransaction` (`connectors.rpc.RpcClient`: rate-limited, bounded in flight, 429/5xx/timeouts
   retried, `null` asked again for a while) and emits the response exactly as received as a `Frame`;
3. after a reconnection, and on a resume after a crash, each program's gap is listed with
   `getSignaturesForAddress(program, until=<last signature seen>)` and what the seen-set does not know is
   fetched the same way; the gap is a `system_events` row and a metric.

A transaction whose fetch failed for good is a `fetch` dead letter carrying its signature; a websocket
message that is not a notification is a `feed` dead letter. Nothing notified is dropped silently.

Token facts: `request_token(mint)` (the flow's analytics asking for a token it lacks facts of) sends
`getMultipleAccounts` of the mint and its Metaplex metadata account through the same client (rate limit,
retries), and emits the answer exactly as received as an `accounts` frame; a mint asked for again while its
request is in flight is asked once; a request that fails is a `fetch` dead letter naming the mint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import websockets
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from websockets.asyncio.client import ClientConnection

from connectors.refused import RefusedPartition
from connectors.rpc import Fetched, RpcCallError, RpcClient, RpcError, RpcPolicy
from connectors.token_facts import token_answer
from quantbot import metrics
from quantbot.backoff import Backoff
from quantbot.errors import ResumeRefusedError
from quantbot.events import EventType, Severity, SystemEvent
from quantbot.health import SourceActivity
from quantbot.live import ChainPoint, LivePosition, SeenSignatures, group_key, owning_group
from quantbot.models import DeadLetter, Frame, FrameKind
from quantbot.redaction import redact, redact_url

log = logging.getLogger(__name__)

SOURCE = "websocket"
FRAME_SOURCE = "rpc"
"""The frames' `source`: a transaction frame is a getTransaction response, whatever notified it."""
FETCH_STAGE = "fetch"
FEED_STAGE = "feed"
BATCH_MAX = 1024
"""Items handed to the flow per `next_batch` at most: a burst (a gap's backfill) goes in several batches."""
IDLE_WAIT_S = 0.02
"""With nothing ready, the engine asks again after this long: a small share of the 1 s lag budget."""
POLL_S = 0.25
"""The loop looks this often whether it was asked to stop, and how long the stream has been silent."""
OPEN_TIMEOUT_S = 10.0
"""A websocket handshake slower than this is a failed connection attempt."""
CLOSE_TIMEOUT_S = 1.0
"""Closing handshake waited for at most this long: the connection is being given up anyway."""
SIGNATURES_PAGE = 1000
"""getSignaturesForAddress's largest page."""
NULL_SIGNATURE = "1" * 64
"""The all-zero signature, which logs notifications carry for transactions that never had one."""
EVENT_EXECUTOR_TIMEOUT_S = 30.0
"""Writing a system event runs off the loop; a store slower than this does not hold the source up."""
SIGNATURE_COMMITMENTS = {"processed": "confirmed"}
"""getTransaction and getSignaturesForAddress do not serve `processed`: they read the closest level."""
TOKEN_FETCHERS = 2
"""Token requests answered at once: new tokens come a few a second at most, so two keep their answers prompt
without taking the requests in flight that transactions need."""


class SubscriptionRefusedError(RuntimeError):
    """The node refused a subscription (an unknown program id, a method it does not serve): not retried."""


@dataclass(frozen=True)
class LiveConfig:
    """What a live partition needs, from `[solana]` (`flows.live.live_config` builds it).

    Attributes:
        ws_url: the PubSub websocket URL (may carry an API key: never logged unmasked).
        rpc_url: the HTTP JSON-RPC URL.
        groups: the partitions' program groups, in configured order (see `quantbot.live.program_groups`).
        commitment: of the subscriptions and fetches.
        encoding: getTransaction's `encoding`.
        include_failed: fetch failed transactions too.
        policy: the RPC client's limits and retries, for the whole source (shared out over its partitions).
        stale_after_s: a stream silent this long is reconnected.
        ping_interval_s: websocket ping period.
        max_message_bytes: largest websocket message accepted.
        seen_max: signatures remembered per partition.
        backoff: waits between reconnection attempts.
    """

    ws_url: str
    rpc_url: str
    groups: tuple[tuple[str, ...], ...]
    commitment: str
    encoding: str
    include_failed: bool
    policy: RpcPolicy
    stale_after_s: float
    ping_interval_s: float
    max_message_bytes: int
    seen_max: int
    backoff: Backoff


EventSink = Callable[[SystemEvent], object]
"""Where a partition reports gaps (`sinks.operational.EventLog.record`); what it returns is not used."""


class SolanaLogsSource(FixedPartitionedSource[Frame | DeadLetter, LivePosition | None]):
    """Transactions of the configured programs, live, as `getTransaction` responses.

    Delivery: at-least-once. A partition's snapshot holds, per program, the newest notification seen, the
    signatures taken on but not yet emitted, and its seen-set: a resume fetches the pending signatures again
    and lists each program's gap since its newest notification (`getSignaturesForAddress ... until`), so
    nothing notified before a crash is lost; what was emitted after the last snapshot is emitted again,
    which the stores' natural keys absorb.

    Order: transactions are emitted as their fetches complete, close to chain order but not exactly (a
    `null` answered is asked again later); a recording of the run keeps that order, so its replay values
    trades exactly as the live run did.

    Parallelism: one partition per program group (`[solana] program_groups`; by default one for all).
    A transaction that invokes programs of two groups is fetched by the first group's partition only
    (read from its logs); one listed by two partitions' gap backfills (which carry no logs) is fetched by
    both, and stored once. Each partition gets an equal share of the request rate and of the requests in
    flight.

    Args:
        config: connections and limits.
        on_event: where gaps are reported as `system_events` rows (called off the dataflow's thread).
        activity: where the partitions note their progress (stream messages), for readiness.
    """

    def __init__(
        self, config: LiveConfig, on_event: EventSink | None = None, activity: SourceActivity | None = None
    ) -> None:
        if not config.groups:
            raise ValueError("a live source needs at least one program to follow")
        self.config = config
        self.on_event = on_event
        self.activity = activity if activity is not None else SourceActivity(SOURCE)
        self.refusal: ResumeRefusedError | None = None
        self.failure: BaseException | None = None
        """What stopped the source, for the caller to raise once the engine has stopped (raised inside the
        engine, it would reach the user as a Rust panic): a configuration the node refuses, a node down for
        longer than the retry budget, a subscription refused. The snapshot keeps what was pending."""
        self._stopping = threading.Event()
        self._partitions: list[_LivePartition] = []

    def fetch(self, signature: str) -> bool:
        """Fetch `signature` too (a large trade a price feed reported and the subscriptions missed), through
        the first partition of this process; once, like any signature. Safe from any thread.

        Returns:
            Whether a partition of this process took it (False before any has started).
        """
        return any(partition.take_threadsafe(signature) for partition in self._partitions[:1])

    def request_token(self, mint: str) -> bool:
        """Ask the chain for `mint`'s accounts (`quantbot.tokens.accounts_request`) through the first partition
        of this process: the answer becomes an `accounts` frame, a failure a `fetch` dead letter naming the mint.
        A mint asked for while its request is in flight is asked once. Safe from any thread.

        Returns:
            Whether a partition of this process took it (False before any has started).
        """
        return any(partition.request_token_threadsafe(mint) for partition in self._partitions[:1])

    def stop(self) -> None:
        """Stop reading: each partition emits what it has fetched and ends (safe from a signal handler)."""
        self._stopping.set()

    def fail(self, exc: BaseException) -> None:
        """Stop every partition because of `exc` (the first failure is kept)."""
        if self.failure is None:
            self.failure = exc
        self._stopping.set()

    @property
    def stopped(self) -> bool:
        """Whether `stop()` was called."""
        return self._stopping.is_set()

    def list_parts(self) -> list[str]:
        """One partition per program group."""
        return [group_key(SOURCE, group) for group in self.config.groups]

    def build_part(
        self, step_id: str, for_part: str, resume_state: LivePosition | None
    ) -> StatefulSourcePartition[Frame | DeadLetter, LivePosition | None]:
        """Open the partition `for_part`, resuming from `resume_state` when it is of the same programs."""
        number = self.list_parts().index(for_part)
        group = self.config.groups[number]
        if resume_state is not None:
            problem = (
                resume_state.refusal(SOURCE, group)
                if isinstance(resume_state, LivePosition)
                else "the snapshot was taken by another source"
            )
            if problem is not None:
                self.refusal = ResumeRefusedError(
                    f"cannot resume partition {for_part}: {problem}; to start fresh, delete the recovery directory"
                )
                return RefusedPartition[Frame | DeadLetter, LivePosition](resume_state)
        share = len(self.config.groups)
        policy = replace(
            self.config.policy,
            requests_per_s=self.config.policy.requests_per_s / share,
            max_in_flight=max(1, self.config.policy.max_in_flight // share),
        )
        partition = _LivePartition(
            replace(self.config, policy=policy),
            number,
            resume_state,
            stopping=self._stopping,
            on_event=self.on_event,
            activity=self.activity,
            fail=self.fail,
        )
        self._partitions.append(partition)
        return partition


class _LivePartition(StatefulSourcePartition[Frame | DeadLetter, LivePosition | None]):
    """One program group's stream, fetches and gap backfills, on a loop in a thread of its own.

    The state (`_last`, `_pending`, `_seen`) is written by the loop and read by `snapshot()` on the
    dataflow's thread, under `_lock`; a signature leaves `_pending` only when `next_batch` hands its item
    to the flow, so a snapshot never claims more than was emitted.
    """

    def __init__(
        self,
        config: LiveConfig,
        number: int,
        resume: LivePosition | None,
        *,
        stopping: threading.Event,
        on_event: EventSink | None,
        activity: SourceActivity,
        fail: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._config = config
        self._fail = fail
        self._number = number
        self._group = config.groups[number]
        self._key = group_key(SOURCE, self._group)
        self._stopping = stopping
        self._on_event = on_event
        self._activity = activity
        self._lock = threading.Lock()
        self._seen = SeenSignatures(config.seen_max, resume.seen if resume else ())
        self._last: dict[str, ChainPoint] = dict(resume.last) if resume else {}
        self._pending: dict[str, None] = dict.fromkeys(resume.pending) if resume else {}
        self._tokens: dict[str, None] = dict.fromkeys(resume.pending_tokens) if resume else {}
        """Mints whose accounts were asked for and not handed to the flow yet (the snapshot's `tokens`)."""
        self._ready: deque[tuple[str, Frame | DeadLetter]] = deque()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The partition's loop, once it takes signatures (`take_threadsafe`)."""
        self._subscriptions: dict[int, str | None] = {}
        self._gap_before: dict[str, ChainPoint] = {}
        """Per program, the newest transaction seen before the last reconnection (the gap's start)."""
        self._gap_reason: str | None = None
        self._open_gaps: dict[str, ChainPoint] = {}
        """Per program, the start of a gap not backfilled yet: the snapshot's position until it is, so that a
        crash mid-backfill resumes from the gap's start rather than past it."""
        self._tasks: set[asyncio.Task[None]] = set()
        """Gap backfills and event writes under way: referenced until done (the loop keeps weak references)."""
        self._first_after: dict[str, ChainPoint] = {}
        """Per program, the first transaction notified since the last reconnection (the gap's end)."""
        if resume is not None:
            log.info(
                "source=%s partition=%s resuming programs=%d pending=%d seen=%d",
                SOURCE,
                self._key,
                len(self._last),
                len(self._pending),
                len(self._seen),
            )
        activity.opened()
        self._thread = threading.Thread(target=self._run, name=f"live-{self._key}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the dataflow's side

    def next_batch(self) -> list[Frame | DeadLetter]:
        """What the loop has fetched so far (never waits); ends once stopped (or failed) and drained."""
        if self._failure is not None and self._fail is None:
            raise self._failure
        batch: list[Frame | DeadLetter] = []
        with self._lock:
            while self._ready and len(batch) < BATCH_MAX:
                key, item = self._ready.popleft()
                self._pending.pop(key, None)
                self._tokens.pop(key, None)
                batch.append(item)
        ended = self._stopping.is_set() or self._failure is not None
        if not batch and ended and not self._thread.is_alive():
            log.info("source=%s partition=%s stopped pending=%d", SOURCE, self._key, len(self._pending))
            raise StopIteration
        return batch

    def next_awake(self) -> datetime | None:
        """Now when items are ready, else a moment later."""
        return None if self._ready else datetime.now(UTC) + timedelta(seconds=IDLE_WAIT_S)

    def snapshot(self) -> LivePosition:
        """Per program the newest notification (or the start of a gap still being backfilled), what is taken
        on but not emitted, and the seen-set."""
        with self._lock:
            return LivePosition(
                SOURCE,
                self._group,
                dict(self._last),
                tuple(self._pending),
                self._seen.snapshot(),
                tokens=tuple(self._tokens),
            )

    def close(self) -> None:
        """Stop the loop (the flow is ending)."""
        self._stopping.set()
        self._thread.join(timeout=OPEN_TIMEOUT_S)

    # ------------------------------------------------------------------ the loop's side

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failed(exc)
        if self._failure is not None and self._fail is not None:
            self._fail(self._failure)

    def _failed(self, exc: BaseException) -> None:
        """Note the partition's failure: the loop winds down, the source learns it (or `next_batch` raises it)."""
        if self._failure is None:
            log.error("source=%s partition=%s failed: %s", SOURCE, self._key, redact(str(exc) or repr(exc)))
            self._failure = exc

    def take_threadsafe(self, signature: str) -> bool:
        """`_take` from another thread (the flow's): handed to the loop; False when the loop is not running."""
        return self._in_loop(self._take, signature)

    def request_token_threadsafe(self, mint: str) -> bool:
        """`_ask_token` from another thread (the flow's); False when the loop is not running."""
        return self._in_loop(self._ask_token, mint)

    def _in_loop(self, call: Callable[[str], object], value: str) -> bool:
        """Hand `call(value)` to the partition's loop from another thread; False when the loop is not running."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        loop.call_soon_threadsafe(call, value)
        return True

    async def _main(self) -> None:
        config = self._config
        async with RpcClient(config.rpc_url, config.policy) as rpc:
            self._rpc = rpc
            self._queue: asyncio.Queue[str] = asyncio.Queue()
            self._token_queue: asyncio.Queue[str] = asyncio.Queue()
            self._loop = asyncio.get_running_loop()
            for signature in list(self._pending):
                self._queue.put_nowait(signature)
            for mint in list(self._tokens):
                self._token_queue.put_nowait(mint)
            for _ in range(config.policy.max_in_flight):
                self._background(self._fetcher())
            for _ in range(TOKEN_FETCHERS):
                self._background(self._token_fetcher())
            try:
                await self._stream()
            finally:
                tasks = list(self._tasks)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _take(self, signature: str) -> None:
        """Fetch `signature` unless it was taken on already."""
        with self._lock:
            if not self._seen.add(signature):
                return
            self._pending[signature] = None
        self._queue.put_nowait(signature)

    def _ask_token(self, mint: str) -> None:
        """Ask for `mint`'s accounts unless a request for them is in flight."""
        with self._lock:
            if mint in self._tokens:
                return
            self._tokens[mint] = None
        self._token_queue.put_nowait(mint)

    async def _token_fetcher(self) -> None:
        """Answer token requests: each answer an `accounts` frame, each failure a dead letter; never a crash."""
        while True:
            mint = await self._token_queue.get()
            self._emit(mint, await token_answer(self._rpc, mint, SOURCE))

    def _emit(self, signature: str, item: Frame | DeadLetter) -> None:
        with self._lock:
            self._ready.append((signature, item))

    async def _fetcher(self) -> None:
        config = self._config
        commitment = SIGNATURE_COMMITMENTS.get(config.commitment, config.commitment)
        while True:
            signature = await self._queue.get()
            try:
                fetched: Fetched = await self._rpc.get_transaction(
                    signature, encoding=config.encoding, commitment=commitment
                )
            except RpcCallError as exc:  # this request is refused (not the node, not the configuration)
                self._emit(signature, self._fetch_letter(signature, f"getTransaction refused: {exc}"))
                continue
            if fetched.response is None or fetched.problem is not None:
                self._emit(signature, self._fetch_letter(signature, fetched.problem or "no response"))
                continue
            frame = Frame(
                fetched.received_ns,
                FRAME_SOURCE,
                FrameKind.TRANSACTION.value,
                fetched.response.decode(),
                f"{FRAME_SOURCE}:{signature}",
            )
            self._emit(signature, frame)

    def _fetch_letter(self, signature: str, reason: str) -> DeadLetter:
        return self._letter(f"{FRAME_SOURCE}:{signature}", signature, reason)

    def _letter(self, position: str, key: str, reason: str) -> DeadLetter:
        """A `fetch` dead letter for what `key` (a signature, a mint) named and could not be had."""
        log.warning("source=%s key=%s dead_letter: %s", SOURCE, key, redact(reason))
        return DeadLetter(
            position=position,
            source=FRAME_SOURCE,
            stage=FETCH_STAGE,
            reason=redact(reason),
            raw=key,
            received_ns=time.time_ns(),
        )

    async def _stream(self) -> None:
        """Connect, subscribe, read; again after each drop, until asked to stop."""
        config = self._config
        reason = "restart" if self._last else None
        attempt = 0
        while not self._stopping.is_set() and self._failure is None:
            try:
                async with websockets.connect(
                    config.ws_url,
                    max_size=config.max_message_bytes,
                    ping_interval=config.ping_interval_s,
                    ping_timeout=config.stale_after_s,
                    open_timeout=OPEN_TIMEOUT_S,
                    close_timeout=CLOSE_TIMEOUT_S,
                ) as ws:
                    if reason is not None:
                        # Taken before subscribing: notifications that arrive with the subscriptions' answers
                        # move the newest-seen positions, and the gap starts where the last connection left off.
                        self._open_gap(reason)
                    await self._subscribe(ws)
                    if reason is not None:
                        self._backfill_gap()
                    self._anchor_quiet_programs()
                    attempt = 0
                    reason = await self._read(ws)
            except SubscriptionRefusedError:
                raise
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                reason = "disconnect"
                log.warning(
                    "source=%s partition=%s url=%s connection lost: %s",
                    SOURCE,
                    self._key,
                    redact_url(config.ws_url),
                    redact(str(exc) or type(exc).__name__),
                )
            if self._stopping.is_set():
                return
            if reason is None:
                continue
            metrics.RECONNECTS.labels(SOURCE).inc()
            wait = config.backoff.delay(attempt)
            attempt += 1
            log.info("source=%s partition=%s reconnect attempt=%d in_s=%.2f", SOURCE, self._key, attempt, wait)
            await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, POLL_S))

    async def _subscribe(self, ws: ClientConnection) -> None:
        """Subscribe each program's logs and the slots; map subscription ids to programs."""
        commitment = {"commitment": self._config.commitment}
        requests: dict[int, str | None] = {}
        for number, program in enumerate(self._group, start=1):
            requests[number] = program
            request = {
                "jsonrpc": "2.0",
                "id": number,
                "method": "logsSubscribe",
                "params": [{"mentions": [program]}, commitment],
            }
            await ws.send(orjson.dumps(request).decode())
        slot_request = len(self._group) + 1
        requests[slot_request] = None
        await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": slot_request, "method": "slotSubscribe"}).decode())
        self._subscriptions = {}
        self._first_after = {}
        # A node that leaves its subscriptions unanswered as long as a stream may be silent is as good as dead.
        deadline = time.monotonic() + self._config.stale_after_s
        while len(self._subscriptions) < len(requests):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(requests) - len(self._subscriptions)} subscriptions unanswered")
            raw = await asyncio.wait_for(ws.recv(), timeout=left)
            message = self._message(raw)
            if message is None:
                continue
            answered = message.get("id")
            if isinstance(answered, int) and answered in requests:
                if "error" in message:
                    program = requests[answered] or "slots"
                    raise SubscriptionRefusedError(
                        f"the node refused the subscription of {program}: {redact(str(message['error']))}"
                    )
                result = message.get("result")
                if not isinstance(result, int):
                    raise websockets.exceptions.ProtocolError(f"subscription answered {result!r}")
                self._subscriptions[result] = requests[answered]
            else:
                self._notification(message, raw)
        log.info(
            "source=%s partition=%s url=%s subscribed programs=%d commitment=%s",
            SOURCE,
            self._key,
            redact_url(self._config.ws_url),
            len(self._group),
            self._config.commitment,
        )

    async def _read(self, ws: ClientConnection) -> str | None:
        """Read notifications until the stream drops or goes silent; returns why it ended (None: stopped)."""
        last = time.monotonic()
        while not self._stopping.is_set() and self._failure is None:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=POLL_S)
            except TimeoutError:
                silent = time.monotonic() - last
                if silent > self._config.stale_after_s:
                    log.warning("source=%s partition=%s stale silent_s=%.1f", SOURCE, self._key, silent)
                    return "stale"
                continue
            last = time.monotonic()
            self._activity.progressed()
            message = self._message(raw)
            if message is not None:
                self._notification(message, raw)
        return None

    def _message(self, raw: str | bytes) -> dict[str, Any] | None:
        """The JSON object `raw` holds, or None after emitting it as a `feed` dead letter."""
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._feed_letter(raw, f"websocket message is not JSON: {exc}")
            return None
        if not isinstance(message, dict):
            self._feed_letter(raw, f"websocket message is a JSON {type(message).__name__}, not an object")
            return None
        return message

    def _feed_letter(self, raw: str | bytes, reason: str) -> None:
        text = raw if isinstance(raw, str) else raw.decode(errors="replace")
        received_ns = time.time_ns()
        letter = DeadLetter(
            position=f"{SOURCE}:{self._key}@{received_ns}",
            source=SOURCE,
            stage=FEED_STAGE,
            reason=reason,
            raw=text,
            received_ns=received_ns,
        )
        self._emit(f"#{received_ns}", letter)

    def _notification(self, message: dict[str, Any], raw: str | bytes) -> None:
        method = message.get("method")
        if method == "slotNotification":
            return
        if method != "logsNotification":
            self._feed_letter(raw, f"websocket message is not a notification this source asked for: {method!r}")
            return
        try:
            params = message["params"]
            program = self._subscriptions[params["subscription"]]
            result = params["result"]
            slot = result["context"]["slot"]
            value = result["value"]
            signature, err, logs = value["signature"], value["err"], value["logs"]
        except (KeyError, TypeError) as exc:
            self._feed_letter(raw, f"logsNotification without {exc}")
            return
        if program is None or not isinstance(slot, int) or not isinstance(signature, str):
            self._feed_letter(raw, "logsNotification of no logs subscription, or without slot and signature")
            return
        if signature == NULL_SIGNATURE:
            return
        point = ChainPoint(slot, signature)
        with self._lock:
            known = self._last.get(program)
            if known is None or slot >= known.slot:
                self._last[program] = point
        if program not in self._first_after:
            self._first_after[program] = point
            self._gap_closed(program, point)
        if err is not None and not self._config.include_failed:
            return
        owner = owning_group(logs if isinstance(logs, list) else (), self._config.groups)
        if owner is not None and owner != self._number:
            return
        self._take(signature)

    # ------------------------------------------------------------------ gaps

    def _open_gap(self, reason: str) -> None:
        """A new connection after a loss (or a restart): the gap starts at each program's newest transaction."""
        metrics.GAPS.labels(SOURCE).inc()
        with self._lock:
            self._gap_before = dict(self._last)
            for program, point in self._gap_before.items():
                self._open_gaps.setdefault(program, point)
        self._gap_reason = reason

    def _backfill_gap(self) -> None:
        """Once subscribed again: list and fetch each program's transactions since the gap's start (the
        listing reaches into what the new subscriptions notify; the seen-set takes each signature once)."""
        reason = self._gap_reason or "disconnect"
        for program, point in self._gap_before.items():
            self._background(self._backfill(program, point, reason))

    def _gap_closed(self, program: str, after: ChainPoint) -> None:
        before = self._gap_before.get(program)
        reason = self._gap_reason
        if reason is None or before is None:
            return
        self._report(
            SystemEvent(
                EventType.GAP_DETECTED,
                Severity.WARNING,
                self._key,
                f"{program}: gap after {reason} from slot {before.slot} to slot {after.slot}",
                {
                    "program": program,
                    "reason": reason,
                    "before": {"slot": before.slot, "signature": before.signature},
                    "after": {"slot": after.slot, "signature": after.signature},
                },
            )
        )

    def _anchor_quiet_programs(self) -> None:
        """Give each program not notified yet a starting point (its newest signature), so that a gap before
        its first notification is still backfilled: a quiet program's trades are not lost to a reconnection."""
        with self._lock:
            quiet = [program for program in self._group if program not in self._last]
        for program in quiet:
            self._background(self._anchor(program))

    async def _anchor(self, program: str) -> None:
        commitment = SIGNATURE_COMMITMENTS.get(self._config.commitment, self._config.commitment)
        try:
            newest = await self._rpc.get_signatures_for_address(program, limit=1, commitment=commitment)
        except RpcError as exc:
            if not exc.retryable:
                raise
            log.warning("source=%s program=%s no starting point: %s", SOURCE, program, redact(str(exc)))
            return
        if newest:
            with self._lock:
                self._last.setdefault(program, ChainPoint(newest[0].slot, newest[0].signature))

    async def _backfill(self, program: str, since: ChainPoint, reason: str) -> None:
        config = self._config
        commitment = SIGNATURE_COMMITMENTS.get(config.commitment, config.commitment)
        listed: list[str] = []
        failed = 0
        before: str | None = None
        # A node down past the retry budget raises out of here and fails the partition: the gap stays open in
        # the snapshot, and the restart lists it again.
        while True:
            if self._stopping.is_set():
                return  # the gap stays open: a resume lists it again
            page = await self._rpc.get_signatures_for_address(
                program, before=before, until=since.signature, limit=SIGNATURES_PAGE, commitment=commitment
            )
            for info in page:
                if info.err and not config.include_failed:
                    failed += 1
                    continue
                listed.append(info.signature)
            if len(page) < SIGNATURES_PAGE:
                break
            before = page[-1].signature
        new = 0
        for signature in reversed(listed):  # oldest first: the order the chain made them
            if signature not in self._seen:
                new += 1
                metrics.BACKFILLED_SIGNATURES.labels(SOURCE).inc()
            self._take(signature)
        with self._lock:  # every signature of the gap is seen or pending now: the snapshot may move past it
            if self._open_gaps.get(program) == since:
                del self._open_gaps[program]
        log.info(
            "source=%s program=%s gap backfilled since_slot=%d listed=%d new=%d failed_skipped=%d",
            SOURCE,
            program,
            since.slot,
            len(listed),
            new,
            failed,
        )
        self._report(
            SystemEvent(
                EventType.GAP_BACKFILLED,
                Severity.INFO,
                self._key,
                f"{program}: {new} transactions fetched to fill the gap after {reason} since slot {since.slot}",
                {"program": program, "reason": reason, "since_slot": since.slot, "listed": len(listed), "new": new},
            )
        )

    def _report(self, event: SystemEvent) -> None:
        if self._on_event is None:
            return
        on_event = self._on_event

        async def write() -> None:
            with contextlib.suppress(Exception):  # an event log that cannot write logs it itself
                await asyncio.wait_for(asyncio.to_thread(on_event, event), EVENT_EXECUTOR_TIMEOUT_S)

        self._background(write())

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` beside the stream; an error it raises fails the partition, as the stream's would."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._failed(exc)
