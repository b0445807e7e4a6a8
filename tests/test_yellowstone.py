"""The Yellowstone gRPC source against a real gRPC server on loopback (`YellowstonePeer`), and the Geyser form
of a transaction decoding exactly as its RPC form."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable

import grpc
import orjson
import pytest
from google.protobuf import json_format

from connectors.yellowstone import GrpcPosition, YellowstoneSource
from connectors.yellowstone import geyser_pb2 as geyser
from quantbot import metrics
from quantbot.errors import ResumeRefusedError
from quantbot.models import Frame, FrameKind
from quantbot.ops.peers import ChainSpec, SimulatedChain
from quantbot.ops.peers.yellowstone import GrpcFaults, YellowstonePeer
from quantbot.ops.peers.yellowstone_convert import subscribe_update_of, transaction_error_bytes
from quantbot.solana.codec import signature_str
from quantbot.steps import DecodedTransaction, parse_frame
from quantbot.units import NS_PER_S
from tests.conftest import CORPUS_DIR

START = 1_750_000_000
"""A fixed chain start (Unix seconds), so chains are reproducible."""
JUPITER = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
PUMPFUN = "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P"
GROUPS = [[JUPITER], [PUMPFUN]]
TOKEN = "t0ken"
TWIN = "3rTFfi824QnhkbGxzaNrtfWs2vLo63Jy5QaNmXcBHUHTPD31fVf4UDip4Qs45AJnPhjHwuKXH7CMDdNE9V3Ug57N"
"""The corpus transaction recorded both over RPC (`<sig>.json`) and from a Geyser stream (`<sig>.geyser.json`)."""
CHAIN_TXS = 300
"""Transactions on the test chain: 2.7 s of chain at the chain's default pace, about 150 of them DEX ones
of the two groups; long enough for a few drops a second apart."""
SETTLE_S = 0.5
"""After every expected transaction arrived, the source is read this much longer: a duplicate would show."""
DEADLINE_S = 12.0
"""Longest a test waits for its transactions (the chain lasts about 3 s)."""


def _source(url: str, token: str | None = TOKEN, **overrides: object) -> YellowstoneSource:
    options: dict[str, object] = {
        "commitment": "processed",
        "reconnect_base_s": 0.05,
        "reconnect_cap_s": 0.2,
        "stale_after_s": 2.0,
    }
    options.update(overrides)
    return YellowstoneSource(url, token, GROUPS, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    return SimulatedChain(ChainSpec(txs=CHAIN_TXS, seed=11, start_time=START))


def _expected(chain: SimulatedChain, groups: Iterable[list[str]] = GROUPS) -> collections.Counter[str]:
    """Each successful transaction of the groups' programs, once (what `vote: false, failed: false` selects)."""
    programs = [program for group in groups for program in group]
    return collections.Counter(tx.signature for tx in chain.mentioning(programs) if tx.err is None)


def _from_the_start(source: YellowstoneSource, chain: SimulatedChain) -> dict[str, GrpcPosition]:
    """Positions that replay each group from the chain's first slot (a fresh source starts at "now")."""
    return {key: GrpcPosition(tuple(sorted(group)), chain.first_slot - 1) for key, group in source.groups.items()}


def _read(
    source: YellowstoneSource,
    resume: dict[str, GrpcPosition] | None,
    done: Callable[[collections.Counter[str]], bool],
    deadline_s: float = DEADLINE_S,
) -> tuple[collections.Counter[str], dict[str, GrpcPosition | None], list[Frame]]:
    """Drive every partition until `done(signatures emitted)` (then `SETTLE_S` more) or the deadline."""
    parts = {key: source.build_part("grpc", key, (resume or {}).get(key)) for key in source.list_parts()}
    frames: list[Frame] = []
    emitted: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + deadline_s
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline and (settle_until is None or time.monotonic() < settle_until):
            for part in parts.values():
                try:
                    batch = part.next_batch()
                except StopIteration:
                    continue
                frames.extend(batch)
                emitted.update(frame.position.rsplit(":", 1)[1] for frame in batch)
            if settle_until is None and done(emitted):
                settle_until = time.monotonic() + SETTLE_S
            time.sleep(0.01)
        return emitted, {key: part.snapshot() for key, part in parts.items()}, frames
    finally:
        for part in parts.values():
            part.close()


def test_a_geyser_update_of_the_rpc_twin_decodes_to_the_same_activities() -> None:
    """The RPC twin converted to a SubscribeUpdate and rendered by protobuf's JSON mapping decodes as the RPC form."""
    rpc_text = (CORPUS_DIR / f"{TWIN}.json").read_text()
    result = orjson.loads(rpc_text)["result"]
    update = subscribe_update_of(result, ["dex"])
    received_ns = result["blockTime"] * NS_PER_S  # a Geyser update is timed by its receive second
    geyser_frame = Frame(received_ns, "grpc", FrameKind.TRANSACTION, json_format.MessageToJson(update, indent=None))
    rpc_frame = Frame(received_ns, "rpc", FrameKind.TRANSACTION, rpc_text)
    recorded_frame = Frame(received_ns, "grpc", FrameKind.TRANSACTION, (CORPUS_DIR / f"{TWIN}.geyser.json").read_text())

    from_geyser, from_rpc, from_recorded = (
        parse_frame(geyser_frame),
        parse_frame(rpc_frame),
        parse_frame(recorded_frame),
    )

    assert all(isinstance(item, DecodedTransaction) for item in [*from_geyser, *from_rpc, *from_recorded])
    activities = [item.activities for item in from_rpc if isinstance(item, DecodedTransaction)]
    assert activities and activities[0], "the twin is a swap: an empty decoding would prove nothing"
    assert [item.activities for item in from_geyser if isinstance(item, DecodedTransaction)] == activities
    assert [item.activities for item in from_recorded if isinstance(item, DecodedTransaction)] == activities
    assert "base64" not in rpc_text and update.transaction.transaction.signature  # bytes, not base58 text


def test_a_failed_transaction_carries_its_bincode_error_and_decodes_as_failed() -> None:
    """An instruction's custom error is bincode (variant 8, index, variant 25, code): the normaliser sees a failure."""
    assert transaction_error_bytes({"InstructionError": [2, {"Custom": 6001}]}) == bytes.fromhex(
        "08000000021900000071170000"
    )
    result = orjson.loads((CORPUS_DIR / f"{TWIN}.json").read_text())["result"]
    result["meta"]["err"] = {"InstructionError": [4, {"Custom": 1}]}
    frame = Frame(
        START * NS_PER_S, "grpc", FrameKind.TRANSACTION, json_format.MessageToJson(subscribe_update_of(result))
    )

    decoded = parse_frame(frame)

    assert [item.activities for item in decoded if isinstance(item, DecodedTransaction)] == [()]


def test_a_snapshot_of_another_program_group_is_refused() -> None:
    """Resuming a group from another group's snapshot emits nothing, keeps that snapshot, and says why."""
    source = _source("http://127.0.0.1:1")
    other = GrpcPosition(("whirLbMiicVdio4qvUfM5KAg6Ct8VwpYzGff3uctyCc",), 5, (("sig", 5),))

    part = source.build_part("grpc", f"grpc:{JUPITER}", other)

    with pytest.raises(StopIteration):
        part.next_batch()
    assert part.snapshot() == other
    assert isinstance(source.refusal, ResumeRefusedError)
    assert "whirLbMiicVdio4qvUfM5KAg6Ct8VwpYzGff3uctyCc" in str(source.refusal) and JUPITER in str(source.refusal)


@pytest.mark.slow
@pytest.mark.parametrize("commitment", ["processed", "confirmed"])
def test_every_dex_transaction_once_through_drops_and_from_slot_replays(chain: SimulatedChain, commitment: str) -> None:
    """Streams dropped every second reconnect with from_slot; the replayed overlap is dropped: each tx once."""
    expected = _expected(chain)
    reconnects = metrics.total(metrics.RECONNECTS)
    with YellowstonePeer(chain, faults=GrpcFaults(drop_every_s=1.0), token=TOKEN, ping_every_s=0.2) as peer:
        source = _source(peer.url, commitment=commitment)
        emitted, _, frames = _read(source, _from_the_start(source, chain), lambda got: set(expected) <= set(got))

        replays = [request.from_slot for request in peer.subscriptions if request.HasField("from_slot")]
        overlap = sum(peer.sent.values()) - len(peer.sent)
    assert emitted == expected
    assert len(replays) > len(GROUPS), "the drops made the source resubscribe with from_slot"
    assert overlap > 0, "the replays sent some transactions twice, which the source dropped"
    assert metrics.total(metrics.RECONNECTS) - reconnects >= len(replays) - len(GROUPS)
    assert peer.pongs > 0, "the server's pings were answered"
    assert source.failure is None and source.gaps == []
    decoded = [item for frame in frames for item in parse_frame(frame)]
    assert all(isinstance(item, DecodedTransaction) for item in decoded), "every frame normalises and decodes"
    assert sum(1 for item in decoded if isinstance(item, DecodedTransaction) and item.activities) > len(frames) // 2
    frame = frames[0]
    assert (frame.source, frame.kind) == ("grpc", "transaction")
    assert frame.position == f"grpc:{orjson.loads(frame.payload)['transaction']['slot']}:{frame.position.split(':')[2]}"


@pytest.mark.slow
def test_pings_are_answered_on_a_quiet_stream(chain: SimulatedChain) -> None:
    """Each server ping gets a ping request back, which the server answers with a pong."""
    with YellowstonePeer(chain, token=TOKEN, ping_every_s=0.1) as peer:
        source = _source(peer.url)
        deadline = time.monotonic() + DEADLINE_S

        _read(source, None, lambda _: peer.pongs >= 2 * len(GROUPS), deadline_s=DEADLINE_S)

        assert peer.pongs >= 2 * len(GROUPS) and time.monotonic() < deadline
        assert peer.streams == len(GROUPS), "answered pings keep the streams up: no reconnection"


@pytest.mark.slow
def test_a_wrong_token_is_a_clear_error_not_a_reconnect_loop(chain: SimulatedChain) -> None:
    """UNAUTHENTICATED ends each partition, with one error naming the server, the refusal and the x-token."""
    with YellowstonePeer(chain, token=TOKEN) as peer:
        source = _source(peer.url, token="wrong")
        part = source.build_part("grpc", f"grpc:{JUPITER}", None)
        deadline = time.monotonic() + DEADLINE_S
        try:
            with pytest.raises(StopIteration):
                while time.monotonic() < deadline:
                    assert part.next_batch() == []
                    time.sleep(0.01)
        finally:
            part.close()

        assert peer.streams == 1
    assert source.failure is not None
    message = str(source.failure)
    assert "unauthenticated" in message and "x-token" in message and peer.url in message
    assert TOKEN not in message and "wrong" not in message


@pytest.mark.slow
def test_resuming_from_a_snapshot_continues_without_loss_or_duplicates(chain: SimulatedChain) -> None:
    """A second source resumed from the first's snapshots emits exactly what the first had not."""
    expected = _expected(chain)
    with YellowstonePeer(chain, faults=GrpcFaults(drop_every_s=1.0), token=TOKEN) as peer:
        first_source = _source(peer.url)
        half = sum(expected.values()) // 2
        first, snapshots, _ = _read(
            first_source, _from_the_start(first_source, chain), lambda got: sum(got.values()) >= half
        )
        assert 0 < sum(first.values()) < sum(expected.values()), "the first run stopped midway"
        second_source = _source(peer.url)
        resume = {key: position for key, position in snapshots.items() if position is not None}

        second, _, _ = _read(second_source, resume, lambda got: set(expected) <= set(first) | set(got))

    assert first + second == expected


@pytest.mark.slow
def test_a_silent_stream_is_replaced_and_nothing_is_lost(chain: SimulatedChain) -> None:
    """A stream that goes quiet (no updates, no pings) past stale_after_s is reconnected from its slot."""
    expected = _expected(chain, [[JUPITER]])
    faults = GrpcFaults(silent_stream=0, silent_after_s=0.5, silent_for_s=30.0)
    with YellowstonePeer(chain, faults=faults, token=TOKEN, ping_every_s=0.1) as peer:
        source = YellowstoneSource(
            peer.url, TOKEN, [[JUPITER]], commitment="processed", reconnect_base_s=0.05, stale_after_s=0.5
        )
        emitted, _, _ = _read(source, _from_the_start(source, chain), lambda got: set(expected) <= set(got))

        assert peer.streams >= 2
        assert peer.subscriptions[1].HasField("from_slot")
    assert emitted == expected


@pytest.mark.slow
def test_a_refused_from_slot_is_a_reported_gap_and_the_stream_goes_on(chain: SimulatedChain) -> None:
    """OUT_OF_RANGE for from_slot: the source subscribes from now on and reports the gap after its slot."""
    gaps = metrics.total(metrics.GAPS)
    with YellowstonePeer(chain, faults=GrpcFaults(refuse_from_slot=1), token=TOKEN) as peer:
        source = YellowstoneSource(peer.url, TOKEN, [[JUPITER]], commitment="processed", reconnect_base_s=0.05)
        start = _from_the_start(source, chain)

        emitted, _, _ = _read(source, start, lambda got: len(got) > 0)

        assert [request.HasField("from_slot") for request in peer.subscriptions[:2]] == [True, False]
    assert [(gap.partition, gap.after_slot) for gap in source.gaps] == [(f"grpc:{JUPITER}", chain.first_slot - 1)]
    before_slot = source.gaps[0].before_slot
    assert before_slot is not None and before_slot > source.gaps[0].after_slot, "the gap ends where the stream resumed"
    assert "is not available" in source.gaps[0].reason
    assert metrics.total(metrics.GAPS) - gaps == 1
    assert emitted and max(emitted.values()) == 1


@pytest.mark.slow
def test_the_source_runs_in_a_dataflow_and_stops_cleanly(chain: SimulatedChain) -> None:
    """In bytewax's run_main the source's frames reach the sink; stop() ends the flow after what it emitted."""
    from bytewax import operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, run_main

    out: list[Frame] = []
    with YellowstonePeer(chain, token=TOKEN) as peer:
        source = _source(peer.url)
        flow = Dataflow("grpc_test")
        op.output("out", op.input("in", flow, source), TestingSink(out))

        def stop_when_flowing() -> None:
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline and len(out) < 10:
                time.sleep(0.01)
            source.stop()

        stopper = threading.Thread(target=stop_when_flowing)
        stopper.start()
        run_main(flow)
        stopper.join()

    assert len(out) >= 10
    assert len({frame.position for frame in out}) == len(out)
    update = json_format.Parse(out[0].payload, geyser.SubscribeUpdate())
    assert update.transaction.slot >= chain.first_slot


@pytest.mark.slow
def test_the_peer_applies_transaction_filters_and_reports_a_slot_after_its_transactions(chain: SimulatedChain) -> None:
    """Each update names the filters it matched (failed, include/exclude); a slot's status follows its transactions."""
    request = geyser.SubscribeRequest(commitment=geyser.CONFIRMED, from_slot=chain.first_slot)
    request.transactions["failed"].failed = True
    pump = request.transactions["pump"]
    pump.failed = False
    pump.account_include.append(PUMPFUN)
    pump.account_exclude.append(JUPITER)
    request.slots["slots"].filter_by_commitment = True
    updates: list[geyser.SubscribeUpdate] = []
    with YellowstonePeer(chain, speed=4.0) as peer, grpc.insecure_channel(peer.url.removeprefix("http://")) as channel:
        stream = channel.stream_stream(
            "/geyser.Geyser/Subscribe",
            request_serializer=geyser.SubscribeRequest.SerializeToString,
            response_deserializer=geyser.SubscribeUpdate.FromString,
        )(iter([request]), timeout=DEADLINE_S)
        for update in stream:
            updates.append(update)
            if update.WhichOneof("update_oneof") == "slot" and update.slot.slot == chain.last_slot:
                stream.cancel()
                break

    by_signature = {tx.signature: tx for tx in chain.transactions}
    wanted = {
        tx.signature: sorted(
            [
                *(["failed"] if tx.err is not None else []),
                *(["pump"] if tx.err is None and PUMPFUN in tx.mentions and JUPITER not in tx.mentions else []),
            ]
        )
        for tx in chain.transactions
    }
    sent = {}
    slots_reported: list[int] = []
    for update in updates:
        if update.WhichOneof("update_oneof") == "transaction":
            signature = signature_str(update.transaction.transaction.signature)
            assert by_signature[signature].slot not in slots_reported, "a transaction after its slot's status"
            sent[signature] = sorted(update.filters)
        elif update.WhichOneof("update_oneof") == "slot":
            assert update.slot.status == geyser.SLOT_CONFIRMED and list(update.filters) == ["slots"]
            slots_reported.append(update.slot.slot)
    assert sent == {signature: names for signature, names in wanted.items() if names}
    assert slots_reported == list(chain.slots)
