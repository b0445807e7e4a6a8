"""The parse step (`quantbot.steps.parse_frame`): a decoder failure is a dead letter naming what went
wrong, never wrong data and never an exception that stops the flow.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from quantbot.models import DeadLetter, Frame, FrameKind
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
