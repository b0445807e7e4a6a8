"""Token facts for a chain source that has no JSON-RPC of its own (Yellowstone gRPC): the mints the analytics
asks about, answered by `getMultipleAccounts` as `accounts` frames.

The websocket source answers token requests through its own RPC client (`connectors.solana_ws`); a
Yellowstone stream carries transactions only, so with `[solana] source = "grpc"` the live flow adds this
source when `solana.rpc_url` is set. Its one partition, `token-facts`, runs an asyncio loop with an
`RpcClient` (the `[solana]` rate limit, bounds and retries) in a thread of its own:

- `request_token(mint)`, safe from any thread (the flow calls it from the valuation's worker), asks for the
  mint's accounts (`quantbot.tokens.accounts_request`) unless a request for them is already under way;
- the answer, exactly as received, is an `accounts` frame positioned `rpc:accounts:<mint>`, as the
  websocket source writes it, so a recording replays the same way whichever source asked;
- a request the node refuses or fails for longer than the retry budget is a `fetch` dead letter naming the
  mint: token facts are an enrichment, and the analytics asks again at its next refresh;
- the snapshot is the mints asked for and not yet handed to the flow: a restart asks for them again.

In a cluster the partition runs on one worker; a request made in a process without it is not taken
(`request_token` says so) and is asked again at the analytics' next refresh.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.refused import RefusedPartition
from connectors.rpc import RpcClient, RpcError, RpcPolicy
from quantbot.errors import ResumeRefusedError
from quantbot.health import SourceActivity
from quantbot.models import DeadLetter, Frame, FrameKind
from quantbot.redaction import redact
from quantbot.tokens import TokenFormatError

log = logging.getLogger(__name__)

NAME = "tokens"
"""The source's name: its input's step id is `feed_tokens`."""
PARTITION = "token-facts"
FRAME_SOURCE = "rpc"
"""The answers' `source`: what the node served them over, whichever source asked (`token_answer`)."""
FETCH_STAGE = "fetch"
"""The dead letters' stage, as the websocket source's fetches have it."""
FETCHERS = 2
"""Requests answered at once: new tokens come a few a second at most, so two keep the answers prompt."""
BATCH_MAX = 1024
"""Items handed to the flow per `next_batch` at most."""
IDLE_WAIT_S = 0.05
"""With nothing ready, the engine asks again after this long: a token's facts are not urgent to the 50 ms."""
POLL_S = 0.1
"""The loop looks this often whether it was asked to stop."""
JOIN_TIMEOUT_S = 10.0
"""How long `close()` waits for the loop's thread to end."""

Pending = tuple[str, ...]
"""The snapshot: mints asked for and not yet handed to the flow, in the order asked."""


async def token_answer(rpc: RpcClient, mint: str, source: str) -> Frame | DeadLetter:
    """`mint`'s accounts (`RpcClient.get_token_accounts`) as an `accounts` frame, exactly as the node answered,
    positioned `rpc:accounts:<mint>`; a `fetch` dead letter naming the mint when `mint` is no address or the node
    refused or failed past the retry budget. What both sources that answer token requests emit (this one and
    `connectors.solana_ws`, `source` naming which in the log), so a recording replays the same whichever asked.

    Token facts are an enrichment: a node refusing or failing them costs that token its document's facts (the
    analytics asks again), not the stream. A node down for good fails the sources' other requests anyway.
    """
    position = f"{FRAME_SOURCE}:{FrameKind.ACCOUNTS.value}:{mint}"
    try:
        raw, received_ns = await rpc.get_token_accounts(mint)
    except (RpcError, TokenFormatError) as exc:
        reason = redact(f"getMultipleAccounts of mint {mint} failed: {exc}")
        log.warning("source=%s key=%s dead_letter: %s", source, mint, reason)
        return DeadLetter(
            position=position,
            source=FRAME_SOURCE,
            stage=FETCH_STAGE,
            reason=reason,
            raw=mint,
            received_ns=time.time_ns(),
        )
    return Frame(received_ns, FRAME_SOURCE, FrameKind.ACCOUNTS.value, raw.decode(), position)


class TokenFactsSource(FixedPartitionedSource[Frame | DeadLetter, Pending | None]):
    """Answers the flow's token requests over JSON-RPC (see the module docstring).

    Args:
        rpc_url: the node's HTTP JSON-RPC URL (may carry an API key: never logged unmasked).
        policy: the client's rate limit, bounds and retries (`RpcPolicy.from_settings(settings.solana)`).
        activity: where the partition notes its progress, for readiness.
    """

    def __init__(self, rpc_url: str, policy: RpcPolicy, activity: SourceActivity | None = None) -> None:
        self.name = NAME
        self.rpc_url = rpc_url
        self.policy = policy
        self.activity = activity if activity is not None else SourceActivity(NAME)
        self.refusal: ResumeRefusedError | None = None
        self._stopping = threading.Event()
        self._partitions: list[_TokenFactsPartition] = []

    def list_parts(self) -> list[str]:
        """The one partition, listed on every worker: Bytewax runs it on one of them."""
        return [PARTITION]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Pending | None
    ) -> StatefulSourcePartition[Frame | DeadLetter, Pending | None]:
        """Open the partition, asking again for the mints its snapshot holds."""
        if resume_state is not None and not (
            isinstance(resume_state, tuple) and all(isinstance(mint, str) for mint in resume_state)
        ):
            self.refusal = ResumeRefusedError(
                f"cannot resume partition {for_part}: the snapshot was taken by another source"
            )
            return RefusedPartition[Frame | DeadLetter, Pending](resume_state)
        partition = _TokenFactsPartition(self.rpc_url, self.policy, resume_state or (), self._stopping, self.activity)
        self._partitions.append(partition)
        return partition

    def request_token(self, mint: str) -> bool:
        """Ask for `mint`'s accounts through this process's partition. Safe from any thread.

        Returns:
            Whether a partition of this process took it (False before it has started, or in a process of a
            cluster that does not run it).
        """
        return any(partition.ask_threadsafe(mint) for partition in self._partitions[:1])

    def stop(self) -> None:
        """Stop asking: the partition hands over what it has and ends (safe from a signal handler)."""
        self._stopping.set()


class _TokenFactsPartition(StatefulSourcePartition[Frame | DeadLetter, Pending | None]):
    def __init__(
        self, rpc_url: str, policy: RpcPolicy, pending: Pending, stopping: threading.Event, activity: SourceActivity
    ) -> None:
        self._rpc_url = rpc_url
        self._policy = policy
        self._stopping = stopping
        self._activity = activity
        self._lock = threading.Lock()
        self._asked: dict[str, None] = dict.fromkeys(pending)
        """Mints asked for and not yet handed to the flow (the snapshot)."""
        self._ready: deque[tuple[str, Frame | DeadLetter]] = deque()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[str] | None = None
        if pending:
            log.info("source=%s resuming pending=%d", NAME, len(pending))
        activity.opened()
        self._thread = threading.Thread(target=self._run, name=f"source-{PARTITION}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the dataflow's side

    def next_batch(self) -> list[Frame | DeadLetter]:
        """The answers so far (never waits); ends once stopped and drained."""
        if self._failure is not None:
            raise self._failure
        batch: list[Frame | DeadLetter] = []
        with self._lock:
            while self._ready and len(batch) < BATCH_MAX:
                mint, item = self._ready.popleft()
                self._asked.pop(mint, None)
                batch.append(item)
        if batch:
            self._activity.progressed()
        elif self._stopping.is_set() and not self._thread.is_alive():
            log.info("source=%s stopped pending=%d", NAME, len(self._asked))
            raise StopIteration
        return batch

    def next_awake(self) -> datetime | None:
        """Now when answers are ready, else a moment later."""
        return None if self._ready else datetime.now(UTC) + timedelta(seconds=IDLE_WAIT_S)

    def snapshot(self) -> Pending:
        """The mints asked for and not yet handed to the flow."""
        with self._lock:
            return tuple(self._asked)

    def close(self) -> None:
        """Stop the loop (the flow is ending)."""
        self._stopping.set()
        self._thread.join(timeout=JOIN_TIMEOUT_S)

    def ask_threadsafe(self, mint: str) -> bool:
        """`_ask` handed to the loop from another thread; False when the loop is not running."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        loop.call_soon_threadsafe(self._ask, mint)
        return True

    # ------------------------------------------------------------------ the loop's side

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the dataflow's thread, which raises it
            log.error("source=%s failed: %s", NAME, redact(repr(exc)))
            self._failure = exc

    async def _main(self) -> None:
        async with RpcClient(self._rpc_url, self._policy) as rpc:
            queue: asyncio.Queue[str] = asyncio.Queue()
            with self._lock:
                for mint in self._asked:
                    queue.put_nowait(mint)
            self._queue = queue
            self._loop = asyncio.get_running_loop()
            fetchers = [asyncio.create_task(self._fetch(rpc, queue)) for _ in range(FETCHERS)]
            try:
                while not self._stopping.is_set():
                    await asyncio.sleep(POLL_S)
            finally:
                for fetcher in fetchers:
                    fetcher.cancel()
                await asyncio.gather(*fetchers, return_exceptions=True)

    def _ask(self, mint: str) -> None:
        """Ask for `mint`'s accounts unless a request for them is under way (on the loop)."""
        with self._lock:
            if mint in self._asked:
                return
            self._asked[mint] = None
        if self._queue is not None:
            self._queue.put_nowait(mint)

    async def _fetch(self, rpc: RpcClient, queue: asyncio.Queue[str]) -> None:
        """Answer requests: each answer an `accounts` frame, each failure a dead letter; never a crash."""
        while True:
            mint = await queue.get()
            self._hand_over(mint, await token_answer(rpc, mint, NAME))

    def _hand_over(self, mint: str, item: Frame | DeadLetter) -> None:
        with self._lock:
            self._ready.append((mint, item))
