"""Program decoders on synthetic transactions, for programs and variants the mainnet corpus lacks.

Each transaction is built like the real thing: the program's instruction with its accounts in IDL
order, its events as CPI instructions or log lines written with our Borsh writer, and token balances.
"""

from __future__ import annotations

import struct

from quantbot.models import WSOL_MINT, ActivityKind
from quantbot.solana.codec import b58decode
from quantbot.solana.context import TOKEN_PROGRAM
from quantbot.solana.decode import decode_transaction
from quantbot.solana.events import event_discriminator
from quantbot.solana.programs import jupiter, lifinity, meteora_damm, meteora_dbc, okx, orca, phoenix, pumpswap
from quantbot.solana.transaction import Instruction
from tests.solana.conftest import balance, cpi_event_data, ix, key, log_data_line, make_tx

TRADER = key(1)
MINT_A, MINT_B = key(100), key(101)
_TOKEN_TRANSFER = 3
"""SPL Token `Transfer` instruction tag."""


def _transfer(source: str, destination: str, authority: str, amount: int, height: int) -> Instruction:
    return ix(
        TOKEN_PROGRAM, [source, destination, authority], bytes([_TOKEN_TRANSFER]) + struct.pack("<Q", amount), height
    )


def test_damm_v2_swap2_event_gives_the_trade_with_mints_from_the_instruction() -> None:
    """A DAMM v2 `EvtSwap2` (B for A) reads amounts from the event and mints from the swap accounts."""
    # Arrange
    pid = meteora_damm.PROGRAM_ID
    pool = key(10)
    accounts = [key(9), pool, key(11), key(12), key(13), key(14), MINT_A, MINT_B, TRADER]
    payload = meteora_damm.EVT_SWAP2.encode(
        {
            "pool": pool,
            "trade_direction": 1,
            "collect_fee_mode": 0,
            "has_referral": False,
            "amount_0": 500,
            "amount_1": 1,
            "swap_mode": 0,
            "included_fee_input_amount": 500,
            "excluded_fee_input_amount": 495,
            "amount_left": 0,
            "output_amount": 42,
            "next_sqrt_price": 2**64,
        }
    )
    tx = make_tx(
        [TRADER, pid, *accounts[:8], key(15)],
        [ix(pid, accounts, b"\x01" * 8, 1)],
        {0: [ix(pid, [key(15)], cpi_event_data(event_discriminator("EvtSwap2"), payload), 2)]},
    )

    # Act
    (swap,) = decode_transaction(tx)

    # Assert
    assert (swap.kind, swap.venue, swap.index.outer, swap.index.inner) == (ActivityKind.SWAP, "meteora_damm_v2", 0, 0)
    assert (swap.input.mint, swap.input.amount) == (MINT_B, 500)  # type: ignore[union-attr]
    assert (swap.output.mint, swap.output.amount) == (MINT_A, 42)  # type: ignore[union-attr]
    assert swap.hops[0].pool == pool


def test_dbc_swap_event_buys_the_curve_token_with_the_quote_token() -> None:
    """A DBC `EvtSwap` in direction quote-to-base pays the quote mint and gets the base mint."""
    # Arrange
    pid = meteora_dbc.PROGRAM_ID
    pool = key(20)
    accounts = [key(19), key(21), pool, key(22), key(23), key(24), key(25), MINT_A, WSOL_MINT, TRADER]
    payload = meteora_dbc.EVT_SWAP.encode(
        {
            "pool": pool,
            "config": key(21),
            "trade_direction": 1,
            "has_referral": False,
            "param_amount_in": 1000,
            "minimum_amount_out": 1,
            "actual_input_amount": 990,
            "output_amount": 77_000,
            "next_sqrt_price": 5,
            "trading_fee": 10,
            "protocol_fee": 0,
            "referral_fee": 0,
            "amount_in": 1000,
            "current_timestamp": 9,
        }
    )
    tx = make_tx(
        [TRADER, pid, key(26)],
        [ix(pid, accounts, b"\x02" * 8, 1)],
        {0: [ix(pid, [key(26)], cpi_event_data(event_discriminator("EvtSwap"), payload), 2)]},
    )

    # Act
    (swap,) = decode_transaction(tx)

    # Assert
    assert (swap.venue, swap.input.mint, swap.input.amount) == ("meteora_dbc", WSOL_MINT, 1000)  # type: ignore[union-attr]
    assert (swap.output.mint, swap.output.amount) == (MINT_A, 77_000)  # type: ignore[union-attr]


def test_whirlpool_traded_log_orders_mints_as_the_pool_does() -> None:
    """A Whirlpool `Traded` log (B to A) takes mints from the vaults the whirlpool owns, A below B."""
    # Arrange
    pid = orca.PROGRAM_ID
    whirlpool = key(30)
    low, high = sorted([MINT_A, MINT_B], key=b58decode)
    keys = [TRADER, pid, whirlpool, key(31), key(32)]
    tokens = [balance(3, keys, high, whirlpool, 10_000), balance(4, keys, low, whirlpool, 20_000)]
    payload = orca.TRADED.encode(
        {
            "whirlpool": whirlpool,
            "a_to_b": False,
            "pre_sqrt_price": 1,
            "post_sqrt_price": 2,
            "input_amount": 300,
            "output_amount": 100,
            "input_transfer_fee": 0,
            "output_transfer_fee": 0,
            "lp_fee": 1,
            "protocol_fee": 0,
        }
    )
    tx = make_tx(
        keys,
        [ix(pid, [TOKEN_PROGRAM, TRADER, whirlpool], orca.SWAP + b"\x00" * 8, 1)],
        logs=[
            f"Program {pid} invoke [1]",
            log_data_line(event_discriminator("Traded"), payload),
            f"Program {pid} success",
        ],
        tokens=(tokens, tokens),
    )

    # Act
    (swap,) = decode_transaction(tx)

    # Assert
    assert (swap.venue, swap.index.outer, swap.index.inner) == ("orca_whirlpool", 0, None)
    assert (swap.input.mint, swap.input.amount, swap.output.mint, swap.output.amount) == (high, 300, low, 100)  # type: ignore[union-attr]
    assert swap.hops[0].pool == whirlpool


def test_lifinity_swap_is_read_from_the_traders_transfers() -> None:
    """Lifinity publishes no event: the trader's outgoing and incoming transfers are the trade."""
    # Arrange
    pid = lifinity.PROGRAM_ID
    amm, user_a, user_b, vault_a, vault_b, authority = key(40), key(41), key(42), key(43), key(44), key(45)
    keys = [TRADER, pid, amm, user_a, user_b, vault_a, vault_b, authority, TOKEN_PROGRAM]
    pre = [
        balance(3, keys, MINT_A, TRADER, 1_000),
        balance(4, keys, MINT_B, TRADER, 0),
        balance(5, keys, MINT_A, authority, 50_000),
        balance(6, keys, MINT_B, authority, 80_000),
    ]
    post = [
        balance(3, keys, MINT_A, TRADER, 400),
        balance(4, keys, MINT_B, TRADER, 1_234),
        balance(5, keys, MINT_A, authority, 50_600),
        balance(6, keys, MINT_B, authority, 78_766),
    ]
    tx = make_tx(
        keys,
        [ix(pid, [authority, amm, TRADER, user_a, user_b, vault_a, vault_b], lifinity.SWAP + b"\x00" * 16, 1)],
        {0: [_transfer(user_a, vault_a, TRADER, 600, 2), _transfer(vault_b, user_b, authority, 1_234, 2)]},
        tokens=(pre, post),
    )

    # Act
    (swap,) = decode_transaction(tx)

    # Assert
    assert (swap.venue, swap.hops[0].pool) == ("lifinity_v2", amm)
    assert (swap.input.mint, swap.input.amount, swap.output.mint, swap.output.amount) == (MINT_A, 600, MINT_B, 1_234)  # type: ignore[union-attr]
    assert swap.trader_deltas == {MINT_A: -600, MINT_B: 1_234}


def test_phoenix_taker_swap_is_read_from_the_traders_transfers() -> None:
    """A Phoenix `Swap` (tag 0) is the trader's transfers to and from the market's vaults."""
    # Arrange
    pid = phoenix.PROGRAM_ID
    market, base_acct, quote_acct, base_vault, quote_vault = key(50), key(51), key(52), key(53), key(54)
    keys = [TRADER, pid, market, base_acct, quote_acct, base_vault, quote_vault, TOKEN_PROGRAM]
    tokens = [balance(3, keys, MINT_A, TRADER, 0), balance(4, keys, MINT_B, TRADER, 0)]
    tx = make_tx(
        keys,
        [
            ix(
                pid,
                [pid, key(55), market, TRADER, base_acct, quote_acct, base_vault, quote_vault],
                b"\x00" + b"\x01" * 20,
                1,
            )
        ],
        {0: [_transfer(quote_acct, quote_vault, TRADER, 5_000, 2), _transfer(base_vault, base_acct, market, 70, 2)]},
        tokens=(tokens, tokens),
    )

    # Act
    (swap,) = decode_transaction(tx)

    # Assert
    assert (swap.venue, swap.hops[0].pool) == ("phoenix", market)
    assert (swap.input.mint, swap.input.amount, swap.output.mint, swap.output.amount) == (MINT_B, 5_000, MINT_A, 70)  # type: ignore[union-attr]


def _pumpswap_sell(pool: str, amount_in: int, out: int) -> bytes:
    values: dict[str, int | str] = {name: 0 for name, _ in pumpswap.SELL_EVENT.fields[:20]}
    values |= {
        "base_amount_in": amount_in,
        "user_quote_amount_out": out,
        "quote_amount_out_without_lp_fee": out,
        "pool_base_token_reserves": 10**12,
        "pool_quote_token_reserves": 10**11,
        "pool": pool,
        "user": TRADER,
        "user_base_token_account": key(61),
        "user_quote_token_account": key(62),
        "protocol_fee_recipient": key(63),
        "protocol_fee_recipient_token_account": key(64),
    }
    return cpi_event_data(event_discriminator("SellEvent"), pumpswap.SELL_EVENT.encode(values))


def test_okx_route_takes_its_hops_from_the_pools_it_calls() -> None:
    """An OKX route through PumpSwap is one trade whose hop is the pool's own event."""
    # Arrange
    pool = key(60)
    keys = [TRADER, okx.PROGRAM_ID, pumpswap.PROGRAM_ID, pool, key(65)]
    tx = make_tx(
        keys,
        [ix(okx.PROGRAM_ID, [TRADER, pool], b"\x09" * 12, 1)],
        {
            0: [
                ix(pumpswap.PROGRAM_ID, [pool, TRADER, key(66), MINT_A, WSOL_MINT], b"\x03" * 8, 2),
                ix(pumpswap.PROGRAM_ID, [key(65)], _pumpswap_sell(pool, 9_000, 321), 3),
            ]
        },
    )

    # Act
    (route,) = decode_transaction(tx)

    # Assert
    assert (route.venue, route.index.outer, route.index.inner) == ("okx_dex", 0, 1)
    assert [(h.program, h.pool, h.input.amount, h.output.amount) for h in route.hops] == [
        ("pumpswap", pool, 9_000, 321)
    ]
    assert (route.input.mint, route.output.mint) == (MINT_A, WSOL_MINT)  # type: ignore[union-attr]


def test_jupiter_swaps_event_vector_gives_one_hop_per_entry() -> None:
    """Jupiter's 2025 `SwapsEvent` (all hops in one vector) decodes to one route with a hop each."""
    # Arrange
    record = struct.Struct("<32sQ32sQ32s")
    legs = [(MINT_A, 10, MINT_B, 20, key(70)), (MINT_B, 20, WSOL_MINT, 30, key(71))]
    payload = struct.pack("<I", len(legs)) + b"".join(
        record.pack(b58decode(a), x, b58decode(b), y, b58decode(amm)) for a, x, b, y, amm in legs
    )
    pid = jupiter.PROGRAM_ID
    tx = make_tx(
        [TRADER, pid, key(72)],
        [ix(pid, [TRADER], b"\x05" * 8, 1)],
        {0: [ix(pid, [key(72)], cpi_event_data(event_discriminator("SwapsEvent"), payload), 2)]},
    )

    # Act
    (route,) = decode_transaction(tx)

    # Assert
    assert [(h.program_id, h.input.amount, h.output.amount) for h in route.hops] == [
        (key(70), 10, 20),
        (key(71), 20, 30),
    ]
    assert (route.input.mint, route.output.mint, route.output.amount) == (MINT_A, WSOL_MINT, 30)  # type: ignore[union-attr]


def test_unknown_program_moving_two_tokens_is_a_generic_swap() -> None:
    """Through a program nobody decodes, a signer that loses one token and gains another swapped them."""
    # Arrange
    program = key(80)
    keys = [TRADER, program, key(81), key(82)]
    pre = [balance(2, keys, MINT_A, TRADER, 900), balance(3, keys, MINT_B, TRADER, 0)]
    post = [balance(2, keys, MINT_A, TRADER, 0), balance(3, keys, MINT_B, TRADER, 55)]
    tx = make_tx(keys, [ix(program, [TRADER, key(81), key(82)], b"\x01", 1)], tokens=(pre, post))

    # Act
    (swap,) = decode_transaction(tx)

    # Assert
    assert (swap.kind, swap.venue, swap.index.outer) == (ActivityKind.SWAP, program, 0)
    assert (swap.input.amount, swap.output.amount) == (900, 55)  # type: ignore[union-attr]
