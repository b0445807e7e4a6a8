"""Hostile input: truncated and corrupted transactions, wrong lengths, unknown discriminators, nonsense
JSON. Normalisation may only raise `TransactionFormatError`; decoders must never raise at all (a decoder
exception would surface here as `DecodeError`).
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantbot.solana.decode import KNOWN_PROGRAMS, decode_transaction
from quantbot.solana.events import EVENT_IX_TAG, event_discriminator
from quantbot.solana.normalise import TransactionFormatError, normalise, parse_transactions
from quantbot.solana.programs import jupiter, pumpfun, pumpswap
from quantbot.solana.transaction import Transaction
from tests.solana.conftest import corpus_files, cpi_event_data, ix, key, load, make_tx

SEED = 20240601
"""Fixed seed: the corruptions are random but the same on every run."""
VARIANTS_PER_TX = 12


def _mutations(data: bytes, rng: random.Random) -> list[bytes]:
    """Truncations, byte flips, an extension and an empty payload of one instruction's data."""
    out = [b"", data[:1], data[: len(data) // 2], data[:-1], data + b"\x00" * 7]
    for _ in range(3):
        if data:
            flipped = bytearray(data)
            flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            out.append(bytes(flipped))
    return out


@pytest.mark.parametrize(
    "path", corpus_files(), ids=lambda p: p.name[:12] + (".geyser" if ".geyser." in p.name else "")
)
def test_corrupted_instruction_data_never_makes_a_decoder_raise(path: Any) -> None:
    """Truncated, flipped or padded data of every known program's instructions decodes without raising."""
    rng = random.Random(SEED)
    # Arrange
    tx = load(path.name)
    targets = [(o, None) for o, i in enumerate(tx.instructions) if i.program_id in KNOWN_PROGRAMS] + [
        (o, n) for o, inner in enumerate(tx.inner) for n, i in enumerate(inner) if i.program_id in KNOWN_PROGRAMS
    ]
    for outer, inner in targets:
        original = tx.instructions[outer] if inner is None else tx.inner[outer][inner]
        data = original.data
        for mutated in _mutations(data, rng):
            copy = load(path.name)
            target = copy.instructions[outer] if inner is None else copy.inner[outer][inner]
            target.raw = mutated

            # Act / Assert: any decoder exception raises `DecodeError`.
            decode_transaction(copy)


@pytest.mark.parametrize(
    "path", corpus_files(), ids=lambda p: p.name[:12] + (".geyser" if ".geyser." in p.name else "")
)
def test_corrupted_log_lines_never_make_a_decoder_raise(path: Any) -> None:
    """Program data and ray_log lines cut short or garbled decode without raising."""
    rng = random.Random(SEED)
    # Arrange
    tx = load(path.name)
    logs = tx.logs or []
    for position, line in enumerate(logs):
        if not line.startswith(("Program data: ", "Program log: ray_log: ")):
            continue
        for variant in (line[:20], line[: len(line) // 2], line + "AAAA", line.replace("A", "B", 3), line[:-2] + "=="):
            copy = load(path.name)
            assert copy.logs is not None
            copy.logs[position] = variant
            if rng.random() < 0.5:
                copy.logs = copy.logs[: position + 1]  # and the log truncated right after

            # Act / Assert
            decode_transaction(copy)


@pytest.mark.parametrize(
    "path", corpus_files(), ids=lambda p: p.name[:12] + (".geyser" if ".geyser." in p.name else "")
)
def test_truncated_and_flipped_json_only_raises_format_errors(path: Any) -> None:
    """Raw JSON cut anywhere or with bytes flipped parses to a transaction or a `TransactionFormatError`."""
    rng = random.Random(SEED)
    # Arrange
    raw = path.read_bytes()
    variants = [raw[: rng.randrange(1, len(raw))] for _ in range(VARIANTS_PER_TX)]
    for _ in range(VARIANTS_PER_TX):
        flipped = bytearray(raw)
        for _ in range(3):
            flipped[rng.randrange(len(raw))] = rng.randrange(32, 127)
        variants.append(bytes(flipped))
    for variant in variants:
        # Act
        try:
            transactions = parse_transactions(variant)
        except TransactionFormatError:
            continue

        # Assert: whatever parsed also decodes without raising.
        for tx in transactions:
            decode_transaction(tx)


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=12)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({"transaction": _json_values(), "meta": _json_values(), "slot": _json_values()}))
def test_nonsense_json_only_raises_format_errors(document: dict[str, Any]) -> None:
    """Arbitrary JSON in the shape's slots is rejected with `TransactionFormatError` or decodes quietly."""
    # Act
    try:
        transactions = normalise(document)
    except TransactionFormatError:
        return

    # Assert
    for tx in transactions:
        decode_transaction(tx)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([pumpfun.PROGRAM_ID, pumpswap.PROGRAM_ID, jupiter.PROGRAM_ID]),
    st.sampled_from(["TradeEvent", "BuyEvent", "SellEvent", "SwapEvent", "SwapsEvent", "Unknown"]),
    st.binary(max_size=400),
)
def test_event_instructions_with_wrong_lengths_or_unknown_discriminators_decode_quietly(
    program_id: str, name: str, payload: bytes
) -> None:
    """A CPI event of any length, or with a discriminator no layout knows, never makes decoding raise."""
    # Arrange
    keys = [key(1), program_id, key(2), key(3)]
    tx: Transaction = make_tx(
        keys,
        [ix(program_id, [key(1), key(3), key(3), key(3), key(3)], b"\x01", 1)],
        {0: [ix(program_id, [key(2)], cpi_event_data(event_discriminator(name), payload), 2)]},
    )

    # Act
    activities = decode_transaction(tx)

    # Assert
    assert all(a.kind for a in activities)


def test_event_tag_alone_is_not_an_event() -> None:
    """Instruction data holding only the CPI-event tag (no discriminator) is not taken for an event."""
    # Arrange
    pid = pumpfun.PROGRAM_ID
    tx = make_tx([key(1), pid, key(2)], [ix(pid, [key(1)], b"", 1)], {0: [ix(pid, [key(2)], EVENT_IX_TAG, 2)]})

    # Act / Assert
    assert decode_transaction(tx) == []


def test_nonsense_document_shapes_raise_format_errors() -> None:
    """Common wrong shapes are rejected with a format error, never a crash."""
    shapes = [
        {"transaction": 5, "meta": {}},
        {"transaction": {"message": 3}, "meta": {"fee": 1}},
        {"transaction": {"message": {"accountKeys": [1, 2]}, "signatures": ["x"]}, "meta": {"fee": 1}},
        {"transaction": {"message": {"accountKeys": ["a"], "instructions": "x"}, "signatures": ["x"]}, "meta": {}},
        {"transaction": {"message": {"accountKeys": ["a"], "instructions": []}, "signatures": ["x"]}, "meta": None},
        {
            "transaction": {"message": {"accountKeys": ["a"], "instructions": []}, "signatures": ["x"]},
            "meta": {"preBalances": ["x"]},
        },
    ]
    for shape in shapes:
        # Act / Assert
        with pytest.raises(TransactionFormatError):
            parse_transactions(orjson.dumps(shape))
