"""Backfill: the transactions of addresses (DEX programs) over a slot or time range, fetched over JSON-RPC.

`BackfillSource` pages `getSignaturesForAddress` backwards from a fixed upper bound, keeps the
signatures in range, fetches their transactions in JSON-RPC batches (`connectors.rpc`), and emits each as
the frame a live source would have received: `Frame(source="backfill", kind="transaction",
payload=<the response text as received>, position="backfill:<signature>")`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.refused import RefusedPartition
from connectors.rpc import (
    SIGNATURES_PAGE_MAX,
    Fetched,
    RpcClient,
    RpcError,
    RpcPolicy,
    SignatureInfo,
    SlotUnavailable,
)
from quantbot.errors import ResumeRefusedError
from quantbot.events import EventType, Severity, SystemEvent
from quantbot.health import SourceActivity
from quantbot.live import SeenSignatures
from quantbot.models import DeadLetter, Frame, FrameKind

log = logging.getLogger(__name__)

SOURCE = "backfill"
"""The frames' `source`, the dead letters' `source`, and the system events' `source`."""
FETCH_STAGE = "fetch"
"""The dead-letter stage of a signature whose transaction could not be fetched."""
START_FRESH = "to start fresh, delete the recovery directory or use another one"
QUEUE_MAX = 2048
"""Items fetched ahead of the engine at most: two pages of signatures, a few MiB of transactions."""
EMPTY_POLL_S = 0.05
"""How soon the engine asks again when nothing was fetched yet: a backfill waits on the network."""
QUEUE_PUT_S = 0.05
"""How often a producer waiting for room in a full queue looks whether it was asked to stop."""
JOIN_S = 5.0
"""How long closing a partition waits for its fetching thread (it stops within a request's timeout)."""
EMIT_MAX = 512
"""Items handed to the engine per call at most (the replay's batch: amortises the per-batch cost)."""


@dataclass(frozen=True)
class BackfillRange:
    """What to backfill, besides the addresses: bounds of one kind at most, and whether failures too.

    Bounds are inclusive. A lower bound is required (a whole program's history is rarely what was meant):
    `from_slot`, `since_s`, or `until_signature` (the RPC's `until`: transactions newer than that one,
    exclusive, which is how a live source's gap is filled). Without an upper bound the backfill ends at the
    newest transaction when it starts.

    Attributes:
        from_slot: the oldest slot, inclusive.
        to_slot: the newest slot, inclusive.
        since_s: the oldest block time (Unix seconds), inclusive.
        until_s: the newest block time (Unix seconds), inclusive.
        until_signature: the signature to stop at, exclusive (the newer ones are backfilled).
        include_failed: failed transactions are fetched too (they decode to nothing).
    """

    from_slot: int | None = None
    to_slot: int | None = None
    since_s: int | None = None
    until_s: int | None = None
    until_signature: str | None = None
    include_failed: bool = False

    def __post_init__(self) -> None:
        slots = self.from_slot is not None or self.to_slot is not None
        times = self.since_s is not None or self.until_s is not None
        if sum((slots, times, self.until_signature is not None)) > 1:
            raise ValueError(
                "give one kind of range: slots (--from-slot/--to-slot), times (--since/--until) or --until-signature"
            )
        if self.from_slot is None and self.since_s is None and self.until_signature is None:
            raise ValueError(
                "a backfill needs a lower bound: --from-slot, --since or --until-signature"
                " (the whole history of a program is rarely what was meant)"
            )
        for name in ("from_slot", "to_slot"):
            if (value := getattr(self, name)) is not None and value < 0:
                raise ValueError(f"{name.replace('_', '-')} must be a slot (>= 0), got {value}")
        if self.from_slot is not None and self.to_slot is not None and self.from_slot > self.to_slot:
            raise ValueError(f"--from-slot {self.from_slot} is after --to-slot {self.to_slot}")
        if self.since_s is not None and self.until_s is not None and self.since_s > self.until_s:
            raise ValueError(f"--since {_iso(self.since_s)} is after --until {_iso(self.until_s)}")

    def keeps(self, entry: SignatureInfo, upper_slot: int) -> bool:
        """Whether `entry` is in range (and wanted: failed ones only with `include_failed`)."""
        if entry.slot > upper_slot or (self.from_slot is not None and entry.slot < self.from_slot):
            return False
        if entry.err and not self.include_failed:
            return False
        if self.since_s is not None or self.until_s is not None:
            if entry.block_time is None:
                return False  # a time range cannot place it; agave gives confirmed entries a block time
            if self.since_s is not None and entry.block_time < self.since_s:
                return False
            if self.until_s is not None and entry.block_time > self.until_s:
                return False
        return True

    def passed(self, entry: SignatureInfo) -> bool:
        """Whether `entry`, and everything older, is below the lower bound: paging stops there."""
        if self.from_slot is not None and entry.slot < self.from_slot:
            return True
        return self.since_s is not None and entry.block_time is not None and entry.block_time < self.since_s

    def describe(self) -> str:
        """The range as the command line gives it (and whether failed transactions are included)."""
        failed = " (failed ones included)" if self.include_failed else ""
        if self.until_signature is not None:
            return f"newer than {self.until_signature}{failed}"
        if self.from_slot is not None or self.to_slot is not None:
            low = self.from_slot if self.from_slot is not None else "..."
            return f"slots {low}..{self.to_slot if self.to_slot is not None else 'newest'}{failed}"
        since = _iso(self.since_s) if self.since_s is not None else "..."
        return f"{since}..{_iso(self.until_s) if self.until_s is not None else 'newest'}{failed}"


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@dataclass(frozen=True)
class UpperBound:
    """The backfill's newest end, fixed when it starts, so that a resume backfills the same range.

    Attributes:
        slot: the newest slot backfilled (`--to-slot`, else the chain's slot at the start).
        before: the signature paging starts before: the first of the first block after `slot`; None: the
            newest (the block after `slot` was not produced yet).
        unavailable: the slots after `slot` found without a block on the way to `before`.
    """

    slot: int
    before: str | None
    unavailable: tuple[int, ...] = ()


@dataclass(frozen=True)
class BackfillPosition:
    """Where one address's backfill resumes, and what it resumes.

    Attributes:
        address: the address (program) whose signatures are paged.
        request: the range asked for; a resume with another range is refused.
        upper: the upper bound fixed at the start.
        before: the page being emitted is the one listed before this signature (None: before `upper.before`).
        handled_through: the last signature of that page handled (emitted, or skipped as already seen):
            the page is emitted oldest first, so everything older in it was handled too. A signature, not a
            count: the newest page (listed before nothing) holds newer transactions when listed again,
            and its oldest ones move to the next page.
        emitted: frames and dead letters emitted by this partition so far.
        done: the last page was emitted: nothing is left.
    """

    address: str
    request: BackfillRange
    upper: UpperBound
    before: str | None = None
    handled_through: str | None = None
    emitted: int = 0
    done: bool = False


@dataclass
class BackfillProgress:
    """Counters of a backfill's partitions, read by the progress bar and the summary (from another thread).

    Attributes:
        listed: signatures listed in range (after filtering) so far.
        fetched: transactions fetched and emitted.
        failed: signatures whose fetch failed (each one a dead letter).
        duplicates: signatures skipped because another partition had fetched them.
        slots_total: slots in the partitions' ranges, where known (a slot range), else 0.
        slots_done: slots of those paged past so far.
    """

    listed: int = 0
    fetched: int = 0
    failed: int = 0
    duplicates: int = 0
    slots_total: int = 0
    slots_done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to the named counters."""
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)


class _SharedSeen:
    """`quantbot.live.SeenSignatures` shared by the partitions' fetching threads: each question under a lock."""

    def __init__(self, capacity: int) -> None:
        self._seen = SeenSignatures(capacity)
        self._lock = threading.Lock()

    def __contains__(self, signature: object) -> bool:
        with self._lock:
            return signature in self._seen

    def add(self, signature: str) -> None:
        with self._lock:
            self._seen.add(signature)


class BackfillSource(FixedPartitionedSource[Frame | DeadLetter, BackfillPosition | None]):
    """Transactions of `addresses` in `request`'s range, fetched over JSON-RPC, as frames.

    Delivery: at-least-once. Each partition's snapshot is the position after the last item it emitted
    (the page, and how far into it), so a resumed backfill lists that page again and goes on after what
    was emitted; the stores' natural keys make that exactly-once in effect. A signature whose transaction
    could not be fetched (null past `null_retry_s`, an error answer) is a `DeadLetter` of stage `fetch`,
    never dropped.

    Order: pages are listed newest first, as the RPC lists them; within a page (up to 1,000 signatures),
    the transactions are emitted oldest first, so that pricing learns in chain order within each page.

    Plan: the upper bound is fixed when a partition starts fresh (`UpperBound`): `--to-slot M` pages from
    before the first signature of the first produced block after M, found by walking up with `getBlock`
    over slots without a block (each one counted in `unavailable_slots` and recorded through `on_event`
    as `backfill_slot_unavailable`); otherwise from the newest signature, keeping slots up to the chain's
    slot at the start. Signatures outside the range, and failed ones unless `include_failed`, are dropped
    before fetching. The snapshot names the address, the range and the fixed upper bound: resuming with
    another range is refused (`refusal`, raised by the caller once the engine stopped; the partition emits
    nothing), as is the replay's.

    Duplicates: a transaction touching two of the addresses is listed by both partitions. The partitions
    of one process share a bounded set of the signatures fetched (`seen_max`, oldest forgotten first): a
    signature already fetched by another partition is skipped. Across processes, or past the bound, the
    duplicate is fetched again and stored once by the natural keys.

    Failure: when the provider stays unavailable past the retry budget (or refuses the request), the
    partition stops at its last emitted item and the error is kept in `failure` for the caller to raise;
    a later run with the same recovery directory goes on from there.

    Parallelism: one partition per address. Each partition fetches on its own thread and event loop with
    its own `RpcClient`, with the policy's rate and in-flight bound divided between the partitions, so that
    the provider sees the configured rate in all.

    Args:
        rpc_url: the provider's URL (may carry a key: logged redacted only).
        policy: the RPC policy for the whole backfill (divided between partitions).
        addresses: the addresses (DEX program ids) to backfill.
        request: the range.
        commitment: `confirmed` or `finalized` (`getBlock` does not serve `processed`).
        encoding: the getTransaction encoding (`base64`, `json`, `jsonParsed`).
        seen_max: signatures remembered to skip duplicates between partitions.
        on_event: called with each system event (from a fetching thread); None: events are only logged.
        activity: where the backfill notes its progress, for readiness checks.
    """

    def __init__(
        self,
        rpc_url: str,
        policy: RpcPolicy,
        addresses: Sequence[str],
        request: BackfillRange,
        *,
        commitment: str = "confirmed",
        encoding: str = "base64",
        seen_max: int = 200_000,
        on_event: Callable[[SystemEvent], object] | None = None,
        activity: SourceActivity | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("a backfill needs at least one address")
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"an address is given twice: {sorted(addresses)}")
        if commitment == "processed":
            raise ValueError("a backfill reads blocks: commitment must be `confirmed` or `finalized`")
        self.rpc_url = rpc_url
        self.policy = policy
        self.addresses = list(addresses)
        self.request = request
        self.commitment = commitment
        self.encoding = encoding
        self.on_event = on_event
        self.activity = activity if activity is not None else SourceActivity(SOURCE)
        self.progress = BackfillProgress()
        self.refusal: ResumeRefusedError | None = None
        self.failure: RpcError | None = None
        self.unavailable_slots: list[SlotUnavailable] = []
        self.seen = _SharedSeen(seen_max)
        self._stopping = threading.Event()
        self._upper_lock = threading.Lock()
        self._upper: UpperBound | None = None
        self._finished: set[str] = set()

    def stop(self) -> None:
        """End the backfill early, each partition at the position after its last emitted item (signal-safe)."""
        self._stopping.set()

    @property
    def stopped(self) -> bool:
        """Whether `stop()` was called."""
        return self._stopping.is_set()

    def list_parts(self) -> list[str]:
        """One partition per address: see the class docstring."""
        return list(self.addresses)

    def build_part(
        self, step_id: str, for_part: str, resume_state: BackfillPosition | None
    ) -> StatefulSourcePartition[Frame | DeadLetter, BackfillPosition | None]:
        """Start (or resume) the backfill of address `for_part`, or refuse to resume (see the class docstring)."""
        problem = _resume_problem(for_part, self.request, resume_state)
        if problem is not None:
            self.refusal = ResumeRefusedError(f"cannot resume the backfill of `{for_part}`: {problem}; {START_FRESH}")
            return RefusedPartition[Frame | DeadLetter, BackfillPosition](resume_state)
        return _BackfillPartition(self, for_part, resume_state)

    def partition_policy(self) -> RpcPolicy:
        """The policy of one partition: the rate and the in-flight bound divided between the partitions."""
        n = len(self.addresses)
        return replace(
            self.policy,
            requests_per_s=self.policy.requests_per_s / n,
            max_in_flight=max(1, self.policy.max_in_flight // n),
        )

    async def upper_bound(self, rpc: RpcClient) -> UpperBound:
        """The upper bound, found once for all partitions of this process (see the class docstring)."""
        with self._upper_lock:
            if self._upper is not None:
                return self._upper
        tip = await rpc.get_slot(commitment=self.commitment)
        upper = await find_upper_bound(
            rpc, self.request.to_slot, tip, commitment=self.commitment, on_unavailable=self._slot_unavailable
        )
        with self._upper_lock:
            if self._upper is None:
                self._upper = upper
            return self._upper

    def partition_finished(self, address: str) -> None:
        """Note that `address`'s backfill is complete; the source is finished once every address's is."""
        with self._upper_lock:
            self._finished.add(address)
            complete = self._finished >= set(self.addresses)
        if complete:
            self.activity.finished()

    def _slot_unavailable(self, slot: SlotUnavailable) -> None:
        with self._upper_lock:
            if any(known.slot == slot.slot for known in self.unavailable_slots):
                return
            self.unavailable_slots.append(slot)
        log.warning("backfill slot=%d unavailable code=%d: %s", slot.slot, slot.code, slot.message)
        if self.on_event is not None:
            self.on_event(
                SystemEvent(
                    EventType.BACKFILL_SLOT_UNAVAILABLE,
                    Severity.WARNING,
                    SOURCE,
                    f"slot {slot.slot} has no block to read (code {slot.code}): walked past it to fix the range",
                    {"slot": slot.slot, "code": slot.code, "message": slot.message},
                )
            )


def _resume_problem(address: str, request: BackfillRange, resume: object) -> str | None:
    if resume is None:
        return None
    if not isinstance(resume, BackfillPosition):
        return f"the snapshot is not a backfill's ({type(resume).__name__})"
    if resume.address != address:
        return f"the snapshot is of address `{resume.address}`"
    if resume.request != request:
        return f"the snapshot is of range {resume.request.describe()}, not {request.describe()}"
    return None


async def find_upper_bound(
    rpc: RpcClient,
    to_slot: int | None,
    tip: int,
    *,
    commitment: str,
    on_unavailable: Callable[[SlotUnavailable], None],
) -> UpperBound:
    """The upper bound for `--to-slot to_slot` (None: the newest) on a chain at slot `tip`.

    Walks up from `to_slot + 1` to the first slot with a block that holds a signature; slots without
    a block (skipped, missing in long-term storage) are reported to `on_unavailable` and walked past.
    """
    if to_slot is None or to_slot >= tip:
        return UpperBound(slot=tip if to_slot is None else min(to_slot, tip), before=None)
    unavailable: list[int] = []
    for slot in range(to_slot + 1, tip + 1):
        block = await rpc.get_block_signatures(slot, commitment=commitment)
        if isinstance(block, SlotUnavailable):
            unavailable.append(slot)
            on_unavailable(block)
            continue
        if block:
            return UpperBound(slot=to_slot, before=block[0], unavailable=tuple(unavailable))
    return UpperBound(slot=to_slot, before=None, unavailable=tuple(unavailable))


@dataclass(frozen=True)
class _Emit:
    item: Frame | DeadLetter
    position: BackfillPosition


@dataclass(frozen=True)
class _Moved:
    """The position changed without an item (the plan was fixed, a page held nothing to emit)."""

    position: BackfillPosition


@dataclass(frozen=True)
class _Ended:
    failure: RpcError | None = None


class _StoppedError(Exception):
    """The producer was asked to stop."""


class _BackfillPartition(StatefulSourcePartition[Frame | DeadLetter, BackfillPosition | None]):
    """One address's backfill: a thread running an event loop fetches; `next_batch` takes what it fetched."""

    def __init__(self, source: BackfillSource, address: str, resume: BackfillPosition | None) -> None:
        self._source = source
        self._address = address
        self._position = resume
        self._queue: queue.Queue[_Emit | _Moved | _Ended] = queue.Queue(maxsize=QUEUE_MAX)
        self._closing = threading.Event()
        self._ended = False
        self._awake: datetime | None = None
        source.activity.opened()
        if resume is not None:
            log.info(
                "backfill resuming address=%s before=%s handled_through=%s emitted=%d done=%s",
                address,
                resume.before,
                resume.handled_through,
                resume.emitted,
                resume.done,
            )
        self._thread = threading.Thread(target=self._run, name=f"backfill-{address}", daemon=True)
        self._thread.start()

    # -- the engine's side ---------------------------------------------------------------------------------

    def next_batch(self) -> list[Frame | DeadLetter]:
        """What was fetched since the last call (never waits); ends after the last item."""
        if self._source.stopped or self._ended:
            self._close_thread()
            raise StopIteration
        batch: list[Frame | DeadLetter] = []
        while len(batch) < EMIT_MAX:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(entry, _Ended):
                self._ended = True
                if entry.failure is not None:
                    self._source.failure = entry.failure
                elif not self._source.stopped:
                    self._source.partition_finished(self._address)
                break
            if isinstance(entry, _Emit):
                batch.append(entry.item)
            self._position = entry.position
        if batch:
            self._source.activity.progressed()
            self._awake = None
        elif not self._ended:
            self._awake = datetime.now(UTC) + timedelta(seconds=EMPTY_POLL_S)
        return batch

    def next_awake(self) -> datetime | None:
        """A moment later when nothing was fetched yet; None: now."""
        return self._awake

    def snapshot(self) -> BackfillPosition | None:
        """The position after the last emitted item (None before the plan was fixed: a resume plans afresh)."""
        return self._position

    def close(self) -> None:
        """Stop fetching."""
        self._close_thread()

    def _close_thread(self) -> None:
        self._closing.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(JOIN_S)

    # -- the fetching thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        failure: RpcError | None = None
        try:
            asyncio.run(self._produce())
        except _StoppedError:
            return
        except RpcError as exc:
            log.error("backfill address=%s stopped: %s", self._address, exc)
            failure = exc
        with contextlib.suppress(_StoppedError):
            self._put_blocking(_Ended(failure))

    def _put_blocking(self, entry: _Emit | _Moved | _Ended) -> None:
        while True:
            if self._closing.is_set() or self._source.stopped:
                raise _StoppedError
            try:
                self._queue.put(entry, timeout=QUEUE_PUT_S)
                return
            except queue.Full:
                continue

    async def _put(self, entry: _Emit | _Moved | _Ended) -> None:
        while True:
            if self._closing.is_set() or self._source.stopped:
                raise _StoppedError
            try:
                self._queue.put_nowait(entry)
                return
            except queue.Full:
                await asyncio.sleep(QUEUE_PUT_S)

    async def _produce(self) -> None:
        source = self._source
        request = source.request
        async with RpcClient(source.rpc_url, source.partition_policy()) as rpc:
            position = self._position
            if position is None:
                upper = await source.upper_bound(rpc)
                position = BackfillPosition(self._address, request, upper, before=upper.before)
                log.info(
                    "backfill address=%s range=%s upper_slot=%d before=%s",
                    self._address,
                    request.describe(),
                    upper.slot,
                    upper.before,
                )
                await self._put(_Moved(position))
            if request.from_slot is not None and not position.done:
                source.progress.add(slots_total=position.upper.slot - request.from_slot + 1)
            covered = position.upper.slot
            while not position.done:
                page = await rpc.get_signatures_for_address(
                    self._address,
                    before=position.before,
                    until=request.until_signature,
                    limit=SIGNATURES_PAGE_MAX,
                    commitment=source.commitment,
                )
                last_page = len(page) < SIGNATURES_PAGE_MAX or (bool(page) and request.passed(page[-1]))
                kept = [entry for entry in page if request.keeps(entry, position.upper.slot)]
                kept.reverse()  # oldest first: see the class docstring
                if position.handled_through is None:
                    source.progress.add(listed=len(kept))
                next_page = replace(
                    position,
                    before=page[-1].signature if page else position.before,
                    handled_through=None,
                    done=last_page,
                )
                position = await self._emit_page(rpc, kept, position)
                position = replace(next_page, emitted=position.emitted)
                await self._put(_Moved(position))
                if page and request.from_slot is not None:
                    low = max(page[-1].slot, request.from_slot)
                    source.progress.add(slots_done=max(0, covered - low + (1 if last_page else 0)))
                    covered = low
                log.info(
                    "backfill address=%s page=%d kept=%d oldest_slot=%s emitted=%d",
                    self._address,
                    len(page),
                    len(kept),
                    page[-1].slot if page else None,
                    position.emitted,
                )

    async def _emit_page(
        self, rpc: RpcClient, kept: list[SignatureInfo], position: BackfillPosition
    ) -> BackfillPosition:
        """Fetch and emit `kept` (oldest first) after `position.handled_through`; the position after the last.

        When `handled_through` is no longer in the page (it moved to the next page), all of the page is
        newer than it, and nothing of it was handled.
        """
        source = self._source
        # As many calls as can be in flight at once: the fetches overlap fully, and a page is emitted
        # (and snapshotted) in steps of that many rather than all at its end.
        chunk = source.policy.batch_size * max(1, source.partition_policy().max_in_flight)
        listed = [entry.signature for entry in kept]
        through = position.handled_through
        start = listed.index(through) + 1 if through is not None and through in listed else 0
        for offset in range(start, len(kept), chunk):
            entries = kept[offset : offset + chunk]
            wanted = [entry.signature for entry in entries if entry.signature not in source.seen]
            fetched = {
                f.signature: f
                for f in await rpc.get_transactions(wanted, encoding=source.encoding, commitment=source.commitment)
            }
            for entry in entries:
                got = fetched.get(entry.signature)
                if got is None:  # another partition fetched it
                    source.progress.add(duplicates=1)
                    position = replace(position, handled_through=entry.signature)
                    await self._put(_Moved(position))
                    continue
                position = replace(position, handled_through=entry.signature, emitted=position.emitted + 1)
                await self._put(_Emit(_item(got), position))
                if got.problem is None:
                    source.seen.add(got.signature)
                    source.progress.add(fetched=1)
                else:
                    source.progress.add(failed=1)
        return position


def _item(fetched: Fetched) -> Frame | DeadLetter:
    position = f"{SOURCE}:{fetched.signature}"
    text = fetched.response.decode(errors="replace") if fetched.response is not None else ""
    if fetched.problem is not None or fetched.response is None:
        return DeadLetter(
            position=position,
            source=SOURCE,
            stage=FETCH_STAGE,
            reason=f"getTransaction {fetched.signature}: {fetched.problem}",
            raw=text,
            received_ns=fetched.received_ns or time.time_ns(),
        )
    return Frame(fetched.received_ns, SOURCE, FrameKind.TRANSACTION.value, text, position)
