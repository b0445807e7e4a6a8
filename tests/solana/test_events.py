"""Events round-trip: payloads encoded with our own Borsh writer decode back, from CPI and from logs.

Also pins the log/CPI dedupe (one event, two copies, counted once) and base58/base64 codecs.
"""

from __future__ import annotations

import base64
from typing import Any

import base58
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantbot.solana.borsh import Layout
from quantbot.solana.codec import b58decode, b58encode, pubkey_str
from quantbot.solana.decode import REGISTRY
from quantbot.solana.events import (
    EVENT_IX_TAG,
    LogTwins,
    collect_events,
    event_discriminator,
    log_events,
    programs_present,
)
from quantbot.solana.programs import (
    dflow,
    jupiter,
    meteora_damm,
    meteora_dbc,
    meteora_dlmm,
    meteora_pools,
    orca,
    pumpfun,
    pumpswap,
    raydium_amm,
    raydium_clmm,
    raydium_cpmm,
    raydium_launchpad,
    routes,
)
from quantbot.solana.transaction import Transaction
from tests.solana.conftest import corpus_files, cpi_event_data, ix, key, load, log_data_line, make_tx

INTEGER_BOUNDS = {
    "u8": (0, 2**8 - 1),
    "enum": (0, 2**8 - 1),
    "i8": (-(2**7), 2**7 - 1),
    "u16": (0, 2**16 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "u32": (0, 2**32 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "u64": (0, 2**64 - 1),
    "i64": (-(2**63), 2**63 - 1),
    "u128": (0, 2**128 - 1),
    "i128": (-(2**127), 2**127 - 1),
}

ANCHOR_LAYOUTS: list[tuple[str, Layout]] = [
    (pumpfun.PROGRAM_ID, pumpfun.TRADE_EVENT),
    (pumpfun.PROGRAM_ID, pumpfun.CREATE_EVENT),
    (pumpswap.PROGRAM_ID, pumpswap.BUY_EVENT),
    (pumpswap.PROGRAM_ID, pumpswap.SELL_EVENT),
    (pumpswap.PROGRAM_ID, pumpswap.DEPOSIT_EVENT),
    (pumpswap.PROGRAM_ID, pumpswap.WITHDRAW_EVENT),
    (pumpswap.PROGRAM_ID, pumpswap.CREATE_POOL_EVENT),
    (jupiter.PROGRAM_ID, routes.SWAP_EVENT),
    (dflow.PROGRAM_ID, routes.SWAP_EVENT),
    (raydium_cpmm.PROGRAM_ID, raydium_cpmm.SWAP_EVENT),
    (raydium_clmm.PROGRAM_ID, raydium_clmm.SWAP_EVENT),
    (raydium_launchpad.PROGRAM_ID, raydium_launchpad.TRADE_EVENT),
    (orca.PROGRAM_ID, orca.TRADED),
    (meteora_dlmm.PROGRAM_ID, meteora_dlmm.SWAP),
    (meteora_dlmm.PROGRAM_ID, meteora_dlmm.ADD_LIQUIDITY),
    (meteora_pools.PROGRAM_ID, meteora_pools.SWAP),
    (meteora_damm.PROGRAM_ID, meteora_damm.EVT_SWAP),
    (meteora_damm.PROGRAM_ID, meteora_damm.EVT_SWAP2),
    (meteora_dbc.PROGRAM_ID, meteora_dbc.EVT_SWAP),
]


def _field(kind: str) -> st.SearchStrategy[Any]:
    if kind == "bool":
        return st.booleans()
    if kind == "pubkey":
        return st.binary(min_size=32, max_size=32).map(pubkey_str)
    if kind == "string":
        return st.text(max_size=40)
    low, high = INTEGER_BOUNDS[kind]
    return st.integers(low, high)


def values_of(layout: Layout) -> st.SearchStrategy[dict[str, Any]]:
    """Values for every field of a layout (the required ones, then the optional groups)."""
    return st.fixed_dictionaries({name: _field(kind) for name, kind in layout.fields})


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_layouts_round_trip_through_our_borsh_writer(data: st.DataObject) -> None:
    """Every event layout decodes exactly what our writer encoded, whatever the values."""
    for _, layout in ANCHOR_LAYOUTS:
        # Arrange
        values = data.draw(values_of(layout))

        # Act
        decoded = layout.decode(layout.encode(values))

        # Assert
        assert decoded == values


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_events_round_trip_from_cpi_instructions_and_log_lines(data: st.DataObject) -> None:
    """An event written as a CPI-event instruction, or as a `Program data:` line, is read back intact."""
    for program_id, layout in ANCHOR_LAYOUTS:
        # Arrange
        values = data.draw(values_of(layout))
        disc = event_discriminator(layout.name)
        payload = layout.encode(values)
        keys = [key(1), program_id, key(2)]
        cpi = make_tx(
            keys,
            [ix(program_id, [key(1)], b"\x01", 1)],
            {0: [ix(program_id, [key(2)], cpi_event_data(disc, payload), 2)]},
        )
        logged = make_tx(
            keys,
            [ix(program_id, [key(1)], b"\x01", 1)],
            logs=[f"Program {program_id} invoke [1]", log_data_line(disc, payload), f"Program {program_id} success"],
        )

        # Act
        (from_cpi,) = collect_events(cpi, REGISTRY)
        (from_log,) = collect_events(logged, REGISTRY)

        # Assert
        assert (from_cpi.name, from_cpi.source, from_cpi.inner, from_cpi.emitter) == (layout.name, "cpi", 0, None)
        assert (from_log.name, from_log.source, from_log.inner) == (layout.name, "log", None)
        assert from_cpi.fields == from_log.fields == values


def test_optional_groups_stop_where_an_older_event_ends() -> None:
    """An old-version event (fewer fields) decodes its fields; the newer ones are simply absent."""
    # Arrange
    layout = pumpfun.TRADE_EVENT
    required = {name: 0 for name, kind in layout.fields[:8]} | {"mint": key(3), "user": key(4), "is_buy": True}

    # Act
    decoded = layout.decode(layout.encode(required))

    # Assert
    assert decoded == required
    assert "fee" not in decoded


def test_log_and_cpi_copies_of_one_event_count_once() -> None:
    """Pump.fun publishes each event twice (CPI and log); the decoder sees it once, at the CPI copy."""
    # Arrange
    values = {name: 1 for name, _ in pumpfun.TRADE_EVENT.fields[:8]} | {"mint": key(3), "user": key(4)}
    payload = pumpfun.TRADE_EVENT.encode(values)
    disc = event_discriminator("TradeEvent")
    pid = pumpfun.PROGRAM_ID
    tx = make_tx(
        [key(1), pid, key(2)],
        [ix(pid, [key(1)], b"\x01", 1)],
        {0: [ix(pid, [key(2)], cpi_event_data(disc, payload), 2)]},
        logs=[
            f"Program {pid} invoke [1]",
            log_data_line(disc, payload),
            f"Program {pid} invoke [2]",
            f"Program {pid} success",
            f"Program {pid} success",
        ],
    )

    # Act
    deduped = collect_events(tx, REGISTRY)
    both = collect_events(tx, REGISTRY, dedupe=False)

    # Assert
    assert [(e.source, e.inner) for e in deduped] == [("cpi", 0)]
    assert sorted(e.source for e in both) == ["cpi", "log"]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(raydium_amm.RAY_LOGS)), st.data())
def test_ray_logs_round_trip(log_type: int, data: st.DataObject) -> None:
    """Every `ray_log` kind decodes what was encoded, under its log type."""
    # Arrange
    layout = raydium_amm.RAY_LOGS[log_type]
    values = data.draw(values_of(layout))
    text = raydium_amm.RAY_LOG_PREFIX + base64.b64encode(bytes([log_type]) + layout.encode(values)).decode()

    # Act
    parsed = raydium_amm.parse_ray_log(text)

    # Assert
    assert parsed == (layout.name, bytes([log_type]), values)


@given(st.binary(max_size=700))
def test_base58_matches_the_reference_implementation(raw: bytes) -> None:
    """Our base58 codec (folding decoder, lane-splitting encoder) agrees with the `base58` package, zeros included."""
    # Arrange
    text = base58.b58encode(raw).decode()

    # Act / Assert
    assert b58decode(text) == raw
    assert b58encode(raw) == text


def _dual_event_instructions(tx: Transaction) -> list[tuple[str, int, int, bytes]]:
    """(program, outer, inner, data) of the CPI-event instructions of programs that also log their events."""
    return [
        (ix_.program_id, outer, inner, ix_.data)
        for outer, instructions in enumerate(tx.inner)
        for inner, ix_ in enumerate(instructions)
        if ix_.program_id in REGISTRY.dual_programs and ix_.num_accounts == 1 and ix_.data.startswith(EVENT_IX_TAG)
    ]


@pytest.mark.parametrize(
    "name", [p.name for p in corpus_files()], ids=lambda n: n[:12] + (".g" if ".geyser." in n else "")
)
def test_log_twins_are_found_for_every_dual_published_event_and_equal_it(name: str) -> None:
    """Each Pump.fun/PumpSwap CPI event of the corpus has its log copy found, logged before the event
    invocation or (older versions) after it, and the copy is byte for byte the instruction's event."""
    # Arrange
    tx = load(name)
    events = _dual_event_instructions(tx)
    twins = LogTwins(tx, REGISTRY)

    # Act
    copies = [
        twins.payload(program, outer, inner, base58.b58encode(data).decode()) for program, outer, inner, data in events
    ]

    # Assert
    assert [EVENT_IX_TAG + copy if copy is not None else None for copy in copies] == [data for *_, data in events]


def test_a_data_line_after_the_event_invocation_that_does_not_end_the_frame_is_no_copy() -> None:
    """A data line after an event invocation counts only as the frame's last line: followed by another
    invocation it may be another event's copy, and the instruction's own data is read instead."""
    # Arrange
    values = {name: 1 for name, _ in pumpfun.TRADE_EVENT.fields[:8]} | {"mint": key(3), "user": key(4)}
    payload = pumpfun.TRADE_EVENT.encode(values)
    disc = event_discriminator("TradeEvent")
    pid = pumpfun.PROGRAM_ID
    data = cpi_event_data(disc, payload)
    logs = [
        f"Program {pid} invoke [1]",
        f"Program {pid} invoke [2]",
        f"Program {pid} consumed 2003 of 100000 compute units",
        f"Program {pid} success",
        log_data_line(disc, payload),
        f"Program {pid} invoke [2]",
        f"Program {pid} success",
        f"Program {pid} success",
    ]
    tx = make_tx([key(1), pid, key(2)], [ix(pid, [key(1)], b"\x01", 1)], {0: [ix(pid, [key(2)], data, 2)]}, logs=logs)
    ended = make_tx(
        [key(1), pid, key(2)],
        [ix(pid, [key(1)], b"\x01", 1)],
        {0: [ix(pid, [key(2)], data, 2)]},
        logs=[*logs[:5], f"Program {pid} consumed 30000 of 100000 compute units", f"Program {pid} success"],
    )
    b58 = base58.b58encode(data).decode()

    # Act
    followed = LogTwins(tx, REGISTRY).payload(pid, 0, 0, b58)
    last = LogTwins(ended, REGISTRY).payload(pid, 0, 0, b58)

    # Assert
    assert followed is None
    assert last is not None and EVENT_IX_TAG + last == data


@pytest.mark.parametrize(
    "name", [p.name for p in corpus_files()], ids=lambda n: n[:12] + (".g" if ".geyser." in n else "")
)
def test_frame_events_are_the_log_events_an_instruction_printed_first(name: str) -> None:
    """For every Raydium AMM v4 and CPMM instruction of the corpus, `frame_events` finds exactly the events
    the whole-log walk attributes to it (both log their swap before calling the token program)."""
    # Arrange
    tx = load(name)
    present = programs_present(tx, REGISTRY)
    walked = log_events(tx, REGISTRY, present)
    twins = LogTwins(tx, REGISTRY)
    programs = {raydium_amm.PROGRAM_ID, raydium_cpmm.PROGRAM_ID}
    at = [
        (ix_.program_id, outer, inner)
        for outer, instructions in enumerate(tx.inner)
        for inner, ix_ in enumerate(instructions)
        if ix_.program_id in programs
    ]

    # Act
    found = [twins.frame_events(program, outer, inner) for program, outer, inner in at]

    # Assert
    expected = [
        [e for e in walked if (e.program_id, e.outer, e.emitter) == (program, outer, inner)]
        for program, outer, inner in at
    ]
    assert found == expected
