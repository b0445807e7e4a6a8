"""PumpSwap (pump AMM): swaps, deposits, withdrawals and pool creation, from its Anchor events.

Encoding: `BuyEvent`/`SellEvent`/`DepositEvent`/`WithdrawEvent`/`CreatePoolEvent`, emitted both as
CPI-event instructions and as `Program data:` logs (the CPI copy is preferred). Trade amounts are the
user's side as the event reports it: `user_quote_amount_in`/`user_quote_amount_out` include the LP,
protocol and creator fees. The events carry no mints; they come from the instruction's accounts.
Layouts: the program's published IDL (`pump_amm.json`); later versions append fields.

Reserves (`Hop.reserves`): `pool_base_token_reserves` and `pool_quote_token_reserves` are the pool's two
vault balances before the trade (on the recorded corpus they equal the vaults' pre token balances); after
it, the base vault has given `base_amount_out` (buy) or taken `base_amount_in` (sell), and the quote vault
has taken `quote_amount_in_with_lp_fee` (buy) or given `quote_amount_out_without_lp_fee` (sell): the LP fee
stays in the pool, the protocol and creator fees go to their own accounts. Those after-trade numbers equal
the vaults' post balances when the transaction touches the pool once.
"""

from __future__ import annotations

from typing import Any

from quantbot.models import Activity, ActivityKind, Hop
from quantbot.solana.borsh import Layout
from quantbot.solana.context import (
    Context,
    EventHandler,
    Invocation,
    account,
    event_activities,
    event_activity,
    hop_reserves,
    hop_swap,
    lp_activity,
)
from quantbot.solana.events import Event, ProgramEvents, anchor_event
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "pAMMBay6oceH9fJKBRHGP5D4bD4sWpmSwMn52FMfXEA"
NAME = "pumpswap"
POOL_ACCOUNT = 0
# `buy`/`sell` accounts: pool, user, global_config, base_mint, quote_mint, ... (IDL order);
# `deposit`/`withdraw`: pool, global_config, user, base_mint, quote_mint, lp_mint, ...
TRADE_BASE_MINT, TRADE_QUOTE_MINT = 3, 4
LIQUIDITY_BASE_MINT, LIQUIDITY_QUOTE_MINT, LIQUIDITY_LP_MINT = 3, 4, 5
PERCENT = 100

_RESERVES = [
    ("user_base_token_reserves", "u64"),
    ("user_quote_token_reserves", "u64"),
    ("pool_base_token_reserves", "u64"),
    ("pool_quote_token_reserves", "u64"),
]
_ACCOUNTS_AND_FEES = [
    ("pool", "pubkey"),
    ("user", "pubkey"),
    ("user_base_token_account", "pubkey"),
    ("user_quote_token_account", "pubkey"),
    ("protocol_fee_recipient", "pubkey"),
    ("protocol_fee_recipient_token_account", "pubkey"),
]
_CREATOR = [("coin_creator", "pubkey"), ("coin_creator_fee_basis_points", "u64"), ("coin_creator_fee", "u64")]
_VOLUME = [
    ("track_volume", "bool"),
    ("total_unclaimed_tokens", "u64"),
    ("total_claimed_tokens", "u64"),
    ("current_sol_volume", "u64"),
    ("last_update_timestamp", "i64"),
]

BUY_EVENT = Layout(
    "BuyEvent",
    [
        ("timestamp", "i64"),
        ("base_amount_out", "u64"),
        ("max_quote_amount_in", "u64"),
        *_RESERVES,
        ("quote_amount_in", "u64"),
        ("lp_fee_basis_points", "u64"),
        ("lp_fee", "u64"),
        ("protocol_fee_basis_points", "u64"),
        ("protocol_fee", "u64"),
        ("quote_amount_in_with_lp_fee", "u64"),
        ("user_quote_amount_in", "u64"),
        *_ACCOUNTS_AND_FEES,
    ],
    optional=[_CREATOR, _VOLUME],
)
SELL_EVENT = Layout(
    "SellEvent",
    [
        ("timestamp", "i64"),
        ("base_amount_in", "u64"),
        ("min_quote_amount_out", "u64"),
        *_RESERVES,
        ("quote_amount_out", "u64"),
        ("lp_fee_basis_points", "u64"),
        ("lp_fee", "u64"),
        ("protocol_fee_basis_points", "u64"),
        ("protocol_fee", "u64"),
        ("quote_amount_out_without_lp_fee", "u64"),
        ("user_quote_amount_out", "u64"),
        *_ACCOUNTS_AND_FEES,
    ],
    optional=[_CREATOR],
)
DEPOSIT_EVENT = Layout(
    "DepositEvent",
    [
        ("timestamp", "i64"),
        ("lp_token_amount_out", "u64"),
        ("max_base_amount_in", "u64"),
        ("max_quote_amount_in", "u64"),
        *_RESERVES,
        ("base_amount_in", "u64"),
        ("quote_amount_in", "u64"),
        ("lp_mint_supply", "u64"),
        ("pool", "pubkey"),
        ("user", "pubkey"),
        ("user_base_token_account", "pubkey"),
        ("user_quote_token_account", "pubkey"),
        ("user_pool_token_account", "pubkey"),
    ],
)
WITHDRAW_EVENT = Layout(
    "WithdrawEvent",
    [
        ("timestamp", "i64"),
        ("lp_token_amount_in", "u64"),
        ("min_base_amount_out", "u64"),
        ("min_quote_amount_out", "u64"),
        *_RESERVES,
        ("base_amount_out", "u64"),
        ("quote_amount_out", "u64"),
        ("lp_mint_supply", "u64"),
        ("pool", "pubkey"),
        ("user", "pubkey"),
        ("user_base_token_account", "pubkey"),
        ("user_quote_token_account", "pubkey"),
        ("user_pool_token_account", "pubkey"),
    ],
)
CREATE_POOL_EVENT = Layout(
    "CreatePoolEvent",
    [
        ("timestamp", "i64"),
        ("index", "u16"),
        ("creator", "pubkey"),
        ("base_mint", "pubkey"),
        ("quote_mint", "pubkey"),
        ("base_mint_decimals", "u8"),
        ("quote_mint_decimals", "u8"),
        ("base_amount_in", "u64"),
        ("quote_amount_in", "u64"),
        ("pool_base_amount", "u64"),
        ("pool_quote_amount", "u64"),
        ("minimum_liquidity", "u64"),
        ("initial_liquidity", "u64"),
        ("lp_token_amount_out", "u64"),
        ("pool_bump", "u8"),
        ("pool", "pubkey"),
        ("lp_mint", "pubkey"),
        ("user_base_token_account", "pubkey"),
        ("user_quote_token_account", "pubkey"),
    ],
    optional=[[("coin_creator", "pubkey")]],
)

EVENTS = ProgramEvents(
    PROGRAM_ID,
    NAME,
    tuple(anchor_event(layout) for layout in (BUY_EVENT, SELL_EVENT, DEPOSIT_EVENT, WITHDRAW_EVENT, CREATE_POOL_EVENT)),
    emits_both=True,
)


def pool_of(ix: Instruction) -> str | None:
    """The pool a PumpSwap instruction trades against."""
    return account(ix, POOL_ACCOUNT)


def _pool_instruction(event: Event, ctx: Context) -> Instruction | None:
    emitter = ctx.emitter_of(event)
    return emitter if emitter is not None and emitter.program_id == PROGRAM_ID else None


def price_impact_pct(base_before: int, quote_before: int, base_after: int, quote_after: int) -> float | None:
    """Relative move of the pool price (quote per base) caused by a trade, in percent."""
    if base_before <= 0 or quote_before <= 0 or base_after <= 0:
        return None
    return ((quote_after / base_after) / (quote_before / base_before) - 1.0) * PERCENT


def pool_after(event: Event) -> tuple[int, int] | None:
    """The pool's (base, quote) reserves after a `BuyEvent`'s or `SellEvent`'s trade (None for another event)."""
    f: dict[str, Any] = event.fields
    name = event.name
    if name == "BuyEvent":
        base = f["pool_base_token_reserves"] - f["base_amount_out"]
        quote = f["pool_quote_token_reserves"] + f["quote_amount_in_with_lp_fee"]
    elif name == "SellEvent":
        base = f["pool_base_token_reserves"] + f["base_amount_in"]
        quote = f["pool_quote_token_reserves"] - f["quote_amount_out_without_lp_fee"]
    else:
        return None
    return (base, quote) if base > 0 and quote > 0 else None


def reserves_after(event: Event) -> tuple[int, int] | None:
    """The pool's reserves after a trade, (input side, output side): quote first for a buy, base for a sale."""
    after = pool_after(event)
    if after is None:
        return None
    base, quote = after
    return (quote, base) if event.name == "BuyEvent" else (base, quote)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Swaps, liquidity changes and pool creations of one PumpSwap invocation."""
    return event_activities(inv, ctx, PROGRAM_ID, HANDLERS)


def _trade(event: Event, ctx: Context) -> Activity | None:
    f: dict[str, Any] = event.fields
    ix = _pool_instruction(event, ctx)
    base_mint = account(ix, TRADE_BASE_MINT)
    quote_mint = account(ix, TRADE_QUOTE_MINT)
    if base_mint is None or quote_mint is None:
        return None
    base_before = f["pool_base_token_reserves"]
    quote_before = f["pool_quote_token_reserves"]
    after = pool_after(event)
    impact = None if after is None else price_impact_pct(base_before, quote_before, after[0], after[1])
    if event.name == "BuyEvent":
        base = ctx.amount(base_mint, f["base_amount_out"])
        quote = ctx.amount(quote_mint, f["user_quote_amount_in"])
        reserves = None if after is None else hop_reserves(quote, base, (after[1], after[0]))
        hop = Hop(NAME, PROGRAM_ID, f["pool"], quote, base, impact, reserves)
    else:
        base = ctx.amount(base_mint, f["base_amount_in"])
        quote = ctx.amount(quote_mint, f["user_quote_amount_out"])
        reserves = hop_reserves(base, quote, after)
        hop = Hop(NAME, PROGRAM_ID, f["pool"], base, quote, impact, reserves)
    trader = ctx.trader(f["user"])
    return hop_swap(ctx, (event.outer, event.inner), trader, NAME, hop)


def _liquidity(event: Event, ctx: Context) -> Activity | None:
    f = event.fields
    ix = _pool_instruction(event, ctx)
    base_mint = account(ix, LIQUIDITY_BASE_MINT)
    quote_mint = account(ix, LIQUIDITY_QUOTE_MINT)
    lp_mint = account(ix, LIQUIDITY_LP_MINT)
    if base_mint is None or quote_mint is None or lp_mint is None:
        return None
    trader = ctx.trader(f["user"])
    added = event.name == "DepositEvent"
    base_leg, quote_leg = (
        (f["base_amount_in"], f["quote_amount_in"]) if added else (f["base_amount_out"], f["quote_amount_out"])
    )
    leg = ctx.amount(base_mint, base_leg) if base_leg else ctx.amount(quote_mint, quote_leg)
    lp = ctx.amount(lp_mint, f["lp_token_amount_out"] if added else f["lp_token_amount_in"])
    return lp_activity(ctx, event, trader, NAME, added=added, token=leg, lp=lp)


def _pool_created(event: Event, ctx: Context) -> Activity:
    """A pool's creation by its creator: the base tokens it put in against the LP tokens it got."""
    f = event.fields
    given = ctx.amount(f["base_mint"], f["base_amount_in"])
    got = ctx.amount(f["lp_mint"], f["lp_token_amount_out"])
    return event_activity(ctx, ActivityKind.POOL_CREATE, event, ctx.trader(f["creator"]), NAME, given=given, got=got)


HANDLERS: dict[str, EventHandler] = {
    "BuyEvent": _trade,
    "SellEvent": _trade,
    "DepositEvent": _liquidity,
    "WithdrawEvent": _liquidity,
    "CreatePoolEvent": _pool_created,
}
