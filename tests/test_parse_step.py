"""The parse step (`quantbot.steps.parse_frame`): a decoder failure or an implausible value is a dead letter
naming what went wrong, never wrong data and never an exception that stops the flow.

Bad transactions are real corpus transactions with one value edited in memory.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from quantbot.models import DeadLetter, Frame, FrameKind
from quantbot.pricing import FeedQuote
from quantbot.solana import decode
from quantbot.solana.programs import pumpfun
from quantbot.steps import DecodedTransaction, parse_frame
from tests.solana.conftest import CORPUS, file_of

PUMPFUN_TX = "3tJczs8y2bR8"
"""A Pump.fun buy (top-level `blockTime` 1725658406): its decoder is the one forced to fail."""
ROUTE_TX = "1ZSq1Aa2i6ES"
"""A Jupiter route through Raydium and Orca (`blockTime` 1718213044, 2024-06-12), with token balances."""
RECEIVED_NS = 1_725_658_410 * 1_000_000_000
"""A receive time a few seconds after both transactions' blocks."""

GEYSER_TWIN = "3rTFfi824QnhkbGxzaNrtfWs2vLo63Jy5QaNmXcBHUHTPD31fVf4UDip4Qs45AJnPhjHwuKXH7CMDdNE9V3Ug57N"
"""The corpus transaction recorded twice: as a getTransaction result and as a Yellowstone update."""


def _document(prefix: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((CORPUS / file_of(prefix)).read_bytes())
    return document


def _signature(document: dict[str, Any]) -> str:
    signature: str = document["transaction"]["signatures"][0]
    return signature


def _frame(payload: Any, received_ns: int = RECEIVED_NS, kind: str = FrameKind.TRANSACTION.value) -> Frame:
    text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    return Frame(received_ns, "test", kind, text, "rec.jsonl@7")


def _failing_decoder(inv: Any, ctx: Any) -> Any:
    raise ZeroDivisionError("forced failure")


def _decode_failures(program: str) -> float:
    return REGISTRY.get_sample_value("quantbot_decode_failures_total", {"program": program}) or 0.0


def test_a_decoder_that_raises_makes_its_transaction_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A raising Pump.fun decoder: one `decode` dead letter naming program, instruction and exception; no
    activities, no balance-derived fallback; the raw frame kept for a replay once the decoder is fixed."""
    # Arrange
    document = _document(PUMPFUN_TX)
    frame = _frame(document)
    monkeypatch.setitem(decode.DECODERS, pumpfun.PROGRAM_ID, _failing_decoder)
    before = _decode_failures(pumpfun.NAME)

    # Act
    out = parse_frame(frame)

    # Assert
    (letter,) = out
    assert isinstance(letter, DeadLetter), out
    assert letter.stage == "decode"
    assert letter.position == f"{frame.position}#{_signature(document)}"
    assert letter.raw == frame.payload
    for fragment in (pumpfun.NAME, pumpfun.PROGRAM_ID, "instruction", "ZeroDivisionError", "forced failure"):
        assert fragment in letter.reason, letter.reason
    assert _decode_failures(pumpfun.NAME) == before + 1


def test_the_other_transactions_of_a_frame_still_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame of two transactions whose first fails to decode: a dead letter for it, the second decoded."""
    # Arrange
    failing, good = _document(PUMPFUN_TX), _document(ROUTE_TX)
    frame = _frame([failing, good])
    monkeypatch.setitem(decode.DECODERS, pumpfun.PROGRAM_ID, _failing_decoder)

    # Act
    out = parse_frame(frame)

    # Assert
    letter, decoded = out
    assert isinstance(letter, DeadLetter) and letter.stage == "decode"
    assert letter.position.endswith(_signature(failing))
    assert isinstance(decoded, DecodedTransaction) and decoded.signature == _signature(good)
    assert [a.venue for a in decoded.activities] == ["jupiter_v6"]


def test_without_a_failure_the_same_frame_decodes() -> None:
    """Control: the untouched Pump.fun transaction decodes to its swap (the failure above is the patch's)."""
    # Act
    (decoded,) = parse_frame(_frame(_document(PUMPFUN_TX)))

    # Assert
    assert isinstance(decoded, DecodedTransaction)
    assert [a.venue for a in decoded.activities] == [pumpfun.NAME]


def _set_block_time(value: int) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        document["blockTime"] = value

    return edit


def _token_balance(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        entry = document["meta"]["postTokenBalances"][0]
        if field == "accountIndex":
            entry["accountIndex"] = value
        else:
            entry["uiTokenAmount"][field] = value

    return edit


def _short_pre_balances(document: dict[str, Any]) -> None:
    document["meta"]["preBalances"] = document["meta"]["preBalances"][:-1]
    document["meta"]["postBalances"] = document["meta"]["postBalances"][:-1]


def _post_balances_longer(document: dict[str, Any]) -> None:
    document["meta"]["postBalances"] = [*document["meta"]["postBalances"], 0]


def _negative_fee(document: dict[str, Any]) -> None:
    document["meta"]["fee"] = -5000


BAD_TRANSACTIONS: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    "block time before genesis": (_set_block_time(1_262_304_000), ("blockTime", "1262304000", "genesis")),
    "block time a day ahead of receipt": (
        _set_block_time(1_725_658_410 + 86_400),
        ("blockTime", "1725744810", "ahead"),
    ),
    "block time in milliseconds": (_set_block_time(1_718_213_044_000), ("blockTime", "1718213044000", "milliseconds")),
    "negative token amount": (_token_balance("amount", "-5"), ("amount", "-5")),
    "fractional token amount": (_token_balance("amount", "1.5"), ("amount", "1.5")),
    "token amount above u64": (_token_balance("amount", str(2**64)), ("amount", str(2**64))),
    "decimals 255": (_token_balance("decimals", 255), ("decimals", "255")),
    "negative decimals": (_token_balance("decimals", -1), ("decimals", "-1")),
    "token account index out of range": (_token_balance("accountIndex", 200), ("account index", "200")),
    "preBalances shorter than the keys": (_short_pre_balances, ("preBalances", "keys")),
    "postBalances longer than preBalances": (_post_balances_longer, ("postBalances",)),
    "negative fee": (_negative_fee, ("fee", "-5000")),
}


@pytest.mark.parametrize("case", list(BAD_TRANSACTIONS))
def test_an_implausible_transaction_value_is_a_normalise_dead_letter(case: str) -> None:
    """Each edited value makes the transaction a `normalise` dead letter whose reason names the value."""
    # Arrange
    edit, fragments = BAD_TRANSACTIONS[case]
    document = copy.deepcopy(_document(ROUTE_TX))
    edit(document)
    frame = _frame(document)

    # Act
    out = parse_frame(frame)

    # Assert
    (letter,) = out
    assert isinstance(letter, DeadLetter), out
    assert letter.stage == "normalise"
    assert letter.raw == frame.payload
    for fragment in fragments:
        assert fragment in letter.reason, letter.reason


def test_an_unknown_receive_time_leaves_only_the_lifetime_bound() -> None:
    """Receive time 0 (unknown): a block time a day after the route's block passes; one before genesis does not."""
    # Arrange
    later, before_genesis = copy.deepcopy(_document(ROUTE_TX)), copy.deepcopy(_document(ROUTE_TX))
    later["blockTime"] += 86_400
    before_genesis["blockTime"] = 1_262_304_000

    # Act
    (fine,) = parse_frame(_frame(later, received_ns=0))
    (refused,) = parse_frame(_frame(before_genesis, received_ns=0))

    # Assert
    assert isinstance(fine, DecodedTransaction)
    assert isinstance(refused, DeadLetter) and "genesis" in refused.reason


def test_a_block_time_within_the_allowed_skew_passes() -> None:
    """A block time a minute after the receive time (clocks disagree a little) is accepted."""
    # Arrange
    document = copy.deepcopy(_document(ROUTE_TX))
    document["blockTime"] = RECEIVED_NS // 1_000_000_000 + 60

    # Act
    (decoded,) = parse_frame(_frame(document))

    # Assert
    assert isinstance(decoded, DecodedTransaction)


def _price(ts: Any) -> str:
    return orjson.dumps({"symbol": "SOL/USD", "price": 151.2, "ts": ts}).decode()


@pytest.mark.parametrize(
    ("ts", "fragments"),
    [
        (1_725_658_400_000, ("1725658400000", "milliseconds")),
        (1_262_304_000, ("1262304000", "genesis")),
        (1_725_658_410 + 86_400, ("1725744810", "ahead")),
        (-1, ("-1",)),
    ],
)
def test_an_implausible_price_time_is_a_price_dead_letter(ts: int, fragments: tuple[str, ...]) -> None:
    """A price frame whose `ts` is in milliseconds, before genesis or far ahead of receipt is refused."""
    # Arrange
    frame = _frame(_price(ts), kind=FrameKind.PRICE.value)

    # Act
    (letter,) = parse_frame(frame)

    # Assert
    assert isinstance(letter, DeadLetter), letter
    assert letter.stage == "price"
    assert "`ts`" in letter.reason
    for fragment in fragments:
        assert fragment in letter.reason, letter.reason


def test_a_milliseconds_price_time_is_refused_even_with_an_unknown_receive_time() -> None:
    """Receive time 0: a millisecond `ts` is still refused (it is past any plausible second)."""
    # Act
    (letter,) = parse_frame(_frame(_price(1_725_658_400_000), received_ns=0, kind=FrameKind.PRICE.value))

    # Assert
    assert isinstance(letter, DeadLetter) and "milliseconds" in letter.reason


def test_a_plausible_price_frame_is_a_quote() -> None:
    """Control: a price frame in Unix seconds just before its receive time is a feed quote."""
    # Act
    (quote,) = parse_frame(_frame(_price(1_725_658_409), kind=FrameKind.PRICE.value))

    # Assert
    assert quote == FeedQuote(token=quote.token, price_usd=151.2, ts=1_725_658_409, source="test")


def test_a_transaction_without_a_block_time_is_timed_by_its_frames_receipt() -> None:
    """A Yellowstone update has no block time: its activities take the frame's receive second, not 1970;
    with the receive time unknown too, they stay untimed."""
    geyser = orjson.loads((CORPUS / f"{GEYSER_TWIN}.geyser.json").read_bytes())
    received_s = 1_700_000_123

    (timed,) = parse_frame(_frame(geyser, received_ns=received_s * 1_000_000_000))
    (untimed,) = parse_frame(_frame(geyser, received_ns=0))

    assert isinstance(timed, DecodedTransaction) and isinstance(untimed, DecodedTransaction)
    assert timed.activities and {a.block_time for a in timed.activities} == {received_s}
    assert {a.block_time for a in untimed.activities} == {None}
