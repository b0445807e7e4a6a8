"""Where token facts come from: the test peer's account methods over HTTP, the live source's `request_token`
against it, and the synthetic feed's `accounts` frames, which must hold what the peer serves."""

from __future__ import annotations

import dataclasses
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from connectors.solana_ws import SOURCE, SolanaLogsSource, _LivePartition
from connectors.token_facts import PARTITION, TokenFactsSource
from quantbot.health import SourceActivity
from quantbot.live import LivePosition
from quantbot.models import DeadLetter, Frame, FrameKind
from quantbot.ops.peers.chain import ChainSpec, SimulatedChain
from quantbot.ops.peers.solana_rpc import SolanaPeer
from quantbot.solana.codec import b64decode
from quantbot.solana.context import TOKEN_2022_PROGRAM
from quantbot.steps import parse_frame
from quantbot.synthetic import FeedSpec, iter_feed
from quantbot.tokens import METADATA_PROGRAM, TokenFacts, accounts_request, metadata_address, parse_accounts
from tests.test_live import PROGRAMS, config_for, running, wait_for

pytestmark = pytest.mark.slow  # peers on loopback, live partitions

START = 1_750_000_000
SEED = 21
TXS = 300
HTTP_TIMEOUT_S = 10.0
UNKNOWN = "Vote111111111111111111111111111111111111111"
"""An address the simulated chain holds no account at."""


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    return SimulatedChain(ChainSpec(txs=TXS, seed=SEED, start_time=START))


@pytest.fixture(scope="module")
def peer(chain: SimulatedChain) -> Iterator[SolanaPeer]:
    """The whole chain at once: the slot answers report stays the chain's last, so answers repeat exactly."""
    with SolanaPeer(chain, speed=None) as running:
        yield running


def _post(peer: SolanaPeer, body: Any) -> bytes:
    """POST a JSON-RPC body; the answer's bytes (HTTP 200 expected)."""
    request = urllib.request.Request(
        peer.http_url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        assert response.status == 200
        raw: bytes = response.read()
    return raw


def _call(peer: SolanaPeer, method: str, *params: Any) -> dict[str, Any]:
    answer: dict[str, Any] = orjson.loads(
        _post(peer, {"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)})
    )
    return answer


def test_the_peer_answers_each_mint_as_the_feed_records_it(peer: SolanaPeer, chain: SimulatedChain) -> None:
    """getMultipleAccounts of a mint and its metadata PDA answers, byte for byte, the encoders' response; it parses."""
    programs: set[str] = set()
    for mint, accounts in chain.token_accounts.items():
        raw = _post(peer, accounts_request(mint))

        assert raw.decode() == accounts.response(chain.last_slot)
        facts = parse_accounts(raw.decode(), 0, "peer")
        assert facts.mint == mint and facts.slot == chain.last_slot
        programs.add(facts.program)
    assert programs == {"spl_token", "token_2022"} and len(chain.token_accounts) > 100
    missing = _call(peer, "getMultipleAccounts", [UNKNOWN, metadata_address(UNKNOWN)], {"encoding": "base64"})
    assert missing["result"]["value"] == [None, None]


def test_get_account_info_answers_one_account_or_null(peer: SolanaPeer, chain: SimulatedChain) -> None:
    """getAccountInfo answers a mint's and a metadata account's owner, bytes, lamports and size; null elsewhere."""
    accounts = next(
        a for a in chain.token_accounts.values() if a.metadata is not None and a.mint_account[0] == TOKEN_2022_PROGRAM
    )
    config = {"encoding": "base64", "commitment": "confirmed"}

    mint = _call(peer, "getAccountInfo", accounts.mint, config)["result"]
    metadata = _call(peer, "getAccountInfo", accounts.metadata_address, config)["result"]
    nothing = _call(peer, "getAccountInfo", UNKNOWN, config)["result"]

    owner, data, lamports = accounts.mint_account
    assert mint["context"]["slot"] == chain.last_slot and nothing["value"] is None
    assert (mint["value"]["owner"], b64decode(mint["value"]["data"][0]), mint["value"]["lamports"]) == (
        owner,
        data,
        lamports,
    )
    assert mint["value"]["space"] == len(data) and mint["value"]["executable"] is False
    assert metadata["value"]["owner"] == METADATA_PROGRAM and metadata["value"]["space"] == 607


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("getAccountInfo", [UNKNOWN], "serves account data in `base64`, not `binary`"),
        ("getAccountInfo", [UNKNOWN, {"encoding": "jsonParsed"}], "not `jsonParsed`"),
        ("getAccountInfo", [UNKNOWN, {"encoding": "hex"}], "unknown variant `hex`, expected one of `binary`"),
        ("getAccountInfo", [UNKNOWN, {"encoding": "base64", "dataSlice": {"offset": 0, "length": 8}}], "dataSlice"),
        ("getAccountInfo", ["abc", {"encoding": "base64"}], "Invalid param: "),
        ("getMultipleAccounts", [[UNKNOWN] * 101, {"encoding": "base64"}], "Too many inputs provided; max 100"),
        ("getMultipleAccounts", [UNKNOWN, {"encoding": "base64"}], "invalid type: string"),
        ("getMultipleAccounts", [[UNKNOWN], {"encoding": "base64", "commitment": "soon"}], "unknown variant `soon`"),
    ],
    ids=[
        "default-base58",
        "json-parsed",
        "unknown-encoding",
        "data-slice",
        "bad-key",
        "too-many",
        "not-a-list",
        "commitment",
    ],
)
def test_what_the_peer_does_not_serve_is_invalid_params(
    peer: SolanaPeer, method: str, params: list[Any], message: str
) -> None:
    """An encoding other than base64, a data slice, a bad key, too many keys: JSON-RPC -32602 saying which."""
    error = _call(peer, method, *params)["error"]

    assert error["code"] == -32602 and message in error["message"]


def _comparable(facts: TokenFacts) -> TokenFacts:
    return dataclasses.replace(facts, received_ns=0, position="", slot=None)


def test_the_feeds_accounts_frames_hold_what_the_peer_serves(peer: SolanaPeer) -> None:
    """Each `accounts` frame of the synthetic feed of the chain's seed parses to the facts the peer's answer gives."""
    compared = 0
    for item, _ in iter_feed(FeedSpec(txs=TXS, seed=SEED, start_time=START)):
        if not (isinstance(item, Frame) and item.kind == FrameKind.ACCOUNTS):
            continue
        (recorded,) = parse_frame(item)
        assert isinstance(recorded, TokenFacts)
        served = parse_accounts(_post(peer, accounts_request(recorded.mint)).decode(), 0, "peer")
        assert _comparable(recorded) == _comparable(served)
        compared += 1
    assert compared > 50


# ------------------------------------------------------------- the sources that answer the flow's token requests

ASKERS = ("websocket", "token_facts")
"""The partitions that answer token requests: the websocket source's (its own RPC client) and the token-facts
source's (`connectors.token_facts`, beside a Yellowstone stream)."""


@dataclass(frozen=True)
class _Asker:
    """A partition answering token requests, whose batches only the test takes (what it emitted stays in flight
    until then): how to ask it for a mint, and the mints its snapshot holds as asked and not handed out."""

    partition: Any
    ask: Callable[[str], bool]
    pending: Callable[[], tuple[str, ...]]


def _asker(kind: str, peer: SolanaPeer, pending: tuple[str, ...] = (), **policy: Any) -> _Asker:
    """A partition of `kind` on `peer`, resumed with `pending` mints, its RPC policy changed by `policy`.

    The websocket partition's stream is never stale within a test (a whole-chain peer sends no notifications),
    so nothing but the test's requests reaches the node after the start.
    """
    config = config_for(peer, stale_after_s=120.0)
    config = dataclasses.replace(config, policy=dataclasses.replace(config.policy, **policy))
    if kind == "websocket":
        resume = LivePosition(SOURCE, PROGRAMS, tokens=pending) if pending else None
        live = _LivePartition(
            config, 0, resume, stopping=threading.Event(), on_event=None, activity=SourceActivity(SOURCE)
        )
        return _Asker(live, live.request_token_threadsafe, lambda: live.snapshot().tokens)
    facts = TokenFactsSource(peer.http_url, config.policy).build_part("feed_tokens", PARTITION, pending or None)
    return _Asker(facts, facts.ask_threadsafe, facts.snapshot)  # type: ignore[attr-defined]


def _requests(peer: SolanaPeer) -> int:
    return peer.counters().requests["getMultipleAccounts"]


def _drain(asker: _Asker, until: int, what: str) -> list[Frame | DeadLetter]:
    """Batches until `until` items came (accounts frames and dead letters; transactions are not expected)."""
    out: list[Frame | DeadLetter] = []
    wait_for(lambda: bool(out.extend(asker.partition.next_batch())) or len(out) >= until, what)
    return out


def _mints(chain: SimulatedChain, count: int) -> list[str]:
    return list(chain.token_accounts)[:count]


@pytest.mark.parametrize("kind", ASKERS)
def test_request_token_emits_the_answer_as_it_came_and_asks_once_in_flight(
    peer: SolanaPeer, chain: SimulatedChain, kind: str
) -> None:
    """A token request makes one getMultipleAccounts while the mint's answer is in flight, emitted exactly as
    received as an `accounts` frame; once handed to the flow, the mint may be asked again (a refresh)."""
    mint, other = _mints(chain, 2)
    asker = _asker(kind, peer)
    try:
        before = _requests(peer)
        wait_for(lambda: asker.ask(mint), "a running partition")
        assert asker.ask(mint)  # in flight (nothing was handed out yet): not asked again
        assert asker.ask(other)
        # The loop takes the requests in order: once `other` reached the node, the repeat was seen too.
        wait_for(lambda: _requests(peer) - before >= 2, "both requests at the node")
        assert asker.pending() == (mint, other)

        out = _drain(asker, 2, "both answers")

        assert _requests(peer) - before == 2
        frames = {item.position: item for item in out if isinstance(item, Frame)}
        assert set(frames) == {f"rpc:accounts:{mint}", f"rpc:accounts:{other}"}
        frame = frames[f"rpc:accounts:{mint}"]
        assert (frame.kind, frame.source) == (FrameKind.ACCOUNTS.value, "rpc")
        assert frame.payload == _post(peer, accounts_request(mint)).decode()
        assert asker.pending() == ()

        asked = _requests(peer)
        assert asker.ask(mint)
        (again,) = _drain(asker, 1, "the refresh")
        assert isinstance(again, Frame) and again.payload == frame.payload and _requests(peer) == asked + 1
    finally:
        asker.partition.close()


@pytest.mark.parametrize("kind", ASKERS)
def test_failed_token_requests_are_dead_letters_naming_the_mint(chain: SimulatedChain, kind: str) -> None:
    """A mint that is no address, or a node failing past the retry budget: a `fetch` dead letter naming the mint,
    and the source goes on (the next request is answered)."""
    (mint,) = _mints(chain, 1)
    with SolanaPeer(chain, speed=None) as peer:
        asker = _asker(kind, peer, retry_budget_s=0.3)
        try:
            wait_for(lambda: asker.ask("not-a-mint"), "a running partition")
            (refused,) = _drain(asker, 1, "the refused request's letter")
            peer.faults.http_503_share = 1.0
            assert asker.ask(mint)
            (failed,) = _drain(asker, 1, "the failed request's letter")
            peer.faults.http_503_share = 0.0
            assert asker.ask(mint)
            (answered,) = _drain(asker, 1, "the answer once the node is back")
        finally:
            asker.partition.close()
    assert isinstance(refused, DeadLetter) and (refused.stage, refused.raw) == ("fetch", "not-a-mint")
    assert refused.position == "rpc:accounts:not-a-mint" and "not a base58 32-byte address" in refused.reason
    assert isinstance(failed, DeadLetter) and (failed.stage, failed.raw, failed.source) == ("fetch", mint, "rpc")
    assert f"getMultipleAccounts of mint {mint} failed" in failed.reason and "still failing" in failed.reason
    assert isinstance(answered, Frame) and parse_accounts(answered.payload, 0, "p").mint == mint


@pytest.mark.parametrize("kind", ASKERS)
def test_pending_token_requests_survive_a_snapshot(peer: SolanaPeer, chain: SimulatedChain, kind: str) -> None:
    """A partition resumed from a snapshot holding asked-for mints asks for them again, unprompted."""
    mints = tuple(_mints(chain, 3)[1:])
    asker = _asker(kind, peer, mints)
    try:
        assert asker.pending() == mints
        out = _drain(asker, 2, "the pending mints' answers")
        assert asker.pending() == ()
    finally:
        asker.partition.close()
    assert sorted(item.position for item in out) == sorted(f"rpc:accounts:{mint}" for mint in mints)
    assert all(isinstance(item, Frame) and item.kind == FrameKind.ACCOUNTS.value for item in out)
    assert {parse_accounts(item.payload, 0, "p").mint for item in out if isinstance(item, Frame)} == set(mints)


@pytest.mark.parametrize("kind", ASKERS)
def test_the_source_takes_token_requests_from_the_flows_thread(
    peer: SolanaPeer, chain: SimulatedChain, kind: str
) -> None:
    """The source's `request_token` (the flow's `on_token_request`) reaches a running partition: the answer comes
    out of the dataflow as an `accounts` frame, and nothing else but the chain's transactions; `stop()` ends it."""
    (mint,) = _mints(chain, 1)
    source: SolanaLogsSource | TokenFactsSource = (
        SolanaLogsSource(config_for(peer, stale_after_s=120.0))
        if kind == "websocket"
        else TokenFactsSource(peer.http_url, config_for(peer).policy)
    )
    out: list[Any] = []
    assert not source.request_token(mint)  # no partition runs yet: nothing takes it
    with running(source, out) as stop:  # type: ignore[arg-type]
        wait_for(lambda: source.request_token(mint), "a running partition")
        wait_for(lambda: any(isinstance(item, Frame) and item.kind == "accounts" for item in out), "the answer")
        stop()
    (frame,) = [item for item in out if not (isinstance(item, Frame) and item.kind == FrameKind.TRANSACTION.value)]
    assert isinstance(frame, Frame) and frame.kind == FrameKind.ACCOUNTS.value
    assert parse_accounts(frame.payload, frame.received_ns, frame.position).mint == mint
