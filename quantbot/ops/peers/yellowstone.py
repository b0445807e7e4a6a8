"""A Yellowstone gRPC (Geyser) server on loopback, serving a simulated chain, with scripted faults.

```
with YellowstonePeer(chain, faults=GrpcFaults(drop_every_s=1.0), token="t") as peer:
    source = YellowstoneSource(peer.url, "t", [[JUPITER]], commitment="processed")
```

What it serves, as a Yellowstone node does (rpcpool/yellowstone-grpc, `yellowstone-grpc-geyser`):
- `Subscribe`: the first request sets the subscription (later ones replace it, except pings, which are
  answered with a pong). Transaction filters (`account_include`, `account_exclude`, `account_required`
  over the transaction's keys, `vote`, `failed`) select transactions, each sent as a `SubscribeUpdate`
  naming the filters it matched; a slot filter gets each produced slot's status at the commitment.
- Commitment: a transaction appears at `processed` when the chain makes it (its `due_s`), at `confirmed`
  and `finalized` with its whole block, one and `ROOT_DISTANCE` slots after the block is complete; a
  slot's status follows its transactions.
- `from_slot`: the stream starts with the chain's updates from that slot on, when the slot is within the
  last `replay_slots` slots; older, it ends with `OUT_OF_RANGE` and Yellowstone's message ("broadcast from
  N is not available, last available: M"). Without it, the stream starts with what appears from now on.
- `x-token` metadata: when the peer has a token, a call without it ends with `UNAUTHENTICATED`.
- A ping update every `ping_every_s` on each stream.

Faults (`GrpcFaults`): every stream dropped (`UNAVAILABLE`) some seconds after it opened, one stream
silent for a while (no updates, no pings), and refused `from_slot` requests.

The chain's clock starts when the peer starts; `speed` runs it faster (2.0: twice as fast).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
import orjson

from connectors.yellowstone import geyser_pb2 as geyser
from connectors.yellowstone import geyser_pb2_grpc
from quantbot.ops.peers.chain import ROOT_DISTANCE, SLOT_MS, ChainTransaction, SimulatedChain
from quantbot.ops.peers.yellowstone_convert import transaction_update_of

log = logging.getLogger(__name__)

VOTE_PROGRAM = "Vote111111111111111111111111111111111111111"
"""A transaction invoking the vote program is a vote transaction (what `vote: false` filters out)."""
DEFAULT_PING_EVERY_S = 10.0
"""Yellowstone pings each stream every 10 s."""
DEFAULT_REPLAY_SLOTS = 150
"""Slots a `from_slot` may reach back (a minute of chain). Yellowstone's own window is configured per
node (`replay_stored_slots`); tests set theirs."""
TICK_S = 0.005
"""How often a stream looks for what became due: well under a slot (0.4 s), so updates go out in time."""
START_TIMEOUT_S = 10.0
"""How long starting the server may take before the peer gives up."""
STOP_GRACE_S = 0.5
"""Streams still open when the peer stops are cancelled after this long."""
COMMITMENT_DEPTH: dict[int, int] = {geyser.PROCESSED: 0, geyser.CONFIRMED: 1, geyser.FINALIZED: ROOT_DISTANCE}
"""Slots after a block's completion at which it reaches each commitment."""
SLOT_STATUS: dict[int, geyser.SlotStatus] = {
    geyser.PROCESSED: geyser.SLOT_PROCESSED,
    geyser.CONFIRMED: geyser.SLOT_CONFIRMED,
    geyser.FINALIZED: geyser.SLOT_FINALIZED,
}
"""The slot status a slot filter reports at each commitment."""


@dataclass(frozen=True, slots=True)
class GrpcFaults:
    """Faults the peer scripts.

    Attributes:
        drop_every_s: every stream ends with `UNAVAILABLE` this many (wall) seconds after it opened.
        silent_stream: the number (0: the first) of the stream that goes silent; None: none does.
        silent_after_s: seconds after opening at which that stream goes silent.
        silent_for_s: how long it stays silent (no updates, no pings) before it speaks again.
        refuse_from_slot: the first this many subscriptions with a `from_slot` end with `OUT_OF_RANGE`,
            whatever the replay window.
    """

    drop_every_s: float | None = None
    silent_stream: int | None = None
    silent_after_s: float = 0.0
    silent_for_s: float = 0.0
    refuse_from_slot: int = 0


@dataclass(frozen=True, slots=True)
class _Event:
    """One thing the chain makes at a commitment: a transaction, or a slot reaching it."""

    due_s: float
    slot: int
    tx: ChainTransaction | None = None


class YellowstonePeer:
    """A Yellowstone gRPC server on 127.0.0.1 serving `chain` (see the module docstring).

    Use it as a context manager; `url` is the address to give a client. Counters for the tests:
    `streams` (Subscribe calls), `pongs` (client pings answered), `subscriptions` (first requests,
    in order), `sent` (transaction updates sent, by signature), `refused` (`from_slot` refusals).

    Args:
        chain: what it serves.
        faults: what goes wrong, on purpose.
        token: the `x-token` a call must carry; None: no authentication.
        speed: the chain's clock runs this many times faster than the wall clock.
        ping_every_s: a ping update on each stream this often (wall seconds).
        replay_slots: how far back `from_slot` may reach, in slots.
    """

    def __init__(
        self,
        chain: SimulatedChain,
        *,
        faults: GrpcFaults | None = None,
        token: str | None = None,
        speed: float = 1.0,
        ping_every_s: float = DEFAULT_PING_EVERY_S,
        replay_slots: int = DEFAULT_REPLAY_SLOTS,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.chain = chain
        self.faults = faults if faults is not None else GrpcFaults()
        self.token = token
        self.speed = speed
        self.ping_every_s = ping_every_s
        self.replay_slots = replay_slots
        self.streams = 0
        self.pongs = 0
        self.refused = 0
        self.subscriptions: list[geyser.SubscribeRequest] = []
        self.sent: collections.Counter[str] = collections.Counter()
        self.port = 0
        self._timelines: dict[int, tuple[list[float], list[_Event]]] = {}
        self._updates: dict[str, geyser.SubscribeUpdateTransaction] = {}
        self._started = 0.0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    def chain_now(self) -> float:
        """Seconds of chain time since the peer started."""
        return (time.monotonic() - self._started) * self.speed

    def __enter__(self) -> YellowstonePeer:
        self._thread = threading.Thread(target=self._serve, name="yellowstone-peer", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._failure is not None:
            raise RuntimeError(f"the Yellowstone peer did not start: {self._failure}")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(server.stop(STOP_GRACE_S), loop).result(START_TIMEOUT_S)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # this thread's: gRPC's asyncio layer looks it up
        self._loop = loop
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _start(self) -> None:
        server = grpc.aio.server()
        geyser_pb2_grpc.add_GeyserServicer_to_server(_Servicer(self), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        self._started = time.monotonic()
        log.info("peer=yellowstone url=%s txs=%d speed=%g", self.url, len(self.chain), self.speed)

    # ------------------------------------------------------------------------------------ the chain

    def timeline(self, commitment: int) -> tuple[list[float], list[_Event]]:
        """What the chain makes at `commitment`, in order, with the chain seconds at which each is due."""
        if commitment not in self._timelines:
            depth_s = COMMITMENT_DEPTH[commitment] * SLOT_MS / 1000
            events: list[_Event] = []
            by_slot: dict[int, list[ChainTransaction]] = collections.defaultdict(list)
            for tx in self.chain.transactions:
                by_slot[tx.slot].append(tx)
            for block in self.chain.blocks():
                complete = block.due_s + depth_s
                for tx in by_slot.get(block.slot, ()):
                    events.append(_Event(tx.due_s if depth_s == 0 else complete, block.slot, tx))
                events.append(_Event(complete, block.slot))
            self._timelines[commitment] = ([event.due_s for event in events], events)
        return self._timelines[commitment]

    def transaction_update(self, tx: ChainTransaction) -> geyser.SubscribeUpdateTransaction:
        """`tx` as a Geyser transaction update (converted once, from its `json` encoding)."""
        update = self._updates.get(tx.signature)
        if update is None:
            update = transaction_update_of(orjson.loads(tx.result("json")), tx.index)
            self._updates[tx.signature] = update
        return update


def _matches(tx: ChainTransaction, rule: geyser.SubscribeRequestFilterTransactions) -> bool:
    """Whether `tx` passes one transactions filter, as Yellowstone applies it."""
    if rule.HasField("vote") and rule.vote != (VOTE_PROGRAM in tx.mentions):
        return False
    if rule.HasField("failed") and rule.failed != (tx.err is not None):
        return False
    if rule.account_include and tx.mentions.isdisjoint(rule.account_include):
        return False
    if rule.account_exclude and not tx.mentions.isdisjoint(rule.account_exclude):
        return False
    return not rule.account_required or tx.mentions.issuperset(rule.account_required)


class _Servicer:
    """The `Geyser` service's methods (the generated `add_GeyserServicer_to_server` calls them)."""

    def __init__(self, peer: YellowstonePeer) -> None:
        self._peer = peer

    async def Ping(  # noqa: N802 - the rpc's name
        self, request: geyser.PingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> geyser.PongResponse:
        await self._authenticate(context)
        return geyser.PongResponse(count=request.count)

    async def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        token = self._peer.token
        if token is not None and dict(context.invocation_metadata() or ()).get("x-token") != token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "No valid auth token")

    async def Subscribe(  # noqa: N802 - the rpc's name
        self, requests: AsyncIterator[geyser.SubscribeRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        peer, faults = self._peer, self._peer.faults
        number = peer.streams
        peer.streams += 1
        try:
            request = await anext(requests)
        except StopAsyncIteration:
            return
        # Authenticated after the first request is read: grpc's asyncio server, aborting a call whose request
        # is still arriving, now and then ends it with INTERNAL instead of the status given.
        await self._authenticate(context)
        peer.subscriptions.append(request)
        subscription = [request]  # replaced by a later non-ping request
        times, events = peer.timeline(request.commitment)
        now = peer.chain_now()
        if request.HasField("from_slot"):
            head = events[max(bisect.bisect_right(times, now) - 1, 0)].slot
            oldest = max(head - peer.replay_slots, 0)
            if peer.refused < faults.refuse_from_slot or request.from_slot < oldest:
                peer.refused += 1
                await context.abort(
                    grpc.StatusCode.OUT_OF_RANGE,
                    f"broadcast from {request.from_slot} is not available, last available: {oldest}",
                )
            cursor = bisect.bisect_left([event.slot for event in events], request.from_slot)
        else:
            cursor = bisect.bisect_right(times, now)
        pongs: asyncio.Queue[int] = asyncio.Queue()
        reader = asyncio.get_running_loop().create_task(self._read(requests, subscription, pongs))
        try:
            await self._stream(context, number, subscription, cursor, pongs)
        finally:
            reader.cancel()

    async def _read(
        self,
        requests: AsyncIterator[geyser.SubscribeRequest],
        subscription: list[geyser.SubscribeRequest],
        pongs: asyncio.Queue[int],
    ) -> None:
        async for request in requests:
            if request.HasField("ping"):
                self._peer.pongs += 1
                pongs.put_nowait(request.ping.id)
            else:
                subscription[0] = request

    async def _stream(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        number: int,
        subscription: list[geyser.SubscribeRequest],
        cursor: int,
        pongs: asyncio.Queue[int],
    ) -> None:
        peer, faults = self._peer, self._peer.faults
        times, events = peer.timeline(subscription[0].commitment)
        opened = last_ping = time.monotonic()
        while True:
            wall = time.monotonic()
            if faults.drop_every_s is not None and wall - opened >= faults.drop_every_s:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "peer: scripted drop")
            if number == faults.silent_stream and 0 <= wall - opened - faults.silent_after_s < faults.silent_for_s:
                await asyncio.sleep(TICK_S)
                continue
            request = subscription[0]
            visible = bisect.bisect_right(times, peer.chain_now())
            while cursor < visible:
                event = events[cursor]
                cursor += 1
                update = self._update(request, event)
                if update is not None:
                    await context.write(update)
                    if event.tx is not None:
                        peer.sent[event.tx.signature] += 1
            while not pongs.empty():
                pong = geyser.SubscribeUpdatePong(id=pongs.get_nowait())
                await context.write(geyser.SubscribeUpdate(pong=pong, created_at=_now()))
            if wall - last_ping >= peer.ping_every_s:
                await context.write(geyser.SubscribeUpdate(ping=geyser.SubscribeUpdatePing(), created_at=_now()))
                last_ping = wall
            await asyncio.sleep(TICK_S)

    def _update(self, request: geyser.SubscribeRequest, event: _Event) -> geyser.SubscribeUpdate | None:
        """The update `request` gets for `event`, or None (no filter of it matches)."""
        if event.tx is None:
            if not request.slots:
                return None
            slot = geyser.SubscribeUpdateSlot(slot=event.slot, status=SLOT_STATUS[request.commitment])
            return geyser.SubscribeUpdate(filters=sorted(request.slots), slot=slot, created_at=_now())
        names = sorted(name for name, rule in request.transactions.items() if _matches(event.tx, rule))
        if not names:
            return None
        transaction = self._peer.transaction_update(event.tx)
        return geyser.SubscribeUpdate(filters=names, transaction=transaction, created_at=_now())


def _now() -> datetime:
    return datetime.now(UTC)
