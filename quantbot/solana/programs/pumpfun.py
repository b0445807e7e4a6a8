"""Pump.fun bonding curves: trades and token launches, from the program's Anchor events.

Encoding: `TradeEvent`, `CreateEvent` and friends, emitted both as CPI-event instructions and as
`Program data:` logs (the CPI copy is preferred, the log copy counts only when the CPI copy is missing).
`TradeEvent` grew over time (reserves, then fees and creator, then volume tracking, then `ix_name`);
older events simply end earlier. Layouts: the program's published IDL (`pump.json`).

Reserves (`Hop.reserves`): the curve's virtual reserves, which `TradeEvent` reports after the trade (the
program moves the curve, then emits). They are what "liquidity" means here: the curve is x·y=k on exactly
these two numbers, so they set its price and how far a trade moves it. The real reserves (SOL that can be
taken out, tokens left to sell) are smaller by the curve's fixed virtual offset (at launch 30 SOL and
279,900,000 tokens: virtual 30 SOL / 1,073,000,000 tokens against real 0 / 793,100,000, as `CreateEvent`
reports); no trade can take the offset out of the curve, so liquidity valued from these reserves is the
depth the curve prices with, not the money in it.
"""

from __future__ import annotations

from quantbot.models import WSOL_MINT, Activity, ActivityKind, Hop, TokenAmount
from quantbot.solana.borsh import Layout
from quantbot.solana.context import (
    Context,
    EventHandler,
    Invocation,
    account,
    activity,
    event_activities,
    hop_reserves,
    pool_create_handler,
)
from quantbot.solana.events import Event, ProgramEvents, anchor_event, named_event
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P"
NAME = "pumpfun"
BONDING_CURVE_ACCOUNT = 3
"""`buy`/`sell` accounts: global, fee_recipient, mint, bonding_curve, ... (IDL order)."""
PERCENT = 100

TRADE_EVENT = Layout(
    "TradeEvent",
    [
        ("mint", "pubkey"),
        ("sol_amount", "u64"),
        ("token_amount", "u64"),
        ("is_buy", "bool"),
        ("user", "pubkey"),
        ("timestamp", "i64"),
        ("virtual_sol_reserves", "u64"),
        ("virtual_token_reserves", "u64"),
    ],
    optional=[
        [("real_sol_reserves", "u64"), ("real_token_reserves", "u64")],
        [
            ("fee_recipient", "pubkey"),
            ("fee_basis_points", "u64"),
            ("fee", "u64"),
            ("creator", "pubkey"),
            ("creator_fee_basis_points", "u64"),
            ("creator_fee", "u64"),
        ],
        [
            ("track_volume", "bool"),
            ("total_unclaimed_tokens", "u64"),
            ("total_claimed_tokens", "u64"),
            ("current_sol_volume", "u64"),
            ("last_update_timestamp", "i64"),
        ],
        [("ix_name", "string")],
    ],
)
CREATE_EVENT = Layout(
    "CreateEvent",
    [
        ("name", "string"),
        ("symbol", "string"),
        ("uri", "string"),
        ("mint", "pubkey"),
        ("bonding_curve", "pubkey"),
        ("user", "pubkey"),
    ],
    optional=[
        [
            ("creator", "pubkey"),
            ("timestamp", "i64"),
            ("virtual_token_reserves", "u64"),
            ("virtual_sol_reserves", "u64"),
            ("real_token_reserves", "u64"),
            ("token_total_supply", "u64"),
        ]
    ],
)
COMPLETE_EVENT = Layout(
    "CompleteEvent",
    [("user", "pubkey"), ("mint", "pubkey"), ("bonding_curve", "pubkey"), ("timestamp", "i64")],
)


MIGRATION_EVENT = named_event("CompletePumpAmmMigrationEvent")

EVENTS = ProgramEvents(
    PROGRAM_ID,
    NAME,
    (anchor_event(TRADE_EVENT), anchor_event(CREATE_EVENT), anchor_event(COMPLETE_EVENT), MIGRATION_EVENT),
    emits_both=True,
)


def pool_of(ix: Instruction) -> str | None:
    """The bonding curve a `buy`/`sell` instruction trades against."""
    return account(ix, BONDING_CURVE_ACCOUNT)


def price_impact_pct(sol_after: int, token_after: int, sol_moved: int, token_moved: int, is_buy: bool) -> float | None:
    """Relative move of the curve price (SOL per token) caused by a trade, in percent.

    The event's virtual reserves are those after the trade; the trade's amounts give those before.
    """
    if is_buy:
        sol_before, token_before = sol_after - sol_moved, token_after + token_moved
    else:
        sol_before, token_before = sol_after + sol_moved, token_after - token_moved
    if sol_before <= 0 or token_before <= 0 or token_after <= 0:
        return None
    before = sol_before / token_before
    after = sol_after / token_after
    return (after / before - 1.0) * PERCENT


def reserves_after(event: Event) -> tuple[int, int] | None:
    """The curve's virtual reserves after a `TradeEvent`'s trade, (input side, output side): SOL first for a
    buy, tokens first for a sale (see the module docstring for why virtual); None for another event."""
    if event.name != "TradeEvent":
        return None
    f = event.fields
    sol, tokens = f["virtual_sol_reserves"], f["virtual_token_reserves"]
    if sol <= 0 or tokens <= 0:
        return None
    return (sol, tokens) if f["is_buy"] else (tokens, sol)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Trades and launches of one Pump.fun invocation."""
    return event_activities(inv, ctx, PROGRAM_ID, HANDLERS)


def _trade(event: Event, ctx: Context) -> Activity | None:
    f = event.fields
    sol = f["sol_amount"]
    tokens = f["token_amount"]
    fees = f.get("fee", 0) + f.get("creator_fee", 0)
    mint = f["mint"]
    is_buy = f["is_buy"]
    emitter = ctx.emitter_of(event)
    pool = pool_of(emitter) if emitter is not None and emitter.program_id == PROGRAM_ID else None
    impact = price_impact_pct(f["virtual_sol_reserves"], f["virtual_token_reserves"], sol, tokens, is_buy)
    sol_leg = ctx.amount(WSOL_MINT, sol)
    token_leg = ctx.amount(mint, tokens)
    if is_buy:
        reserves = hop_reserves(sol_leg, token_leg, reserves_after(event))
        hop = Hop(NAME, PROGRAM_ID, pool, sol_leg, token_leg, impact, reserves)
        given: TokenAmount = ctx.amount(WSOL_MINT, sol + fees)
        got = token_leg
    else:
        reserves = hop_reserves(token_leg, sol_leg, reserves_after(event))
        hop = Hop(NAME, PROGRAM_ID, pool, token_leg, sol_leg, impact, reserves)
        given = token_leg
        got = ctx.amount(WSOL_MINT, max(sol - fees, 0))
    trader = ctx.trader(f["user"])
    return activity(ctx, ActivityKind.SWAP, (event.outer, event.inner), trader, NAME, given=given, got=got, hops=(hop,))


HANDLERS: dict[str, EventHandler] = {
    "TradeEvent": _trade,
    "CreateEvent": pool_create_handler(NAME, creator_field="user"),
}
