"""What the Jupiter poller asks as the flow runs: configured tokens, tokens strategies hold, tokens whales traded."""

from __future__ import annotations

import pytest

from connectors.jupiter import JupiterConfig, JupiterSource
from quantbot.analytics import SignalUpdate
from quantbot.backoff import Backoff
from quantbot.interest import TokenInterest
from quantbot.models import (
    WSOL_MINT,
    Activity,
    ActivityKind,
    InstructionIndex,
    Signal,
    TokenAmount,
    ValuedActivity,
    WhaleTransaction,
)
from quantbot.ops.peers.jupiter import JupiterPeer
from quantbot.pricing import USDC_MINT
from tests.test_feed_sources import drain, opened, run_for

BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
WIF = "EKpQGSJtjMFqKZ9KQanSqYXRcF8fBopzLHYxdM65zcjm"
FAST = Backoff(base_s=0.05, cap_s=0.2)


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def whale(sold: str, bought: str, signature: str = "sig") -> WhaleTransaction:
    activity = Activity(
        signature,
        1,
        1_700_000_000,
        ActivityKind.SWAP,
        InstructionIndex(0),
        "trader",
        "raydium_amm_v4",
        TokenAmount(sold, 10**9, 9),
        TokenAmount(bought, 10**9, 6),
    )
    return WhaleTransaction(ValuedActivity(activity, 100_000.0, 150.0), "large", {})


def signal(token: str, signal_id: str) -> Signal:
    return Signal(
        signal_id, "strategy", "whale_follower", token, "buy", 50.0, 1.0, None, None, None, 0, 3_600, 1e5, 5.0, {}
    )


def test_whales_add_their_non_quote_tokens_until_they_are_old() -> None:
    """A whale's non-quote legs are polled for `whale_keep_s`; SOL and USDC never are; a newer whale renews."""
    clock = Clock()
    interest = TokenInterest((), whale_keep_s=60.0, clock=clock)
    interest.observe(whale(WSOL_MINT, BONK))
    clock.now += 30
    interest.observe(whale(JUP, USDC_MINT))
    assert interest.tokens() == (JUP, BONK)  # most recently whaled first
    clock.now += 31
    assert interest.tokens() == (JUP,)
    interest.observe(whale(WSOL_MINT, BONK))
    clock.now += 59
    assert interest.tokens() == (BONK,)


def test_held_tokens_stay_until_their_signal_closes_and_covered_ones_never_come() -> None:
    """A pending or active signal's token is polled until an update closes or expires it; a covered token is not."""
    interest = TokenInterest((WIF,), covered=(JUP,), whale_keep_s=0.0)
    interest.observe(signal(BONK, "a"))
    interest.observe(signal(JUP, "b"))
    interest.observe(whale(WSOL_MINT, JUP))  # whales are off (keep 0)
    assert interest.tokens() == (WIF, BONK)
    interest.observe(SignalUpdate(signal(BONK, "a"), "active", 10, entry_price=1.0))
    assert interest.tokens() == (WIF, BONK)
    interest.observe(SignalUpdate(signal(BONK, "a"), "closed", 20, exit_reason="take_profit"))
    assert interest.tokens() == (WIF,)


def test_at_most_max_tokens_configured_first() -> None:
    """The bound keeps configured tokens first, then held, then the newest whales."""
    interest = TokenInterest((WIF,), max_tokens=2)
    interest.observe(whale(WSOL_MINT, BONK))
    interest.observe(whale(WSOL_MINT, JUP))
    assert interest.tokens() == (WIF, JUP)
    interest.observe(signal(BONK, "a"))
    assert interest.tokens() == (WIF, BONK)


def test_the_poller_asks_for_what_the_interest_holds_each_round() -> None:
    """With nothing of interest the poller asks nothing; a whale's token is asked from the next round on."""
    with JupiterPeer({BONK: (5, 0.00002), JUP: (6, 0.9)}) as peer:
        interest = TokenInterest(())
        source = JupiterSource(JupiterConfig(peer.url, None, (), 20.0, 2.0, FAST, interest=interest))
        with opened(source) as partition:
            assert run_for(partition, 0.3) == []
            assert peer.requests == []
            interest.observe(whale(WSOL_MINT, BONK))
            drain(partition, lambda items: len(items) >= 1)
            interest.observe(signal(JUP, "a"))
            drain(partition, lambda _items: any(JUP in ids for ids in peer.requests))
            source.stop()
        requests = list(peer.requests)

    assert requests[0] == [BONK]
    assert [BONK, JUP] in requests or [JUP, BONK] in requests


def test_the_poller_needs_tokens_or_an_interest() -> None:
    """No configured token and no interest is a configuration error, said at construction."""
    with pytest.raises(ValueError, match="at least one token"):
        JupiterSource(JupiterConfig("http://127.0.0.1:1", None, (), 1.0, 1.0, FAST))
