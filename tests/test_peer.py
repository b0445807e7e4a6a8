"""The simulated chain (`quantbot.ops.peers.chain`) and the Solana JSON-RPC + websocket peer built on it."""

from __future__ import annotations

import contextlib
import itertools
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import ClientConnection, connect

from quantbot.ops.peers import (
    ENCODINGS,
    SLOT_MS,
    ChainSpec,
    ChainTransaction,
    Faults,
    SimulatedChain,
    SolanaPeer,
    load_recorded,
)
from quantbot.solana.decode import decode_transaction
from quantbot.solana.normalise import parse_transactions
from tests.conftest import CORPUS_DIR

START = 1_750_000_000
"""A fixed chain start (Unix seconds), so chains are reproducible."""
JUPITER = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
PUMPFUN = "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P"


def _chain(txs: int = 300, seed: int = 5, **overrides: object) -> SimulatedChain:
    return SimulatedChain(ChainSpec(txs=txs, seed=seed, start_time=START, **overrides))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    return _chain(600, skipped_slot_share=0.2)


def test_same_spec_gives_the_same_chain_and_another_seed_does_not() -> None:
    """A chain is a function of its spec: signatures, slots and rendered bytes repeat; the seed changes them."""
    first, second, other = _chain(50), _chain(50), _chain(50, seed=6)

    assert [(t.signature, t.slot, t.index) for t in first] == [(t.signature, t.slot, t.index) for t in second]
    assert first.transactions[7].result("json") == second.transactions[7].result("json")
    assert {t.signature for t in first}.isdisjoint(t.signature for t in other)


def test_transactions_sit_in_produced_slots_in_block_order(chain: SimulatedChain) -> None:
    """Slots ascend, skipped slots hold nothing, indexes count up in each block, and due times never go back."""
    txs = chain.transactions
    skipped = [slot for slot in range(chain.first_slot, chain.last_slot) if chain.is_skipped(slot)]

    assert skipped and set(skipped).isdisjoint(chain.slots)
    assert set(chain.slots) == set(range(chain.first_slot, chain.last_slot + 1)) - set(skipped)
    assert all(not chain.is_skipped(t.slot) for t in txs)
    for before, after in itertools.pairwise(txs):
        assert (before.slot, before.index) < (after.slot, after.index) and before.due_s <= after.due_s
        assert after.index == (before.index + 1 if before.slot == after.slot else 0)
    for slot in chain.slots:
        block = chain.block(slot)
        assert block is not None and list(block.signatures) == [t.signature for t in txs if t.slot == slot]
        assert block.start_s <= min((chain.by_signature(s).due_s for s in block.signatures), default=block.start_s)  # type: ignore[union-attr]
    assert chain.block(skipped[0]) is None and chain.block_signatures(skipped[0]) == ()


def test_blocks_chain_to_their_parents_across_skips(chain: SimulatedChain) -> None:
    """Each block's parent is the previous produced slot, with that block's hash; heights count blocks only."""
    blocks = list(chain.blocks())

    for parent, child in itertools.pairwise(blocks):
        assert child.parent_slot == parent.slot and child.previous_blockhash == parent.blockhash
        assert child.block_height == parent.block_height + 1 and child.block_time >= parent.block_time


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_results_parse_to_the_transaction_and_decode_to_the_generated_trade(
    chain: SimulatedChain, encoding: str
) -> None:
    """Every encoding of a generated transaction parses to its signature and slot and decodes to its trade."""
    for tx in chain.transactions[:60]:
        expected = tx.expected
        assert expected is not None

        (parsed,) = parse_transactions(tx.result(encoding))
        activities = decode_transaction(parsed)

        assert (parsed.signature, parsed.slot, parsed.block_time) == (tx.signature, tx.slot, tx.block_time)
        assert parsed.err == tx.err and set(parsed.account_keys) == tx.mentions and parsed.logs == list(tx.logs)
        if expected.kind == "failed":
            assert activities == []
        else:
            assert [(a.trader, a.venue, a.input, a.output) for a in activities] == [
                (expected.trader, expected.venue, expected.input, expected.output)
            ]


def test_an_unknown_encoding_is_refused(chain: SimulatedChain) -> None:
    """`result` names the encoding it does not know."""
    with pytest.raises(ValueError, match="unknown encoding `binary64`"):
        chain.transactions[0].result("binary64")


def test_recorded_transactions_are_spread_and_retimed_but_kept_as_recorded() -> None:
    """Corpus results land evenly on the timeline, with their slot and block time rewritten to their place."""
    extra = load_recorded(CORPUS_DIR)
    chain = SimulatedChain(ChainSpec(txs=200, seed=2, start_time=START, extra=extra))

    recorded = [t for t in chain if t.recorded]
    positions = [i for i, t in enumerate(chain.transactions) if t.recorded]

    assert len(recorded) == len(extra) >= 30
    assert positions[0] < len(chain) / len(extra) and positions[-1] > len(chain) * (1 - 1 / len(extra))
    for tx in recorded:
        (parsed,) = parse_transactions(tx.result("jsonParsed"))
        assert (parsed.signature, parsed.slot, parsed.block_time) == (tx.signature, tx.slot, tx.block_time)
        assert tx.expected is None and tx.mentions == frozenset(parsed.account_keys)
    assert {t.version for t in recorded} >= {0, "legacy"}


def test_a_missing_corpus_directory_is_an_error(tmp_path: Path) -> None:
    """load_recorded refuses a directory that is not there rather than adding nothing."""
    with pytest.raises(FileNotFoundError, match="no corpus directory"):
        load_recorded(tmp_path / "absent")


def test_signatures_for_address_pages_newest_first_like_the_rpc(chain: SimulatedChain) -> None:
    """before/until are exclusive, paging with before walks the whole history, unknown before is empty."""
    oracle = [t.signature for t in reversed(chain.transactions) if JUPITER in t.mentions]
    assert len(oracle) > 50

    pages: list[str] = []
    before: str | None = None
    while page := chain.signatures_for_address(JUPITER, before=before, limit=17):
        pages += [t.signature for t in page]
        before = page[-1].signature

    assert pages == oracle
    assert [t.signature for t in chain.signatures_for_address(JUPITER, until=oracle[10])] == oracle[:10]
    between = chain.signatures_for_address(JUPITER, before=oracle[3], until=oracle[9])
    assert [t.signature for t in between] == oracle[4:9]
    assert chain.signatures_for_address(JUPITER, before="1" * 88) == []
    assert [t.signature for t in chain.signatures_for_address(JUPITER, until="1" * 88, limit=5)] == oracle[:5]


def test_signatures_for_address_sees_only_what_appeared(chain: SimulatedChain) -> None:
    """At a moment of the chain, only transactions due by then are listed, and a later before is unknown."""
    middle = chain.transactions[len(chain) // 2]
    now = middle.due_s
    visible = [t.signature for t in reversed(chain.transactions) if JUPITER in t.mentions and t.due_s <= now]
    later = next(t for t in chain.transactions if t.due_s > now and JUPITER in t.mentions)

    assert [t.signature for t in chain.signatures_for_address(JUPITER, visible_until_s=now)] == visible
    assert chain.signatures_for_address(JUPITER, before=later.signature, visible_until_s=now) == []


def test_prerendered_results_are_the_lazy_ones() -> None:
    """prerender fills the same bytes `result` renders on demand."""
    lazy, eager = _chain(20), _chain(20)

    eager.prerender(("json", "base64"))

    assert [t.result("base64") for t in eager] == [t.result("base64") for t in lazy]
    assert all("json" in t._cache for t in eager)


def test_dex_signatures_are_the_transactions_naming_the_programs(chain: SimulatedChain) -> None:
    """The oracle of emitted DEX transactions is exactly those whose keys name a program asked for."""
    wanted = chain.dex_signatures([JUPITER, PUMPFUN])

    assert wanted == {t.signature for t in chain if JUPITER in t.mentions or PUMPFUN in t.mentions}
    assert 0 < len(wanted) < len(chain)
    assert chain.dex_signatures([JUPITER], visible_until_s=-1.0) == frozenset()


@pytest.mark.parametrize(
    "overrides", [{"txs": -1}, {"txs": 0}, {"tx_per_s": 0.0}, {"skipped_slot_share": 1.0}, {"failed_share": -0.1}]
)
def test_impossible_chain_specs_are_refused(overrides: dict[str, object]) -> None:
    """A spec that cannot make a chain fails at construction, naming the field."""
    with pytest.raises(ValueError, match=next(iter(overrides)) if overrides != {"txs": 0} else "at least one"):
        ChainSpec(**{"txs": 10, **overrides})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the peer

PEER_CHAIN = ChainSpec(txs=300, seed=9, start_time=START, skipped_slot_share=0.2)
"""Chain for the peer tests: 300 transactions, 2.7 s of chain time, many skipped slots."""
WS_TIMEOUT_S = 5.0
"""Longest a test waits for one websocket frame that must come."""
QUIET_S = 0.5
"""How long a test listens to show that nothing comes (more than a 0.4 s slot)."""
IN_FLIGHT_S = 0.1
"""Time for frames already on the loopback wire to arrive."""


@pytest.fixture(scope="module")
def peer_chain() -> SimulatedChain:
    return SimulatedChain(PEER_CHAIN)


@pytest.fixture(scope="module")
def whole(peer_chain: SimulatedChain) -> Iterator[SolanaPeer]:
    """A peer serving the whole chain at once, without faults (read-only tests share it)."""
    with SolanaPeer(peer_chain, speed=None) as peer:
        yield peer


def _post(peer: SolanaPeer, body: Any, *, raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    """POST a JSON-RPC body; (HTTP status, headers, decoded JSON body or None when empty)."""
    data = raw if raw is not None else orjson.dumps(body)
    request = urllib.request.Request(peer.http_url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WS_TIMEOUT_S) as response:
            status, headers, payload = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, headers, payload = error.code, dict(error.headers), error.read()
    try:
        return status, headers, orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        return status, headers, payload.decode()


def _rpc(peer: SolanaPeer, method: str, *params: Any, request_id: Any = 1) -> Any:
    status, _, answer = _post(peer, {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)})
    assert status == 200 and answer["id"] == request_id
    return answer


def _legacy_and_v0(chain: SimulatedChain) -> tuple[ChainTransaction, ChainTransaction]:
    legacy = next(t for t in chain if t.version == "legacy")
    v0 = next(t for t in chain if t.version == 0)
    return legacy, v0


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["json", "jsonParsed", "base64", "base58"])
def test_get_transaction_answers_what_the_parser_and_decoder_read(
    whole: SolanaPeer, peer_chain: SimulatedChain, encoding: str
) -> None:
    """getTransaction's response text parses to the same transaction and the decoder finds the generated trade."""
    swaps = [t for t in peer_chain if t.expected is not None and t.expected.kind == "swap"][:5]

    for tx in swaps:
        config = {"encoding": encoding, "commitment": "confirmed", "maxSupportedTransactionVersion": 0}
        status, _, answer = _post(
            whole, {"jsonrpc": "2.0", "id": 7, "method": "getTransaction", "params": [tx.signature, config]}
        )
        assert status == 200 and answer["id"] == 7 and answer["result"]["version"] == tx.version
        (parsed,) = parse_transactions(orjson.dumps(answer))
        (activity,) = decode_transaction(parsed)
        assert parsed.signature == tx.signature and tx.expected is not None
        assert (activity.trader, activity.venue, activity.input, activity.output) == (
            tx.expected.trader,
            tx.expected.venue,
            tx.expected.input,
            tx.expected.output,
        )


@pytest.mark.slow
def test_get_transaction_versions_like_agave(whole: SolanaPeer, peer_chain: SimulatedChain) -> None:
    """A v0 transaction needs maxSupportedTransactionVersion (-32015); a legacy one answers without `version`."""
    legacy, v0 = _legacy_and_v0(peer_chain)

    refused = _rpc(whole, "getTransaction", v0.signature, {"encoding": "json"})
    plain = _rpc(whole, "getTransaction", legacy.signature, "json")  # the legacy bare-encoding config

    assert refused["error"] == {
        "code": -32015,
        "message": "Transaction version (0) is not supported by the requesting client. Please try the request again "
        'with the following configuration parameter: "maxSupportedTransactionVersion": 0',
    }
    assert plain["result"]["transaction"]["signatures"] == [legacy.signature] and "version" not in plain["result"]


@pytest.mark.slow
def test_get_transaction_is_null_until_due_and_for_unknown_signatures(peer_chain: SimulatedChain) -> None:
    """A transaction not yet visible, or never on the chain, answers `null`, not an error."""
    last = peer_chain.transactions[-1]
    unknown = "5" * 87
    with SolanaPeer(peer_chain, speed=0.01) as peer:  # the last transaction is minutes away
        early = _rpc(peer, "getTransaction", last.signature, {"maxSupportedTransactionVersion": 0})
        first = _rpc(
            peer, "getTransaction", peer_chain.transactions[0].signature, {"maxSupportedTransactionVersion": 0}
        )
        missing = _rpc(peer, "getTransaction", unknown, {"maxSupportedTransactionVersion": 0})

    assert early["result"] is None and missing["result"] is None
    assert first["result"]["transaction"]["signatures"] == [peer_chain.transactions[0].signature]


@pytest.mark.slow
def test_standard_errors_are_agaves(whole: SolanaPeer, peer_chain: SimulatedChain) -> None:
    """Parse error, unknown method, bad params and a commitment below confirmed answer as agave does."""
    tx = peer_chain.transactions[0]

    status, _, parse_error = _post(whole, None, raw=b'{"jsonrpc": "2.0", "id": 1, "method": ')
    unknown = _rpc(whole, "getBlockTime2", 1)
    wrong_size = _rpc(whole, "getTransaction", "abc")
    not_base58 = _rpc(whole, "getTransaction", "0" * 88)
    processed = _rpc(whole, "getTransaction", tx.signature, {"commitment": "processed"})
    too_many = _rpc(whole, "getSignaturesForAddress", JUPITER, {"limit": 1001})
    encoding = _rpc(whole, "getTransaction", tx.signature, {"encoding": "hex"})

    assert status == 200 and parse_error == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }
    assert unknown["error"] == {"code": -32601, "message": "Method not found"}
    assert wrong_size["error"] == {"code": -32602, "message": "Invalid param: WrongSize"}
    assert not_base58["error"] == {"code": -32602, "message": "Invalid param: Invalid"}
    assert processed["error"] == {"code": -32602, "message": "Method does not support commitment below `confirmed`"}
    assert too_many["error"] == {"code": -32602, "message": "Invalid limit; max 1000"}
    assert encoding["error"]["code"] == -32602 and "unknown variant `hex`" in encoding["error"]["message"]


@pytest.mark.slow
def test_batches_answer_in_order_with_their_ids(whole: SolanaPeer, peer_chain: SimulatedChain) -> None:
    """An array of calls gets an array of answers, in order, ids echoed, errors in place; [] is invalid."""
    legacy, v0 = _legacy_and_v0(peer_chain)
    calls = [
        {"jsonrpc": "2.0", "id": "a", "method": "getTransaction", "params": [v0.signature, {"encoding": "base64"}]},
        {"jsonrpc": "2.0", "id": 2, "method": "getHealth"},
        {"jsonrpc": "2.0", "id": 3, "method": "nope"},
        {"jsonrpc": "2.0", "id": 4, "method": "getTransaction", "params": [legacy.signature]},
        {"id": 5, "method": "getSlot"},
    ]

    status, _, answers = _post(whole, calls)
    _, _, empty = _post(whole, [])

    assert status == 200 and [a["id"] for a in answers] == ["a", 2, 3, 4, 5]
    assert answers[0]["error"]["code"] == -32015 and answers[1]["result"] == "ok"
    assert answers[2]["error"]["code"] == -32601
    assert answers[3]["result"]["transaction"]["signatures"] == [legacy.signature]
    assert answers[4]["error"] == {"code": -32600, "message": "Invalid request"}
    assert empty == {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid request"}, "id": None}


@pytest.mark.slow
def test_signatures_for_address_pages_over_http_like_the_chain(whole: SolanaPeer, peer_chain: SimulatedChain) -> None:
    """Paging getSignaturesForAddress with before, then until, returns the chain's oracle in RPC shape."""
    oracle = [t for t in reversed(peer_chain.transactions) if PUMPFUN in t.mentions]
    assert len(oracle) > 20

    seen: list[dict[str, Any]] = []
    before = None
    while True:
        config = {"limit": 7, "commitment": "confirmed", **({"before": before} if before else {})}
        page = _rpc(whole, "getSignaturesForAddress", PUMPFUN, config)["result"]
        if not page:
            break
        seen += page
        before = page[-1]["signature"]
    bounded = _rpc(whole, "getSignaturesForAddress", PUMPFUN, {"until": oracle[5].signature})["result"]

    assert [s["signature"] for s in seen] == [t.signature for t in oracle]
    assert [s["signature"] for s in bounded] == [t.signature for t in oracle[:5]]
    assert list(seen[0]) == ["signature", "slot", "err", "memo", "blockTime", "confirmationStatus"]
    assert [(s["slot"], s["err"], s["blockTime"]) for s in seen] == [(t.slot, t.err, t.block_time) for t in oracle]
    assert {s["confirmationStatus"] for s in seen} <= {"confirmed", "finalized"} and seen[-1]["memo"] is None


@pytest.mark.slow
def test_get_block_and_its_skipped_and_missing_slots(peer_chain: SimulatedChain) -> None:
    """getBlock lists a block's signatures; a skipped slot is -32007, a long-term gap -32009, a future one -32004."""
    produced = next(block for block in peer_chain.blocks() if block.signatures)
    skipped = next(slot for slot in range(peer_chain.first_slot, peer_chain.last_slot) if peer_chain.is_skipped(slot))
    missing = peer_chain.slots[2]
    config = {"transactionDetails": "signatures", "rewards": False, "maxSupportedTransactionVersion": 0}
    with SolanaPeer(peer_chain, speed=None, faults=Faults(long_term_missing_slots=frozenset({missing}))) as peer:
        block = _rpc(peer, "getBlock", produced.slot, config)["result"]
        full = _rpc(peer, "getBlock", produced.slot, {"maxSupportedTransactionVersion": 0})["result"]
        skip = _rpc(peer, "getBlock", skipped, config)["error"]
        gap = _rpc(peer, "getBlock", missing, config)["error"]
        future = _rpc(peer, "getBlock", peer_chain.last_slot + 10, config)["error"]
        slot = _rpc(peer, "getSlot", {"commitment": "processed"})["result"]
        health = _rpc(peer, "getHealth")["result"]
        with urllib.request.urlopen(peer.http_url + "health", timeout=WS_TIMEOUT_S) as response:
            health_page = response.read()

    assert block == {
        "blockHeight": produced.block_height,
        "blockTime": produced.block_time,
        "blockhash": produced.blockhash,
        "parentSlot": produced.parent_slot,
        "previousBlockhash": produced.previous_blockhash,
        "signatures": list(produced.signatures),
    }
    assert [t["transaction"]["signatures"][0] for t in full["transactions"]] == list(produced.signatures)
    assert skip == {
        "code": -32007,
        "message": f"Slot {skipped} was skipped, or missing due to ledger jump to recent snapshot",
    }
    assert gap == {"code": -32009, "message": f"Slot {missing} was skipped, or missing in long-term storage"}
    assert future == {"code": -32004, "message": f"Block not available for slot {peer_chain.last_slot + 10}"}
    assert slot == peer_chain.last_slot and health == "ok" and health_page == b"ok"


# ---------------------------------------------------------------------------------------------- websocket


def _subscribe(ws: ClientConnection, method: str, params: list[Any], request_id: int = 1) -> Any:
    ws.send(orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).decode())
    answer = orjson.loads(ws.recv(timeout=WS_TIMEOUT_S))
    assert answer["id"] == request_id
    return answer


def _frames(ws: ClientConnection, until: Callable[[list[Any]], bool]) -> list[Any]:
    """Frames (decoded JSON, or the raw text when it is not JSON) until `until` holds; fails on the deadline."""
    frames: list[Any] = []
    deadline = time.monotonic() + WS_TIMEOUT_S
    while not until(frames):
        text = ws.recv(timeout=max(deadline - time.monotonic(), 0.01))
        try:
            frames.append(orjson.loads(text))
        except orjson.JSONDecodeError:
            frames.append(text)
    return frames


@pytest.mark.slow
def test_logs_notifications_are_every_mentioning_transaction_from_subscription_on(peer_chain: SimulatedChain) -> None:
    """After logsSubscribe, each transaction mentioning the address comes once, in chain order, in agave's shape."""
    jupiter = [t for t in peer_chain if JUPITER in t.mentions]
    with SolanaPeer(peer_chain, speed=2.0) as peer, connect(peer.ws_url) as ws:
        subscription = _subscribe(ws, "logsSubscribe", [{"mentions": [JUPITER]}, {"commitment": "confirmed"}])["result"]
        frames = _frames(
            ws, lambda got: bool(got) and got[-1]["params"]["result"]["value"]["signature"] == jupiter[-1].signature
        )
        notified = peer.counters().notified

    signatures = [f["params"]["result"]["value"]["signature"] for f in frames]
    first = next(i for i, t in enumerate(jupiter) if t.signature == signatures[0])
    assert signatures == [t.signature for t in jupiter[first:]] and first < len(jupiter) // 2
    assert set(signatures) == set(notified)
    tx = jupiter[first]
    assert frames[0] == {
        "jsonrpc": "2.0",
        "method": "logsNotification",
        "params": {
            "result": {
                "context": {"slot": tx.slot},
                "value": {"signature": tx.signature, "err": tx.err, "logs": list(tx.logs)},
            },
            "subscription": subscription,
        },
    }


@pytest.mark.slow
def test_slot_notifications_follow_produced_slots(peer_chain: SimulatedChain) -> None:
    """slotSubscribe sends {parent, root, slot} for each produced slot, parents skipping the skipped slots."""
    with SolanaPeer(peer_chain, speed=2.0) as peer, connect(peer.ws_url) as ws:
        subscription = _subscribe(ws, "slotSubscribe", [])["result"]
        frames = _frames(ws, lambda got: len(got) >= 4)

    results = [f["params"]["result"] for f in frames]
    assert {f["method"] for f in frames} == {"slotNotification"}
    assert {f["params"]["subscription"] for f in frames} == {subscription}
    for result in results:
        block = peer_chain.block(result["slot"])
        assert block is not None and result == {
            "parent": block.parent_slot,
            "root": result["slot"] - 32,
            "slot": block.slot,
        }


@pytest.mark.slow
def test_subscription_errors_are_agaves(peer_chain: SimulatedChain) -> None:
    """Two mentioned addresses, an unknown unsubscribe and an unknown method answer agave's errors."""
    with SolanaPeer(peer_chain, speed=0.01) as peer, connect(peer.ws_url) as ws:
        two = _subscribe(ws, "logsSubscribe", [{"mentions": [JUPITER, PUMPFUN]}], 1)
        subscription = _subscribe(ws, "logsSubscribe", [{"mentions": [JUPITER]}], 2)["result"]
        done = _subscribe(ws, "logsUnsubscribe", [subscription], 3)
        again = _subscribe(ws, "logsUnsubscribe", [subscription], 4)
        unknown = _subscribe(ws, "getTransaction", [], 5)

    assert two["error"] == {"code": -32602, "message": "Invalid Request: Only 1 address supported"}
    assert done["result"] is True
    assert again["error"] == {"code": -32602, "message": "Invalid subscription id."}
    assert unknown["error"] == {"code": -32601, "message": "Method not found"}


# ---------------------------------------------------------------------------------------------- faults


@pytest.mark.slow
def test_drops_abort_connections_without_a_close_frame(peer_chain: SimulatedChain) -> None:
    """With drop_every_s, the client's connection ends abruptly (1006, no close frame) and the drop is counted."""
    with SolanaPeer(peer_chain, speed=0.01, faults=Faults(drop_every_s=0.2)) as peer, connect(peer.ws_url) as ws:
        _subscribe(ws, "slotSubscribe", [])
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=WS_TIMEOUT_S)
        drops = peer.counters().drops

    assert closed.value.rcvd is None and drops >= 1


@pytest.mark.slow
def test_a_silent_peer_keeps_the_connection_and_sends_nothing(peer_chain: SimulatedChain) -> None:
    """A silent peer sends no frame (pings still answered) until the fault is lifted."""
    with SolanaPeer(peer_chain, speed=1.0) as peer, connect(peer.ws_url) as ws:
        _subscribe(ws, "slotSubscribe", [])
        ws.recv(timeout=WS_TIMEOUT_S)  # slots do come
        peer.faults.silent = True
        time.sleep(IN_FLIGHT_S)
        with contextlib.suppress(TimeoutError):
            while True:  # drain what was on the wire before the fault
                ws.recv(timeout=0)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=QUIET_S)  # more than a slot's time
        ws.ping().wait(WS_TIMEOUT_S)
        peer.faults.silent = False
        resumed = orjson.loads(ws.recv(timeout=WS_TIMEOUT_S))

    assert resumed["method"] == "slotNotification"


@pytest.mark.slow
def test_oversize_notifications_exceed_a_one_mebibyte_client_limit(peer_chain: SimulatedChain) -> None:
    """oversize_every=1 pads logs past 1 MiB: a client at websockets' default limit is closed with 1009."""
    with (
        SolanaPeer(peer_chain, speed=2.0, faults=Faults(oversize_every=1)) as peer,
        connect(peer.ws_url) as ws,
        connect(peer.ws_url, max_size=None) as roomy,
    ):
        _subscribe(ws, "logsSubscribe", [{"mentions": [JUPITER]}])
        _subscribe(roomy, "logsSubscribe", [{"mentions": [JUPITER]}])
        big = roomy.recv(timeout=WS_TIMEOUT_S)
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=WS_TIMEOUT_S)

    assert len(big) > 1 << 20 and orjson.loads(big)["method"] == "logsNotification"
    assert closed.value.sent is not None and closed.value.sent.code == 1009


@pytest.mark.slow
def test_malformed_frames_come_beside_the_notifications(peer_chain: SimulatedChain) -> None:
    """malformed_share=1 puts a garbage frame before every notification, which still comes."""
    with (
        SolanaPeer(peer_chain, speed=2.0, faults=Faults(malformed_share=1.0, seed=3)) as peer,
        connect(peer.ws_url) as ws,
    ):
        subscription = _subscribe(ws, "logsSubscribe", [{"mentions": [JUPITER]}])["result"]
        frames = _frames(ws, lambda got: len(got) >= 30)
        counters = peer.counters()

    good = [f for f in frames if isinstance(f, dict) and f.get("params", {}).get("subscription") == subscription]
    assert len(frames) - len(good) >= len(good) - 1 and counters.malformed_frames >= len(frames) // 2
    assert any(isinstance(f, str) for f in frames)


@pytest.mark.slow
def test_rate_limits_and_unavailability_answer_like_providers(peer_chain: SimulatedChain) -> None:
    """429 carries a JSON-RPC error and Retry-After when configured; 503 is plain text; both are counted."""
    call = {"jsonrpc": "2.0", "id": 9, "method": "getHealth"}
    with SolanaPeer(peer_chain, speed=None, faults=Faults(http_429_share=1.0, retry_after_s=2)) as peer:
        limited = _post(peer, call)
        peer.faults.retry_after_s = None
        bare = _post(peer, call)
        peer.faults.http_429_share, peer.faults.http_503_share = 0.0, 1.0
        unavailable = _post(peer, call)
        counters = peer.counters()

    assert limited[0] == 429 and limited[1]["Retry-After"] == "2"
    assert limited[2] == {"jsonrpc": "2.0", "error": {"code": -32429, "message": "rate limit exceeded"}, "id": 9}
    assert bare[0] == 429 and "Retry-After" not in bare[1]
    assert unavailable[0] == 503 and unavailable[2] == "Service Unavailable"
    assert counters.responses == {429: 2, 503: 1} and counters.requests == {}


@pytest.mark.slow
def test_a_null_first_fetch_is_answered_on_the_next_call(peer_chain: SimulatedChain) -> None:
    """null_first_fetch_share=1: a visible signature's first getTransaction is null, the second answers it."""
    tx = peer_chain.transactions[10]
    with SolanaPeer(peer_chain, speed=None, faults=Faults(null_first_fetch_share=1.0)) as peer:
        first = _rpc(peer, "getTransaction", tx.signature, {"maxSupportedTransactionVersion": 0})
        second = _rpc(peer, "getTransaction", tx.signature, {"maxSupportedTransactionVersion": 0})
        counters = peer.counters()

    assert first["result"] is None and second["result"]["transaction"]["signatures"] == [tx.signature]
    assert counters.null_first_fetches == 1 and counters.requests["getTransaction"] == 2


@pytest.mark.slow
def test_refused_batches_answer_like_helius_free_plans(peer_chain: SimulatedChain) -> None:
    """batch_refused: a batch is HTTP 403 with Helius's -32403 error, a single call still works."""
    with SolanaPeer(peer_chain, speed=None, faults=Faults(batch_refused=True)) as peer:
        status, _, refused = _post(peer, [{"jsonrpc": "2.0", "id": 1, "method": "getHealth"}])
        single = _rpc(peer, "getHealth")

    assert status == 403 and refused["error"]["code"] == -32403
    assert refused["error"]["message"].startswith("Batch requests are only available for paid plans")
    assert single["result"] == "ok"


@pytest.mark.slow
def test_emitted_dex_grows_with_the_clock(peer_chain: SimulatedChain) -> None:
    """emitted_dex is the chain's DEX transactions visible so far: a few at first, all once the chain is over."""
    with SolanaPeer(peer_chain, speed=4.0) as peer:
        early = peer.emitted_dex([JUPITER])
        deadline = time.monotonic() + WS_TIMEOUT_S
        while peer.elapsed_s < peer_chain.duration_s and time.monotonic() < deadline:
            time.sleep(0.05)
        late = peer.emitted_dex([JUPITER])

    assert early < late == peer_chain.dex_signatures([JUPITER])


@pytest.mark.slow
def test_a_restarted_peer_keeps_its_port_and_its_clock(peer_chain: SimulatedChain) -> None:
    """stop() then start() ends the connections, listens on the same port, and the chain goes on from where it was."""
    peer = SolanaPeer(peer_chain, speed=1.0)
    with peer, connect(peer.ws_url) as ws:
        port = peer.port
        _subscribe(ws, "slotSubscribe", [])
        peer.stop()
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=WS_TIMEOUT_S)
        stopped_at = peer.elapsed_s
        peer.start()
        with connect(peer.ws_url) as again:
            _subscribe(again, "slotSubscribe", [])
            slot = orjson.loads(again.recv(timeout=WS_TIMEOUT_S))["params"]["result"]["slot"]

    assert peer.port == port and slot >= peer_chain.first_slot + int(stopped_at * 1000 // SLOT_MS)
