"""The live websocket source against a loopback Solana node: every DEX transaction once, through drops,
429s, 503s, nulls, garbage and restarts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.rpc import RpcPolicy
from connectors.solana_ws import LiveConfig, SolanaLogsSource, _LivePartition
from quantbot.backoff import Backoff
from quantbot.events import EventType, SystemEvent
from quantbot.live import LivePosition
from quantbot.models import DeadLetter, Frame
from quantbot.ops.peers.chain import ChainSpec, SimulatedChain
from quantbot.ops.peers.solana_rpc import Faults, SolanaPeer
from quantbot.solana.decode import KNOWN_PROGRAMS
from quantbot.solana.normalise import parse_transactions

pytestmark = pytest.mark.slow

PROGRAMS = tuple(sorted(KNOWN_PROGRAMS))
DEADLINE_S = 60.0
"""How long a test waits for the source to have emitted what the chain made (it takes a few seconds)."""
POLL_S = 0.05


def config_for(peer: SolanaPeer, groups: tuple[tuple[str, ...], ...] = (PROGRAMS,), **changes: Any) -> LiveConfig:
    """A source configuration for `peer`, with quick retries so that faults cost the tests little time."""
    config = LiveConfig(
        ws_url=peer.ws_url,
        rpc_url=peer.http_url,
        groups=groups,
        commitment="confirmed",
        encoding="base64",
        include_failed=False,
        policy=RpcPolicy(
            requests_per_s=2000.0,
            max_in_flight=16,
            timeout_s=5.0,
            retry_budget_s=30.0,
            null_retry_s=10.0,
            backoff_base_s=0.02,
            backoff_cap_s=0.2,
        ),
        stale_after_s=2.0,
        ping_interval_s=5.0,
        max_message_bytes=8 << 20,
        seen_max=50_000,
        backoff=Backoff(base_s=0.05, cap_s=0.3),
    )
    return LiveConfig(**{**config.__dict__, **changes})


SUBSCRIBING_S = 0.5
"""Chain time a fresh source may take to subscribe all its programs: what came before is not its business
(a fresh `quantbot run` starts from now; `quantbot backfill` is for history)."""


def wanted(chain: SimulatedChain, programs: tuple[str, ...] = PROGRAMS, after_s: float = 0.0) -> set[str]:
    """The chain's successful transactions of `programs` due after `after_s`: what the source must emit, once."""
    return {
        tx.signature for tx in chain if tx.err is None and tx.mentions.intersection(programs) and tx.due_s >= after_s
    }


def live_from(peer: SolanaPeer) -> float:
    """Chain time from which a fresh source must have everything: its first notification, and a margin."""
    wait_for(lambda: bool(peer.notified), "the first notification")
    return min(peer.chain.by_signature(s).due_s for s in peer.notified) + SUBSCRIBING_S  # type: ignore[union-attr]


def signature_of(item: Frame | DeadLetter) -> str:
    return item.position.removeprefix("rpc:")


@contextmanager
def running(source: SolanaLogsSource, out: list[Any], recovery: Any = None) -> Iterator[Callable[[], None]]:
    """The source in a flow on a thread of its own; yields a function that stops it and waits."""
    flow = Dataflow("live_test")
    op.output("out", op.input("in", flow, source), TestingSink(out))
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run_main(flow, epoch_interval=None, recovery_config=recovery)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def stop() -> None:
        source.stop()
        thread.join(30)
        assert not thread.is_alive(), "the flow did not end within 30 s of stop()"
        assert not failure, failure

    try:
        yield stop
    finally:
        if thread.is_alive():
            source.stop()
            thread.join(30)


def wait_for(check: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)


def emitted_all(out: list[Any], expected: set[str]) -> Callable[[], bool]:
    """A check that `out` holds a frame of each of `expected` (naming what is missing when it fails)."""

    def check() -> bool:
        missing = expected - {signature_of(f) for f in frames_of(out)}
        check.missing = sorted(missing)  # type: ignore[attr-defined]
        return not missing

    return check


def frames_of(out: list[Any]) -> list[Frame]:
    return [item for item in out if isinstance(item, Frame)]


def test_every_dex_transaction_once_through_drops_429_503_and_nulls() -> None:
    """With the socket dropped every second, 5 % 429, 2 % 503 and 10 % first fetches null, each successful
    DEX transaction of the chain is emitted exactly once, as the node's getTransaction response."""
    chain = SimulatedChain(ChainSpec(txs=400, seed=3, tx_per_s=100.0))
    faults = Faults(drop_every_s=1.0, http_429_share=0.05, http_503_share=0.02, null_first_fetch_share=0.10, seed=5)
    out: list[Any] = []
    events: list[SystemEvent] = []
    with SolanaPeer(chain, faults=faults) as peer:
        source = SolanaLogsSource(config_for(peer), on_event=events.append)
        with running(source, out) as stop:
            expected = wanted(chain, after_s=live_from(peer))
            wait_for(emitted_all(out, expected), "every DEX transaction")
            stop()
        counters = peer.counters()
    signatures = [signature_of(frame) for frame in frames_of(out)]
    assert len(signatures) == len(set(signatures)), "a signature was emitted twice"
    assert set(signatures) >= expected and set(signatures) <= wanted(chain)
    assert [item for item in out if isinstance(item, DeadLetter)] == []
    assert counters.drops >= 2 and counters.null_first_fetches > 0 and counters.responses[429] > 0
    gaps = [e for e in events if e.event_type == EventType.GAP_DETECTED]
    assert gaps and all(e.details["before"]["slot"] <= e.details["after"]["slot"] for e in gaps)
    sample = frames_of(out)[0]
    (tx,) = parse_transactions(sample.payload)
    assert tx.signature == signature_of(sample) and sample.source == "rpc" and sample.kind == "transaction"


def test_garbage_and_oversize_notifications() -> None:
    """Messages that are not notifications become `feed` dead letters; notifications over 1 MiB are read."""
    chain = SimulatedChain(ChainSpec(txs=150, seed=4, tx_per_s=100.0))
    faults = Faults(malformed_share=0.05, oversize_every=20, seed=2)
    out: list[Any] = []
    with SolanaPeer(chain, faults=faults) as peer:
        source = SolanaLogsSource(config_for(peer))
        with running(source, out) as stop:
            expected = wanted(chain, after_s=live_from(peer))
            wait_for(emitted_all(out, expected), "every DEX transaction")
            stop()
        counters = peer.counters()
    letters = [item for item in out if isinstance(item, DeadLetter)]
    assert counters.oversize_notifications > 0
    assert len(letters) == counters.malformed_frames > 0
    assert {letter.stage for letter in letters} == {"feed"}
    assert all(letter.raw for letter in letters)
    assert len(frames_of(out)) == len({signature_of(f) for f in frames_of(out)}) >= len(expected)


def test_a_silent_stream_is_reconnected() -> None:
    """A stream silent longer than `stale_after_s` is dropped and reconnected, and the silence backfilled."""
    chain = SimulatedChain(ChainSpec(txs=300, seed=6, tx_per_s=100.0))
    faults = Faults()
    out: list[Any] = []
    with SolanaPeer(chain, faults=faults) as peer:
        source = SolanaLogsSource(config_for(peer, stale_after_s=0.5))
        with running(source, out) as stop:
            wait_for(lambda: len(frames_of(out)) > 20, "the first transactions")
            connections = peer.counters().connections
            peer.faults.silent = True
            wait_for(lambda: peer.counters().connections > connections, "a reconnection", 10.0)
            peer.faults.silent = False
            expected = wanted(chain, after_s=live_from(peer))
            wait_for(emitted_all(out, expected), "every DEX transaction")
            stop()
    signatures = [signature_of(frame) for frame in frames_of(out)]
    assert len(signatures) == len(set(signatures))


def test_groups_share_the_programs_and_a_route_is_fetched_once() -> None:
    """Two partitions (program groups) together emit each transaction once: a route invoking programs of
    both groups is fetched by the first group's partition only."""
    chain = SimulatedChain(ChainSpec(txs=300, seed=8, tx_per_s=150.0))
    jupiter = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
    groups = ((jupiter,), tuple(p for p in PROGRAMS if p != jupiter))
    out: list[Any] = []
    with SolanaPeer(chain) as peer:
        source = SolanaLogsSource(config_for(peer, groups=groups))
        assert len(source.list_parts()) == 2
        with running(source, out) as stop:
            expected = wanted(chain, after_s=live_from(peer))
            wait_for(emitted_all(out, expected), "every DEX transaction")
            stop()
    signatures = [signature_of(frame) for frame in frames_of(out)]
    assert len(signatures) == len(set(signatures)), "a transaction was fetched by both partitions"
    assert expected <= set(signatures) <= wanted(chain)


def test_a_resumed_partition_fetches_its_pending_and_backfills_the_downtime() -> None:
    """A partition rebuilt from a snapshot taken mid-stream (as after kill -9) fetches what was pending and
    what the chain made while it was down: together with what was emitted before, everything, once."""
    chain = SimulatedChain(ChainSpec(txs=400, seed=9, tx_per_s=100.0))
    with SolanaPeer(chain) as peer:
        config = config_for(peer)
        stopping = threading.Event()
        first = _LivePartition(config, 0, None, stopping=stopping, on_event=None, activity=_activity())
        emitted: list[Frame | DeadLetter] = []
        wait_for(lambda: bool(emitted.extend(first.next_batch()) or len(emitted) > 40), "the first transactions")
        snapshot = first.snapshot()
        first.close()  # the process dies: what it fetched after the snapshot is lost with it
        assert isinstance(snapshot, LivePosition) and snapshot.last
        time.sleep(1.0)  # the chain goes on while nothing listens
        second = _LivePartition(config, 0, snapshot, stopping=threading.Event(), on_event=None, activity=_activity())
        expected = wanted(chain, after_s=min(chain.by_signature(signature_of(i)).due_s for i in emitted))  # type: ignore[union-attr]
        later: list[Frame | DeadLetter] = []

        def caught_up() -> bool:
            later.extend(second.next_batch())
            return {signature_of(i) for i in [*emitted, *later]} >= expected

        wait_for(caught_up, "every DEX transaction after the resume")
        second.close()
    again = [signature_of(item) for item in later]
    assert len(again) == len(set(again)), "the resumed partition emitted a signature twice"
    assert expected <= {signature_of(item) for item in emitted} | set(again) <= wanted(chain)


def _activity() -> Any:
    from quantbot.health import SourceActivity

    return SourceActivity("websocket")


def test_a_signature_handed_in_is_fetched_once() -> None:
    """`fetch(signature)` (a large trade a price feed reported, the subscriptions missed) fetches it through
    the source like a notified one, once however often it is handed in."""
    chain = SimulatedChain(ChainSpec(txs=200, seed=12, tx_per_s=100.0))
    out: list[Any] = []
    with SolanaPeer(chain) as peer:
        source = SolanaLogsSource(config_for(peer))
        with running(source, out) as stop:
            wait_for(lambda: bool(peer.notified), "the first notification")
            missed = next(tx.signature for tx in chain if tx.err is None and tx.mentions & set(PROGRAMS))
            wait_for(lambda: source.fetch(missed), "a running partition")
            assert source.fetch(missed)
            wait_for(lambda: missed in {signature_of(f) for f in frames_of(out)}, "the handed-in signature")
            stop()
    assert [signature_of(f) for f in frames_of(out)].count(missed) == 1
