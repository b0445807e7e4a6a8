"""Pool reserves on hops (`Hop.reserves`) on the recorded mainnet corpus, against numbers read without the decoder.

The expected reserves come from the corpus index's decoded events (computed independently of this code),
from the raw event bytes read by the small readers below (`struct` at the IDL's offsets), and from the
pools' vault balances, the vaults named by their place in the swap instruction's accounts (IDL order).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterator
from typing import Any

import base58
import pytest

from quantbot.models import WSOL_MINT, Hop, TokenAmount
from quantbot.solana.decode import decode_transaction
from quantbot.solana.programs import pumpfun, pumpswap, raydium_amm, raydium_cpmm, raydium_launchpad
from quantbot.solana.programs.catalog import RESERVES_AFTER
from quantbot.solana.transaction import Instruction, Transaction
from tests.solana.conftest import (
    CORPUS,
    balance,
    corpus_files,
    cpi_event_data,
    file_of,
    index,
    ix,
    key,
    load,
    log_data_line,
    make_tx,
)

PUMPFUN_VIRTUAL_SOL_OFFSET = 30 * 10**9
"""A Pump.fun curve's virtual SOL beyond its real SOL: 30 SOL at launch (`CreateEvent`), kept by every trade."""
PUMPFUN_VIRTUAL_TOKEN_OFFSET = (1_073_000_000 - 793_100_000) * 10**6
"""Its virtual tokens beyond the real ones left to sell (1,073,000,000 against 793,100,000 at launch)."""
PUMPFUN_MIGRATION_TOKENS = 206_900_000 * 10**6
"""Tokens a Pump.fun curve's vault holds beyond the real reserves: the supply kept for the AMM it migrates to."""
# Account positions in the swap instructions (the programs' IDLs): PumpSwap `buy`/`sell` pool_base_token_account
# and pool_quote_token_account; Raydium CPMM `swap_base_input`/`output` input_vault and output_vault; Raydium
# Launchpad `buy_exact_in`... base_vault and quote_vault.
PUMPSWAP_VAULTS = (7, 8)
CPMM_VAULTS = (6, 7)
LAUNCHPAD_VAULTS = (7, 8)
EVENT_IX_TAG = bytes.fromhex("e445a52e51cb9a1d")
LAUNCHPAD_TRADE = struct.Struct("<32s12QBB")
"""Raydium Launchpad's `TradeEvent` as the corpus holds it (the version before `creator_fee`): pool_state,
total_base_sell, virtual_base, virtual_quote, real_base_before, real_quote_before, real_base_after,
real_quote_after, amount_in, amount_out, protocol_fee, platform_fee, share_fee, trade_direction, pool_status."""
PUMPFUN_TRADE_RESERVES = struct.Struct("<32sQQ?32sqQQQQ")
"""`TradeEvent` of Pump.fun up to its real reserves: mint, sol_amount, token_amount, is_buy, user, timestamp,
virtual_sol_reserves, virtual_token_reserves, real_sol_reserves, real_token_reserves."""


def _discriminator(name: str) -> bytes:
    return hashlib.sha256(f"event:{name}".encode()).digest()[:8]


def _raw(prefix: str) -> dict[str, Any]:
    """The recorded `getTransaction` result, as JSON (envelope or bare)."""
    document: dict[str, Any] = json.loads((CORPUS / file_of(prefix)).read_text())
    result: dict[str, Any] = document.get("result", document)
    return result


def _hops(tx: Transaction, program: str) -> list[Hop]:
    """The decoded hops of one program's pools, in transaction order."""
    return [hop for item in decode_transaction(tx) for hop in item.hops if hop.program == program]


def _instructions(tx: Transaction) -> Iterator[Instruction]:
    for outer, instruction in enumerate(tx.instructions):
        yield instruction
        yield from tx.inner[outer]


def _swap_instruction(
    tx: Transaction, program_id: str, pool: str | None, pool_position: int, names: tuple[str, ...] = ()
) -> Instruction:
    """The one instruction of `program_id` whose account at `pool_position` is the hop's pool (and, with
    `names`, whose data starts with the Anchor discriminator of one of those instructions)."""
    heads = tuple(hashlib.sha256(f"global:{name}".encode()).digest()[:8] for name in names)
    (found,) = [
        ix
        for ix in _instructions(tx)
        if ix.program_id == program_id
        and len(ix.accounts) > pool_position
        and ix.accounts[pool_position] == pool
        and (not heads or ix.data.startswith(heads))
    ]
    return found


def _balances(tx: Transaction, account: str) -> tuple[int, int, int]:
    """(pre, post, decimals) of a token account, as the transaction's token balances give them."""
    (pre,) = [b.amount for b in tx.pre_token_balances if b.account == account] or [0]
    (post, decimals) = next((b.amount, b.decimals) for b in tx.post_token_balances if b.account == account)
    return pre, post, decimals


def _pair(hop: Hop) -> tuple[tuple[str, int, int | None], tuple[str, int, int | None]]:
    assert hop.reserves is not None, hop
    given, got = hop.reserves
    return (given.mint, given.amount, given.decimals), (got.mint, got.amount, got.decimals)


def _index_events(prefix: str, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    (entry,) = [e for e in index() if e["signature"].startswith(prefix)]
    return [e for e in entry["derived_events"] if e["type"] in kinds]


PUMPSWAP_TRADES = [
    e["signature"][:12]
    for e in index()
    if e["err"] is None and any(d["type"] in ("pumpswap.BuyEvent", "pumpswap.SellEvent") for d in e["derived_events"])
]


@pytest.mark.parametrize("prefix", PUMPSWAP_TRADES)
def test_pumpswap_reserves_are_the_events_reserves_moved_by_the_trade_and_the_vaults_post_balances(prefix: str) -> None:
    """A PumpSwap hop's reserves: the event's pool reserves (before) moved by the trade, = the vaults after it."""
    # Arrange
    tx = load(file_of(prefix))
    events = _index_events(prefix, ("pumpswap.BuyEvent", "pumpswap.SellEvent"))

    # Act
    hops = _hops(tx, pumpswap.NAME)

    # Assert
    assert len(hops) == len(events) == 1
    (hop,), (event,) = hops, events
    f = event["fields"]
    base, quote = f["pool_base_token_reserves"], f["pool_quote_token_reserves"]
    swap = _swap_instruction(tx, pumpswap.PROGRAM_ID, hop.pool, pumpswap.POOL_ACCOUNT, ("buy", "sell"))
    base_vault, quote_vault = (_balances(tx, swap.accounts[i]) for i in PUMPSWAP_VAULTS)
    base_mint, quote_mint = swap.accounts[pumpswap.TRADE_BASE_MINT], swap.accounts[pumpswap.TRADE_QUOTE_MINT]
    if f["side"] == "buy":
        after_base, after_quote = base - f["base_amount"], quote + f["quote_amount_in_with_lp_fee"]
        expected = ((quote_mint, after_quote, quote_vault[2]), (base_mint, after_base, base_vault[2]))
    else:
        after_base, after_quote = base + f["base_amount"], quote - f["quote_amount_out_without_lp_fee"]
        expected = ((base_mint, after_base, base_vault[2]), (quote_mint, after_quote, quote_vault[2]))
    assert _pair(hop) == expected
    assert (base_vault[1], quote_vault[1]) == (after_base, after_quote)
    if base_vault[0]:  # the pool existed before the transaction: the event's reserves were its vaults then
        assert (base_vault[0], quote_vault[0]) == (base, quote)


def _pumpfun_logged_trades(prefix: str) -> list[tuple[Any, ...]]:
    """Pump.fun `TradeEvent`s read from the raw `Program data:` log lines, in order."""
    discriminator = _discriminator("TradeEvent")
    found = []
    for line in _raw(prefix)["meta"]["logMessages"]:
        if line.startswith("Program data: "):
            data = base64.b64decode(line.removeprefix("Program data: "))
            if data[:8] == discriminator:
                found.append(PUMPFUN_TRADE_RESERVES.unpack_from(data, 8))
    return found


PUMPFUN_TRADES = [
    e["signature"][:12]
    for e in index()
    if e["err"] is None and any(d["type"] == "pumpfun.TradeEvent(cpi)" for d in e["derived_events"])
]


@pytest.mark.parametrize("prefix", PUMPFUN_TRADES)
def test_pumpfun_reserves_are_the_curves_virtual_reserves_after_the_trade(prefix: str) -> None:
    """A Pump.fun hop's reserves are its `TradeEvent`'s virtual reserves; real ones trail them by the launch offset."""
    # Arrange
    tx = load(file_of(prefix))
    logged = _pumpfun_logged_trades(prefix)
    indexed = [e["fields"] for e in _index_events(prefix, ("pumpfun.TradeEvent(cpi)",))]

    # Act
    hops = _hops(tx, pumpfun.NAME)

    # Assert
    assert len(hops) == len(logged) == len(indexed) > 0
    for hop, trade, fields in zip(hops, logged, indexed, strict=True):
        mint, _, _, is_buy, _, _, virtual_sol, virtual_tokens, real_sol, real_tokens = trade
        mint = base58.b58encode(mint).decode()
        assert (virtual_sol, virtual_tokens) == (fields["virtual_sol_reserves"], fields["virtual_token_reserves"])
        sol, token = (WSOL_MINT, virtual_sol, 9), (mint, virtual_tokens, 6)
        assert _pair(hop) == ((sol, token) if is_buy else (token, sol))
        # What the virtual reserves stand for: the real ones plus the curve's fixed offset.
        assert virtual_sol - real_sol == PUMPFUN_VIRTUAL_SOL_OFFSET
        assert virtual_tokens - real_tokens == PUMPFUN_VIRTUAL_TOKEN_OFFSET
    # The curve's vault holds the real tokens left to sell and the migration's share, after the last trade.
    vault = _balances(tx, _curve_vault(tx, hops[-1].pool))
    assert vault[1] - logged[-1][-1] == PUMPFUN_MIGRATION_TOKENS


def _curve_vault(tx: Transaction, curve: str | None) -> str:
    """The bonding curve's token account (`associated_bonding_curve`, right after the curve in `buy`/`sell`)."""
    swap = next(
        ix
        for ix in _instructions(tx)
        if ix.program_id == pumpfun.PROGRAM_ID
        and len(ix.accounts) > pumpfun.BONDING_CURVE_ACCOUNT + 1
        and ix.accounts[pumpfun.BONDING_CURVE_ACCOUNT] == curve
    )
    return swap.accounts[pumpfun.BONDING_CURVE_ACCOUNT + 1]


RAYDIUM_SWAPS = [
    e["signature"][:12]
    for e in index()
    if e["err"] is None and any(d["type"] == "raydium_amm_v4.ray_log.SwapBaseIn" for d in e["derived_events"])
]


@pytest.mark.parametrize("prefix", RAYDIUM_SWAPS)
def test_raydium_amm_reserves_are_the_logged_reserves_moved_by_the_swap(prefix: str) -> None:
    """A Raydium AMM v4 hop's reserves: the `ray_log`'s pool amounts (before) plus the input, less the output.

    The vaults hold the reserves and the protocol's untaken fee share, which a swap leaves unchanged.
    """
    # Arrange
    tx = load(file_of(prefix))
    logs = [e["fields"] for e in _index_events(prefix, ("raydium_amm_v4.ray_log.SwapBaseIn",))]

    # Act
    hops = _hops(tx, raydium_amm.NAME)

    # Assert
    assert len(hops) == len(logs) > 0
    for hop, f in zip(hops, logs, strict=True):
        swap = _swap_instruction(tx, raydium_amm.PROGRAM_ID, hop.pool, raydium_amm.AMM_ACCOUNT)
        coin_at, pc_at = {18: (5, 6), 17: (4, 5), 8: (3, 4)}[len(swap.accounts)]
        coin, pc = _balances(tx, swap.accounts[coin_at]), _balances(tx, swap.accounts[pc_at])
        if f["direction"] == raydium_amm.PC_TO_COIN:
            (vault_in, before_in), (vault_out, before_out) = (pc, f["pool_pc"]), (coin, f["pool_coin"])
        else:
            (vault_in, before_in), (vault_out, before_out) = (coin, f["pool_coin"]), (pc, f["pool_pc"])
        after_in, after_out = before_in + f["amount_in"], before_out - f["out_amount"]
        assert _pair(hop) == (
            (hop.input.mint, after_in, vault_in[2]),
            (hop.output.mint, after_out, vault_out[2]),
        )
        assert vault_in[1] - after_in == vault_in[0] - before_in >= 0
        assert vault_out[1] - after_out == vault_out[0] - before_out >= 0


def test_raydium_amm_reserves_are_not_the_vault_balances_where_fees_are_untaken() -> None:
    """On a pool with untaken protocol fees the reserves are below the vaults: the log is the source, not balances."""
    # Arrange
    tx = load(file_of("1ZSq1Aa2i6ES"))

    # Act
    (hop,) = _hops(tx, raydium_amm.NAME)

    # Assert
    assert hop.reserves is not None
    swap = _swap_instruction(tx, raydium_amm.PROGRAM_ID, hop.pool, raydium_amm.AMM_ACCOUNT)
    vault_posts = {_balances(tx, swap.accounts[i])[1] for i in (4, 5)}
    assert {side.amount for side in hop.reserves}.isdisjoint(vault_posts)


def test_raydium_cpmm_reserves_are_the_events_reserves_moved_by_the_swap() -> None:
    """A Raydium CPMM hop (in a DFlow route): the `SwapEvent`'s vault amounts (before) plus input, less output."""
    # Arrange
    tx = load(file_of("8QTg427xrHug"))
    (event,) = _index_events("8QTg427xrHug", ("raydium_cpmm.SwapEvent",))
    f = event["fields"]

    # Act
    (hop,) = _hops(tx, raydium_cpmm.NAME)

    # Assert
    swap = _swap_instruction(tx, raydium_cpmm.PROGRAM_ID, hop.pool, raydium_cpmm.POOL_ACCOUNT)
    vault_in, vault_out = (_balances(tx, swap.accounts[i]) for i in CPMM_VAULTS)
    after_in = f["input_vault_before"] + f["input_amount"]
    after_out = f["output_vault_before"] - f["output_amount"]
    assert _pair(hop) == ((hop.input.mint, after_in, vault_in[2]), (hop.output.mint, after_out, vault_out[2]))
    # The vaults also hold fees owed to the protocol, fund and creator: the reserves are below them.
    assert vault_in[1] - after_in == vault_in[0] - f["input_vault_before"] > 0
    assert vault_out[1] - after_out == vault_out[0] - f["output_vault_before"] > 0


def _launchpad_trades(prefix: str) -> list[tuple[Any, ...]]:
    """Raydium Launchpad `TradeEvent`s read from the raw CPI-event instructions' base58 data, in order."""
    header = EVENT_IX_TAG + _discriminator("TradeEvent")
    found = []
    for group in _raw(prefix)["meta"]["innerInstructions"]:
        for instruction in group["instructions"]:
            data = base58.b58decode(instruction.get("data", ""))
            if data.startswith(header):
                found.append(LAUNCHPAD_TRADE.unpack_from(data, len(header)))
    return found


@pytest.mark.parametrize("prefix", ["3USu3YAsg2qB", "8QTg427xrHug"])
def test_launchpad_reserves_are_the_curve_reserves_after_the_trade(prefix: str) -> None:
    """A Raydium Launchpad hop's reserves: virtual base less real base after, virtual quote plus real quote after."""
    # Arrange
    tx = load(file_of(prefix))
    (trade,) = _launchpad_trades(prefix)
    _, _, virtual_base, virtual_quote, base_before, _, base_after, quote_after, *_, direction, _ = trade

    # Act
    (hop,) = _hops(tx, raydium_launchpad.NAME)

    # Assert
    assert direction == raydium_launchpad.DIRECTION_BUY
    swap = _swap_instruction(tx, raydium_launchpad.PROGRAM_ID, hop.pool, raydium_launchpad.POOL_ACCOUNT)
    base_vault, quote_vault = (_balances(tx, swap.accounts[i]) for i in LAUNCHPAD_VAULTS)
    assert _pair(hop) == (
        (hop.input.mint, virtual_quote + quote_after, quote_vault[2]),
        (hop.output.mint, virtual_base - base_after, base_vault[2]),
    )
    assert base_vault[0] - base_vault[1] == base_after - base_before  # the tokens the curve sold left its vault


def test_only_the_venues_whose_events_carry_reserves_have_them_on_the_corpus() -> None:
    """Every corpus hop of Pump.fun, PumpSwap, Raydium AMM v4, CPMM and Launchpad has reserves; no other hop has."""
    # Arrange
    hops = [hop for path in corpus_files() for item in decode_transaction(load(path.name)) for hop in item.hops]

    # Act
    with_reserves = {hop.program for hop in hops if hop.reserves is not None}
    without = {hop.program for hop in hops if hop.reserves is None}

    # Assert
    assert with_reserves == {"pumpfun", "pumpswap", "raydium_amm_v4", "raydium_cpmm", "raydium_launchpad"}
    assert with_reserves.isdisjoint(without)
    assert {"raydium_clmm", "orca_whirlpool", "meteora_dlmm", "meteora_pools", "lifinity_v2"} <= without
    assert set(RESERVES_AFTER) == {
        m.PROGRAM_ID for m in (pumpfun, pumpswap, raydium_amm, raydium_cpmm, raydium_launchpad)
    }
    for hop in hops:
        if hop.reserves is not None:
            assert (hop.reserves[0].mint, hop.reserves[1].mint) == (hop.input.mint, hop.output.mint)
            assert all(isinstance(side, TokenAmount) and side.amount > 0 for side in hop.reserves)


# Constructed transactions, for the variants the corpus lacks.

TRADER = key(1)
MINT_A, MINT_B = key(100), key(101)
RAY_LOG = struct.Struct("<B7Q")
"""A `ray_log` swap line: its type, then seven u64 (`raydium_amm.RAY_LOGS`)."""


def _raydium_swap_base_out(direction: int) -> Transaction:
    """A Raydium AMM v4 `swap_base_out` (17 accounts) paying coin (MINT_A) or pc (MINT_B), with its log."""
    pid = raydium_amm.PROGRAM_ID
    amm, coin_vault, pc_vault = key(10), key(11), key(12)
    accounts = [key(2), amm, key(3), key(4), coin_vault, pc_vault, *(key(20 + n) for n in range(8)), key(5), key(6)]
    accounts.append(TRADER)
    keys = [TRADER, pid, *accounts[1:]]
    tokens = [
        balance(keys.index(coin_vault), keys, MINT_A, key(3), 5_000_000),
        balance(keys.index(pc_vault), keys, MINT_B, key(3), 9_000_000),
    ]
    log = RAY_LOG.pack(raydium_amm.LOG_SWAP_BASE_OUT, 1_100, 700, direction, 2_000, 4_000_000, 8_000_000, 1_050)
    return make_tx(
        keys,
        [ix(pid, accounts, b"\x0b" + b"\x00" * 16, 1)],
        logs=[
            f"Program {pid} invoke [1]",
            "Program log: ray_log: " + base64.b64encode(log).decode(),
            f"Program {pid} success",
        ],
        tokens=(tokens, tokens),
    )


@pytest.mark.parametrize(("direction", "mints"), [(1, (MINT_B, MINT_A)), (2, (MINT_A, MINT_B))])
def test_raydium_swap_base_out_reserves_take_the_deducted_input_and_give_the_output(
    direction: int, mints: tuple[str, str]
) -> None:
    """A `SwapBaseOut` log: the input side gains `deduct_in`, the output side loses `amount_out`, either way."""
    # Arrange
    tx = _raydium_swap_base_out(direction)
    pool_in, pool_out = (8_000_000, 4_000_000) if direction == raydium_amm.PC_TO_COIN else (4_000_000, 8_000_000)

    # Act
    (hop,) = _hops(tx, raydium_amm.NAME)

    # Assert
    assert (hop.input.amount, hop.output.amount) == (1_050, 700)
    assert _pair(hop) == ((mints[0], pool_in + 1_050, 6), (mints[1], pool_out - 700, 6))


def test_raydium_log_with_an_unknown_direction_gives_no_reserves() -> None:
    """A swap log whose direction is neither 1 nor 2 still decodes as before, without reserves."""
    # Arrange
    tx = _raydium_swap_base_out(7)

    # Act
    (hop,) = _hops(tx, raydium_amm.NAME)

    # Assert
    assert hop.reserves is None


def _cpmm_swap(creator_fee_on_input: bool) -> Transaction:
    """A Raydium CPMM `swap_base_input` of 1,000 MINT_A for 480 MINT_B with the current `SwapEvent` (creator fee 3)."""
    pid = raydium_cpmm.PROGRAM_ID
    pool = key(30)
    accounts = [TRADER, key(31), key(32), pool, key(33), key(34), key(35), key(36), key(37), key(37), MINT_A, MINT_B]
    accounts.append(key(38))
    event = raydium_cpmm.SWAP_EVENT.encode(
        {
            "pool_id": pool,
            "input_vault_before": 100_000,
            "output_vault_before": 50_000,
            "input_amount": 1_000,
            "output_amount": 480,
            "input_transfer_fee": 0,
            "output_transfer_fee": 0,
            "base_input": True,
            "input_mint": MINT_A,
            "output_mint": MINT_B,
            "trade_fee": 2,
            "creator_fee": 3,
            "creator_fee_on_input": creator_fee_on_input,
        }
    )
    return make_tx(
        [TRADER, pid, *accounts[1:]],
        [ix(pid, accounts, bytes(range(8)) + b"\x00" * 16, 1)],
        logs=[f"Program {pid} invoke [1]", log_data_line(_discriminator("SwapEvent"), event), f"Program {pid} success"],
    )


@pytest.mark.parametrize(("on_input", "expected"), [(True, (100_997, 49_520)), (False, (101_000, 49_517))])
def test_cpmm_creator_fee_is_taken_out_of_the_side_it_is_charged_on(on_input: bool, expected: tuple[int, int]) -> None:
    """The creator fee stays in its vault but is owed: the reserves exclude it on the input or the output side."""
    # Arrange
    tx = _cpmm_swap(on_input)

    # Act
    (hop,) = _hops(tx, raydium_cpmm.NAME)

    # Assert
    assert hop.reserves is not None
    assert (hop.reserves[0].mint, hop.reserves[0].amount) == (MINT_A, expected[0])
    assert (hop.reserves[1].mint, hop.reserves[1].amount) == (MINT_B, expected[1])


def _launchpad_trade(
    direction: int, before: tuple[int, int], after: tuple[int, int], amounts: tuple[int, int]
) -> Transaction:
    """A Raydium Launchpad trade on a curve of 1,000,000 virtual base and 3,000 virtual quote."""
    pid = raydium_launchpad.PROGRAM_ID
    pool = key(40)
    accounts = [TRADER, key(41), key(42), key(43), pool, key(44), key(45), key(46), key(47), MINT_A, WSOL_MINT]
    event = raydium_launchpad.TRADE_EVENT.encode(
        {
            "pool_state": pool,
            "total_base_sell": 800_000,
            "virtual_base": 1_000_000,
            "virtual_quote": 3_000,
            "real_base_before": before[0],
            "real_quote_before": before[1],
            "real_base_after": after[0],
            "real_quote_after": after[1],
            "amount_in": amounts[0],
            "amount_out": amounts[1],
            "protocol_fee": 0,
            "platform_fee": 0,
            "creator_fee": 0,
            "share_fee": 0,
            "trade_direction": direction,
            "pool_status": 0,
            "exact_in": True,
        }
    )
    return make_tx(
        [TRADER, pid, *accounts[1:], key(48)],
        [ix(pid, accounts, b"\x01" * 24, 1)],
        {0: [ix(pid, [key(48)], cpi_event_data(_discriminator("TradeEvent"), event), 2)]},
    )


def test_launchpad_sale_on_a_constant_product_curve_has_its_curve_reserves() -> None:
    """Selling 100,000 base into a curve at (700,000 base, 6,000 quote) takes out 750 quote: reserves base first."""
    # Arrange: real (300,000, 3,000) before, (200,000, 2,250) after; 700,000 x 6,000 = 800,000 x 5,250.
    tx = _launchpad_trade(1, (300_000, 3_000), (200_000, 2_250), (100_000, 750))

    # Act
    (hop,) = _hops(tx, raydium_launchpad.NAME)

    # Assert
    assert _pair(hop) == ((MINT_A, 800_000, None), (WSOL_MINT, 5_250, 9))


def test_launchpad_trade_off_the_constant_product_has_no_reserves() -> None:
    """A trade at a fixed price (one quote per 300 base, whatever the reserves) does not keep x·y: no reserves."""
    # Arrange: 300 quote in, 90,000 base out at the launch price, though the curve stands at (700,000, 6,000).
    tx = _launchpad_trade(0, (300_000, 3_000), (390_000, 3_300), (300, 90_000))

    # Act
    (hop,) = _hops(tx, raydium_launchpad.NAME)

    # Assert
    assert (hop.input.amount, hop.output.amount) == (300, 90_000)
    assert hop.reserves is None
