"""The Solana JSON-RPC client (`connectors.rpc`) against the loopback Solana peer, and its pure parts."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from connectors.rpc import (
    RpcClient,
    RpcConfigurationError,
    RpcPolicy,
    RpcServerError,
    RpcUnavailableError,
    SlotUnavailable,
    _retry_after_s,
    split_batch,
)
from quantbot.ops.peers import ChainSpec, SimulatedChain
from quantbot.ops.peers.solana_rpc import Faults, SolanaPeer
from quantbot.solana.codec import b58encode

START = 1_750_000_000
"""A fixed chain start (Unix seconds), so the chain is the same on every run."""
FAST = RpcPolicy(
    requests_per_s=10_000.0,
    max_in_flight=16,
    timeout_s=5.0,
    retry_budget_s=10.0,
    null_retry_s=2.0,
    backoff_base_s=0.01,
    backoff_cap_s=0.05,
    batch_size=1,
)
"""A policy that retries quickly: loopback answers in a millisecond."""
ENCODING = "base64"
COMMITMENT = "confirmed"
ENVELOPE = re.compile(rb'^\{"jsonrpc":"2\.0","result":(?P<result>.*),"id":\d+\}$', re.DOTALL)
"""The peer's getTransaction answer: its result bytes inside the envelope."""


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    return SimulatedChain(ChainSpec(txs=300, seed=5, start_time=START, tx_per_s=30.0, skipped_slot_share=0.2))


def _peer(chain: SimulatedChain, **faults: Any) -> SolanaPeer:
    return SolanaPeer(chain, faults=Faults(**faults), speed=None)


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _fetch(url: str, policy: RpcPolicy, signatures: list[str]) -> list[Any]:
    async with RpcClient(url, policy) as rpc:
        return await rpc.get_transactions(signatures, encoding=ENCODING, commitment=COMMITMENT)


def _counted(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _exact(chain: SimulatedChain, response: bytes | None, signature: str) -> bool:
    """Whether `response` is the peer's own answer for `signature`: its result bytes, untouched."""
    tx = chain.by_signature(signature)
    match = ENVELOPE.match(response or b"")
    return tx is not None and match is not None and match["result"] == tx.result(ENCODING)


@pytest.fixture
def signatures(chain: SimulatedChain) -> list[str]:
    return [tx.signature for tx in chain.transactions[:40]]


# ------------------------------------------------------------------------------------- against the peer


@pytest.mark.slow
def test_429_without_retry_after_is_retried_with_backoff(chain: SimulatedChain, signatures: list[str]) -> None:
    """Half the requests answered 429 with no Retry-After: every transaction still arrives, retries counted."""
    before = _counted("quantbot_rpc_retries_total", {"reason": "rate_limited"})
    with _peer(chain, http_429_share=0.5, seed=1) as peer:
        fetched = _run(_fetch(peer.http_url, FAST, signatures))
        counters = peer.counters()

    assert [f.signature for f in fetched] == signatures
    assert all(f.problem is None and _exact(chain, f.response, f.signature) for f in fetched)
    assert counters.responses[429] > 0
    assert _counted("quantbot_rpc_retries_total", {"reason": "rate_limited"}) - before == counters.responses[429]


@pytest.mark.slow
def test_429_with_retry_after_waits_that_long_and_gives_up_after_the_budget(chain: SimulatedChain) -> None:
    """Retry-After: 1 under a 2.5 s budget: about three attempts (not hundreds), then RpcUnavailableError."""
    policy = RpcPolicy(**{**FAST.__dict__, "retry_budget_s": 2.5})
    with _peer(chain, http_429_share=1.0, retry_after_s=1) as peer:
        started = time.monotonic()
        with pytest.raises(RpcUnavailableError) as raised:
            _run(_fetch(peer.http_url, policy, [chain.transactions[0].signature]))
        elapsed = time.monotonic() - started
        attempts = peer.counters().http_requests

    assert 2 <= attempts <= 4, attempts
    assert 2.0 <= elapsed < 10.0
    assert raised.value.retryable
    assert "rate limited" in str(raised.value)


@pytest.mark.slow
def test_429_with_retry_after_succeeds_once_the_provider_lets_up(chain: SimulatedChain) -> None:
    """A provider answering 429 (Retry-After: 1) for a while, then answering: the call succeeds after the wait."""
    signature = chain.transactions[1].signature
    with _peer(chain, http_429_share=1.0, retry_after_s=1) as peer:
        lift = threading.Timer(0.5, lambda: setattr(peer.faults, "http_429_share", 0.0))
        lift.start()
        try:
            started = time.monotonic()
            (fetched,) = _run(_fetch(peer.http_url, FAST, [signature]))
            elapsed = time.monotonic() - started
        finally:
            lift.cancel()
        counters = peer.counters()

    assert fetched.problem is None and _exact(chain, fetched.response, signature)
    assert counters.responses[429] == 1 and counters.http_requests == 2  # it waited the second out
    assert elapsed >= 0.9


@pytest.mark.slow
def test_503_is_retried(chain: SimulatedChain, signatures: list[str]) -> None:
    """A third of the requests answered 503: every transaction arrives, the 503s were retried."""
    with _peer(chain, http_503_share=0.3, seed=2) as peer:
        fetched = _run(_fetch(peer.http_url, FAST, signatures))
        counters = peer.counters()

    assert counters.responses[503] > 0
    assert all(f.problem is None and _exact(chain, f.response, f.signature) for f in fetched)


@pytest.mark.slow
def test_503_forever_ends_in_unavailable_after_the_budget(chain: SimulatedChain) -> None:
    """Every request 503: RpcUnavailableError after the retry budget, caused by the last server error."""
    policy = RpcPolicy(**{**FAST.__dict__, "retry_budget_s": 0.5})
    with _peer(chain, http_503_share=1.0) as peer:
        started = time.monotonic()
        with pytest.raises(RpcUnavailableError) as raised:
            _run(_fetch(peer.http_url, policy, [chain.transactions[0].signature]))
        elapsed = time.monotonic() - started

    assert isinstance(raised.value.__cause__, RpcServerError)
    assert 0.4 <= elapsed < 5.0
    assert "HTTP 503" in str(raised.value)


@pytest.mark.slow
def test_null_then_found_is_asked_again(chain: SimulatedChain, signatures: list[str]) -> None:
    """Every first getTransaction answered null (a node behind): each is asked again and found."""
    before = _counted("quantbot_rpc_retries_total", {"reason": "null"})
    with _peer(chain, null_first_fetch_share=1.0) as peer:
        fetched = _run(_fetch(peer.http_url, FAST, signatures))
        counters = peer.counters()

    assert counters.null_first_fetches == len(signatures)
    assert all(f.problem is None and _exact(chain, f.response, f.signature) for f in fetched)
    assert _counted("quantbot_rpc_retries_total", {"reason": "null"}) - before == len(signatures)


@pytest.mark.slow
def test_null_forever_is_a_problem_after_null_retry_s_never_dropped(chain: SimulatedChain) -> None:
    """A signature the chain does not hold: asked for null_retry_s, then Fetched(problem=...) with the null answer."""
    unknown = b58encode(bytes(range(64)))
    policy = RpcPolicy(**{**FAST.__dict__, "null_retry_s": 0.5})
    with _peer(chain) as peer:
        started = time.monotonic()
        (fetched,) = _run(_fetch(peer.http_url, policy, [unknown]))
        elapsed = time.monotonic() - started
        asked = peer.counters().requests["getTransaction"]

    assert fetched.signature == unknown
    assert fetched.problem is not None and "null" in fetched.problem
    assert fetched.response is not None and orjson.loads(fetched.response)["result"] is None
    assert asked >= 2
    assert 0.4 <= elapsed < 5.0


@pytest.mark.slow
def test_unsupported_version_is_a_configuration_error(chain: SimulatedChain) -> None:
    """A v0 transaction asked for raw without maxSupportedTransactionVersion: -32015, a fatal configuration error.

    The client's own getTransaction sends the parameter, so the same transaction arrives through it.
    """
    v0 = next(tx for tx in chain.transactions if tx.version == 0)

    async def misuse(url: str) -> tuple[bytes, Any]:
        async with RpcClient(url, FAST) as rpc:
            with pytest.raises(RpcConfigurationError) as raised:
                await rpc.call("getTransaction", [v0.signature, {"encoding": ENCODING, "commitment": COMMITMENT}])
            fetched = await rpc.get_transaction(v0.signature, encoding=ENCODING, commitment=COMMITMENT)
            return raised.value, fetched

    with _peer(chain) as peer:
        error, fetched = _run(misuse(peer.http_url))

    assert error.code == -32015
    assert not error.retryable
    assert "maxSupportedTransactionVersion" in str(error)
    assert fetched.problem is None and _exact(chain, fetched.response, v0.signature)


@pytest.mark.slow
def test_batches_split_back_into_each_calls_exact_bytes(chain: SimulatedChain) -> None:
    """50 transactions in batches of 20: three HTTP requests, each transaction's answer byte for byte."""
    signatures = [tx.signature for tx in chain.transactions[100:150]]
    policy = RpcPolicy(**{**FAST.__dict__, "batch_size": 20})
    with _peer(chain) as peer:
        fetched = _run(_fetch(peer.http_url, policy, signatures))
        counters = peer.counters()

    assert counters.http_requests == 3
    assert counters.requests["getTransaction"] == len(signatures)
    assert [f.signature for f in fetched] == signatures
    assert all(f.problem is None and _exact(chain, f.response, f.signature) for f in fetched)


@pytest.mark.slow
def test_a_refused_batch_falls_back_to_single_calls_once(chain: SimulatedChain) -> None:
    """A provider refusing batches (HTTP 403): one refusal, then every call alone, and all transactions arrive."""
    signatures = [tx.signature for tx in chain.transactions[:30]]
    policy = RpcPolicy(**{**FAST.__dict__, "batch_size": 10})

    async def fetch(url: str) -> tuple[list[Any], bool]:
        async with RpcClient(url, policy) as rpc:
            fetched = await rpc.get_transactions(signatures, encoding=ENCODING, commitment=COMMITMENT)
            return fetched, rpc.batches_refused

    with _peer(chain, batch_refused=True) as peer:
        fetched, refused = _run(fetch(peer.http_url))
        counters = peer.counters()

    assert refused
    # Three batches may be on their way before the first refusal comes back; none is sent after it.
    assert 1 <= counters.responses[403] <= 3
    assert counters.http_requests == counters.responses[403] + len(signatures)
    assert all(f.problem is None and _exact(chain, f.response, f.signature) for f in fetched)


@pytest.mark.slow
def test_the_rate_limit_holds_over_a_window(chain: SimulatedChain) -> None:
    """At 40 calls/s (batches of 5 counting 5), the peer sees no more than the rate plus one burst in 1.5 s."""
    rate, window_s = 40.0, 1.5
    policy = RpcPolicy(**{**FAST.__dict__, "requests_per_s": rate, "batch_size": 5})
    signatures = [tx.signature for tx in chain.transactions[:300]]

    async def run_for_a_window(url: str) -> None:
        async with RpcClient(url, policy) as rpc:
            task = asyncio.ensure_future(rpc.get_transactions(signatures, encoding=ENCODING, commitment=COMMITMENT))
            await asyncio.sleep(window_s)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with _peer(chain) as peer:
        _run(run_for_a_window(peer.http_url))
        calls = peer.counters().requests["getTransaction"]

    burst = rate  # the bucket holds one second of calls
    assert rate * window_s * 0.5 <= calls <= rate * window_s + burst, calls


@pytest.mark.slow
def test_block_signatures_and_unavailable_slots(chain: SimulatedChain) -> None:
    """getBlock: a produced slot's signatures in block order; skipped (-32007) and missing (-32009) slots are data."""
    produced = chain.transactions[50].slot
    skipped = next(s for s in range(chain.first_slot, chain.last_slot) if chain.is_skipped(s))

    async def blocks(url: str) -> list[Any]:
        async with RpcClient(url, FAST) as rpc:
            answers: list[Any] = []
            for slot in (produced, skipped, produced + 1):
                answers.append(await rpc.get_block_signatures(slot, commitment=COMMITMENT))
            return [*answers, await rpc.get_slot(commitment=COMMITMENT)]

    with _peer(chain, long_term_missing_slots=frozenset({produced + 1})) as peer:
        signatures, skip, missing, slot = _run(blocks(peer.http_url))

    assert signatures == list(chain.block_signatures(produced))
    assert isinstance(skip, SlotUnavailable) and skip.code == -32007 and skip.slot == skipped
    assert isinstance(missing, SlotUnavailable) and missing.code == -32009
    assert slot == chain.last_slot


# ------------------------------------------------------------------------------------------- pure parts


def test_split_batch_keeps_each_elements_bytes() -> None:
    """Elements of a batch answer come back byte for byte: spacing, key order, escapes and UTF-8 kept."""
    elements = [b'{"id":2, "result" : {"b":1,"a":"\\u00e9"}}', '{"id":1,"result":"é"}'.encode(), b"null"]
    raw = b" [\n" + b" ,\r\n\t".join(elements) + b" ]\n"

    assert split_batch(raw) == elements
    assert split_batch(b"[]") == []
    with pytest.raises(ValueError, match="not a JSON array"):
        split_batch(b'{"error": {}}')


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-1", 0.0), (None, None), ("soon", None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    """Retry-After as delta-seconds (never negative); absent or unreadable is None (backoff applies)."""
    assert _retry_after_s(value) == expected


def test_retry_after_http_date() -> None:
    """Retry-After as an HTTP date: the seconds from now until then."""
    when = datetime.now(UTC) + timedelta(seconds=30)

    seconds = _retry_after_s(format_datetime(when, usegmt=True))

    assert seconds is not None and 28.0 <= seconds <= 30.0


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    """Each wait lies in [0, min(cap, base * 2**attempt)], however many attempts came before."""
    policy = RpcPolicy(**{**FAST.__dict__, "backoff_base_s": 0.1, "backoff_cap_s": 1.0})

    for attempt, ceiling in [(0, 0.1), (1, 0.2), (3, 0.8), (4, 1.0), (5000, 1.0)]:
        waits = [policy.backoff_s(attempt) for _ in range(50)]
        assert all(0 <= w <= ceiling for w in waits) and max(waits) > ceiling / 2, (attempt, waits)


def test_policy_from_settings_and_refusals() -> None:
    """The [solana] settings map onto the policy; a non-positive rate is refused naming the field."""
    from quantbot.settings import SolanaSettings

    policy = RpcPolicy.from_settings(SolanaSettings(requests_per_s=5.0, backfill_batch_size=7))

    assert policy.requests_per_s == 5.0 and policy.batch_size == 7
    with pytest.raises(ValueError, match="requests_per_s"):
        RpcPolicy(**{**FAST.__dict__, "requests_per_s": 0.0})
