"""Raydium AMM v4: swaps, deposits, withdrawals and pool initialisation, from `ray_log` lines.

Encoding: `Program log: ray_log: <base64>` in the program's frame (a text log, no Anchor event). The
first byte is the log type (0 init, 1 deposit, 2 withdraw, 3 swap base in, 4 swap base out), then
fixed little-endian fields, as in the program's `log.rs`. The logs carry no mints: they come from the
pool's vault accounts in the instruction, whose mints the token balances name.

Reserves (`Hop.reserves`): a swap log's `pool_coin` and `pool_pc` are the reserves the program priced the
swap with, before it: the vault balances less the protocol's share of fees not yet taken out
(`need_take_pnl`, the program's `calc_total_without_take_pnl_no_orderbook`), so they are not the vault
balances (on the corpus they differ by that share in `1ZSq1Aa2i6ES`). A swap does not change that share,
so after the swap the reserves are those plus the whole input (`amount_in`, or `deduct_in` for a swap base
out: its fee stays in the pool) and less the output (`out_amount`, or `amount_out`).
"""

from __future__ import annotations

from typing import Any

from quantbot.models import Activity, ActivityKind, Hop, TokenAmount
from quantbot.solana.borsh import Layout
from quantbot.solana.codec import CodecError, b64decode
from quantbot.solana.context import (
    Context,
    EventHandler,
    Invocation,
    account,
    event_activities,
    event_activity,
    hop_reserves,
    lp_activity,
    swap_handler,
)
from quantbot.solana.events import Event, ProgramEvents
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8"
NAME = "raydium_amm_v4"
RAY_LOG_PREFIX = "ray_log: "
AMM_ACCOUNT = 1
"""Swap accounts: token_program, amm, ... in every swap variant."""

# Swap instruction account counts and where the pool's coin/pc vaults sit in each (program's
# `instruction.rs`): with target orders (18), without (17), and the serum-less v2 swaps (8).
_VAULTS_BY_ACCOUNT_COUNT = {18: (5, 6), 17: (4, 5), 8: (3, 4)}
# Deposit/withdraw accounts: token_program, amm, authority, open_orders, target_orders, lp_mint,
# coin_vault, pc_vault, ...; initialize2: ..., amm (4), ..., lp_mint (7), coin_mint (8), pc_mint (9).
LIQUIDITY_LP_MINT, LIQUIDITY_COIN_VAULT, LIQUIDITY_PC_VAULT = 5, 6, 7
INIT_COIN_MINT, INIT_PC_MINT = 8, 9
PC_TO_COIN, COIN_TO_PC = 1, 2
"""`direction` of a swap paying pc for coin, and coin for pc (the program's `SwapDirection`)."""

LOG_INIT, LOG_DEPOSIT, LOG_WITHDRAW, LOG_SWAP_BASE_IN, LOG_SWAP_BASE_OUT = 0, 1, 2, 3, 4
RAY_LOGS: dict[int, Layout] = {
    LOG_INIT: Layout(
        "Init",
        [
            ("time", "u64"),
            ("pc_decimals", "u8"),
            ("coin_decimals", "u8"),
            ("pc_lot_size", "u64"),
            ("coin_lot_size", "u64"),
            ("pc_amount", "u64"),
            ("coin_amount", "u64"),
            ("market", "pubkey"),
        ],
    ),
    LOG_DEPOSIT: Layout(
        "Deposit",
        [
            ("max_coin", "u64"),
            ("max_pc", "u64"),
            ("base", "u64"),
            ("pool_coin", "u64"),
            ("pool_pc", "u64"),
            ("pool_lp", "u64"),
            ("calc_pnl_x", "u128"),
            ("calc_pnl_y", "u128"),
            ("deduct_coin", "u64"),
            ("deduct_pc", "u64"),
            ("mint_lp", "u64"),
        ],
    ),
    LOG_WITHDRAW: Layout(
        "Withdraw",
        [
            ("withdraw_lp", "u64"),
            ("user_lp", "u64"),
            ("pool_coin", "u64"),
            ("pool_pc", "u64"),
            ("pool_lp", "u64"),
            ("calc_pnl_x", "u128"),
            ("calc_pnl_y", "u128"),
            ("out_coin", "u64"),
            ("out_pc", "u64"),
        ],
    ),
    LOG_SWAP_BASE_IN: Layout(
        "SwapBaseIn",
        [
            ("amount_in", "u64"),
            ("minimum_out", "u64"),
            ("direction", "u64"),
            ("user_source", "u64"),
            ("pool_coin", "u64"),
            ("pool_pc", "u64"),
            ("out_amount", "u64"),
        ],
    ),
    LOG_SWAP_BASE_OUT: Layout(
        "SwapBaseOut",
        [
            ("max_in", "u64"),
            ("amount_out", "u64"),
            ("direction", "u64"),
            ("user_source", "u64"),
            ("pool_coin", "u64"),
            ("pool_pc", "u64"),
            ("deduct_in", "u64"),
        ],
    ),
}


def parse_ray_log(text: str) -> tuple[str, bytes, dict[str, Any]] | None:
    """Parse the text after `Program log: ` when it is a `ray_log` line: (name, type byte, fields)."""
    if not text.startswith(RAY_LOG_PREFIX):
        return None
    try:
        data = b64decode(text[len(RAY_LOG_PREFIX) :].strip())
    except CodecError:
        return None
    if not data:
        return None
    layout = RAY_LOGS.get(data[0])
    if layout is None:
        return None
    fields = layout.decode(data, 1)
    if fields is None:
        return None
    return layout.name, data[:1], fields


EVENTS = ProgramEvents(PROGRAM_ID, NAME, emits_logs=True, log_line_parser=parse_ray_log, log_line_prefix=RAY_LOG_PREFIX)


def pool_of(ix: Instruction) -> str | None:
    """The AMM account a swap instruction trades against."""
    return account(ix, AMM_ACCOUNT)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Swaps, liquidity changes and initialisations of one Raydium AMM v4 invocation."""
    return event_activities(inv, ctx, PROGRAM_ID, HANDLERS)


def _amm_instruction(event: Event, ctx: Context) -> Instruction | None:
    """The AMM instruction whose frame printed a log (None for another program's frame)."""
    ix = ctx.emitter_of(event)
    return ix if ix is not None and ix.program_id == PROGRAM_ID else None


def _liquidity(event: Event, ctx: Context) -> Activity | None:
    """A `Deposit` or `Withdraw` log: the coin leg against the pool's LP token."""
    ix = _amm_instruction(event, ctx)
    coin = ctx.mint_of(account(ix, LIQUIDITY_COIN_VAULT) or "")
    lp_mint = account(ix, LIQUIDITY_LP_MINT)
    if coin is None or lp_mint is None:
        return None
    f = event.fields
    if event.name == "Deposit":
        token, lp = ctx.amount(coin, f["deduct_coin"]), ctx.amount(lp_mint, f["mint_lp"])
        return lp_activity(ctx, event, ctx.trader(), NAME, added=True, token=token, lp=lp)
    token, lp = ctx.amount(coin, f["out_coin"]), ctx.amount(lp_mint, f["withdraw_lp"])
    return lp_activity(ctx, event, ctx.trader(), NAME, added=False, token=token, lp=lp)


def _init(event: Event, ctx: Context) -> Activity | None:
    """An `Init` log: the pool's creation, with the coin amount it was seeded with."""
    coin_mint = account(_amm_instruction(event, ctx), INIT_COIN_MINT)
    if coin_mint is None:
        return None
    given = ctx.amount(coin_mint, event.fields["coin_amount"])
    return event_activity(ctx, ActivityKind.POOL_CREATE, event, ctx.trader(), NAME, given=given)


def reserves_after(event: Event) -> tuple[int, int] | None:
    """The pool's reserves after a `SwapBaseIn`/`SwapBaseOut` log's swap, (input side, output side), from the
    reserves it logs before the swap and the swap's amounts (see the module docstring); None otherwise."""
    f = event.fields
    name = event.name
    if name == "SwapBaseIn":
        amount_in, amount_out = f["amount_in"], f["out_amount"]
    elif name == "SwapBaseOut":
        amount_in, amount_out = f["deduct_in"], f["amount_out"]
    else:
        return None
    direction = f["direction"]
    if direction == PC_TO_COIN:
        pool_in, pool_out = f["pool_pc"], f["pool_coin"]
    elif direction == COIN_TO_PC:
        pool_in, pool_out = f["pool_coin"], f["pool_pc"]
    else:
        return None
    after_in, after_out = pool_in + amount_in, pool_out - amount_out
    return (after_in, after_out) if after_in > 0 and after_out > 0 else None


def swap_hop(event: Event, ix: Instruction | None, ctx: Context) -> Hop | None:
    """The hop of a `SwapBaseIn`/`SwapBaseOut` log, with mints from the pool's vaults (None when the log
    is not from an AMM instruction's frame)."""
    if ix is None or ix.program_id != PROGRAM_ID:
        return None
    vaults = _VAULTS_BY_ACCOUNT_COUNT.get(len(ix.accounts))
    if vaults is None:
        return None
    coin = ctx.mint_of(ix.accounts[vaults[0]])
    pc = ctx.mint_of(ix.accounts[vaults[1]])
    if coin is None or pc is None:
        return None
    f = event.fields
    if event.name == "SwapBaseIn":
        amount_in, amount_out = f["amount_in"], f["out_amount"]
    else:
        amount_in, amount_out = f["deduct_in"], f["amount_out"]
    mint_in, mint_out = (pc, coin) if f["direction"] == PC_TO_COIN else (coin, pc)
    given: TokenAmount = ctx.amount(mint_in, amount_in)
    got = ctx.amount(mint_out, amount_out)
    return Hop(NAME, PROGRAM_ID, pool_of(ix), given, got, None, hop_reserves(given, got, reserves_after(event)))


HANDLERS: dict[str, EventHandler] = {
    "SwapBaseIn": swap_handler(NAME, swap_hop),
    "SwapBaseOut": swap_handler(NAME, swap_hop),
    "Deposit": _liquidity,
    "Withdraw": _liquidity,
    "Init": _init,
}
